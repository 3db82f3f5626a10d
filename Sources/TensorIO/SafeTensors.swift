import AtomicFiles
import Foundation
import Torch

#if _endian(big)
#error("safetensors data is little-endian; big-endian hosts are not supported")
#endif

/// A parsed safetensors file: tensors in file order plus the free-form `__metadata__`.
public struct SafeTensorsFile {
    /// The tensors under their names, in the order of their data in the file (when read) or as given (for writing).
    public var tensors: StateDict
    /// The header's `__metadata__`: free-form string pairs (e.g. `{"format": "pt"}`), empty when absent.
    public var metadata: [String: String]
    /// The memory mapping the tensors reference when read without copying (nil otherwise).
    public var mapping: SafeTensorsMapping?
    /// A file's contents, e.g. to pass around before writing with `SafeTensors.write`.
    public init(tensors: StateDict, metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }
}

/// A malformed, unreadable or unwritable safetensors file. The description names the file.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    /// The file being read or written.
    public let path: String
    /// What went wrong, without the path.
    public let reason: String
    /// An error about the file at `path`.
    public init(path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }
    /// "safetensors file <path>: <reason>".
    public var description: String { "safetensors file \(path): \(reason)" }
}

/// Reading and writing the safetensors format (https://github.com/huggingface/safetensors),
/// interoperable with Python's `safetensors` package.
///
/// Layout: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}`),
/// then the data buffer, which the offsets index. Supported dtypes: F64, F32, F16, BF16, I64, I32,
/// I16, I8, U8 and BOOL.
public enum SafeTensors {
    /// Reads a file.
    ///
    /// With `copy: false` (the default) the file is memory-mapped privately (copy-on-write) and each
    /// tensor whose data is aligned to its element size references the mapping without copying; the
    /// mapping stays alive until the last such tensor is freed. Writing such a tensor in place is safe:
    /// the touched pages become private copies and the file never changes. The file must not be
    /// truncated or rewritten in place while the tensors live (replacing it by rename, as `write` does,
    /// is safe). Pass `copy: true` to get tensors in owned memory (the mapping is released at once).
    public static func read(_ path: String, copy: Bool = false) throws -> SafeTensorsFile {
        let mapping: FileMapping?
        do {
            mapping = try FileMapping.map(path)
        } catch let error as RegularFileError {
            throw SafeTensorsError(path: path, error.reason)
        }
        guard let mapping else { throw SafeTensorsError(path: path, "the file is empty (0 bytes)") }
        return try decode(mapping: mapping, path: path, copy: copy)
    }

    /// The tensors of a file, memory-mapped copy-on-write without copying (see `read`).
    public static func load(_ path: String) throws -> StateDict { try read(path).tensors }

    /// The tensors of a file copied into owned memory (see `read`).
    public static func loadCopy(_ path: String) throws -> StateDict { try read(path, copy: true).tensors }

    // MARK: - Decoding

    static func decode(mapping: FileMapping, path: String, copy: Bool) throws -> SafeTensorsFile {
        func fail(_ reason: String) -> SafeTensorsError { SafeTensorsError(path: path, reason) }
        let size = mapping.length
        guard size >= 8 else { throw fail("the file has \(size) bytes, fewer than the 8-byte header length") }
        let declared = UInt64(littleEndian: mapping.base.loadUnaligned(as: UInt64.self))
        guard declared <= UInt64(size - 8) else {
            throw fail("the header length \(declared) runs past the end of the file (\(size) bytes)")
        }
        guard declared <= maximumHeaderLength else {
            throw fail("the header length \(declared) is over the format's limit of \(maximumHeaderLength) bytes")
        }
        let headerLength = Int(declared)
        let dataStart = 8 + headerLength
        let dataLength = size - dataStart
        let headerBytes = Data(bytes: mapping.base + 8, count: headerLength)
        // As the reference reader (the Rust crate, which Python's safetensors uses): the header is
        // a JSON object from its first byte (no byte-order mark, no leading space).
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw fail("invalid JSON header: it does not begin with '{'")
        }

        let header: Header
        do {
            header = try JSONDecoder().decode(Header.self, from: headerBytes)
        } catch let error as DecodingError {
            // Foundation reports a number that Int cannot hold (2^64, 1e30, 1.5) as "not valid JSON";
            // name the tensor and the number instead.
            if let number = nonIntegerNumber(in: headerBytes) { throw fail("invalid JSON header: \(number)") }
            throw fail("invalid JSON header: \(describe(error))")
        } catch {
            throw fail("invalid JSON header: \(error)")
        }

        // A name defined twice is refused: JSON readers disagree on which definition wins (Foundation
        // keeps one, the Rust crate the last), so the same file would be two different models.
        var seen = Set<String>()
        for name in topLevelKeys(headerBytes) where !seen.insert(name).inserted {
            throw fail("tensor '\(name)' is defined twice in the header")
        }
        // The reference reader's shapes and offsets are integers: 3456.0 and 3.456e3 are refused there
        // (Foundation's decoder read them as 3456, so finetune loaded files Python's safetensors refuses).
        if let number = firstNonIntegerToken(headerBytes) {
            throw fail("invalid JSON header: the number \(number) is not written as a whole number (shapes and offsets are integers)")
        }

