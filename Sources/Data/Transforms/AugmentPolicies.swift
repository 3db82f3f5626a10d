import Foundation

/// The image operations of torchvision's `RandAugment`, `TrivialAugmentWide` and `AutoAugment` (torchvision's
/// `_apply_op` on uint8 tensors, nearest-neighbour geometry, fill 0). Colour operations follow the
/// tensor code's float32 arithmetic and its truncation back to uint8 (`_blend`), so they agree with
/// torchvision to ±1 grey level (where LibTorch's float32 sums, e.g. the contrast mean, round
/// differently). Geometric operations use torchvision's inverse affine matrix and pixel-centre grid;
/// nearest sampling of a point on a half-pixel tie may pick the neighbouring pixel (torchvision's grid
/// is float32 and rounds ties to even, ours is float64 and rounds them up).
public enum AugmentOp: String, CaseIterable, Sendable {
    case identity = "Identity", shearX = "ShearX", shearY = "ShearY", translateX = "TranslateX"
    case translateY = "TranslateY", rotate = "Rotate", brightness = "Brightness", color = "Color"
    case contrast = "Contrast", sharpness = "Sharpness", posterize = "Posterize", solarize = "Solarize"
    case autoContrast = "AutoContrast", equalize = "Equalize"
    /// `255 - x` (AutoAugment's policies only).
    case invert = "Invert"

    /// Whether a magnitude is negated with probability 1/2.
    var signed: Bool {
        switch self {
        case .shearX, .shearY, .translateX, .translateY, .rotate, .brightness, .color, .contrast, .sharpness: return true
        default: return false
        }
    }

    /// `image` (RGB) changed by this operation at `magnitude` (torchvision's `_apply_op`).
    public func apply(_ image: Image, magnitude: Double) throws -> Image {
        let rgb = image.rgb()
        switch self {
        case .identity: return rgb
        case .shearX, .shearY:
            let degrees = Foundation.atan(magnitude) * 180 / .pi
            let shear = self == .shearX ? (degrees, 0.0) : (0.0, degrees)
            // center=[0, 0]: the top-left corner, in torchvision's centred coordinates.
            let m = RandomAffine.matrix(angle: 0, translate: (0, 0), scale: 1, shear: shear, height: rgb.height,
                                        width: rgb.width, center: (-Double(rgb.width) / 2, -Double(rgb.height) / 2))
            return AffineWarp.warp(rgb, matrix: m, fill: .constant(0), interpolation: .nearest)
        case .translateX, .translateY:
            let shift = Double(Int(magnitude))
            let m = RandomAffine.matrix(angle: 0, translate: self == .translateX ? (shift, 0) : (0, shift), scale: 1,
                                        shear: (0, 0), height: rgb.height, width: rgb.width)
            return AffineWarp.warp(rgb, matrix: m, fill: .constant(0), interpolation: .nearest)
        case .rotate:
            let m = RandomAffine.matrix(angle: -magnitude, translate: (0, 0), scale: 1, shear: (0, 0),
                                        height: rgb.height, width: rgb.width)
            return AffineWarp.warp(rgb, matrix: m, fill: .constant(0), interpolation: .nearest)
        case .brightness:
            return try Self.blend(rgb, ratio: 1 + magnitude) { _, _ in 0 }
        case .color:
            let gray = Self.grayscale(rgb)
            return try Self.blend(rgb, ratio: 1 + magnitude) { pixel, _ in Float(gray[pixel]) }
        case .contrast:
            let gray = Self.grayscale(rgb)
            let mean = Float(gray.reduce(0.0) { $0 + Double($1) } / Double(Swift.max(1, gray.count)))
            return try Self.blend(rgb, ratio: 1 + magnitude) { _, _ in mean }
        case .sharpness:
            guard rgb.width > 2, rgb.height > 2 else { return rgb }
            let blurred = Self.blurred(rgb)
            return try Self.blend(rgb, ratio: 1 + magnitude) { pixel, channel in Float(blurred[pixel * 3 + channel]) }
        case .posterize:
            let bits = Int(magnitude)
            let mask = UInt8(truncatingIfNeeded: -(1 << (8 - bits)))
            return try Image(width: rgb.width, height: rgb.height, channels: 3, pixels: rgb.pixels.map { $0 & mask })
        case .solarize:
            return try Image(width: rgb.width, height: rgb.height, channels: 3,
                             pixels: rgb.pixels.map { Double($0) >= magnitude ? 255 - $0 : $0 })
        case .autoContrast:
            var out = rgb.pixels
            for c in 0..<3 {
                var low: UInt8 = 255, high: UInt8 = 0
                for i in stride(from: c, to: out.count, by: 3) { low = Swift.min(low, out[i]); high = Swift.max(high, out[i]) }
                guard high > low else { continue }
                let scale = Float(255) / (Float(high) - Float(low))
                for i in stride(from: c, to: out.count, by: 3) {
                    out[i] = UInt8(Swift.min(Swift.max((Float(out[i]) - Float(low)) * scale, 0), 255))
                }
            }
            return try Image(width: rgb.width, height: rgb.height, channels: 3, pixels: out)
        case .invert:
            return try Image(width: rgb.width, height: rgb.height, channels: 3, pixels: rgb.pixels.map { 255 - $0 })
        case .equalize:
            var out = rgb.pixels
            for c in 0..<3 {
                var histogram = [Int](repeating: 0, count: 256)
                for i in stride(from: c, to: out.count, by: 3) { histogram[Int(out[i])] += 1 }
                let nonzero = histogram.filter { $0 != 0 }
                let step = nonzero.dropLast().reduce(0, +) / 255
                guard step > 0 else { continue }
                var lut = [Int](repeating: 0, count: 256)
                var cumulative = 0
                for v in 0..<255 {  // lut[v + 1] = (cumsum[v] + step / 2) / step; lut[0] = 0
                    cumulative += histogram[v]
                    lut[v + 1] = Swift.min(255, (cumulative + step / 2) / step)
                }
                for i in stride(from: c, to: out.count, by: 3) { out[i] = UInt8(lut[Int(out[i])]) }
            }
            return try Image(width: rgb.width, height: rgb.height, channels: 3, pixels: out)
        }
    }

