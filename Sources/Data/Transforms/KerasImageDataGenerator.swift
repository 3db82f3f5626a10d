import Foundation
import Torch

/// Keras' `ImageDataGenerator(rescale=…, shear_range=…, zoom_range=…, horizontal_flip=…)` with
/// `flow_from_directory(target_size=…)`, as a loader transform. Per sample, as Keras 2
/// (keras_preprocessing) does:
///
/// 1. resize to `targetSize` with PIL's NEAREST filter (Keras' default `interpolation="nearest"`);
/// 2. draw θ ~ U(±rotationRange)°, tx ~ U(±heightShiftRange)·H (rows), ty ~ U(±widthShiftRange)·W
///    (columns; ranges ≥ 1 are pixels), shear ~ U(±shearRange) **degrees**, and zx, zy ~ U(zoomRange)
///    **independently** (`zoom_range = z` means [1 - z, 1 + z]), flips with probability 0.5;
/// 3. one affine warp, `rotation · shift · shear · zoom` in (row, column) coordinates about
///    `(H/2 + 0.5, W/2 + 0.5)` — Keras' `transform_matrix_offset_center` — sampled bilinearly
///    (scipy `order=1`) with `fillMode` (Keras' default "nearest");
/// 4. horizontal, then vertical flip;
/// 5. `x * rescale` (no rounding: Keras works in float32), then the optional `mean`/`std`
///    standardisation (for models that expect it, like a `preprocessing_function`).
///
/// A zoom factor above 1 shows *more* of the image (it shrinks), as in Keras.
public struct KerasImageDataGenerator: SampleTransform {
    /// Factor every value is multiplied by (Keras' `rescale`, typically 1/255); nil leaves 0…255.
    public var rescale: Double?
    /// Largest rotation in degrees (`rotation_range`).
    public var rotationRange: Double
    /// Largest horizontal shift (`width_shift_range`): a fraction of the width below 1, else pixels.
    public var widthShiftRange: Double
    /// Largest vertical shift (`height_shift_range`): a fraction of the height below 1, else pixels.
    public var heightShiftRange: Double
    /// Largest shear angle in degrees (`shear_range`).
    public var shearRange: Double
    /// Range of the zoom factors (`zoom_range` as [lower, upper]); 1...1 disables zooming.
    public var zoomRange: ClosedRange<Double>
    /// Flip left ↔ right with probability 0.5 (`horizontal_flip`).
    public var horizontalFlip: Bool
    /// Flip top ↔ bottom with probability 0.5 (`vertical_flip`).
    public var verticalFlip: Bool
    /// How points outside the image are filled (`fill_mode`; Keras' default "nearest").
    public var fillMode: FillMode
    /// Height images are resized to first (`target_size[0]`).
    public var targetHeight: Int
    /// Width images are resized to first (`target_size[1]`).
    public var targetWidth: Int
    /// Filter of the initial resize (`flow_from_directory`'s `interpolation`, "nearest" by default).
    public var interpolation: ResizeInterpolation
    /// Per-channel standardisation after rescaling: `(x - mean) / std` (nil: none).
    public var mean: [Double]?
    /// Per-channel divisors of the standardisation (3 positive values, with `mean`; nil: none).
    public var std: [Double]?

    /// `zoomRange` z gives [1 - z, 1 + z], as Keras' float `zoom_range`.
    public init(rescale: Double? = nil, shearRange: Double = 0, zoomRange: Double = 0, horizontalFlip: Bool = false,
                rotationRange: Double = 0, widthShiftRange: Double = 0, heightShiftRange: Double = 0,
                verticalFlip: Bool = false, fillMode: FillMode = .nearest, targetSize: (height: Int, width: Int) = (256, 256),
                interpolation: ResizeInterpolation = .nearest, mean: [Double]? = nil, std: [Double]? = nil) {
        self.init(rescale: rescale, shearRange: shearRange, zoomRange: (1 - zoomRange)...(1 + zoomRange),
                  horizontalFlip: horizontalFlip, rotationRange: rotationRange, widthShiftRange: widthShiftRange,
                  heightShiftRange: heightShiftRange, verticalFlip: verticalFlip, fillMode: fillMode,
                  targetSize: targetSize, interpolation: interpolation, mean: mean, std: std)
    }

