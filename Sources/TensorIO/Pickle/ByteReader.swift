import Foundation

/// Why decoding an untrusted file failed. Positions are byte offsets in the file being read.
public struct PickleError: Error, CustomStringConvertible, Equatable {
    /// The class of failure, for callers that react differently (e.g. report a refused global as a security refusal).
    public enum Kind: Equatable, Sendable {
        /// The data ends before the structure does (a cut-off file or pickle).
        case truncated
        /// Bytes that do not form a valid pickle / archive / tensor description.
        case malformed
        /// Valid but outside what this importer implements (an opcode, a compression method...).
        case unsupported
        /// The pickle names a global outside the allow-list (its dotted name). Nothing was executed.
        case refusedGlobal(String)
    }

    /// The class of failure.
    public let kind: Kind
    /// A human-readable explanation, with byte offsets where they help.
    public let message: String

    /// An error of `kind` with `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message alone (the kind is for code), so `print(error)` reads as a sentence.
    public var description: String { message }

    static func truncated(_ message: String) -> PickleError { PickleError(.truncated, message) }
    static func malformed(_ message: String) -> PickleError { PickleError(.malformed, message) }
    static func unsupported(_ message: String) -> PickleError { PickleError(.unsupported, message) }
}

/// A bounds-checked little-endian cursor over bytes. Every read checks the remaining length first,
/// so malformed input can only produce a `PickleError`, never an out-of-bounds access.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    /// The first offset past the readable region.
    let end: Int
    private(set) var position: Int
    /// Names the data in truncation messages ("the pickle", "the zip central directory").
    let what: String

    init(_ buffer: UnsafeRawBufferPointer, from start: Int = 0, to end: Int? = nil, what: String) throws {
        let stop = end ?? buffer.count
        guard start >= 0, start <= stop, stop <= buffer.count else {
            throw PickleError.truncated("\(what) lies outside the file (bytes \(start)..<\(stop) of \(buffer.count))")
        }
        self.buffer = buffer
        self.end = stop
        self.position = start
        self.what = what
    }

    var remaining: Int { end - position }
    var isAtEnd: Bool { position >= end }

    private func need(_ n: Int, _ reading: String) throws {
        guard n >= 0, n <= remaining else {
            throw PickleError.truncated("\(what) ends early at byte \(position) while reading \(reading) " +
                                        "(\(n < 0 ? "invalid length \(n)" : "\(n) bytes needed, \(remaining) left"))")
        }
    }

    mutating func seek(to offset: Int) throws {
        guard offset >= 0, offset <= end else {
            throw PickleError.truncated("\(what): offset \(offset) is past the end (\(end) bytes)")
        }
        position = offset
    }

    mutating func skip(_ n: Int, _ reading: String) throws {
        try need(n, reading)
        position += n
    }

    mutating func u8(_ reading: String = "a byte") throws -> UInt8 {
        try need(1, reading)
        defer { position += 1 }
        return buffer[position]
    }

    /// `n` bytes as a range of offsets into `buffer` (no copy).
    mutating func range(_ n: Int, _ reading: String) throws -> Range<Int> {
        try need(n, reading)
        defer { position += n }
        return position..<(position + n)
    }

    mutating func bytes(_ n: Int, _ reading: String) throws -> [UInt8] {
        let r = try range(n, reading)
        return Array(UnsafeRawBufferPointer(rebasing: buffer[r]))
    }

    private mutating func unsigned(_ n: Int, _ reading: String) throws -> UInt64 {
        try need(n, reading)
        var value: UInt64 = 0
        for i in 0..<n { value |= UInt64(buffer[position + i]) << (8 * UInt64(i)) }
        position += n
        return value
    }

    mutating func u16(_ reading: String) throws -> UInt16 { UInt16(truncatingIfNeeded: try unsigned(2, reading)) }
    mutating func u32(_ reading: String) throws -> UInt32 { UInt32(truncatingIfNeeded: try unsigned(4, reading)) }
    mutating func u64(_ reading: String) throws -> UInt64 { try unsigned(8, reading) }
    mutating func i32(_ reading: String) throws -> Int32 { Int32(bitPattern: try u32(reading)) }
    mutating func i64(_ reading: String) throws -> Int64 { Int64(bitPattern: try u64(reading)) }

    /// An unsigned 64-bit length as `Int`, refusing values that do not fit.
    mutating func length64(_ reading: String) throws -> Int {
        let v = try u64(reading)
        guard v <= UInt64(Int.max) else {
            throw PickleError.malformed("\(what): \(reading) is \(v), far beyond the file size")
        }
        return Int(v)
    }

    /// Bytes up to (not including) the next newline, which is consumed. Text opcodes of protocol 0.
    mutating func line(_ reading: String) throws -> [UInt8] {
        var i = position
        while i < end, buffer[i] != 0x0A { i += 1 }
        guard i < end else {
            throw PickleError.truncated("\(what) ends early at byte \(position) while reading \(reading) " +
                                        "(no end of line)")
        }
        let out = Array(UnsafeRawBufferPointer(rebasing: buffer[position..<i]))
        position = i + 1
        return out
    }
}

/// Checked arithmetic for sizes computed from untrusted numbers.
enum Checked {
    static func mul(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (v, overflow) = a.multipliedReportingOverflow(by: b)
        guard !overflow else { throw PickleError.malformed("\(what()) overflows") }
        return v
    }

    static func add(_ a: Int, _ b: Int, _ what: @autoclosure () -> String) throws -> Int {
        let (v, overflow) = a.addingReportingOverflow(b)
        guard !overflow else { throw PickleError.malformed("\(what()) overflows") }
        return v
    }
}
