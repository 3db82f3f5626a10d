import AtomicFiles
import Data
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Errors from the loggers, plot writers and the TensorBoard writer.
public struct LogFileError: Error, CustomStringConvertible {
    /// The file involved.
    public let path: String
    /// What went wrong with it.
    public let message: String

    /// An error about `path` saying `message`.
    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    /// "<path>: <message>".
    public var description: String { "\(path): \(message)" }
}

/// Whole-file atomic writes and line-appending files, shared by the loggers and plots.
enum LogFiles {
    static func systemError(_ path: String, _ what: String) -> LogFileError {
        LogFileError(path: path, "\(what): \(String(cString: strerror(errno)))")
    }

    /// Writes `data` to a temporary file in the destination's folder, fsyncs it and renames it over
    /// `path` (creating the folder), so readers never see a partial file; `path` is untouched on failure.
    static func writeAtomically(_ data: Data, to path: String) throws {
        do {
            try AtomicFile.write(data, to: path, createDirectory: true)
        } catch let error as AtomicFileError {
            throw LogFileError(path: path, error.reason)
        }
    }

    static func writeAll(_ fd: Int32, _ data: Data, path: String) throws {
        do {
            try FileDescriptorWriter.writeAll(fd: fd, data)
        } catch let error as FileWriteError {
            throw LogFileError(path: path, "cannot write: \(error.reason)")
        }
    }

    /// The file's contents, or nil when it does not exist.
    static func read(_ path: String) throws -> Data? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw LogFileError(path: path, "cannot read: \(FileErrorReason.of(error, path: path))")
        }
    }

    /// Complete lines (those ending in a newline) of a file; a partial last line (a write cut off
    /// by a crash) is reported by `partial`.
    static func lines(_ data: Data) -> (lines: [String], partial: Bool) {
        let text = String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let partial = !(lines.last?.isEmpty ?? true)
        lines.removeLast()  // the text after the last newline: empty, or a partial line
        return (lines, partial)
    }
}

/// A file opened for appending; every `append` is one `write` system call (no user-space buffer),
/// so each line reaches the OS as soon as it is logged.
final class AppendingFile {
    let path: String
    private var fd: Int32

    init(path: String) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw LogFiles.systemError(path, "cannot open for appending") }
    }

    func append(_ data: Data) throws { try LogFiles.writeAll(fd, data, path: path) }

    /// Forces the data to disk.
    func sync() { _ = fsync(fd) }

    func close() {
        if fd >= 0 {
            #if canImport(Glibc)
            _ = Glibc.close(fd)
            #else
            _ = Darwin.close(fd)
            #endif
            fd = -1
        }
    }

    deinit { close() }
}

/// Training history as CSV (`history.csv`): `epoch,step,<metric>,…`, one row per `log` call.
///
/// The header is fixed at the first write, with new metric names in sorted order. A metric first
/// seen later becomes a new column at the end: the whole file is rewritten atomically with empty
/// cells for the earlier rows. Values are written with full precision (Swift's shortest
/// representation that reads back exactly; `nan`, `inf`, `-inf` for non-finite values) and each
/// row is written as soon as it is logged. The file is RFC 4180 CSV, written and read by `Data.CSV`
/// (fields containing commas, quotes or line breaks are quoted).
///
/// Resuming: `CSVLogger(path:resume: true)` keeps the rows already there (dropping a partial last
/// line) and appends; call `truncate(afterStep:)` with the checkpoint's step first to drop rows
/// logged after it.
public final class CSVLogger {
    /// The CSV file written (e.g. `RUN_DIR/history.csv`).
    public let path: String
    /// The metric columns after `epoch` and `step`, in file order.
    public private(set) var columns: [String] = []
    private var file: AppendingFile?

    /// Opens `path`. Without `resume` an existing file is replaced (at the first write); with it,
    /// existing rows are kept and new rows appended under the existing header.
    public init(path: String, resume: Bool = false) throws {
        self.path = path
        if resume, let data = try LogFiles.read(path) {
            let (records, partial) = try Self.records(data, path: path)
            if let header = records.first {
                let names = header.fields
                guard names.count >= 2, names[0] == "epoch", names[1] == "step" else {
                    throw LogFileError(path: path, "not a history file: the header does not start with epoch,step")
                }
                columns = Array(names.dropFirst(2))
            }
            if partial { try rewrite(rows: try readRows()) }
            if !records.isEmpty { file = try AppendingFile(path: path) }
        }
    }