    /// The same, with the zoom range given as [lower, upper] (Keras' list form of `zoom_range`).
    public init(rescale: Double? = nil, shearRange: Double = 0, zoomRange: ClosedRange<Double>,
                horizontalFlip: Bool = false, rotationRange: Double = 0, widthShiftRange: Double = 0,
                heightShiftRange: Double = 0, verticalFlip: Bool = false, fillMode: FillMode = .nearest,
                targetSize: (height: Int, width: Int) = (256, 256), interpolation: ResizeInterpolation = .nearest,
                mean: [Double]? = nil, std: [Double]? = nil) {
        self.rescale = rescale
        self.shearRange = shearRange
        self.zoomRange = zoomRange
        self.horizontalFlip = horizontalFlip
        self.rotationRange = rotationRange
        self.widthShiftRange = widthShiftRange
        self.heightShiftRange = heightShiftRange
        self.verticalFlip = verticalFlip
        self.fillMode = fillMode
        self.targetHeight = targetSize.height
        self.targetWidth = targetSize.width
        self.interpolation = interpolation
        self.mean = mean
        self.std = std
    }

    /// Images are loaded at `targetSize`; JPEGs may be DCT-scaled down to it.
    public var decodeMinSide: Int { min(targetHeight, targetWidth) }

    /// One sample's random transform, Keras' `get_random_transform`.
    public struct Parameters: Sendable, Equatable {
        /// Rotation in degrees.
        public var theta: Double = 0
        /// Shift along rows (pixels).
        public var tx: Double = 0
        /// Shift along columns (pixels).
        public var ty: Double = 0
        /// Shear in degrees.
        public var shear: Double = 0
        /// Zoom of rows (zx) and columns (zy).
        public var zx: Double = 1
        /// Zoom of columns; see `zx`.
        public var zy: Double = 1
        /// Whether the sample is mirrored left ↔ right.
        public var flipHorizontal = false
        /// Whether the sample is turned upside down.
        public var flipVertical = false

        /// Parameters given explicitly; the defaults are the identity.
        public init(theta: Double = 0, tx: Double = 0, ty: Double = 0, shear: Double = 0, zx: Double = 1,
                    zy: Double = 1, flipHorizontal: Bool = false, flipVertical: Bool = false) {
            (self.theta, self.tx, self.ty, self.shear, self.zx, self.zy) = (theta, tx, ty, shear, zx, zy)
            self.flipHorizontal = flipHorizontal
            self.flipVertical = flipVertical
        }
    }

    /// Draws one sample's transform for a `height`×`width` image (Keras' `get_random_transform`), in
    /// Keras' order of draws.
    public func randomParameters(height: Int, width: Int, random: inout SampleRandom) -> Parameters {
        var p = Parameters()
        if rotationRange != 0 { p.theta = random.uniform(-rotationRange, rotationRange) }
        if heightShiftRange != 0 {
            p.tx = random.uniform(-heightShiftRange, heightShiftRange)
            if abs(heightShiftRange) < 1 { p.tx *= Double(height) }
        }
        if widthShiftRange != 0 {
            p.ty = random.uniform(-widthShiftRange, widthShiftRange)
            if abs(widthShiftRange) < 1 { p.ty *= Double(width) }
        }
        if shearRange != 0 { p.shear = random.uniform(-shearRange, shearRange) }
        if zoomRange.lowerBound != 1 || zoomRange.upperBound != 1 {
            p.zx = random.uniform(zoomRange.lowerBound, zoomRange.upperBound)
            p.zy = random.uniform(zoomRange.lowerBound, zoomRange.upperBound)
        }
        p.flipHorizontal = horizontalFlip && random.unit() < 0.5
        p.flipVertical = verticalFlip && random.unit() < 0.5
        return p
    }