    /// torchvision's `_blend` on uint8: `(ratio · x + (1 − ratio) · other).clamp(0, 255)` in float32,
    /// truncated to uint8. `other(pixel, channel)` gives the second image's value.
    static func blend(_ image: Image, ratio: Double, other: (Int, Int) -> Float) throws -> Image {
        let r = Float(ratio), q = Float(1 - ratio)
        var out = image.pixels
        for pixel in 0..<(image.width * image.height) {
            for c in 0..<3 {
                let v = r * Float(out[pixel * 3 + c]) + q * other(pixel, c)
                out[pixel * 3 + c] = UInt8(Swift.min(Swift.max(v, 0), 255))
            }
        }
        return try Image(width: image.width, height: image.height, channels: 3, pixels: out)
    }

    /// torchvision's `rgb_to_grayscale` on uint8: `0.2989 R + 0.587 G + 0.114 B` in float32, truncated.
    static func grayscale(_ image: Image) -> [UInt8] {
        (0..<(image.width * image.height)).map { p in
            let r = Float(image.pixels[p * 3]), g = Float(image.pixels[p * 3 + 1]), b = Float(image.pixels[p * 3 + 2])
            return UInt8(Swift.min(Swift.max(Float(0.2989) * r + Float(0.587) * g + Float(0.114) * b, 0), 255))
        }
    }

    /// torchvision's `_blurred_degenerate_image`: the 3×3 kernel [1 1 1; 1 5 1; 1 1 1] / 13 on the
    /// interior (rounded to uint8), the border pixels kept.
    static func blurred(_ image: Image) -> [UInt8] {
        var out = image.pixels
        let w = image.width, h = image.height
        let k = Float(1) / 13, centre = Float(5) / 13
        for y in 1..<(h - 1) {
            for x in 1..<(w - 1) {
                for c in 0..<3 {
                    var sum: Float = 0
                    for dy in -1...1 {
                        for dx in -1...1 {
                            sum += (dx == 0 && dy == 0 ? centre : k) * Float(image.pixels[((y + dy) * w + x + dx) * 3 + c])
                        }
                    }
                    out[(y * w + x) * 3 + c] = UInt8(Swift.min(Swift.max(sum.rounded(.toNearestOrEven), 0), 255))
                }
            }
        }
        return out
    }
}

/// The magnitude bins of torchvision's policies for an image of `height` × `width`.
enum AugmentSpace {
    /// `torch.linspace(a, b, n)` in float32 (ATen's two-sided formula), as doubles.
    static func linspace(_ a: Double, _ b: Double, _ n: Int) -> [Double] {
        let start = Float(a), end = Float(b), step = (end - start) / Float(n - 1)
        return (0..<n).map { i in Double(i < n / 2 ? start + step * Float(i) : end - step * Float(n - i - 1)) }
    }

