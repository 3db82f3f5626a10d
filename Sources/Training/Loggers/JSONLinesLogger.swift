import Foundation

/// Events as JSON lines (`events.jsonl`): one JSON object per line, written as soon as it is logged.
///
/// `log(event:epoch:step:metrics:info:)` writes
/// `{"epoch":1,"event":"validation","info":{…},"metrics":{"accuracy":0.91,"loss":0.25},"step":500,"wall_time":1700000000.5}`
/// (keys sorted; `epoch`, `step` and `info` only when given). Numbers keep full precision;
/// non-finite metric values are written as the strings `"NaN"`, `"Infinity"` and `"-Infinity"`
/// (strict JSON has no literal for them). Any `Encodable` value that encodes as an object can be
/// logged with `log(_:)`.
///
/// Resuming: `JSONLinesLogger(path:resume: true)` keeps the existing lines (dropping a partial last
/// line) and appends; `truncate(afterStep:)` drops events whose `step` is past a checkpoint.
public final class JSONLinesLogger {
    /// The JSON-lines file written (e.g. `RUN_DIR/events.jsonl`).
    public let path: String
    private var file: AppendingFile
    private let encoder: JSONEncoder

    /// Opens `path`; without `resume` an existing file is replaced by an empty one.
    public init(path: String, resume: Bool = false) throws {
        self.path = path
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        if resume, let data = try LogFiles.read(path) {
            let (lines, partial) = LogFiles.lines(data)
            if partial { try LogFiles.writeAtomically(Data(lines.map { $0 + "\n" }.joined().utf8), to: path) }
        } else {
            try LogFiles.writeAtomically(Data(), to: path)
        }
        file = try AppendingFile(path: path)
    }

    struct Event: Encodable {
        var event: String
        var epoch: Int?
        var step: Int?
        var metrics: [String: Double]
        var info: [String: String]?
        var wallTime: Double

        enum CodingKeys: String, CodingKey {
            case event, epoch, step, metrics, info
            case wallTime = "wall_time"
        }
    }

    /// Logs one event: its kind (`train`, `validation`, `checkpoint`, …), position, metric values
    /// and free-form string details.
    public func log(event: String, epoch: Int? = nil, step: Int? = nil, metrics: [String: Double] = [:],
                    info: [String: String] = [:], wallTime: Date = Date()) throws {
        try log(Event(event: event, epoch: epoch, step: step, metrics: metrics, info: info.isEmpty ? nil : info,
                      wallTime: wallTime.timeIntervalSince1970))
    }

    /// Logs any value that encodes as a JSON object, on one line.
    public func log<T: Encodable>(_ value: T) throws {
        let data = try encoder.encode(value)
        guard data.first == UInt8(ascii: "{") else {
            throw LogFileError(path: path, "a JSON-lines event must be an object, got \(String(decoding: data, as: UTF8.self))")
        }
        try file.append(data + Data([UInt8(ascii: "\n")]))
    }

    /// Drops (atomically) every event whose top-level `step` is greater than `step`; events without
    /// a step are kept. With `fromEpoch`, the events of that epoch or later that a resumed run logs
    /// again are dropped too: per-epoch events (`epochEvents`), and with `atEpochStart` the phase
    /// change logged at that epoch's start.
    public func truncate(afterStep step: Int, fromEpoch epoch: Int? = nil, atEpochStart: Bool = false) throws {
        guard let data = try LogFiles.read(path) else { return }
        let kept = LogFiles.lines(data).lines.filter { line in
            guard let eventStep = Self.step(of: line) else { return true }
            guard eventStep <= step else { return false }
            guard let epoch, let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let name = object["event"] as? String, let eventEpoch = object["epoch"] as? Int,
                  eventEpoch >= epoch else { return true }
            return !(Self.epochEvents.contains(name) || (atEpochStart && name == "phase_change"))
        }
        file.close()
        try LogFiles.writeAtomically(Data(kept.map { $0 + "\n" }.joined().utf8), to: path)
        file = try AppendingFile(path: path)
    }

    /// The events in the file, parsed with `JSONSerialization`.
    public func read() throws -> [[String: Any]] {
        guard let data = try LogFiles.read(path) else { return [] }
        return try LogFiles.lines(data).lines.filter { !$0.isEmpty }.enumerated().map { i, line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw LogFileError(path: path, "line \(i + 1) is not a JSON object")
            }
            return object
        }
    }

    /// Closes the file.
    public func close() { file.close() }

    /// Events logged once per epoch, at its end.
    public static let epochEvents: Set<String> = ["epoch", "validation"]

    static func step(of line: String) -> Int? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
        if let n = object["step"] as? Int { return n }
        if let n = object["step"] as? Double { return Int(n) }
        return nil
    }
}
