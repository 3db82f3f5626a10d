import CImageCodecs
import Torch

extension Image {
    /// Resampling filters, with Pillow's definitions.
    public enum Filter: Int32, Sendable {
        /// Pillow's `Image.BILINEAR` and `Image.BICUBIC` (a = -0.5), with antialiasing when shrinking, as
        /// torchvision's PIL `Resize` uses them.
        case bilinear = 0, bicubic = 1

        /// Parses "bilinear" / "bicubic".
        public init?(name: String) {
            switch name.lowercased() {
            case "bilinear": self = .bilinear
            case "bicubic": self = .bicubic
            default: return nil
            }
        }
    }

    /// Turns the AVX2 resampling loops on or off (they give the same pixels as the portable ones; tests
    /// compare the two). Returns the previous setting. Not for use while other threads resize.
    @discardableResult
    static func setSIMDResampling(_ enabled: Bool) -> Bool { ic_resample_set_simd(enabled ? 1 : 0) != 0 }

    /// Whether resizes use the AVX2 loops (x86-64 CPUs with AVX2).
    static var usesSIMDResampling: Bool { ic_resample_uses_simd() != 0 }

    /// This image resized to `width`×`height` with Pillow's exact arithmetic (antialiased when
    /// downsampling), so results equal `PIL.Image.resize` and torchvision's PIL transforms.
    public func resized(width newWidth: Int, height newHeight: Int, filter: Filter = .bilinear) throws -> Image {
        if newWidth == width && newHeight == height { return self }
        guard newWidth > 0, newHeight > 0 else {
            throw DataError.unsupported("cannot resize to \(newWidth)×\(newHeight)")
        }
        var out = [UInt8](repeating: 0, count: newWidth * newHeight * channels)
        let status = pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                ic_resize_u8(src.baseAddress, Int32(width), Int32(height), Int32(channels), dst.baseAddress,
                             Int32(newWidth), Int32(newHeight), filter.rawValue)
            }
        }
        guard status == 0 else { throw DataError.unsupported("resizing \(width)×\(height) failed (status \(status))") }
        return try Image(width: newWidth, height: newHeight, channels: channels, pixels: out)
    }
}

extension Image {
    /// The window `x, y, width × height` of this image resized to `scaledWidth`×`scaledHeight`: the
    /// same pixels as `resized(width: scaledWidth, height: scaledHeight)` cropped there (the resize
    /// computes every output pixel on its own), without making the whole resized image.
    public func resizedWindow(scaledWidth: Int, scaledHeight: Int, x: Int, y: Int, width windowWidth: Int,
                              height windowHeight: Int, filter: Filter = .bilinear) throws -> Image {
        guard scaledWidth > 0, scaledHeight > 0, scaledWidth <= Int32.max, scaledHeight <= Int32.max,
              windowWidth > 0, windowHeight > 0, x >= 0, y >= 0,
              x + windowWidth <= scaledWidth, y + windowHeight <= scaledHeight else {
            throw DataError.unsupported("cannot take \(windowWidth)×\(windowHeight) at (\(x), \(y)) of a " +
                                        "\(scaledWidth)×\(scaledHeight) resize")
        }
        var spec = ic_resample_spec()
        spec.box = (0, 0, Double(width), Double(height))
        spec.scaled_width = Int32(clamping: scaledWidth)
        spec.scaled_height = Int32(clamping: scaledHeight)
        spec.out_x = Int32(x)
        spec.out_y = Int32(y)
        spec.out_width = Int32(windowWidth)
        spec.out_height = Int32(windowHeight)
        spec.filter = filter.rawValue
        var out = [UInt8](repeating: 0, count: windowWidth * windowHeight * channels)
        let status = pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                ic_resample_u8(src.baseAddress, Int32(width), Int32(height), width * channels, Int32(channels), &spec,
                               dst.baseAddress)
            }
        }
        guard status == 0 else {
            throw DataError.unsupported("resizing \(width)×\(height) to \(scaledWidth)×\(scaledHeight) failed (status \(status))")
        }
        return try Image(width: windowWidth, height: windowHeight, channels: channels, pixels: out)
    }
}

extension Preprocessing {
    /// Resize (shorter side to `resizeSize`, PIL-exact) and centre crop of a decoded image: uint8 [C, crop, crop].
    ///
    /// Only the crop is resampled (`Image.resizedWindow`), with the pixels a whole resize would give
    /// there: resizing a 1×1,000,000 image whole to a shorter side of 256 asked for 196 GB.
    public func resizeAndCrop(_ image: Image) throws -> Tensor {
        let (h, w) = Self.resizedSize(height: image.height, width: image.width, shorterSide: resizeSize)
        guard h >= cropSize, w >= cropSize else {
            throw PreprocessingError("cannot centre-crop \(cropSize)×\(cropSize) from \(h)×\(w)")
        }
        guard h != image.height || w != image.width else { return try Self.centerCrop(image.toTensor(), size: cropSize) }
        // The offsets `centerCrop` takes.
        let top = Int((Double(h - cropSize) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(w - cropSize) / 2).rounded(.toNearestOrEven))
        return try image.resizedWindow(scaledWidth: w, scaledHeight: h, x: left, y: top, width: cropSize, height: cropSize,
                                       filter: Image.Filter(name: interpolation) ?? .bilinear).toTensor()
    }

    /// The evaluation transform of a decoded image: equal to torchvision's `ImageClassification`
    /// transform on a PIL image converted to RGB (resize, centre crop, normalise): float32 [3, crop, crop].
    public func evaluationTransform(_ image: Image) throws -> Tensor {
        try normalize(resizeAndCrop(image.rgb()))
    }
}