    /// `RandAugment._augmentation_space(bins, (height, width))`.
    static func randAugment(bins: Int, height: Int, width: Int) -> [(AugmentOp, [Double])] {
        [(.identity, []), (.shearX, linspace(0, 0.3, bins)), (.shearY, linspace(0, 0.3, bins)),
         (.translateX, linspace(0, 150.0 / 331.0 * Double(width), bins)),
         (.translateY, linspace(0, 150.0 / 331.0 * Double(height), bins)), (.rotate, linspace(0, 30, bins)),
         (.brightness, linspace(0, 0.9, bins)), (.color, linspace(0, 0.9, bins)), (.contrast, linspace(0, 0.9, bins)),
         (.sharpness, linspace(0, 0.9, bins)),
         (.posterize, (0..<bins).map { 8 - (Double($0) / (Double(bins - 1) / 4)).rounded(.toNearestOrEven) }),
         (.solarize, linspace(255, 0, bins)), (.autoContrast, []), (.equalize, [])]
    }

    /// `AutoAugment._augmentation_space(bins, (height, width))`: RandAugment's without Identity, with Invert.
    static func autoAugment(bins: Int, height: Int, width: Int) -> [(AugmentOp, [Double])] {
        randAugment(bins: bins, height: height, width: width).filter { $0.0 != .identity } + [(.invert, [])]
    }

    /// `TrivialAugmentWide._augmentation_space(bins)`.
    static func trivialAugmentWide(bins: Int) -> [(AugmentOp, [Double])] {
        [(.identity, []), (.shearX, linspace(0, 0.99, bins)), (.shearY, linspace(0, 0.99, bins)),
         (.translateX, linspace(0, 32, bins)), (.translateY, linspace(0, 32, bins)), (.rotate, linspace(0, 135, bins)),
         (.brightness, linspace(0, 0.99, bins)), (.color, linspace(0, 0.99, bins)), (.contrast, linspace(0, 0.99, bins)),
         (.sharpness, linspace(0, 0.99, bins)),
         (.posterize, (0..<bins).map { 8 - (Double($0) / (Double(bins - 1) / 6)).rounded(.toNearestOrEven) }),
         (.solarize, linspace(255, 0, bins)), (.autoContrast, []), (.equalize, [])]
    }
}

/// torchvision's `RandAugment(num_ops, magnitude, num_magnitude_bins=31)`: `n` operations drawn
/// uniformly from the 14, each at bin `m` (signed operations negated with probability 1/2), seeded.
public struct RandAugment: ImageAugmentation {
    /// Operations per image (torchvision's `num_ops`, 2).
    public var n: Int
    /// The magnitude bin (torchvision's `magnitude`, 9), 0 ..< `bins`.
    public var m: Int
    /// Magnitude bins (31).
    public var bins: Int

    /// torchvision's defaults: 2 operations at bin 9 of 31.
    public init(n: Int = 2, m: Int = 9, bins: Int = 31) {
        self.n = n
        self.m = m
        self.bins = bins
    }

    /// `image` through `n` random operations. Throws unless `n` ≥ 0, `bins` ≥ 2 and `m` is a bin.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        try AugmentationSettings.check(n, "n (operations)", of: "RandAugment", within: 0...1000)
        try AugmentationSettings.check(bins, "bins", of: "RandAugment", within: 2...10_000)
        try AugmentationSettings.check(m, "m (magnitude bin)", of: "RandAugment", within: 0...(bins - 1))
        var x = image.rgb()
        let space = AugmentSpace.randAugment(bins: bins, height: x.height, width: x.width)
        for _ in 0..<n {
            let (op, magnitudes) = space[random.integer(in: 0..<space.count)]
            var magnitude = magnitudes.isEmpty ? 0 : magnitudes[Swift.min(m, magnitudes.count - 1)]
            if op.signed && random.integer(in: 0..<2) == 1 { magnitude = -magnitude }
            x = try op.apply(x, magnitude: magnitude)
        }
        return x
    }
}

/// torchvision's `TrivialAugmentWide(num_magnitude_bins=31)`: one operation drawn uniformly from the
/// 14, at a uniformly drawn bin (signed operations negated with probability 1/2), seeded.
public struct TrivialAugmentWide: ImageAugmentation {
    /// Magnitude bins (31).
    public var bins: Int

    /// torchvision's default of 31 bins.
    public init(bins: Int = 31) { self.bins = bins }

