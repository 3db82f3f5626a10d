import AtomicFiles
import Foundation
import Torch

extension SafeTensors {
    /// Writes atomically: the bytes go to a temporary file in the destination's folder, which is
    /// fsynced and then renamed over `path`, so readers (and mappings of the old file) never see a
    /// partial file; on failure the temporary file is removed and `path` is left untouched.
    /// Tensors are stored contiguously in the dictionary's order (see `encode`).
    public static func write(_ tensors: StateDict, metadata: [String: String] = [:], to path: String) throws {
        let plan = try Plan(tensors, metadata: metadata, path: path)  // fails before touching the disk
        do {
            try AtomicFile.write(to: path) { append in try plan.forEachChunk(append) }
        } catch let error as AtomicFileError {
            throw SafeTensorsError(path: path, error.reason)
        }
    }

    /// Writes a file atomically (as `write`) whose tensors, laid out in `layout`'s order, are too large
    /// to hold in memory: `body` appends their bytes in that order, in as many pieces as it likes (the
    /// feature cache appends a batch of rows at a time). Throws, leaving `path` untouched, when
    /// `body` throws or appends more or fewer bytes than the layout declares.
    public static func write(streaming layout: [(name: String, dtype: DType, shape: [Int])],
                             metadata: [String: String] = [:], to path: String,
                             _ body: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let (header, totalSize) = try Plan.header(layout, metadata: metadata, path: path)
        let dataBytes = totalSize - header.count
        do {
            try writeStreamed(to: path, header: header, dataBytes: dataBytes, mismatch: { written, tooMany in
                SafeTensorsError(path: path, tooMany ? "more data than the declared tensors hold (\(dataBytes) bytes)"
                                 : "\(written) bytes of tensor data written, the declared tensors hold \(dataBytes)")
            }, body)
        } catch let error as AtomicFileError {
            throw SafeTensorsError(path: path, error.reason)
        }
    }

    /// The complete file contents: header length, JSON header (space-padded so the data buffer
    /// starts at an 8-byte boundary, as Python's writer does; `__metadata__` only when non-empty),
    /// then each tensor's bytes, contiguous and row-major, in the dictionary's order. Tensors on
    /// other devices are copied to the CPU; non-contiguous ones are made contiguous.
    public static func encode(_ tensors: StateDict, metadata: [String: String] = [:]) throws -> [UInt8] {
        let plan = try Plan(tensors, metadata: metadata, path: "<memory>")
        var bytes: [UInt8] = []
        bytes.reserveCapacity(plan.totalSize)
        try plan.forEachChunk { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// A validated layout: the header bytes and CPU-contiguous tensors with their sizes.
    private struct Plan {
        var header: [UInt8] = []
        var tensors: [(tensor: Tensor, byteCount: Int)] = []
        var totalSize = 0

        init(_ dict: StateDict, metadata: [String: String], path: String) throws {
            var layout: [(name: String, dtype: DType, shape: [Int])] = []
            for (name, original) in dict {
                var tensor = original.device == .cpu ? original : try original.to(.cpu)
                if !tensor.isContiguous() { tensor = try tensor.contiguous() }
                tensors.append((tensor, tensor.count * tensor.dtype.byteSize))
                layout.append((name, tensor.dtype, tensor.shape))
            }
            (header, totalSize) = try Plan.header(layout, metadata: metadata, path: path)
        }

        /// The header bytes (length, JSON, padding) of tensors laid out contiguously in `layout`'s
        /// order, and the whole file's size.
        static func header(_ layout: [(name: String, dtype: DType, shape: [Int])], metadata: [String: String],
                           path: String) throws -> (header: [UInt8], totalSize: Int) {
            var json = "{"
            if !metadata.isEmpty {
                let pairs = metadata.sorted { $0.key < $1.key }.map { "\(quote($0.key)):\(quote($0.value))" }
                json += "\"__metadata__\":{\(pairs.joined(separator: ","))}"
            }
            var offset = 0, first = metadata.isEmpty
            for (name, dtype, shape) in layout {
                guard name != "__metadata__" else {
                    throw SafeTensorsError(path: path, "'__metadata__' is reserved and cannot name a tensor")
                }
                guard let code = SafeTensors.codeByDType[dtype] else {
                    throw SafeTensorsError(path: path, "tensor '\(name)' has dtype \(dtype), which safetensors lacks")
                }
                let byteCount = shape.reduce(1, *) * dtype.byteSize
                json += first ? "" : ","
                first = false
                json += "\(quote(name)):{\"dtype\":\"\(code)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))]," +
                    "\"data_offsets\":[\(offset),\(offset + byteCount)]}"
                offset += byteCount
            }
            json += "}"
            var header = Array(json.utf8)
            header += [UInt8](repeating: 0x20, count: (8 - header.count % 8) % 8)
            let length = UInt64(header.count).littleEndian
            header = withUnsafeBytes(of: length) { Array($0) } + header
            return (header, header.count + offset)
        }

        /// Calls `body` with the header, then with each tensor's bytes.
        func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
            try header.withUnsafeBytes(body)
            for (tensor, byteCount) in tensors where byteCount > 0 {
                try body(UnsafeRawBufferPointer(start: try tensor.dataPointer(), count: byteCount))
            }
        }
    }

    /// A JSON string literal.
    private static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
