import CImageCodecs
import Foundation

/// What decoding does with a JPEG's EXIF orientation tag (see `ImageCodec.exifOrientation`).
public enum EXIFOrientation: String, Codable, CaseIterable, Sendable {
    /// Rotate/mirror the pixels upright, as displayed (PIL's `ImageOps.exif_transpose`).
    case apply
    /// Keep the pixels as stored, as torchvision's and Keras' loaders do.
    case ignore
}

/// Image container formats recognised by their magic bytes. Only `.jpeg` and `.png` can be decoded;
/// the others are named in "unsupported image format" errors.
public enum ImageFormat: String, Sendable, CustomStringConvertible {
    /// The recognised formats; the raw values are the names used in messages.
    case jpeg = "JPEG", png = "PNG", gif = "GIF", bmp = "BMP", webp = "WebP", tiff = "TIFF"

    init?(code: Int32) {
        switch code {
        case Int32(IC_FORMAT_JPEG.rawValue): self = .jpeg
        case Int32(IC_FORMAT_PNG.rawValue): self = .png
        case Int32(IC_FORMAT_GIF.rawValue): self = .gif
        case Int32(IC_FORMAT_BMP.rawValue): self = .bmp
        case Int32(IC_FORMAT_WEBP.rawValue): self = .webp
        case Int32(IC_FORMAT_TIFF.rawValue): self = .tiff
        default: return nil
        }
    }

    /// The format's name, e.g. "JPEG".
    public var description: String { rawValue }
    /// Whether `Image` can decode this format.
    public var isDecodable: Bool { self == .jpeg || self == .png }
}

/// What a header-only probe finds out about an image.
public struct ImageInfo: Equatable, Sendable {
    /// The container format, from the magic bytes.
    public var format: ImageFormat
    /// The size a full-size decode produces (after EXIF orientation).
    public var width: Int
    /// The height a full-size decode produces (after EXIF orientation).
    public var height: Int
    /// The size as stored in the file (before EXIF orientation).
    public var storedWidth: Int
    /// The height as stored in the file (before EXIF orientation).
    public var storedHeight: Int
    /// Components in the file: 1 gray, 2 gray+alpha, 3 RGB/YCbCr (and palette PNGs), 4 RGBA/CMYK.
    public var storedChannels: Int
    /// EXIF orientation 1…8 (1 when absent; always 1 for PNG).
    public var orientation: Int
    /// Progressive JPEG or interlaced PNG.
    public var isProgressive: Bool

    init(_ info: ic_image_info) {
        format = ImageFormat(code: info.format) ?? .jpeg
        width = Int(info.width)
        height = Int(info.height)
        storedWidth = Int(info.source_width)
        storedHeight = Int(info.source_height)
        storedChannels = Int(info.source_channels)
        orientation = Int(info.orientation)
        isProgressive = info.progressive != 0
    }
}

/// Format sniffing and header probing for JPEG and PNG files (libjpeg-turbo and libpng underneath).
public enum ImageCodec {
    /// Changes whenever some file decodes to other pixels than before (a fix of the decoder), so that
    /// what was computed from the old pixels (the feature caches, whose key holds it) is computed again.
    /// 2: the first Exif segment decides a JPEG's orientation, and a CMYK JPEG without Adobe's marker
    /// is taken as inverted, as PIL does. 3: images over PIL's 178,956,970 pixels and progressive JPEGs
    /// of more than 500 scans are refused (a cache may hold features of such a file).
    public static let decoderRevision = 3

    /// Bytes read for a probe before falling back to the whole file (a JPEG's frame header can sit
    /// behind large EXIF/ICC segments).
    static let probePrefix: UInt64 = 64 << 10

    /// Whether decoding turns a JPEG upright by its EXIF orientation (`apply`, the default, as a photo
    /// viewer shows it) or leaves the pixels as stored (`ignore`: what torchvision's PIL loader and
    /// Keras' `load_img` do). Process-wide: set it before loading (the CLI's `--exif`);
    /// `withEXIFOrientation` overrides it for one scope.
    public static var exifOrientation: EXIFOrientation {
        get { exifLock.lock(); defer { exifLock.unlock() }; return exifSetting }
        set { exifLock.lock(); exifSetting = newValue; exifLock.unlock() }
    }
    private static let exifLock = NSLock()
    nonisolated(unsafe) private static var exifSetting = EXIFOrientation.apply

    /// The orientation handling of the decodes inside `withEXIFOrientation` on this task or thread.
    @TaskLocal static var scopedEXIFOrientation: EXIFOrientation?

    /// Runs `body` with every decode it makes on this thread (or task) using `orientation`, whatever
    /// `exifOrientation` says: how a model decodes as its own run was trained while other models of the
    /// same process (a server's) use theirs.
    public static func withEXIFOrientation<Result>(_ orientation: EXIFOrientation,
                                                  _ body: () throws -> Result) rethrows -> Result {
        try $scopedEXIFOrientation.withValue(orientation, operation: body)
    }

    /// The orientation handling a decode uses now: `withEXIFOrientation`'s, else `exifOrientation`.
    public static var effectiveEXIFOrientation: EXIFOrientation { scopedEXIFOrientation ?? exifOrientation }

