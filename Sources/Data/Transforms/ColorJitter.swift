import Foundation

/// torchvision's `ColorJitter`: brightness, contrast and saturation factors drawn from
/// `[max(0, 1 - x), 1 + x]`, a hue shift from `[-hue, hue]` (fraction of a turn, at most 0.5), applied
/// in a random order. Formulas follow torchvision's: brightness scales, contrast blends with the
/// mean of the grayscale image, saturation blends with the grayscale image
/// (`0.2989 R + 0.587 G + 0.114 B`), hue rotates H in HSV. Works in floats with clamping to 0…255
/// after each step and rounds once at the end.
public struct ColorJitter: ImageAugmentation {
    /// Brightness jitter x: the factor is drawn from [max(0, 1 − x), 1 + x]; 0 disables it.
    public var brightness: Double
    /// Contrast jitter, drawn like `brightness`; 0 disables it.
    public var contrast: Double
    /// Saturation jitter, drawn like `brightness`; 0 disables it.
    public var saturation: Double
    /// Largest hue shift as a fraction of a full turn, in [0, 0.5]; 0 disables it.
    public var hue: Double

    /// torchvision's `ColorJitter(brightness, contrast, saturation, hue)` with single-number
    /// arguments; `hue` is clamped to 0.5.
    public init(brightness: Double = 0, contrast: Double = 0, saturation: Double = 0, hue: Double = 0) {
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = min(abs(hue), 0.5)
    }

    /// The sampled factors; nil for a disabled adjustment.
    public struct Parameters: Sendable, Equatable {
        /// The order the adjustments are applied in: 0 brightness, 1 contrast, 2 saturation, 3 hue.
        public var order: [Int]
        /// Brightness factor (1 = unchanged); nil when disabled.
        public var brightness: Double?
        /// Contrast factor (1 = unchanged); nil when disabled.
        public var contrast: Double?
        /// Saturation factor (0 = gray, 1 = unchanged); nil when disabled.
        public var saturation: Double?
        /// Hue shift as a fraction of a turn, in [−0.5, 0.5]; nil when disabled.
        public var hue: Double?

        /// `order` lists the adjustments to apply: 0 brightness, 1 contrast, 2 saturation, 3 hue.
        public init(order: [Int], brightness: Double? = nil, contrast: Double? = nil, saturation: Double? = nil,
                    hue: Double? = nil) {
            self.order = order
            self.brightness = brightness
            self.contrast = contrast
            self.saturation = saturation
            self.hue = hue
        }
    }

    /// Draws one sample's order and factors, as torchvision's `get_params`.
    public func parameters(random: inout SampleRandom) -> Parameters {
        let order = random.permutation(4)
        func factor(_ x: Double) -> Double? { x > 0 ? random.uniform(max(0, 1 - x), 1 + x) : nil }
        let b = factor(brightness), c = factor(contrast), s = factor(saturation)
        let h = hue > 0 ? random.uniform(-hue, hue) : nil
        return Parameters(order: order, brightness: b, contrast: c, saturation: s, hue: h)
    }

    /// Draws parameters from `random` and applies them (gray images come out RGB). Throws unless the
    /// brightness, contrast and saturation jitters are within 0...1e6 and the hue within 0...0.5.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        for (value, field) in [(brightness, "brightness"), (contrast, "contrast"), (saturation, "saturation")] {
            try AugmentationSettings.check(value, field, of: "ColorJitter", within: 0...1e6)
        }
        try AugmentationSettings.check(hue, "hue", of: "ColorJitter", within: 0...0.5)
        let p = parameters(random: &random)
        return try Self.apply(p, to: image)
    }

    /// Applies fixed parameters to `image` (converted to RGB), clamping to 0…255 after each step and
    /// rounding at the end.
    public static func apply(_ p: Parameters, to image: Image) throws -> Image {
        let rgbImage = image.rgb()
        let n = rgbImage.width * rgbImage.height
        var x = rgbImage.pixels.map(Float.init)
        x.withUnsafeMutableBufferPointer { buffer in
            let v = buffer.baseAddress!
            @inline(__always) func clamp(_ a: Float) -> Float { a < 0 ? 0 : a > 255 ? 255 : a }
            @inline(__always) func gray(_ i: Int) -> Float { 0.2989 * v[3 * i] + 0.587 * v[3 * i + 1] + 0.114 * v[3 * i + 2] }
            for step in p.order {
                switch step {
                case 0:
                    guard let f = p.brightness.map(Float.init) else { continue }
                    for i in 0..<(3 * n) { v[i] = clamp(f * v[i]) }
                case 1:
                    guard let f = p.contrast.map(Float.init) else { continue }
                    var sum: Double = 0
                    for i in 0..<n { sum += Double(gray(i)) }
                    let mean = Float(sum / Double(max(n, 1))) * (1 - f)
                    for i in 0..<(3 * n) { v[i] = clamp(f * v[i] + mean) }
                case 2:
                    guard let f = p.saturation.map(Float.init) else { continue }
                    for i in 0..<n {
                        let g = gray(i) * (1 - f)
                        v[3 * i] = clamp(f * v[3 * i] + g)
                        v[3 * i + 1] = clamp(f * v[3 * i + 1] + g)
                        v[3 * i + 2] = clamp(f * v[3 * i + 2] + g)
                    }
                default:
                    guard let shift = p.hue.map(Float.init) else { continue }
                    Self.shiftHue(v, count: n, by: shift)
                }
            }
        }
        return try Image(width: rgbImage.width, height: rgbImage.height, channels: 3, pixels: quantize(x))
    }

    /// Rotates hue by `shift` turns (HSV round trip as torchvision's `_rgb2hsv` / `_hsv2rgb`).
    static func shiftHue(_ x: UnsafeMutablePointer<Float>, count: Int, by shift: Float) {
        for i in 0..<count {
            let r = x[3 * i] / 255, g = x[3 * i + 1] / 255, b = x[3 * i + 2] / 255
            let maxc = Swift.max(Swift.max(r, g), b), minc = Swift.min(Swift.min(r, g), b)
            let v = maxc, delta = maxc - minc
            guard delta > 0 else { continue }  // gray: hue is undefined and unchanged
            let s = delta / maxc
            var h: Float
            if maxc == r { h = (g - b) / delta } else if maxc == g { h = 2 + (b - r) / delta } else { h = 4 + (r - g) / delta }
            h = (h / 6).truncatingRemainder(dividingBy: 1)
            h = (h + shift).truncatingRemainder(dividingBy: 1)
            if h < 0 { h += 1 }
            let h6 = h * 6
            let sector = Int(h6.rounded(.down)) % 6
            let f = h6 - h6.rounded(.down)
            let p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f))
            let (rr, gg, bb): (Float, Float, Float)
            switch sector {
            case 0: (rr, gg, bb) = (v, t, p)
            case 1: (rr, gg, bb) = (q, v, p)
            case 2: (rr, gg, bb) = (p, v, t)
            case 3: (rr, gg, bb) = (p, q, v)
            case 4: (rr, gg, bb) = (t, p, v)
            default: (rr, gg, bb) = (v, p, q)
            }
            x[3 * i] = rr * 255
            x[3 * i + 1] = gg * 255
            x[3 * i + 2] = bb * 255
        }
    }
}
