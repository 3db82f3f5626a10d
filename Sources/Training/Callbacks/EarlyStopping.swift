import Foundation
import NN
import Torch

/// Stops training when a monitored metric stops improving (Keras' `EarlyStopping`).
///
/// After each epoch the metric (e.g. `val_loss`, `val_accuracy`, `loss`) is compared with the best
/// so far; an improvement must beat it by more than `minDelta`. After `patience` epochs in a row
/// without improvement the callback throws `TrainingControl` (a clean stop). With
/// `restoreBestWeights`, the model's weights and buffers from the best epoch are loaded back
/// before stopping (they are kept in memory, so they do not survive a resume: a resumed run
/// restores the best weights seen since it resumed). The best value and the patience count are
/// saved in checkpoints.
public final class EarlyStopping: StatefulCallback {
    /// The metric watched, e.g. `val_loss` (Keras' `monitor`).
    public let monitor: String
    /// Epochs without improvement tolerated before stopping (0: stop at the first one, as in Keras).
    public let patience: Int
    /// Load the best epoch's weights back when stopping (Keras' `restore_best_weights`).
    public let restoreBestWeights: Bool
    public private(set) var tracker: MetricTracker
    /// The epoch (0-based) after which training was stopped.
    public private(set) var stoppedEpoch: Int?
    /// The epoch whose weights were restored.
    public private(set) var restoredEpoch: Int?
    private var bestWeights: StateDict?
    private var bestWeightsEpoch: Int?

    /// Keras' defaults: `val_loss`, mode from the name, patience 0, no minimum delta, weights not
    /// restored. A negative patience counts as 0.
    public init(monitor: String = "val_loss", mode: MonitorMode = .auto, patience: Int = 0, minDelta: Double = 0,
                restoreBestWeights: Bool = false) {
        self.monitor = monitor
        self.patience = Swift.max(0, patience)
        self.restoreBestWeights = restoreBestWeights
        tracker = MetricTracker(metric: monitor, mode: mode, minDelta: minDelta)
    }

    /// At each `epochEnd`: updates the tracker and throws `TrainingControl.stopBecause` once patience
    /// runs out; throws `TrainingError.unknownMetric` when the epoch has no `monitor` metric.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        guard case .epochEnd(let result) = event else { return }
        let value = try tracker.value(in: result.metrics)
        if tracker.update(value, epoch: result.epoch) {
            if restoreBestWeights {
                bestWeights = try Self.copy(trainer.model.stateDict())
                bestWeightsEpoch = result.epoch
            }
            return
        }
        guard tracker.wait >= patience else { return }
        stoppedEpoch = result.epoch
        if restoreBestWeights, let bestWeights {
            try trainer.model.load(bestWeights)
            restoredEpoch = bestWeightsEpoch
        }
        let best = tracker.best.map { String(format: "%.6g", $0) } ?? "none"
        let at = tracker.bestEpoch.map { " at epoch \($0 + 1)" } ?? ""
        throw TrainingControl.stopBecause("early stopping: \(monitor) did not improve for \(tracker.wait) "
            + "epoch\(tracker.wait == 1 ? "" : "s") (best \(best)\(at))")
    }

    static func copy(_ dict: StateDict) throws -> StateDict {
        var out = StateDict()
        try withNoGrad {
            for (key, tensor) in dict { out[key] = try tensor.detach().clone() }
        }
        return out
    }

    // MARK: StatefulCallback

    /// "early_stopping:<monitor>".
    public var stateKey: String { "early_stopping:\(monitor)" }

    struct Saved: Codable {
        var tracker: MetricTracker
        var stoppedEpoch: Int?
    }

    /// The tracker (best value, best epoch, wait count) and `stoppedEpoch`, as JSON.
    public func saveState() throws -> String {
        try TrainingJSON.string(Saved(tracker: tracker, stoppedEpoch: stoppedEpoch))
    }

    /// Restores what `saveState` wrote, unless it tracked another metric or mode (then it is ignored).
    public func restoreState(_ state: String) throws {
        let saved = try TrainingJSON.decode(Saved.self, state)
        guard saved.tracker.metric == tracker.metric, saved.tracker.mode == tracker.mode else { return }
        tracker = saved.tracker
        stoppedEpoch = saved.stoppedEpoch
    }
}