    /// Keras' `apply_affine_transform` matrix as an output → input map in (x, y) pixel coordinates,
    /// or nil for the identity.
    public static func matrix(_ p: Parameters, height: Int, width: Int) -> AffineMatrix? {
        typealias M = [[Double]]
        func mul(_ a: M, _ b: M) -> M {
            (0..<3).map { i in (0..<3).map { j in (0..<3).reduce(0) { $0 + a[i][$1] * b[$1][j] } } }
        }
        var t: M?
        func then(_ m: M) { t = t.map { mul($0, m) } ?? m }
        if p.theta != 0 {
            let r = p.theta * .pi / 180
            then([[cos(r), -sin(r), 0], [sin(r), cos(r), 0], [0, 0, 1]])
        }
        if p.tx != 0 || p.ty != 0 { then([[1, 0, p.tx], [0, 1, p.ty], [0, 0, 1]]) }
        if p.shear != 0 {
            let s = p.shear * .pi / 180
            then([[1, -sin(s), 0], [0, cos(s), 0], [0, 0, 1]])
        }
        if p.zx != 1 || p.zy != 1 { then([[p.zx, 0, 0], [0, p.zy, 0], [0, 0, 1]]) }
        guard let m = t else { return nil }
        let oRow = Double(height) / 2 + 0.5, oCol = Double(width) / 2 + 0.5
        let full = mul(mul([[1, 0, oRow], [0, 1, oCol], [0, 0, 1]], m), [[1, 0, -oRow], [0, 1, -oCol], [0, 0, 1]])
        // (row, col) → (x = col, y = row).
        return AffineMatrix(a: full[1][1], b: full[1][0], c: full[1][2], d: full[0][1], e: full[0][0], f: full[0][2])
    }

    /// Steps 3–4 on an image already at the target size: float HWC, 0…255 scale (before `rescale`).
    public func transformed(_ image: Image, parameters p: Parameters) -> [Float] {
        let h = image.height, w = image.width, c = image.channels
        var x: [Float]
        if let m = Self.matrix(p, height: h, width: w) {
            x = AffineWarp.warpFloat(image, matrix: m, fill: fillMode, interpolation: .bilinear)
        } else {
            x = image.pixels.map(Float.init)
        }
        guard p.flipHorizontal || p.flipVertical else { return x }
        x.withUnsafeMutableBufferPointer { buffer in
            let v = buffer.baseAddress!
            if p.flipHorizontal {
                for y in 0..<h {
                    for col in 0..<(w / 2) {
                        for k in 0..<c { swap(&v[(y * w + col) * c + k], &v[(y * w + w - 1 - col) * c + k]) }
                    }
                }
            }
            if p.flipVertical {
                for y in 0..<(h / 2) {
                    for col in 0..<w {
                        for k in 0..<c { swap(&v[(y * w + col) * c + k], &v[((h - 1 - y) * w + col) * c + k]) }
                    }
                }
            }
        }
        return x
    }

    /// Steps 1–5 of the type's description: float32 [3, targetHeight, targetWidth]. Throws
    /// `DataError.invalidDataset` when `mean`/`std` are set but not 3 values each (std positive).
    public func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
        let resized = try image.rgb().resized(height: targetHeight, width: targetWidth, interpolation: interpolation)
        let p = randomParameters(height: targetHeight, width: targetWidth, random: &random)
        var values = transformed(resized, parameters: p)
        let scale = Float(rescale ?? 1)
        if mean != nil || std != nil {
            guard let mean, let std, mean.count == 3, std.count == 3, std.allSatisfy({ $0 > 0 }) else {
                throw DataError.invalidDataset("KerasImageDataGenerator needs 3 mean and 3 positive std values")
            }
            let m = mean.map(Float.init), s = std.map(Float.init)
            values.withUnsafeMutableBufferPointer { v in
                for i in stride(from: 0, to: v.count, by: 3) {
                    for k in 0..<3 { v[i + k] = (v[i + k] * scale - m[k]) / s[k] }
                }
            }
        } else if scale != 1 {
            values.withUnsafeMutableBufferPointer { v in
                for i in 0..<v.count { v[i] *= scale }
            }
        }
        let hwc = try values.withUnsafeBytes {
            try Tensor(copying: $0, shape: [targetHeight, targetWidth, 3], dtype: .float32)
        }
        return try hwc.permute([2, 0, 1]).contiguous()
    }
}