    /// The decoder flags for a decode (`fast`: augmentation-grade JPEG decoding).
    static func decodeFlags(fast: Bool) -> Int32 {
        (fast ? Int32(IC_DECODE_FAST) : 0) | (effectiveEXIFOrientation == .ignore ? Int32(IC_DECODE_IGNORE_EXIF) : 0)
    }

    /// The format named by the first bytes of `bytes`, or nil when it is none of `ImageFormat`.
    public static func sniff<Bytes: ContiguousBytes>(_ bytes: Bytes) -> ImageFormat? {
        bytes.withUnsafeBytes { raw in
            ImageFormat(code: ic_sniff_format(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count))
        }
    }

    /// Width, height and format of the image at `path` from its header alone (no pixel decoding).
    /// Throws the same `DataError`s as `Image(contentsOfFile:)` for unreadable, empty, corrupt and
    /// unsupported files.
    public static func probe(_ path: String) throws -> ImageInfo {
        let (first, partial) = try withFileBytes(path, maxBytes: probePrefix) { raw, fileSize in
            (probe(raw, label: path), raw.count < fileSize)
        }
        switch first {
        case .success(let info):
            return info
        case .failure(let failure) where failure.status == IC_ERR_TRUNCATED && partial:
            // The header did not fit in the prefix: read the whole file.
            return try withFileBytes(path, maxBytes: 0) { raw, _ in try probe(raw, label: path).dataValue() }
        case .failure(let failure):
            throw failure.dataError
        }
    }

    /// The width and height the header of an image held in memory declares, also for an image over
    /// the decoders' pixel limit (which `probe` refuses); nil when the header cannot be read.
    public static func declaredSize<Bytes: ContiguousBytes>(data bytes: Bytes) -> (width: Int, height: Int)? {
        bytes.withUnsafeBytes { raw in
            var info = ic_image_info()
            var message = [CChar](repeating: 0, count: 512)
            let status = ic_probe(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, &info, &message, message.count)
            guard status == 0 || status == IC_ERR_TOO_LARGE, info.source_width > 0, info.source_height > 0 else { return nil }
            return (Int(info.source_width), Int(info.source_height))
        }
    }

    /// Probes an image held in memory; `path` only labels errors.
    public static func probe<Bytes: ContiguousBytes>(data bytes: Bytes, path: String? = nil) throws -> ImageInfo {
        try bytes.withUnsafeBytes { raw in try probe(raw, label: path ?? memoryLabel).dataValue() }
    }

    static func probe(_ raw: UnsafeRawBufferPointer, label: String) -> Result<ImageInfo, ImageCodecFailure> {
        var info = ic_image_info()
        var message = [CChar](repeating: 0, count: 512)
        let status = ic_probe(raw.baseAddress?.assumingMemoryBound(to: UInt8.self), raw.count, &info,
                              &message, message.count)
        guard status == 0 else { return .failure(ImageCodecFailure(status: status, message: message, label: label)) }
        return .success(ImageInfo(info))
    }

    /// How errors about in-memory data name their source when no path is given.
    static let memoryLabel = "<image data>"

    /// Reads `path` (at most `maxBytes`, 0 = all) and passes its bytes and full size to `body`.
    /// Empty files and read failures throw `DataError`s naming the path.
    static func withFileBytes<R>(_ path: String, maxBytes: UInt64,
                                 _ body: (UnsafeRawBufferPointer, Int) throws -> R) throws -> R {
        var pointer: UnsafeMutablePointer<UInt8>?
        var length: UInt64 = 0
        var fileSize: UInt64 = 0
        var message = [CChar](repeating: 0, count: 512)
        let status = ic_read_file(path, maxBytes, &pointer, &length, &fileSize, &message, message.count)
        guard status == 0, let pointer else {
            throw DataError.unreadable(path: path, reason: String(cString: message))
        }
        defer { ic_free(pointer) }
        guard length > 0 else { throw DataError.corrupt(path: path, reason: "empty file (0 bytes)") }
        return try body(UnsafeRawBufferPointer(start: pointer, count: Int(length)), Int(fileSize))
    }
}

/// A failed C call, kept internal so the status stays available; surfaces as a `DataError`.
struct ImageCodecFailure: Error {
    let status: Int32
    let message: String
    let label: String

    init(status: Int32, message: [CChar], label: String) {
        self.status = status
        self.message = String(cString: message)
        self.label = label
    }

    var dataError: DataError {
        switch status {
        case Int32(IC_ERR_UNSUPPORTED.rawValue): return .unsupported("\(label): \(message)")
        case Int32(IC_ERR_IO.rawValue): return .unreadable(path: label, reason: message)
        default: return .corrupt(path: label, reason: message)
        }
    }
}

func == (lhs: Int32, rhs: ic_status) -> Bool { lhs == Int32(rhs.rawValue) }

extension Result where Failure == ImageCodecFailure {
    /// The value, or the failure as a `DataError`.
    func dataValue() throws -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let failure): throw failure.dataError
        }
    }
}
