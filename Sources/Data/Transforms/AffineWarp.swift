import Foundation

/// How pixels that map outside the source image are filled.
public enum FillMode: Sendable, Equatable {
    /// A constant value (0…255) for every channel. Neighbours outside the image count as this value
    /// in the interpolation (grid_sample's / scipy's "grid-constant" behaviour), so edges blend.
    case constant(Double)
    /// The edge pixels extend outward (scipy "nearest"; Keras' default).
    case nearest
    /// Mirrored about the edge, edge pixel repeated: `d c b a | a b c d | d c b a` (scipy "reflect").
    case reflect
    /// Periodic: `a b c d | a b c d` (scipy "grid-wrap").
    case wrap
}

/// Sampling filters for warps.
public enum WarpInterpolation: Sendable, Equatable { case nearest, bilinear }

/// An affine map from output pixel coordinates (x = column, y = row; pixel centres at integers)
/// to the source coordinates sampled there: `xin = a·x + b·y + c`, `yin = d·x + e·y + f`.
public struct AffineMatrix: Sendable, Equatable {
    /// The coefficients: `a`, `b`, `c` give the source column, `d`, `e`, `f` the source row.
    public var a, b, c, d, e, f: Double

    /// The map `xin = a·x + b·y + c`, `yin = d·x + e·y + f`.
    public init(a: Double, b: Double, c: Double, d: Double, e: Double, f: Double) {
        (self.a, self.b, self.c, self.d, self.e, self.f) = (a, b, c, d, e, f)
    }

    /// Every output pixel samples the same source pixel.
    public static let identity = AffineMatrix(a: 1, b: 0, c: 0, d: 0, e: 1, f: 0)

    /// The source coordinates sampled for output pixel (`x`, `y`).
    public func map(x: Double, y: Double) -> (x: Double, y: Double) { (a * x + b * y + c, d * x + e * y + f) }
}