    /// Appends a row. Throws for an empty metric name or `epoch`/`step` as a metric name.
    public func log(epoch: Int, step: Int, metrics: [String: Double]) throws {
        for name in metrics.keys where name.isEmpty || name == "epoch" || name == "step" || name.contains("\n")
            || name.contains("\r") {
            throw LogFileError(path: path, "invalid metric name '\(name)'")
        }
        let newNames = metrics.keys.filter { !columns.contains($0) }.sorted()
        if file == nil {
            // First write: a fresh file with the header.
            columns += newNames
            try LogFiles.writeAtomically(Data((headerLine() + "\n").utf8), to: path)
            file = try AppendingFile(path: path)
        } else if !newNames.isEmpty {
            let rows = try readRows()
            columns += newNames
            try rewrite(rows: rows)
        }
        let row = Row(epoch: epoch, step: step, cells: columns.map { metrics[$0].map(Self.format) ?? "" })
        try file!.append(Data((row.line + "\n").utf8))
    }

    /// Drops every row whose step is greater than `step` (atomically), e.g. rows logged after the
    /// checkpoint a run resumes from, and with `fromEpoch`, every row of that epoch or later: a run
    /// killed between an epoch's row and that epoch's checkpoint logs the epoch again on resume.
    public func truncate(afterStep step: Int, fromEpoch epoch: Int? = nil) throws {
        guard FileManager.default.fileExists(atPath: path) else { return }
        let rows = try readRows()
        try rewrite(rows: rows.filter { $0.step <= step && $0.epoch < (epoch ?? Int.max) })
    }

    /// The rows in the file as metric dictionaries (empty cells left out), in file order.
    public func read() throws -> [(epoch: Int, step: Int, metrics: [String: Double])] {
        try readRows().map { row in
            var metrics: [String: Double] = [:]
            for (name, cell) in zip(columns, row.cells) where !cell.isEmpty { metrics[name] = Self.value(cell) }
            return (row.epoch, row.step, metrics)
        }
    }

    /// Forgets the file's rows and columns: the next `log` writes it afresh (header first).
    public func restart() {
        file?.close()
        file = nil
        columns = []
    }

    /// Closes the file. Log nothing after it: a later `log` would start the file afresh.
    public func close() {
        file?.close()
        file = nil
    }

    // MARK: - Internals

    struct Row {
        var epoch: Int
        var step: Int
        var cells: [String]
        var line: String { CSV.record(["\(epoch)", "\(step)"] + cells) }
    }

    func headerLine() -> String { CSV.record(["epoch", "step"] + columns) }

    /// The complete records of a history file (header first), and whether a partial one follows them
    /// (a write cut off by a crash).
    static func records(_ data: Data, path: String) throws -> (records: [CSV.Record], partial: Bool) {
        do {
            return try CSV.completeRecords(String(decoding: data, as: UTF8.self))
        } catch let error as CSV.ParseError {
            throw LogFileError(path: path, "not a history file: \(error)")
        }
    }

    /// The complete rows under the current header, each padded to the current columns.
    func readRows() throws -> [Row] {
        guard let data = try LogFiles.read(path) else { return [] }
        var rows: [Row] = []
        for record in try Self.records(data, path: path).records.dropFirst() where record.fields != [""] {
            let fields = record.fields
            guard fields.count >= 2, let epoch = Int(fields[0]), let step = Int(fields[1]) else {
                throw LogFileError(path: path, "line \(record.line) is not a history row: \(CSV.record(fields))")
            }
            var cells = Array(fields.dropFirst(2).prefix(columns.count))
            cells += Array(repeating: "", count: columns.count - cells.count)
            rows.append(Row(epoch: epoch, step: step, cells: cells))
        }
        return rows
    }

    /// Replaces the file with the header and `rows` (padded to the columns), then reopens it.
    func rewrite(rows: [Row]) throws {
        file?.close()
        var text = headerLine() + "\n"
        for var row in rows {
            row.cells += Array(repeating: "", count: columns.count - row.cells.count)
            text += row.line + "\n"
        }
        try LogFiles.writeAtomically(Data(text.utf8), to: path)
        file = try AppendingFile(path: path)
    }
}

extension CSVLogger {
    /// A value as a cell: Swift's shortest exact representation; `nan`, `inf`, `-inf` when not finite.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value > 0 ? "inf" : "-inf" }
        return "\(value)"
    }

    static func value(_ cell: String) -> Double? {
        switch cell.lowercased() {
        case "nan": return .nan
        case "inf", "+inf": return .infinity
        case "-inf": return -.infinity
        default: return Double(cell)
        }
    }
}
