import CImageCodecs
import Foundation
import Torch

/// An 8-bit image in memory: rows top to bottom, channels interleaved (HWC).
///
/// Decoded images are always RGB (`channels == 3`), whatever the file holds:
/// * JPEG (libjpeg-turbo, default "islow" IDCT and fancy upsampling, as PIL decodes): grayscale is
///   replicated to RGB, CMYK/YCCK is converted with PIL's formula (Adobe-inverted CMYK handled), and the
///   EXIF orientation is applied (`ImageOps.exif_transpose`), so `width`/`height` are as displayed.
/// * PNG (libpng): every colour type and bit depth, interlaced or not. 16-bit samples keep their high
///   byte. Alpha is dropped, not composited — the same as PIL's `convert("RGB")`. No gamma or ICC
///   conversion is applied (neither does PIL).
/// Other formats (GIF, BMP, WebP, TIFF, …) are rejected with `DataError.unsupported`; the format is
/// recognised by its magic bytes, never by the file name.
///
/// Gray images (`channels == 1`) come only from `init(gray:width:height:)`, for encoding.
public struct Image: Equatable, Sendable {
    /// Width in pixels (after EXIF orientation, when decoding applies it).
    public let width: Int
    /// Height in pixels (after EXIF orientation, when decoding applies it).
    public let height: Int
    /// 3 (RGB) for decoded images; 1 for images made with `init(gray:width:height:)`.
    public let channels: Int
    /// `height * width * channels` bytes, HWC.
    public let pixels: [UInt8]

