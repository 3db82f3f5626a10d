import Foundation
import Torch

/// Reading MNIST-style IDX files (https://yann.lecun.com/exdb/mnist/), gzipped or not:
/// used by MNIST, Fashion-MNIST and EMNIST.
public struct IDXFile {
    /// Element type codes of the IDX header.
    public enum ElementType: UInt8 {
        /// The IDX type codes (third byte of the magic number); the image datasets need `uint8`.
        case uint8 = 0x08, int8 = 0x09, int16 = 0x0B, int32 = 0x0C, float32 = 0x0D, float64 = 0x0E
        var size: Int {
            switch self {
            case .uint8, .int8: return 1
            case .int16: return 2
            case .int32, .float32: return 4
            case .float64: return 8
            }
        }
    }

    /// The file read (as given; a `.gz` file is gunzipped on reading).
    public let path: String
    /// Type of the elements, from the header.
    public let elementType: ElementType
    /// Dimensions from the header, e.g. [60000, 28, 28] for images and [60000] for labels.
    public let shape: [Int]
    /// The payload, big-endian as stored (only uint8 data is used by the image datasets).
    public let bytes: [UInt8]

    /// The most data an IDX file may hold (4 GiB): a header promising more is refused before any of it
    /// is read.
    public static let maxDataBytes = 4 << 30

    /// Reads and validates `path`; errors name the file and what is wrong. The header is read first and
    /// the data after it only up to what the header promises, so a small gzip file that inflates to
    /// gigabytes is refused without inflating it.
    public init(path: String) throws {
        self.path = path
        let reader = try GzipReader(path: path)
        var header: [UInt8] = []
        try reader.read(4, appendingTo: &header)
        guard header.count == 4, header[0] == 0, header[1] == 0 else {
            throw DataError.corrupt(path: path, reason: "not an IDX file (bad magic number)")
        }
        guard let type = ElementType(rawValue: header[2]) else {
            throw DataError.corrupt(path: path, reason: "unknown IDX element type 0x\(String(header[2], radix: 16))")
        }
        let rank = Int(header[3])
        try reader.read(4 * rank, appendingTo: &header)
        guard rank > 0, header.count == 4 + 4 * rank else {
            throw DataError.corrupt(path: path, reason: "truncated IDX header")
        }
        var dims: [Int] = []
        var total = type.size
        for i in 0..<rank {
            let o = 4 + 4 * i
            let d = Int(header[o]) << 24 | Int(header[o + 1]) << 16 | Int(header[o + 2]) << 8 | Int(header[o + 3])
            dims.append(d)
            let (product, overflow) = total.multipliedReportingOverflow(by: d)
            guard !overflow else { throw DataError.corrupt(path: path, reason: "IDX dimensions overflow") }
            total = product
        }
        guard total <= Self.maxDataBytes else {
            throw DataError.corrupt(path: path, reason: "IDX header promises \(total) bytes of data for shape " +
                                    "\(dims), more than the \(Self.maxDataBytes)-byte limit")
        }
        var data: [UInt8] = []
        let got = try reader.read(total, appendingTo: &data)
        guard got == total, try reader.atEnd() else {
            let has = got < total ? "has \(got)" : "has more than that"
            throw DataError.corrupt(path: path, reason: "IDX header promises \(total) bytes of data for shape " +
                                    "\(dims), the file \(has)")
        }
        elementType = type
        shape = dims
        bytes = data
    }

    /// The data as a uint8 tensor of `shape` (uint8 files only).
    public func uint8Tensor() throws -> Tensor {
        guard elementType == .uint8 else {
            throw DataError.unsupported("\(path): expected uint8 IDX data, found \(elementType)")
        }
        return try bytes.withUnsafeBytes { try Tensor(copying: $0, shape: shape, dtype: .uint8) }
    }
}

/// Errors from the data pipeline; each names the file or folder involved.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A file or folder could not be opened or read (missing, permissions, I/O error, over a size limit).
    case unreadable(path: String, reason: String)
    /// A file or folder could not be written, created or removed (a full disk, a read-only file system).
    case unwritable(path: String, reason: String)
    /// A file was read but its content is broken: bad magic number, truncated header or data,
    /// undecodable image bytes.
    case corrupt(path: String, reason: String)
    /// Valid input the pipeline cannot handle: an image format other than JPEG/PNG, an IDX element type
    /// other than uint8, an unexpected dtype in a CIFAR batch, an impossible resize.
    case unsupported(String)
    /// The dataset as a whole is wrong: missing files or folders, mismatched counts, no classes or no
    /// images, bad labels, bad settings.
    case invalidDataset(String)

    /// The message for the user, naming the file or folder involved.
    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        case .unwritable(let path, let reason): return "cannot write \(path): \(reason)"
        case .corrupt(let path, let reason): return "\(path): \(reason)"
        case .unsupported(let m), .invalidDataset(let m): return m
        }
    }
}

/// Reads a whole file, transparently gunzipping it, refusing more than `limit` bytes.
func readMaybeGzip(_ path: String, limit: Int) throws -> [UInt8] {
    try GzipReader(path: path).readToEnd(limit: limit)
}