    /// `image` through one random operation. Throws unless `bins` ≥ 2.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        try AugmentationSettings.check(bins, "bins", of: "TrivialAugmentWide", within: 2...10_000)
        let x = image.rgb()
        let space = AugmentSpace.trivialAugmentWide(bins: bins)
        let (op, magnitudes) = space[random.integer(in: 0..<space.count)]
        var magnitude = magnitudes.isEmpty ? 0 : magnitudes[random.integer(in: 0..<magnitudes.count)]
        if op.signed && random.integer(in: 0..<2) == 1 { magnitude = -magnitude }
        return try op.apply(x, magnitude: magnitude)
    }
}

/// torchvision's `AutoAugment(AutoAugmentPolicy.IMAGENET)` (Cubuk et al., 2019): one of 25 learned
/// sub-policies drawn uniformly, each two operations applied with their own probability at a fixed
/// bin of 10 (signed operations negated with probability 1/2), seeded.
public struct AutoAugment: ImageAugmentation {
    /// One step of a sub-policy: the operation, the probability it is applied, its magnitude bin
    /// (nil for operations without a magnitude).
    public typealias Step = (op: AugmentOp, probability: Double, bin: Int?)

    /// The ImageNet policy, as torchvision 0.14's `_get_policies(AutoAugmentPolicy.IMAGENET)` lists it.
    public static let imageNetPolicy: [[Step]] = [
        [(.posterize, 0.4, 8), (.rotate, 0.6, 9)], [(.solarize, 0.6, 5), (.autoContrast, 0.6, nil)],
        [(.equalize, 0.8, nil), (.equalize, 0.6, nil)], [(.posterize, 0.6, 7), (.posterize, 0.6, 6)],
        [(.equalize, 0.4, nil), (.solarize, 0.2, 4)], [(.equalize, 0.4, nil), (.rotate, 0.8, 8)],
        [(.solarize, 0.6, 3), (.equalize, 0.6, nil)], [(.posterize, 0.8, 5), (.equalize, 1.0, nil)],
        [(.rotate, 0.2, 3), (.solarize, 0.6, 8)], [(.equalize, 0.6, nil), (.posterize, 0.4, 6)],
        [(.rotate, 0.8, 8), (.color, 0.4, 0)], [(.rotate, 0.4, 9), (.equalize, 0.6, nil)],
        [(.equalize, 0.0, nil), (.equalize, 0.8, nil)], [(.invert, 0.6, nil), (.equalize, 1.0, nil)],
        [(.color, 0.6, 4), (.contrast, 1.0, 8)], [(.rotate, 0.8, 8), (.color, 1.0, 2)],
        [(.color, 0.8, 8), (.solarize, 0.8, 7)], [(.sharpness, 0.4, 7), (.invert, 0.6, nil)],
        [(.shearX, 0.6, 5), (.equalize, 1.0, nil)], [(.color, 0.4, 0), (.equalize, 0.6, nil)],
        [(.equalize, 0.4, nil), (.solarize, 0.2, 4)], [(.solarize, 0.6, 5), (.autoContrast, 0.6, nil)],
        [(.invert, 0.6, nil), (.equalize, 1.0, nil)], [(.color, 0.6, 4), (.contrast, 1.0, 8)],
        [(.equalize, 0.8, nil), (.equalize, 0.6, nil)],
    ]

    /// Magnitude bins (torchvision's 10).
    public static let bins = 10

    /// The ImageNet policy.
    public init() {}

    /// The operations and magnitudes one draw applies to an image of `height` × `width`, in order:
    /// torchvision's `get_params` (a sub-policy, two uniform numbers, two signs), then each step whose
    /// number is at most its probability.
    func operations(height: Int, width: Int, random: inout SampleRandom) -> [(AugmentOp, Double)] {
        let policy = Self.imageNetPolicy[random.integer(in: 0..<Self.imageNetPolicy.count)]
        let draws = [random.unit(), random.unit()]
        let negated = [random.integer(in: 0..<2) == 0, random.integer(in: 0..<2) == 0]
        let space = Dictionary(AugmentSpace.autoAugment(bins: Self.bins, height: height, width: width).map { ($0.0, $0.1) },
                               uniquingKeysWith: { first, _ in first })
        var chosen: [(AugmentOp, Double)] = []
        for (i, step) in policy.enumerated() where draws[i] <= step.probability {
            var magnitude = step.bin.map { space[step.op]?[$0] ?? 0 } ?? 0
            if step.op.signed && negated[i] { magnitude = -magnitude }
            chosen.append((step.op, magnitude))
        }
        return chosen
    }

    /// `image` through one drawn sub-policy.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        var x = image.rgb()
        for (op, magnitude) in operations(height: x.height, width: x.width, random: &random) {
            x = try op.apply(x, magnitude: magnitude)
        }
        return x
    }
}