/// Samples an image through an `AffineMatrix`, in Swift on the 8-bit buffer (about a millisecond for
/// 224×224 RGB). Output is float HWC on the 0…255 scale, or rounded back to an `Image`.
public enum AffineWarp {
    /// Samples `image` at `m`'s source coordinates for every pixel of an `outputHeight`×`outputWidth`
    /// output (default: the input's size): float HWC values on the 0…255 scale, not rounded. Points
    /// outside the image are filled per `fill`.
    public static func warpFloat(_ image: Image, matrix m: AffineMatrix, outputHeight: Int? = nil,
                                 outputWidth: Int? = nil, fill: FillMode = .constant(0),
                                 interpolation: WarpInterpolation = .bilinear) -> [Float] {
        let oh = outputHeight ?? image.height, ow = outputWidth ?? image.width
        let h = image.height, w = image.width, ch = image.channels
        var constant: Float = 0
        let mode: Int
        switch fill {
        case .constant(let v): constant = Float(v); mode = 0
        case .nearest: mode = 1
        case .reflect: mode = 2
        case .wrap: mode = 3
        }
        var out = [Float](repeating: 0, count: oh * ow * ch)
        image.pixels.withUnsafeBufferPointer { srcBuffer in
            out.withUnsafeMutableBufferPointer { dstBuffer in
                let src = srcBuffer.baseAddress!, dst = dstBuffer.baseAddress!
                var o = 0
                for y in 0..<oh {
                    let rowX = m.b * Double(y) + m.c, rowY = m.e * Double(y) + m.f
                    for x in 0..<ow {
                        defer { o += ch }
                        let sx = m.a * Double(x) + rowX, sy = m.d * Double(x) + rowY
                        guard sx.isFinite, sy.isFinite, Swift.abs(sx) < 1e9, Swift.abs(sy) < 1e9 else {
                            for k in 0..<ch { dst[o + k] = constant }
                            continue
                        }
                        if interpolation == .nearest {
                            let ix = sourceIndex(Int((sx + 0.5).rounded(.down)), w, mode)
                            let iy = sourceIndex(Int((sy + 0.5).rounded(.down)), h, mode)
                            if ix >= 0 && iy >= 0 {
                                let s = (iy * w + ix) * ch
                                for k in 0..<ch { dst[o + k] = Float(src[s + k]) }
                            } else {
                                for k in 0..<ch { dst[o + k] = constant }
                            }
                            continue
                        }
                        let fx0 = sx.rounded(.down), fy0 = sy.rounded(.down)
                        let tx = Float(sx - fx0), ty = Float(sy - fy0)
                        let x0 = Int(fx0), y0 = Int(fy0)
                        let w00 = (1 - tx) * (1 - ty), w01 = tx * (1 - ty), w10 = (1 - tx) * ty, w11 = tx * ty
                        if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                            // Fast path: all four neighbours inside.
                            let s00 = (y0 * w + x0) * ch, s10 = s00 + w * ch
                            for k in 0..<ch {
                                dst[o + k] = w00 * Float(src[s00 + k]) + w01 * Float(src[s00 + ch + k]) +
                                    w10 * Float(src[s10 + k]) + w11 * Float(src[s10 + ch + k])
                            }
                            continue
                        }
                        let ix0 = sourceIndex(x0, w, mode), ix1 = sourceIndex(x0 + 1, w, mode)
                        let iy0 = sourceIndex(y0, h, mode), iy1 = sourceIndex(y0 + 1, h, mode)
                        let s00 = ix0 >= 0 && iy0 >= 0 ? (iy0 * w + ix0) * ch : -1
                        let s01 = ix1 >= 0 && iy0 >= 0 ? (iy0 * w + ix1) * ch : -1
                        let s10 = ix0 >= 0 && iy1 >= 0 ? (iy1 * w + ix0) * ch : -1
                        let s11 = ix1 >= 0 && iy1 >= 0 ? (iy1 * w + ix1) * ch : -1
                        for k in 0..<ch {
                            let v00 = s00 >= 0 ? Float(src[s00 + k]) : constant
                            let v01 = s01 >= 0 ? Float(src[s01 + k]) : constant
                            let v10 = s10 >= 0 ? Float(src[s10 + k]) : constant
                            let v11 = s11 >= 0 ? Float(src[s11 + k]) : constant
                            dst[o + k] = w00 * v00 + w01 * v01 + w10 * v10 + w11 * v11
                        }
                    }
                }
            }
        }
        return out
    }

    /// Index `i` of a line of `n` pixels under fill `mode` (0 constant, 1 nearest, 2 reflect, 3 wrap);
    /// -1 for "outside, use the constant".
    @inline(__always)
    static func sourceIndex(_ i: Int, _ n: Int, _ mode: Int) -> Int {
        if i >= 0 && i < n { return i }
        switch mode {
        case 0: return -1
        case 1: return i < 0 ? 0 : n - 1
        case 2:
            let period = 2 * n
            var k = i % period
            if k < 0 { k += period }
            return k < n ? k : period - 1 - k
        default:
            let k = i % n
            return k < 0 ? k + n : k
        }
    }

    /// The warp rounded back to 8 bits.
    public static func warp(_ image: Image, matrix: AffineMatrix, outputHeight: Int? = nil, outputWidth: Int? = nil,
                            fill: FillMode = .constant(0), interpolation: WarpInterpolation = .bilinear) -> Image {
        let values = warpFloat(image, matrix: matrix, outputHeight: outputHeight, outputWidth: outputWidth, fill: fill,
                               interpolation: interpolation)
        let bytes = quantize(values)
        return try! Image(width: outputWidth ?? image.width, height: outputHeight ?? image.height,
                          channels: image.channels, pixels: bytes)
    }
}

/// torchvision's `RandomAffine`: rotation by U(degrees), translation by up to `translate` of the
/// size (rounded to whole pixels), scale U(scale), shear U(shearX) / U(shearY) degrees, about the
/// image centre. The inverse matrix is torchvision's `_get_inverse_affine_matrix` and the sampling
/// grid its tensor path's (pixel centres, `align_corners=False`), so the geometry matches
/// `F.affine` on tensors.
public struct RandomAffine: ImageAugmentation {
    /// Range the rotation angle is drawn from, in degrees (torchvision's `degrees`).
    public var degrees: ClosedRange<Double>
    /// Largest horizontal and vertical shift as fractions of the width and height (nil: no shift).
    public var translate: (x: Double, y: Double)?
    /// Scale factor range (1...1: none).
    public var scale: ClosedRange<Double>
    /// Shear parallel to the x axis, range in degrees.
    public var shearX: ClosedRange<Double>
    /// Shear parallel to the y axis, range in degrees.
    public var shearY: ClosedRange<Double>
    /// Nearest or bilinear sampling (torchvision's `interpolation`).
    public var interpolation: WarpInterpolation
    /// What pixels outside the source become (torchvision's `fill`: a constant, 0 by default).
    public var fill: FillMode