        // Validate every entry, then order by position in the data buffer (the file's order).
        var entries: [(name: String, dtype: DType, shape: [Int], begin: Int, end: Int)] = []
        for (name, entry) in header.entries {
            guard let dtype = dtypeByCode[entry.dtype] else {
                throw fail("tensor '\(name)' has unknown dtype '\(entry.dtype)'")
            }
            var count = 1
            for dim in entry.shape {
                guard dim >= 0 else { throw fail("tensor '\(name)' has a negative dimension in shape \(entry.shape)") }
                let (product, overflow) = count.multipliedReportingOverflow(by: dim)
                guard !overflow else { throw fail("tensor '\(name)' has an impossibly large shape \(entry.shape)") }
                count = product
            }
            let (byteCount, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow else { throw fail("tensor '\(name)' has an impossibly large shape \(entry.shape)") }
            let offsets = entry.data_offsets
            guard offsets.count == 2 else {
                throw fail("tensor '\(name)' needs data_offsets [begin, end], got \(offsets)")
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("tensor '\(name)' has data_offsets \(offsets) outside the data buffer (\(dataLength) bytes)")
            }
            guard end - begin == byteCount else {
                throw fail("tensor '\(name)' has data_offsets \(offsets) (\(end - begin) bytes) but shape " +
                           "\(entry.shape) of \(entry.dtype) needs \(byteCount) bytes")
            }
            entries.append((name, dtype, entry.shape, begin, end))
        }
        entries.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        for (previous, next) in zip(entries, entries.dropFirst()) where next.begin < previous.end {
            throw fail("tensors '\(previous.name)' and '\(next.name)' overlap in the data buffer")
        }
        // The tensors fill the data buffer exactly, as the reference reader requires: bytes that
        // belong to no tensor are refused (they could hide a second set of weights).
        var covered = 0
        for entry in entries {
            guard entry.begin == covered else {
                throw fail("\(entry.begin - covered) bytes before tensor '\(entry.name)' belong to no tensor")
            }
            covered = entry.end
        }
        guard covered == dataLength else {
            throw fail("\(dataLength - covered) bytes after the last tensor belong to no tensor")
        }

        var tensors = StateDict()
        for entry in entries {
            let pointer = mapping.base + dataStart + entry.begin
            let byteCount = entry.end - entry.begin
            let aligned = Int(bitPattern: pointer) % entry.dtype.byteSize == 0
            let tensor: Tensor
            if copy || !aligned || byteCount == 0 {
                tensor = try Tensor(copying: UnsafeRawBufferPointer(start: pointer, count: byteCount),
                                    shape: entry.shape, dtype: entry.dtype)
            } else {
                tensor = try Tensor.wrapping(pointer, shape: entry.shape, dtype: entry.dtype, owner: mapping)
            }
            tensors[entry.name] = tensor
        }
        var file = SafeTensorsFile(tensors: tensors, metadata: header.metadata)
        if !copy {
            let ranges = entries.map { ($0.name, (dataStart + $0.begin)..<(dataStart + $0.end)) }
            file.mapping = SafeTensorsMapping(mapping, byteRanges: Dictionary(uniqueKeysWithValues: ranges))
        }
        return file
    }

    /// The longest header the format allows (100 MB, the reference reader's limit).
    public static let maximumHeaderLength: UInt64 = 100_000_000

    /// The keys of a JSON object's top level, in order, duplicates kept (`JSONDecoder` folds them).
    /// `json` has already parsed as an object; a key's escapes are decoded, so `"\u0061"` is `a`.
    static func topLevelKeys(_ json: Data) -> [String] {
        var keys: [String] = []
        var depth = 0, expectKey = false, index = json.startIndex
        while index < json.endIndex {
            let byte = json[index]
            switch byte {
            case UInt8(ascii: "\""):
                var end = json.index(after: index)
                while end < json.endIndex && json[end] != UInt8(ascii: "\"") {
                    end = json.index(end, offsetBy: json[end] == UInt8(ascii: "\\") ? 2 : 1)
                }
                if depth == 1 && expectKey, end < json.endIndex {
                    let token = Data("[".utf8) + json[index...end] + Data("]".utf8)
                    if let key = try? JSONDecoder().decode([String].self, from: token).first { keys.append(key) }
                    expectKey = false
                }
                index = end
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectKey = depth == 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                if depth == 1 { expectKey = true }
            default:
                break
            }
            index = json.index(after: index)
        }
        return keys
    }

