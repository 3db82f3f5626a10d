import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord files use.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// Continues a checksum over `bytes` (start with 0).
    public static func checksum<Bytes: Sequence>(_ bytes: Bytes, continuing crc: UInt32 = 0) -> UInt32
        where Bytes.Element == UInt8 {
        var c = ~crc
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }

    /// TFRecord's masked CRC: `((crc >> 15) | (crc << 17)) + 0xa282ead8` (wrapping).
    public static func masked(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}

/// Hand-encoded protocol buffers: just what TensorBoard events need.
struct ProtobufWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func key(_ field: Int, wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    mutating func double(_ field: Int, _ value: Double) {
        key(field, wireType: 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func float(_ field: Int, _ value: Float) {
        key(field, wireType: 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// int64 and enums: two's complement varint (10 bytes when negative), as protobuf does.
    mutating func int64(_ field: Int, _ value: Int64) {
        key(field, wireType: 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        key(field, wireType: 2)
        varint(UInt64(payload.count))
        bytes += payload
    }

    mutating func string(_ field: Int, _ value: String) { lengthDelimited(field, Array(value.utf8)) }
}

/// The serialized `tensorflow.Event` messages the writer produces.
enum TensorBoardEvent {
    /// `Event{wall_time=1, step=2, file_version=3}`.
    static func fileVersion(wallTime: Double) -> [UInt8] {
        var w = ProtobufWriter()
        w.double(1, wallTime)
        w.string(3, "brain.Event:2")
        return w.bytes
    }

    /// `Event{wall_time, step, summary=5: Summary{value=1 (repeated): Value{tag=1, simple_value=2}}}`.
    static func scalars(_ values: [(tag: String, value: Float)], step: Int, wallTime: Double) -> [UInt8] {
        var summary = ProtobufWriter()
        for (tag, value) in values {
            var v = ProtobufWriter()
            v.string(1, tag)
            v.float(2, value)
            summary.lengthDelimited(1, v.bytes)
        }
        var w = ProtobufWriter()
        w.double(1, wallTime)
        w.int64(2, Int64(step))
        w.lengthDelimited(5, summary.bytes)
        return w.bytes
    }

    /// `Event{wall_time, step, session_log=7: SessionLog{status=1: START=1}}`: TensorBoard discards
    /// events with this step or later from before it (a restart).
    static func sessionStart(step: Int, wallTime: Double) -> [UInt8] {
        var log = ProtobufWriter()
        log.int64(1, 1)
        var w = ProtobufWriter()
        w.double(1, wallTime)
        w.int64(2, Int64(step))
        w.lengthDelimited(7, log.bytes)
        return w.bytes
    }

    /// A TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data
    /// (all little-endian).
    static func record(_ data: [UInt8]) -> Data {
        var out = Data(capacity: data.count + 16)
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out.append(contentsOf: length)
        withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(length)).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: data)
        withUnsafeBytes(of: CRC32C.masked(CRC32C.checksum(data)).littleEndian) { out.append(contentsOf: $0) }
        return out
    }
}

/// One TensorBoard event file, `events.out.tfevents.<unix time>.<hostname>` in a folder. Every
/// record is written (one system call) as soon as it is added.
public final class TensorBoardEventFile {
    /// The event file's path, `<directory>/events.out.tfevents.<unix time>.<hostname>[.n]`.
    public let path: String
    private let file: AppendingFile

    /// Creates the folder and the file, writing the `brain.Event:2` version record. With
    /// `resumeAfterStep`, also writes a `SessionLog.START` at the following step, so TensorBoard
    /// hides events logged past that step by an interrupted earlier run in this folder.
    public init(directory: String, resumeAfterStep: Int? = nil, date: Date = Date(), hostname: String? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let host = (hostname ?? Self.hostname()).map { $0 == "/" ? "_" : $0 }
        let base = "\(directory)/events.out.tfevents.\(Int(date.timeIntervalSince1970)).\(String(host))"
        var candidate = base, n = 0
        while FileManager.default.fileExists(atPath: candidate) {
            n += 1
            candidate = "\(base).\(n)"  // two files in the same second; names still sort in order
        }
        path = candidate
        file = try AppendingFile(path: path)
        let now = date.timeIntervalSince1970
        try file.append(TensorBoardEvent.record(TensorBoardEvent.fileVersion(wallTime: now)))
        if let step = resumeAfterStep {
            try file.append(TensorBoardEvent.record(TensorBoardEvent.sessionStart(step: step + 1, wallTime: now)))
        }
    }

    /// Adds one scalar (`simple_value`, stored as float32).
    public func addScalar(_ tag: String, _ value: Double, step: Int, wallTime: Date = Date()) throws {
        try addScalars([(tag, value)], step: step, wallTime: wallTime)
    }

    /// Adds several scalars in one event.
    public func addScalars(_ values: [(tag: String, value: Double)], step: Int, wallTime: Date = Date()) throws {
        guard !values.isEmpty else { return }
        let event = TensorBoardEvent.scalars(values.map { ($0.tag, Float($0.value)) }, step: step,
                                             wallTime: wallTime.timeIntervalSince1970)
        try file.append(TensorBoardEvent.record(event))
    }

    /// Closes the file.
    public func close() { file.close() }

    /// The records of an event file, with both checksums of each verified.
    public static func readRecords(at path: String) throws -> [Data] {
        guard let data = try LogFiles.read(path) else { throw LogFileError(path: path, "no such file") }
        let bytes = [UInt8](data)
        var records: [Data] = [], offset = 0
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while offset < bytes.count {
            guard offset + 12 <= bytes.count else { throw LogFileError(path: path, "truncated record header at \(offset)") }
            let lengthBytes = Array(bytes[offset..<offset + 8])
            let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(lengthBytes[$1]) << (8 * UInt64($1)) }
            guard u32(offset + 8) == CRC32C.masked(CRC32C.checksum(lengthBytes)) else {
                throw LogFileError(path: path, "bad length checksum at \(offset)")
            }
            let start = offset + 12
            guard length <= UInt64(bytes.count - start - 4) else {
                throw LogFileError(path: path, "truncated record at \(offset)")
            }
            let end = start + Int(length)
            let payload = bytes[start..<end]
            guard u32(end) == CRC32C.masked(CRC32C.checksum(payload)) else {
                throw LogFileError(path: path, "bad data checksum at \(offset)")
            }
            records.append(Data(payload))
            offset = end + 4
        }
        return records
    }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(cString: buffer)
        return name.isEmpty ? "localhost" : name
    }
}

/// TensorBoard scalars for a run: event files in `logdir/train` and `logdir/validation` (or any
/// other run name), created at the first value logged to each. Point TensorBoard at `logdir`.
public final class TensorBoardWriter {
    /// A run: the subfolder of the log directory, shown as a separate run in TensorBoard.
    public struct Run: Hashable, ExpressibleByStringLiteral, CustomStringConvertible {
        /// The subfolder's name, e.g. "train".
        public let name: String
        /// A run named `name` (checked when first used: no "/", not empty, "." or "..").
        public init(_ name: String) { self.name = name }
        /// A run from a literal: `"test"`.
        public init(stringLiteral value: String) { name = value }
        /// The run's name.
        public var description: String { name }

        /// Training scalars (`logdir/train`), as Keras' TensorBoard callback names them.
        public static let train = Run("train")
        /// Validation scalars (`logdir/validation`).
        public static let validation = Run("validation")
    }

    /// The folder to point TensorBoard at (`tensorboard --logdir`).
    public let logDirectory: String
    /// Set when resuming: each new file hides older events logged after this step.
    public let resumeAfterStep: Int?
    private var files: [Run: TensorBoardEventFile] = [:]

    /// Creates `logDirectory` (event files come at the first value of each run). Throws when the
    /// folder cannot be created.
    public init(logDirectory: String, resumeAfterStep: Int? = nil) throws {
        self.logDirectory = logDirectory
        self.resumeAfterStep = resumeAfterStep
        try FileManager.default.createDirectory(atPath: logDirectory, withIntermediateDirectories: true)
    }

    /// The run's event file (created on first use).
    public func eventFile(for run: Run) throws -> TensorBoardEventFile {
        if let file = files[run] { return file }
        guard !run.name.isEmpty, !run.name.contains("/"), run.name != ".", run.name != ".." else {
            throw LogFileError(path: logDirectory, "invalid TensorBoard run name '\(run.name)'")
        }
        let file = try TensorBoardEventFile(directory: "\(logDirectory)/\(run.name)", resumeAfterStep: resumeAfterStep)
        files[run] = file
        return file
    }

    /// Adds one scalar to `run`'s event file at `step` (stored as float32). Throws for an invalid run
    /// name or a failed write.
    public func addScalar(_ tag: String, _ value: Double, step: Int, run: Run = .train, wallTime: Date = Date()) throws {
        try eventFile(for: run).addScalar(tag, value, step: step, wallTime: wallTime)
    }

    /// Adds several scalars (sorted by tag) in one event.
    public func addScalars(_ values: [String: Double], step: Int, run: Run = .train, wallTime: Date = Date()) throws {
        try eventFile(for: run).addScalars(values.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                                           step: step, wallTime: wallTime)
    }

    /// The paths of the event files written so far, by run.
    public var paths: [Run: String] { files.mapValues(\.path) }

    /// Closes every event file; a later value opens a new file.
    public func close() {
        for file in files.values { file.close() }
        files = [:]
    }
}
