import Foundation

/// The per-epoch record of a run, read from its `events.jsonl` (the `epoch` events): metrics, the
/// phase each epoch trained in, and how long it took.
public struct RunHistory: Sendable {
    /// One finished epoch.
    public struct Epoch: Sendable {
        /// 1-based.
        public var number: Int
        /// 1, or 2 in a two-phase run's fine-tuning phase.
        public var phase: Int
        /// Seconds the epoch took (training and validation).
        public var seconds: Double
        /// Training metrics under their names, validation metrics as `val_…`, and `lr`.
        public var metrics: [String: Double]
    }

    /// The epochs in order; an epoch logged twice (a resumed run) keeps its last record.
    public var epochs: [Epoch]

    /// Reads `path` (an `events.jsonl`); a missing file is an empty history. Lines that are not JSON
    /// objects (a line cut off by a crash) are skipped.
    public init(eventsFile path: String) throws {
        guard FileManager.default.fileExists(atPath: path) else { epochs = []; return }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var byEpoch: [Int: Epoch] = [:]
        for line in text.split(separator: "\n") {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  object["event"] as? String == "epoch", let epoch = object["epoch"] as? Int,
                  (0..<Int(Int32.max)).contains(epoch) else { continue }  // a damaged line: Int.max + 1 trapped
            let info = object["info"] as? [String: String] ?? [:]
            var metrics: [String: Double] = [:]
            for (key, value) in object["metrics"] as? [String: Any] ?? [:] {
                if let number = value as? NSNumber { metrics[key] = number.doubleValue }
                else if let text = value as? String, let number = Double(text) { metrics[key] = number }   // "NaN", "Infinity"
            }
            byEpoch[epoch] = Epoch(number: epoch + 1, phase: Int(info["phase"] ?? "") ?? 1,
                                   seconds: Double(info["seconds"] ?? "") ?? 0, metrics: metrics)
        }
        epochs = byEpoch.keys.sorted().map { byEpoch[$0]! }
    }

    /// Total seconds of the logged epochs.
    public var seconds: Double { epochs.map(\.seconds).reduce(0, +) }

    /// The epochs (1-based) at which a new phase starts.
    public var phaseStarts: [Int] {
        zip(epochs, epochs.dropFirst()).compactMap { $0.phase != $1.phase ? $1.number : nil }
    }

    /// The learning curve of `metric` ("loss", "accuracy", "auc", "lr"): train values under their name,
    /// validation values from `val_<metric>` (for AUC also `val_macro_auc`), with the phase starts marked.
    public func curve(_ metric: String, title: String? = nil) -> String? {
        var train: [Int: [String: Double]] = [:], validation: [Int: [String: Double]] = [:]
        for e in epochs {
            if let v = e.metrics[metric] ?? (metric == "auc" ? e.metrics["macro_auc"] : nil) { train[e.number] = [metric: v] }
            if let v = e.metrics["val_" + metric] ?? (metric == "auc" ? e.metrics["val_macro_auc"] : nil) {
                validation[e.number] = [metric: v]
            }
        }
        let markers = phaseStarts.map { start in
            (x: Double(start) - 0.5, label: "phase \(epochs.first { $0.number == start }?.phase ?? 2)")
        }
        return Plots.learningCurve(metric: metric, train: train, validation: validation, title: title, markers: markers)
    }
}
