import ArgumentParser
import Foundation
import Data
import Torch

/// Prints one compact JSON object (keys sorted) on its own line.
func printJSON(_ object: [String: Any]) {
    print(jsonString(object))
}

func jsonString(_ object: Any) -> String {
    let cleaned = sanitize(object)
    guard JSONSerialization.isValidJSONObject(cleaned),
          let data = try? JSONSerialization.data(withJSONObject: cleaned, options: [.sortedKeys, .withoutEscapingSlashes])
    else { return "{}" }
    return String(decoding: data, as: UTF8.self)
}

/// Replaces nil optionals (boxed in Any) with NSNull so JSONSerialization accepts them.
private func sanitize(_ value: Any) -> Any {
    let mirror = Mirror(reflecting: value)
    if mirror.displayStyle == .optional {
        guard let child = mirror.children.first else { return NSNull() }
        return sanitize(child.value)
    }
    if let dict = value as? [String: Any] { return dict.mapValues(sanitize) }
    if let array = value as? [Any] { return array.map(sanitize) }
    if let d = value as? Double, !d.isFinite { return NSNull() }
    return value
}

/// Prints aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data((message + "\n").utf8))
}

/// `--threads N` (1 to `Runtime.maxThreads`), or every available core when not given.
func applyThreads(_ threads: Int?) throws {
    guard let threads else { Runtime.useAvailableCores(); return }
    guard (1...Runtime.maxThreads).contains(threads) else {
        throw ValidationError("--threads must be 1 to \(Runtime.maxThreads) (4 × this machine's \(Runtime.coreCount) cores), got \(threads)")
    }
    try Runtime.setNumThreads(threads)
}

/// `--workers N` (0 to `Runtime.maxThreads`).
func checkWorkers(_ workers: Int) throws {
    guard (0...Runtime.maxThreads).contains(workers) else {
        throw ValidationError("--workers must be 0 to \(Runtime.maxThreads) (4 × this machine's \(Runtime.coreCount) cores), got \(workers)")
    }
}

/// Prints an `Encodable` value as one compact JSON object (keys sorted) on its own line.
func printEncodedJSON<T: Encodable>(_ value: T) {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    do {
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    } catch {
        printError("error: cannot encode the JSON output: \(error)")
    }
}

/// Runs `body`; with `--on-bad-image fail`, a file that cannot be decoded becomes an error naming the flag.
func badImageContext<T>(_ strict: Bool, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DataError where strict {
        throw ValidationError("--on-bad-image fail: \(error)")
    }
}
