/// The best value of a monitored metric and how long since it improved (Keras' rule: an
/// improvement must beat the best by more than `minDelta`; NaN never improves).
public struct MetricTracker: Codable, Equatable, Sendable {
    /// The metric's name as it appears in an epoch's metrics, e.g. `val_loss`.
    public let metric: String
    /// `min` or `max` (resolved from `auto`).
    public let mode: MonitorMode
    /// The margin an improvement must exceed (stored as its absolute value).
    public let minDelta: Double
    public private(set) var best: Double?
    public private(set) var bestEpoch: Int?
    /// Epochs since the last improvement.
    public private(set) var wait = 0

    /// A tracker with no best value yet; `auto` is resolved from the metric's name.
    public init(metric: String, mode: MonitorMode = .auto, minDelta: Double = 0) {
        self.metric = metric
        self.mode = mode.resolved(for: metric)
        self.minDelta = Swift.abs(minDelta)
    }

    /// Whether `value` beats the best by more than `minDelta` (the first non-NaN value always does).
    public func isImprovement(_ value: Double) -> Bool {
        guard !value.isNaN else { return false }
        guard let best else { return true }
        return mode == .max ? value - minDelta > best : value + minDelta < best
    }

    /// Records an epoch's value; returns whether it improved.
    @discardableResult
    public mutating func update(_ value: Double, epoch: Int) -> Bool {
        if isImprovement(value) {
            best = value
            bestEpoch = epoch
            wait = 0
            return true
        }
        wait += 1
        return false
    }

    /// Starts the count of epochs without improvement again, keeping the best value: a new phase of
    /// training gets its own patience, measured against the best of the run.
    public mutating func restartWait() {
        wait = 0
    }

    /// The metric's value in `metrics`, or `TrainingError.unknownMetric`.
    public func value(in metrics: [String: Double]) throws -> Double {
        guard let v = metrics[metric] else {
            throw TrainingError.unknownMetric(metric: metric, available: Array(metrics.keys))
        }
        return v
    }
}
