// Helpers shared by the libFuzzer targets in Fuzz/ (see scripts/fuzz and docs/reliability.md, "Fuzzing").
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-process scratch folder for parsers that read files or folders: each input is written there
/// and read back through the public, path-taking API. It lies under `$TMPDIR` (scripts/fuzz points
/// that at a folder it removes afterwards) and is removed when the fuzzer exits normally.
public enum FuzzScratch {
    nonisolated(unsafe) private static var made: String?

    public static var directory: String {
        if let made { return made }
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        let dir = base + "/finetune-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        made = dir
        atexit { if let dir = FuzzScratch.made { try? FileManager.default.removeItem(atPath: dir) } }
        return dir
    }

    /// `directory/name`, emptied and created.
    public static func folder(_ name: String) -> String {
        let path = directory + "/" + name
        try? FileManager.default.removeItem(atPath: path)
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Writes `bytes` to `path` (replacing it) and returns the path.
    @discardableResult
    public static func write<C: Collection>(_ bytes: C, to path: String) -> String where C.Element == UInt8 {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { fatalError("fuzz scratch: cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let array = Array(bytes)
        var done = 0
        array.withUnsafeBytes { raw in
            while done < raw.count {
                let n = sysWrite(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 { if errno == EINTR { continue }; fatalError("fuzz scratch: cannot write \(path)") }
                done += n
            }
        }
        return path
    }

    /// Writes `bytes` to `directory/name`.
    @discardableResult
    public static func file<C: Collection>(_ name: String, _ bytes: C) -> String where C.Element == UInt8 {
        write(bytes, to: directory + "/" + name)
    }
}

private func sysWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }

/// The separator between the files of a multi-file input (checkpoints, CIFAR folders). It is in each
/// of those targets' dictionaries (Fuzz/dict), so mutations can add and remove files.
public let fuzzFileSeparator: [UInt8] = Array("\n#=fuzz-file=#\n".utf8)

/// Splits `bytes` at every `fuzzFileSeparator`, into at most `limit` parts (the last keeps the rest).
public func fuzzSplit(_ bytes: UnsafeBufferPointer<UInt8>, limit: Int) -> [ArraySlice<UInt8>] {
    let all = Array(bytes)
    var parts: [ArraySlice<UInt8>] = []
    var start = 0, i = 0
    let sep = fuzzFileSeparator
    while i + sep.count <= all.count, parts.count < limit - 1 {
        if all[i] == sep[0] && all[i..<(i + sep.count)].elementsEqual(sep) {
            parts.append(all[start..<i])
            i += sep.count
            start = i
        } else {
            i += 1
        }
    }
    parts.append(all[start...])
    return parts
}

/// Joins files into one multi-file input (for seeds).
public func fuzzJoin(_ files: [[UInt8]]) -> [UInt8] {
    var out: [UInt8] = []
    for (i, f) in files.enumerated() {
        if i > 0 { out += fuzzFileSeparator }
        out += f
    }
    return out
}

/// Reads a little-endian integer from the first bytes of an input, and the rest.
public struct FuzzInput {
    public let bytes: UnsafeBufferPointer<UInt8>
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = UnsafeBufferPointer(start: data, count: size)
    }

    /// The next byte, or 0 past the end.
    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// The next 8 bytes as a little-endian UInt64 (zeros past the end).
    public mutating func u64() -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(byte()) << (8 * UInt64(i)) }
        return v
    }

    /// What is left.
    public var rest: UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: bytes[min(position, bytes.count)...])
    }
}

/// When `FINETUNE_FUZZ_SEEDS` names a folder, a target's `LLVMFuzzerInitialize` writes the seeds it
/// can make itself (with the library's own writers) there and exits, instead of fuzzing.
public func fuzzSeedFolder() -> String? {
    guard let dir = ProcessInfo.processInfo.environment["FINETUNE_FUZZ_SEEDS"], !dir.isEmpty else { return nil }
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