    /// An image over existing pixels (`pixels.count` must be `width * height * channels`, with
    /// `channels` 1 or 3).
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) throws {
        try Self.checkSize("an image", width: width, height: height, channels: channels, bytes: pixels.count)
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The one size check of `Image` and `ImageStore`: `bytes` must be what `count` images of
    /// `width` × `height` × `channels` take, with positive sides, 1 or 3 channels and a byte count that
    /// fits in an `Int`. Throws `DataError.invalidDataset` naming `what` ("an image", "an image store
    /// of 10 images") otherwise.
    static func checkSize(_ what: String, count: Int = 1, width: Int, height: Int, channels: Int, bytes: Int) throws {
        let size = "\(what) of \(width)x\(height)x\(channels)"
        guard count >= 0, width > 0, height > 0, channels == 1 || channels == 3 else {
            throw DataError.invalidDataset("\(size) is not a size (positive sides, 1 or 3 channels, a count from 0)")
        }
        var needed = channels
        for factor in [width, height, count] {
            let (product, overflow) = needed.multipliedReportingOverflow(by: factor)
            guard !overflow else { throw DataError.invalidDataset("\(size) is too large") }
            needed = product
        }
        guard bytes == needed else { throw DataError.invalidDataset("\(size) needs \(needed) bytes, got \(bytes)") }
    }

    /// An RGB image over HWC `rgb` bytes.
    public init(rgb: [UInt8], width: Int, height: Int) throws {
        try self.init(width: width, height: height, channels: 3, pixels: rgb)
    }

    /// An 8-bit grayscale image (MNIST-style data); `pngData()` encodes it as an 8-bit gray PNG.
    public init(gray: [UInt8], width: Int, height: Int) throws {
        try self.init(width: width, height: height, channels: 1, pixels: gray)
    }

    /// Decodes JPEG or PNG bytes (`[UInt8]`, `Data`, …) to RGB.
    ///
    /// `minSide` (JPEG only; 0 = full size) lets libjpeg shrink the image while decoding (DCT scaling)
    /// by the smallest factor n/8, n = 1, 2, 4 or 8 (libjpeg-turbo's SIMD scales), that keeps the shorter side at least `minSide`; the result
    /// is generally not exactly `minSide`, so resize afterwards. PNGs are always decoded at full size.
    /// `path` only names the source in errors.
    public init<Bytes: ContiguousBytes>(decoding bytes: Bytes, minSide: Int = 0, path: String? = nil) throws {
        self = try bytes.withUnsafeBytes { raw in
            try Image.decode(raw, minSide: minSide, label: path ?? ImageCodec.memoryLabel)
        }
    }

    /// Reads and decodes the JPEG or PNG file at `path` (symlinks are followed; any file name works).
    /// Errors are `DataError`s naming `path`: `.unreadable` (missing, permissions, a directory),
    /// `.corrupt` (empty, truncated or damaged data) or `.unsupported` (another format).
    ///
    /// `fast` decodes JPEGs with the fast integer IDCT and plain chroma upsampling: about a fifth
    /// faster, with pixels a few levels off libjpeg's accurate path (and PIL's). Meant for training
    /// augmentation; evaluation and prediction keep the exact decoder.
    public init(contentsOfFile path: String, minSide: Int = 0, fast: Bool = false) throws {
        self = try ImageCodec.withFileBytes(path, maxBytes: 0) { raw, _ in
            try Image.decode(raw, minSide: minSide, label: path, fast: fast)
        }
    }

    static func decode(_ raw: UnsafeRawBufferPointer, minSide: Int, label: String, fast: Bool = false) throws -> Image {
        try decodeNotingDamage(raw, minSide: minSide, label: label, fast: fast).image
    }

    /// `decode`, with the decoder's warning when it made up part of the picture (`ic_decoder_damage`:
    /// JPEG scan data cut short or corrupt, which libjpeg makes up, as PIL does, without an error).
    static func decodeNotingDamage(_ raw: UnsafeRawBufferPointer, minSide: Int, label: String,
                                   fast: Bool = false) throws -> (image: Image, damage: String?) {
        var message = [CChar](repeating: 0, count: 512)
        var decoder: OpaquePointer?
        var info = ic_image_info()
        let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let status = ic_decoder_open_flags(base, raw.count, Int32(clamping: max(0, minSide)),
                                           ImageCodec.decodeFlags(fast: fast), &decoder, &info, &message, message.count)
        guard status == 0, let decoder else {
            throw ImageCodecFailure(status: status, message: message, label: label).dataError
        }
        defer { ic_decoder_close(decoder) }
        let count = Int(info.width) * Int(info.height) * 3
        var readStatus: Int32 = 0
        // Decoded straight into the array's storage.
        let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            readStatus = ic_decoder_read(decoder, buffer.baseAddress, count, &message, message.count)
            initialized = readStatus == 0 ? count : 0
        }
        guard readStatus == 0 else {
            throw ImageCodecFailure(status: readStatus, message: message, label: label).dataError
        }
        let damage = ic_decoder_damage(decoder, &message, message.count) == 1 ? String(cString: message) : nil
        return (try Image(width: Int(info.width), height: Int(info.height), channels: 3, pixels: pixels), damage)
    }

    /// Decodes only the `width`×`height` window at (`left`, `top`) of the image as decoded at DCT scale
    /// `scale`/8 (JPEG: 1, 2, 4 or 8; PNG: 8), in coordinates after EXIF orientation. JPEG rows and
    /// columns outside the window are skipped (libjpeg-turbo's skip/crop); the pixels equal a full
    /// decode at that scale, cropped. The loader's random-resized-crop fast path decodes this way.
    static func decodeWindow(_ raw: UnsafeRawBufferPointer, scale: Int, left: Int, top: Int, width: Int, height: Int,
                             label: String, fast: Bool = false) throws -> Image {
        var message = [CChar](repeating: 0, count: 512)
        var decoder: OpaquePointer?
        let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let status = ic_decoder_open_flags(base, raw.count, 0, ImageCodec.decodeFlags(fast: fast), &decoder, nil,
                                           &message, message.count)
        guard status == 0, let decoder else {
            throw ImageCodecFailure(status: status, message: message, label: label).dataError
        }
        defer { ic_decoder_close(decoder) }
        let count = max(0, width) * max(0, height) * 3
        var readStatus: Int32 = 0
        let pixels = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            readStatus = ic_decoder_read_window(decoder, Int32(clamping: scale), Int32(clamping: left),
                                                Int32(clamping: top), Int32(clamping: width), Int32(clamping: height),
                                                buffer.baseAddress, count, &message, message.count)
            initialized = readStatus == 0 ? count : 0
        }
        guard readStatus == 0 else {
            throw ImageCodecFailure(status: readStatus, message: message, label: label).dataError
        }
        return try Image(width: width, height: height, channels: 3, pixels: pixels)
    }

    /// The pixels as a uint8 tensor of shape [channels, height, width] (CHW, like torchvision's
    /// `pil_to_tensor`), contiguous.
    public func toTensor() throws -> Tensor {
        let tensor = try Tensor.empty([channels, height, width], dtype: .uint8)
        let destination = try tensor.dataPointer().assumingMemoryBound(to: UInt8.self)
        pixels.withUnsafeBufferPointer { source in
            ic_hwc_to_chw(source.baseAddress, destination, Int32(height), Int32(width), Int32(channels))
        }
        return tensor
    }

    /// The image encoded as PNG: 8-bit RGB, or 8-bit gray for 1-channel images. `compressionLevel` is
    /// zlib's 0…9 (6 is zlib's default; 1 is much faster and a little larger).
    public func pngData(compressionLevel: Int = 6) throws -> Foundation.Data {
        var out: UnsafeMutablePointer<UInt8>?
        var length = 0
        var message = [CChar](repeating: 0, count: 512)
        let status = pixels.withUnsafeBufferPointer { source in
            ic_png_encode(source.baseAddress, Int32(width), Int32(height), Int32(channels),
                          Int32(clamping: compressionLevel), &out, &length, &message, message.count)
        }
        guard status == 0, let out else {
            throw DataError.unsupported("cannot encode a \(width)x\(height)x\(channels) image as PNG: " +
                                        String(cString: message))
        }
        return Foundation.Data(bytesNoCopy: out, count: length, deallocator: .custom { pointer, _ in ic_free(pointer) })
    }
}