    /// Every range given explicitly; the defaults leave the image unchanged.
    public init(degrees: ClosedRange<Double> = 0...0, translate: (x: Double, y: Double)? = nil,
                scale: ClosedRange<Double> = 1...1, shearX: ClosedRange<Double> = 0...0,
                shearY: ClosedRange<Double> = 0...0, interpolation: WarpInterpolation = .bilinear,
                fill: FillMode = .constant(0)) {
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.shearX = shearX
        self.shearY = shearY
        self.interpolation = interpolation
        self.fill = fill
    }

    /// `RandomAffine(degrees: d)` rotates by U(-d, d).
    public init(degrees: Double, translate: (x: Double, y: Double)? = nil, scale: ClosedRange<Double> = 1...1,
                shear: Double = 0, interpolation: WarpInterpolation = .bilinear, fill: FillMode = .constant(0)) {
        self.init(degrees: -abs(degrees)...abs(degrees), translate: translate, scale: scale,
                  shearX: -abs(shear)...abs(shear), interpolation: interpolation, fill: fill)
    }

    /// The output → input matrix for `angle`/`shear` in degrees, a translation in pixels and a scale,
    /// about `center` of a `height`×`width` image, in torchvision's coordinates relative to the image
    /// centre (the default (0, 0): the centre; (−W/2, −H/2): the top-left corner).
    public static func matrix(angle: Double, translate: (Double, Double), scale: Double, shear: (Double, Double),
                              height: Int, width: Int, center: (Double, Double) = (0, 0)) -> AffineMatrix {
        let rot = angle * .pi / 180, sx = shear.0 * .pi / 180, sy = shear.1 * .pi / 180
        let a = cos(rot - sy) / cos(sy)
        let b = -cos(rot - sy) * tan(sx) / cos(sy) - sin(rot)
        let c = sin(rot - sy) / cos(sy)
        let d = -sin(rot - sy) * tan(sx) / cos(sy) + cos(rot)
        // Inverse of the rotation-scale-shear (determinant 1), then of the translation.
        var m = [d, -b, 0, -c, a, 0].map { $0 / scale }
        m[2] += m[0] * (-center.0 - translate.0) + m[1] * (-center.1 - translate.1) + center.0
        m[5] += m[3] * (-center.0 - translate.0) + m[4] * (-center.1 - translate.1) + center.1
        // Centre-relative coordinates: x_c = x - (w - 1) / 2.
        let cx = Double(width - 1) / 2, cy = Double(height - 1) / 2
        return AffineMatrix(a: m[0], b: m[1], c: m[2] + cx - m[0] * cx - m[1] * cy,
                            d: m[3], e: m[4], f: m[5] + cy - m[3] * cx - m[4] * cy)
    }

    /// Draws an angle, shift (rounded to whole pixels), scale and shears from `random` and warps
    /// `image` about its centre, keeping its size.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        let angle = random.uniform(degrees.lowerBound, degrees.upperBound)
        var tx = 0.0, ty = 0.0
        if let translate {
            let maxDx = translate.x * Double(image.width), maxDy = translate.y * Double(image.height)
            tx = random.uniform(-maxDx, maxDx).rounded(.toNearestOrEven)
            ty = random.uniform(-maxDy, maxDy).rounded(.toNearestOrEven)
        }
        let s = random.uniform(scale.lowerBound, scale.upperBound)
        let shx = random.uniform(shearX.lowerBound, shearX.upperBound)
        let shy = random.uniform(shearY.lowerBound, shearY.upperBound)
        let m = Self.matrix(angle: angle, translate: (tx, ty), scale: s, shear: (shx, shy), height: image.height,
                            width: image.width)
        return AffineWarp.warp(image, matrix: m, fill: fill, interpolation: interpolation)
    }
}

/// Floats on the 0…255 scale rounded (half away from zero) and clamped to bytes.
func quantize(_ values: [Float]) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: values.count) { out, initialized in
        values.withUnsafeBufferPointer { v in
            for i in 0..<v.count {
                let x = v[i]
                out[i] = x <= 0 ? 0 : x >= 255 ? 255 : UInt8(x + 0.5)
            }
        }
        initialized = values.count
    }
}
