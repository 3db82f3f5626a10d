import Foundation
import NN
import TensorIO
import Torch

/// Stops training when a monitored metric stops improving (Keras' `EarlyStopping`).
///
/// After each epoch the metric (e.g. `val_loss`, `val_accuracy`, `loss`) is compared with the best
/// so far; an improvement must beat it by more than `minDelta`. After `patience` epochs in a row
/// without improvement the callback throws `TrainingControl` (a clean stop). With
/// `restoreBestWeights`, the model's weights and buffers from the best epoch are loaded back when
/// the stopped `fit` ends (at `fitEnd`, so that checkpoints written at the stopping epoch hold that
/// epoch's own weights). They are kept in memory from the best epoch on; a resumed run whose best
/// epoch came before the resume reads them from `bestCheckpoint` (the `best/` checkpoint of a
/// `ModelCheckpoint` watching the same metric). The best value and the patience count are saved
/// in checkpoints: place this callback before a `ModelCheckpoint`, so that the checkpoint of an
/// epoch holds the count after that epoch.
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
    /// Where the best epoch's weights are found when they are not in memory (after a resume): a
    /// checkpoint directory (see `Checkpoint`) whose epoch is the best one. Nil: memory only.
    public var bestCheckpoint: String?
    private var bestWeights: StateDict?
    private var bestWeightsEpoch: Int?
    private var stoppedThisFit = false

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
    /// runs out; throws `TrainingError.unknownMetric` when the epoch has no `monitor` metric. At the
    /// `fitEnd` of a fit it stopped, loads the best weights back (with `restoreBestWeights`).
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart:
            stoppedThisFit = false
        case .epochEnd(let result):
            try epochEnded(result, trainer: trainer)
        case .phaseChange:
            tracker.restartWait()
        case .fitEnd:
            if stoppedThisFit && restoreBestWeights { try restoreBest(into: trainer) }
        default:
            break
        }
    }

    private func epochEnded(_ result: EpochResult, trainer: Trainer) throws {
        let value = try tracker.value(in: result.metrics)
        if tracker.update(value, epoch: result.epoch) {
            if restoreBestWeights {
                bestWeights = try Self.copy((watchesEMA(trainer) ? trainer.ema?.state : nil) ?? trainer.model.stateDict())
                bestWeightsEpoch = result.epoch
            }
            return
        }
        guard tracker.wait >= patience else { return }
        let waited = "\(monitor) did not improve for \(tracker.wait) epoch\(tracker.wait == 1 ? "" : "s")"
        // In phase 1 of a two-phase run, phase 2 (the point of the recipe) starts now instead: the
        // whole run ended there, the backbone never fine-tuned (stop 53). Its patience counts anew.
        if trainer.requestPhaseTwo(because: "early stopping in phase 1: \(waited)") { return }
        stoppedEpoch = result.epoch
        stoppedThisFit = true
        let best = tracker.best.map { String(format: "%.6g", $0) } ?? "none"
        let at = tracker.bestEpoch.map { " at epoch \($0 + 1)" } ?? ""
        throw TrainingControl.stopBecause("early stopping: \(waited) (best \(best)\(at))")
    }

    /// Whether the watched metric is the EMA's (`val_loss_ema`) in a trainer that keeps one: its
    /// best weights, and those it restores, are then the EMA's.
    public func watchesEMA(_ trainer: Trainer) -> Bool {
        monitor.hasSuffix("_ema") && trainer.ema != nil
    }

    /// Loads the best epoch's weights: from memory, else from `bestCheckpoint` when it holds that
    /// epoch. Without either (a resumed run with no such checkpoint) the weights stay the last epoch's.
    /// When the metric is the EMA's, the EMA's weights of that epoch go into both the model and the EMA.
    private func restoreBest(into trainer: Trainer) throws {
        guard let epoch = tracker.bestEpoch else { return }
        let ema = watchesEMA(trainer) ? trainer.ema : nil
        var weights: StateDict?
        if let bestWeights, bestWeightsEpoch == epoch {
            weights = bestWeights
        } else if let bestCheckpoint, let found = Checkpoint.locate(bestCheckpoint),
                  try Checkpoint.readManifest(found).state.epoch == epoch + 1 {
            weights = try SafeTensors.loadCopy(found + "/" + (ema == nil ? Checkpoint.modelFile : Checkpoint.emaFile))
        }
        guard let weights else { return }
        try trainer.model.load(weights)
        try ema?.load(weights)
        restoredEpoch = epoch
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
