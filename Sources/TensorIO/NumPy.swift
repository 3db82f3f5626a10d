import AtomicFiles
import Foundation
import Torch

/// NumPy's `.npy` format (version 1.0), for handing tensors to other tools: `numpy.load` reads
/// what `write` produces.
public enum NumPy {
    /// The array description NumPy uses for `dtype` (little-endian), e.g. `<f4`.
    static func descriptor(_ dtype: DType) throws -> String {
        switch dtype {
        case .float32: return "<f4"
        case .float64: return "<f8"
        case .float16: return "<f2"
        case .int64: return "<i8"
        case .int32: return "<i4"
        case .int16: return "<i2"
        case .int8: return "|i1"
        case .uint8: return "|u1"
        case .bool: return "|b1"
        default: throw TorchError("a .npy file cannot hold \(dtype) tensors")
        }
    }

    /// The complete file: magic, header (padded so the data starts on a 64-byte boundary) and the
    /// tensor's elements in C order.
    public static func encode(_ tensor: Tensor) throws -> [UInt8] {
        let cpu = try tensor.to(dtype: tensor.dtype, device: .cpu).contiguous()
        var bytes = try header(dtype: cpu.dtype, shape: cpu.shape)
        let dataStart = bytes.count
        bytes += [UInt8](repeating: 0, count: cpu.count * cpu.dtype.byteSize)
        try bytes.withUnsafeMutableBytes { try cpu.copyBytes(to: UnsafeMutableRawBufferPointer(rebasing: $0[dataStart...])) }
        return bytes
    }

    /// The bytes before the elements: magic, version 1.0, header length and the header, padded so
    /// that the elements start on a 64-byte boundary.
    static func header(dtype: DType, shape: [Int]) throws -> [UInt8] {
        let dims = shape.map(String.init)
        let shapeText = dims.count == 1 ? "(\(dims[0]),)" : "(" + dims.joined(separator: ", ") + ")"
        var header = "{'descr': '\(try descriptor(dtype))', 'fortran_order': False, 'shape': \(shapeText), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let length = UInt16(header.utf8.count)
        bytes += [UInt8(length & 0xFF), UInt8(length >> 8)]
        return bytes + Array(header.utf8)
    }

    /// The dtype and shape in the header of the `.npy` file at `path` (version 1.0 or 2.0), as NumPy
    /// writes it (`{'descr': '<f4', 'fortran_order': False, 'shape': (9, 512), }`); nil when the file
    /// is missing, is not a `.npy`, or its header is not of that form. Nothing past the header is read.
    public static func header(ofFileAt path: String) -> (descriptor: String, shape: [Int])? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let start = handle.readData(ofLength: 12)
        guard start.count >= 10, start.starts(with: [0x93] + Array("NUMPY".utf8)), [1, 2].contains(start[6]) else {
            return nil
        }
        let wide = start[6] == 2  // version 2.0: a 4-byte header length
        guard !wide || start.count == 12 else { return nil }
        let length = wide ? Int(start[8]) | Int(start[9]) << 8 | Int(start[10]) << 16 | Int(start[11]) << 24
            : Int(start[8]) | Int(start[9]) << 8
        guard length <= 1 << 16 else { return nil }
        try? handle.seek(toOffset: wide ? 12 : 10)
        let text = String(decoding: handle.readData(ofLength: length), as: UTF8.self)
        guard let descrStart = text.range(of: "'descr': '"),
              let descrEnd = text[descrStart.upperBound...].firstIndex(of: "'"),
              let shapeStart = text.range(of: "'shape': ("),
              let shapeEnd = text[shapeStart.upperBound...].firstIndex(of: ")") else { return nil }
        let dims = text[shapeStart.upperBound..<shapeEnd].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }  // (9,)
        let shape = dims.compactMap { Int($0) }
        guard shape.count == dims.count else { return nil }
        return (String(text[descrStart.upperBound..<descrEnd]), shape)
    }

    /// Writes `tensor` to `path` atomically (temporary file, then rename).
    public static func write(_ tensor: Tensor, to path: String) throws {
        try AtomicFile.write(Foundation.Data(try encode(tensor)), to: path)
    }

    /// Writes atomically (as `write`) an array of `dtype` and `shape` too large to hold in memory:
    /// `body` appends its elements' bytes in C order, in as many pieces as it likes. Throws, leaving
    /// `path` untouched, when `body` throws or appends more or fewer bytes than the shape holds.
    public static func write(streaming dtype: DType, shape: [Int], to path: String,
                             _ body: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let expected = shape.reduce(1, *) * dtype.byteSize
        let header = try header(dtype: dtype, shape: shape)
        try writeStreamed(to: path, header: header, dataBytes: expected, mismatch: { written, tooMany in
            TorchError(tooMany ? "\(path): more data than a \(shape) array holds (\(expected) bytes)"
                               : "\(path): \(written) bytes of data written, a \(shape) array holds \(expected)")
        }, body)
    }
}
