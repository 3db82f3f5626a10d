import ArgumentParser
import AtomicFiles
import Foundation
import Data
import Torch

/// Prints aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    printLine(line(header))
    for row in rows { printLine(line(row)) }
}

/// Throws unless `path` is missing or a file finetune wrote (`isOurs` of its first 4 KiB, as text,
/// checks how the file begins, not merely that it mentions some words): an output flag replaces only
/// its own files. A folder, a FIFO or a device is refused without being read (reading a folder
/// trapped; a FIFO blocked until a writer came).
func checkReplaceable(_ path: String, flag: String, what: String, isOurs: (String) -> Bool) throws {
    try checkOutputFolder(path, flag: flag)
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
    guard !isDirectory.boolValue else { throw ValidationError("\(flag) \(path) is a folder; give a file name") }
    try checkRegularIfPresent(path, flag: flag)
    let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    let handle = try? FileHandle(forReadingFrom: URL(fileURLWithPath: target))
    defer { try? handle?.close() }
    let head = (try? handle?.read(upToCount: 4096)) ?? nil
    guard let head, isOurs(String(decoding: head, as: UTF8.self)) else {
        throw ValidationError("\(flag) \(path) exists and is not \(what); choose another file")
    }
}

/// An existing output path (its link's target) is a regular file: reading a FIFO to tell whether
/// finetune wrote it waited for a writer for good (`export --out fifo`, `--out /dev/stdout` into a
/// pipe: probe AK), and writing over a device is no output.
func checkRegularIfPresent(_ path: String, flag: String) throws {
    let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
    guard let type = try? FileManager.default.attributesOfItem(atPath: target)[.type] as? FileAttributeType,
          type != .typeRegular, type != .typeDirectory else { return }
    throw ValidationError("\(flag) \(path) exists and is not a regular file; choose another file")
}

/// The folder an output file goes into exists, checked before any work (a report into a missing
/// folder failed after its whole evaluation), and `path` is not a symbolic link to nothing (writing
/// would replace the user's link).
func checkOutputFolder(_ path: String, flag: String) throws {
    guard !path.hasSuffix("/") else { throw ValidationError("\(flag) \(path) names a folder; give a file name") }
    try checkNotADanglingLink(path, flag: flag)
    if let why = OutputFolder.whyTooLong(path) { throw ValidationError("\(flag): \(why)") }
    let folder = (path as NSString).deletingLastPathComponent
    var isDirectory: ObjCBool = false
    if !folder.isEmpty, !(FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) && isDirectory.boolValue) {
        throw ValidationError("\(flag): " + (FileManager.default.fileExists(atPath: folder) ? "\(folder) is not a folder"
                                                                                            : "the folder \(folder) does not exist"))
    }
    if let why = OutputFolder.whyNotWritable(folder.isEmpty ? "." : folder) { throw ValidationError("\(flag): \(why)") }
}

/// `path` is not a symbolic link whose target does not exist: an output written there replaced the
/// link (a review folder's failure removed it), and "A file with the same name already exists" said
/// nothing of why.
func checkNotADanglingLink(_ path: String, flag: String) throws {
    guard let target = RegularFile.danglingLinkTarget(path) else { return }
    throw ValidationError("\(flag) \(path) is a symbolic link to \(target), which does not exist; create its target or give another path")
}

/// A folder to create (with its missing parents) can be: no part of its path is a file and the part
/// that exists may be written in (`OutputFolder`), checked before any work (lr-find, pseudo-label and
/// convert failed after theirs, with Cocoa's error 512, or on a read-only disk).
func checkOutputDirectory(_ path: String, flag: String) throws {
    try checkNotADanglingLink(path, flag: flag)
    if let why = OutputFolder.whyUnusable(path) { throw ValidationError("\(flag): \(why)") }
}

/// `DATA` (a class-folder root or a `path,label` CSV file) exists, and `--image-root` goes with a CSV.
func checkDataArgument(_ data: String, imageRoot: String?) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory) else {
        throw ValidationError("DATA \(data) does not exist (expected a class-folder root or a path,label CSV file)")
    }
    if imageRoot != nil, isDirectory.boolValue {
        throw ValidationError("--image-root only applies to a CSV file as DATA; \(data) is a folder")
    }
}

/// `message` and a line feed on standard error, as a terminal can show it harmlessly
/// (`StandardStreams.displayable`: a path or name holding ESC cannot drive the terminal).
func printError(_ message: String) {
    StandardStreams.writeError(StandardStreams.displayable(message) + "\n")
}

