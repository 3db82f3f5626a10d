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

extension Preprocessing {
    /// Resize (shorter side to `resizeSize`, PIL-exact) and centre crop of a decoded image: uint8 [C, crop, crop].
    public func resizeAndCrop(_ image: Image) throws -> Tensor {
        let (h, w) = Self.resizedSize(height: image.height, width: image.width, shorterSide: resizeSize)
        let resized = try image.resized(width: w, height: h, filter: Image.Filter(name: interpolation) ?? .bilinear)
        return try Self.centerCrop(resized.toTensor(), size: cropSize)
    }

    /// The evaluation transform of a decoded image: equal to torchvision's `ImageClassification`
    /// transform on a PIL image (resize, centre crop, normalise).
    public func evaluationTransform(_ image: Image) throws -> Tensor {
        try normalize(resizeAndCrop(image))
    }
}
