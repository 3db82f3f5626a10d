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
    public let monitor: String
    public let patience: Int
    public let restoreBestWeights: Bool
    public private(set) var tracker: MetricTracker
    /// The epoch (0-based) after which training was stopped.
    public private(set) var stoppedEpoch: Int?
    /// The epoch whose weights were restored.
    public private(set) var restoredEpoch: Int?
    private var bestWeights: StateDict?
    private var bestWeightsEpoch: Int?

    public init(monitor: String = "val_loss", mode: MonitorMode = .auto, patience: Int = 0, minDelta: Double = 0,
                restoreBestWeights: Bool = false) {
        self.monitor = monitor
        self.patience = Swift.max(0, patience)
        self.restoreBestWeights = restoreBestWeights
        tracker = MetricTracker(metric: monitor, mode: mode, minDelta: minDelta)
    }

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

    public var stateKey: String { "early_stopping:\(monitor)" }

    struct Saved: Codable {
        var tracker: MetricTracker
        var stoppedEpoch: Int?
    }

    public func saveState() throws -> String {
        try TrainingJSON.string(Saved(tracker: tracker, stoppedEpoch: stoppedEpoch))
    }

    public func restoreState(_ state: String) throws {
        let saved = try TrainingJSON.decode(Saved.self, state)
        guard saved.tracker.metric == tracker.metric, saved.tracker.mode == tracker.mode else { return }
        tracker = saved.tracker
        stoppedEpoch = saved.stoppedEpoch
    }
}