/// `text` and a line feed on standard output (after what `print` buffered), as a terminal can show it
/// harmlessly (`StandardStreams.displayable`). Every line the CLI prints for a reader goes through it
/// or `printError`; JSON (`printEncodedJSON`) escapes control characters itself.
func printLine(_ text: String) {
    print(StandardStreams.displayable(text))
}

/// `--threads N` (1 to `Runtime.maxThreads`), or every core this process may use when not given.
func applyThreads(_ threads: Int?) throws {
    guard let threads else { Runtime.useAvailableCores(); return }
    guard (1...Runtime.maxThreads).contains(threads) else {
        throw ValidationError("--threads must be 1 to \(Runtime.maxThreads) (4 × \(Runtime.coresDescription)), got \(threads)")
    }
    try Runtime.setNumThreads(threads)
}

/// `--workers N` (0 to `Runtime.maxThreads`).
func checkWorkers(_ workers: Int) throws {
    guard (0...Runtime.maxThreads).contains(workers) else {
        throw ValidationError("--workers must be 0 to \(Runtime.maxThreads) (4 × \(Runtime.coresDescription)), got \(workers)")
    }
}

/// Prints an `Encodable` value as one compact JSON object (keys sorted) on its own line. Keys are the
/// coding keys in snake_case (`imagesPerSecond` is `images_per_second`; a key already in snake_case,
/// and a dictionary's keys, stay as they are), so an output type lists its fields and lets `Encodable`
/// be synthesized, with `CodingKeys` only for a key that is not its field's name (`run_dir`, `class`).
/// A value that cannot be encoded (a non-finite number that was not turned into `null`, say) is an
/// error: it is reported on standard error and the command exits with status 1, rather than printing
/// something that is not the documented object.
func printEncodedJSON<T: Encodable>(_ value: T) {
    do {
        print(String(decoding: try jsonOutputEncoder().encode(value), as: UTF8.self))
    } catch {
        Finetune.exit(withError: JSONOutputError(type: String(describing: T.self), underlying: error))
    }
}

/// The encoder of every `--json` object (see `printEncodedJSON`).
func jsonOutputEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.dateEncodingStrategy = .iso8601
    return encoder
}

/// A failure of the work a command did (a run that diverged, an image that cannot be decoded under
/// `--on-bad-image fail`, a worker that cannot start), not of its command line: the parser prints
/// "Error: …" without the usage text and exits with status 1, where a `ValidationError` means
/// status 64 (EX_USAGE) and the usage.
struct CommandFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Why `printEncodedJSON` printed nothing.
struct JSONOutputError: Error, CustomStringConvertible {
    var type: String
    var underlying: Error
    var description: String { "cannot encode the JSON output (\(type)): \(underlying)" }
}

/// A number of a `--json` object: `null` when it is not finite (JSON has no NaN or infinity), where
/// synthesized `Encodable` would fail the whole output.
@propertyWrapper
struct JSONNumber: Encodable {
    var wrappedValue: Double

    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        if wrappedValue.isFinite { try container.encode(wrappedValue) } else { try container.encodeNil() }
    }
}

/// An optional value of a `--json` object whose key is always there: `null` when there is no value,
/// where synthesized `Encodable` would leave the key out.
@propertyWrapper
struct NullIfMissing<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    func encode(to encoder: Encoder) throws { try wrappedValue.encode(to: encoder) }
}

extension KeyedEncodingContainer {
    /// `value`, or `null` when there is none: the `--json` objects keep every key (synthesized
    /// `Encodable` would leave the key out).
    mutating func encodeOrNull<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }

    /// A number, or `null` when it is missing or not finite (JSON has no NaN or infinity).
    mutating func encodeNumber(_ value: Double?, forKey key: Key) throws {
        try encodeOrNull(value.flatMap { $0.isFinite ? $0 : nil }, forKey: key)
    }

    /// A number (`null` when not finite), or no key at all when there is no value.
    mutating func encodeNumberIfPresent(_ value: Double?, forKey key: Key) throws {
        guard let value else { return }
        try encodeNumber(value, forKey: key)
    }
}

/// Runs `body`; with `--on-bad-image fail`, a file that cannot be decoded becomes an error naming the flag.
func badImageContext<T>(_ strict: Bool, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DataError where strict {
        throw CommandFailure("--on-bad-image fail: \(error)")
    }
}