    /// The first number token outside strings written with a fraction or an exponent (`3456.0`,
    /// `3.456e3`); nil when there is none. A header's only numbers are shapes and offsets.
    static func firstNonIntegerToken(_ json: Data) -> String? {
        var inString = false, escaped = false
        var index = json.startIndex
        while index < json.endIndex {
            let byte = json[index]
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
            } else if byte == UInt8(ascii: "\"") {
                inString = true
            } else if byte == UInt8(ascii: "-") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
                var end = index
                while end < json.endIndex, "0123456789+-.eE".utf8.contains(json[end]) { end = json.index(after: end) }
                let token = json[index..<end]
                if token.contains(where: { "eE.".utf8.contains($0) }) { return String(decoding: token, as: UTF8.self) }
                index = end
                continue
            }
            index = json.index(after: index)
        }
        return nil
    }

    /// safetensors dtype codes and the `DType` each maps to.
    static let dtypeByCode: [String: DType] = [
        "F64": .float64, "F32": .float32, "F16": .float16, "BF16": .bfloat16, "I64": .int64,
        "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]
    static let codeByDType: [DType: String] = Dictionary(uniqueKeysWithValues: dtypeByCode.map { ($1, $0) })

    /// The first shape or data_offsets number of a header that is not a whole number an `Int` holds,
    /// described ("tensor 'w' has data_offsets value 18446744073709551616, …"); nil when every such
    /// number is one, or the header is not JSON at all.
    private static func nonIntegerNumber(in header: Data) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: header) as? [String: Any] else { return nil }
        for name in object.keys.sorted() where name != "__metadata__" {
            guard let entry = object[name] as? [String: Any] else { continue }
            for field in ["shape", "data_offsets"] {
                guard let values = entry[field] as? [Any] else { continue }
                for value in values {
                    guard let number = value as? NSNumber, Int("\(number)") == nil else { continue }
                    return "tensor '\(name)' has \(field) value \(number), which is not a whole number from 0 to \(Int.max)"
                }
            }
        }
        return nil
    }

    private static func describe(_ error: DecodingError) -> String {
        func at(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return (path.isEmpty ? "" : "at \(path.joined(separator: ".")): ") + context.debugDescription
        }
        switch error {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c), .dataCorrupted(let c):
            return at(c)
        @unknown default:
            return "\(error)"
        }
    }
}

/// The JSON header: tensor entries (any order) and the optional `__metadata__`.
private struct Header: Decodable {
    struct Entry: Decodable {
        let dtype: String
        let shape: [Int]
        let data_offsets: [Int]
    }
    struct Key: CodingKey {
        let stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }
    var entries: [(String, Entry)] = []
    var metadata: [String: String] = [:]

    init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        for key in container.allKeys {
            if key.stringValue == "__metadata__" {
                metadata = try container.decodeIfPresent([String: String].self, forKey: key) ?? [:]
            } else {
                entries.append((key.stringValue, try container.decode(Entry.self, forKey: key)))
            }
        }
    }
}

/// The mapping behind the tensors of a file read without copying (`SafeTensorsFile.mapping`).
public final class SafeTensorsMapping {
    let mapping: FileMapping
    /// Where each tensor's bytes lie in the file (offsets from its first byte), by name.
    public let byteRanges: [String: Range<Int>]

    init(_ mapping: FileMapping, byteRanges: [String: Range<Int>]) {
        self.mapping = mapping
        self.byteRanges = byteRanges
    }

    /// The mapped file's size in bytes.
    public var length: Int { mapping.length }

    /// Calls `body` with the file's bytes in `range` (within `0..<length`; a tensor's from
    /// `byteRanges`), as mapped: valid only during the call, and never to be written through.
    public func withUnsafeBytes<R>(in range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        guard range.lowerBound >= 0, range.upperBound <= mapping.length else {
            throw SafeTensorsError(path: "<mapping>", "bytes \(range) lie outside the mapped file (\(mapping.length) bytes)")
        }
        return try body(UnsafeRawBufferPointer(start: mapping.base + range.lowerBound, count: range.count))
    }

    /// Drops the mapping's pages from this process's resident set (`madvise(MADV_DONTNEED)`); the next
    /// access reads them again from the page cache, so reading a file larger than memory through the
    /// mapping keeps the process's RSS flat. Only for tensors never written in place: the private
    /// copies such writes made are discarded and the file's contents come back.
    public func releaseResidentPages() {
        _ = madvise(mapping.base, mapping.length, MADV_DONTNEED)
    }
}

/// A whole file mapped private (copy-on-write: writes never reach the file); unmapped when the last
/// tensor referencing it is freed.
final class FileMapping {
    let base: UnsafeMutableRawPointer
    let length: Int

    private init(base: UnsafeMutableRawPointer, length: Int) {
        self.base = base
        self.length = length
    }

    /// The regular file at `path` mapped whole, or nil when it is empty (nothing to map). A FIFO or a
    /// device is refused before any read, and failures are `RegularFileError`s (reason without the path).
    static func map(_ path: String) throws -> FileMapping? {
        let fd = try RegularFile.openForReading(path)  // a FIFO would block open(2)
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw RegularFileError(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        let length = Int(info.st_size)
        guard length > 0 else { return nil }
        guard let p = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0),
              p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw RegularFileError(path: path, reason: "cannot memory-map: \(String(cString: strerror(errno)))")
        }
        return FileMapping(base: p, length: length)
    }

    deinit {
        munmap(base, length)
    }
}
