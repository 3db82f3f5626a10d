import Foundation

// Events the trainer emits and the callback protocol (in the style of swift-models' TrainingLoop).
// The metric tracking shared by the callbacks is in MetricTracker.swift, the Ctrl-C helper in SignalStop.swift.

/// What `fit` is about to do.
public struct FitInfo: Sendable {
    /// The epoch the run stops at (epochs are counted from 0; the run covers `startEpoch..<epochs`).
    public var epochs: Int
    /// The first epoch this `fit` trains (0 for a fresh run; the completed epochs of a resumed one).
    public var startEpoch: Int
    /// The global step the run starts from (0 for a fresh run).
    public var startStep: Int
    /// The batch of `startEpoch` the run resumes at (0 at an epoch boundary).
    public var startBatch: Int
    /// Batches of the training loader per epoch.
    public var batchesPerEpoch: Int
    /// True when the trainer was restored from a checkpoint (or has trained before).
    public var resumed: Bool
    /// Whether `fit` was given validation data (then `val_*` metrics follow every epoch).
    public var hasValidation: Bool
    /// The epochs a resumed run was to train before this `fit` (its checkpoint's); nil for a fresh run or
    /// an older checkpoint. Another value than `epochs` means the resume changed the run's length, and
    /// the learning-rate schedule now spans the new one.
    public var previousEpochs: Int? = nil
}

/// One optimizer step.
public struct BatchResult: Sendable {
    /// The epoch (0-based) and the batch's number within it.
    public var epoch: Int
    /// The batch's number within its epoch (0-based; `Batch.number`).
    public var batch: Int
    /// The global step count after this step (1 for the first step of a run).
    public var step: Int
    /// Images in the batch (fewer than the batch size when files were skipped, or in the last batch;
    /// 0 on a data-parallel rank that had no image of a batch the other ranks trained).
    public var samples: Int
    /// The batch's mean loss (as minimised: label smoothing and class weights included); NaN when
    /// `samples` is 0.
    public var loss: Double
    /// The batch's accuracy, a fraction in [0, 1] (argmax, or logit > 0 in binary mode).
    public var accuracy: Double
    /// The learning rate of each parameter group for this step.
    public var learningRates: [Double]
    /// The momentum (SGD's, RMSprop's, or Adam's β1) of the last parameter group for this step, where
    /// the schedule cycles it (`--lr-schedule onecycle`); nil otherwise.
    public var momentum: Double?
    /// The global gradient norm before clipping (only when clipping is on).
    public var gradientNorm: Double?
    /// The epoch's running mean loss and accuracy so far.
    public var epochLoss: Double
    /// The epoch's running accuracy so far, a fraction in [0, 1].
    public var epochAccuracy: Double
    /// Whether the optimizer stepped after this batch (always, unless gradients are accumulated over
    /// several batches: then only after the last batch of each group).
    public var optimizerStepped = true
}

/// The end of an epoch: training metrics (`loss`, `accuracy`, `lr`) and, with validation data,
/// the validation report's scalars prefixed `val_` (`val_loss`, `val_accuracy`,
/// `val_top5_accuracy`, `val_auc`, `val_macro_f1`, …).
public struct EpochResult {
    /// The epoch that ended (0-based).
    public var epoch: Int
    /// The global step at the end of the epoch.
    public var step: Int
    /// The recipe phase the epoch trained in: 1, or 2 after a two-phase switch.
    public var phase: Int
    /// The epoch's metrics by name, as written to `history.csv` (see the type's description).
    public var metrics: [String: Double]
    /// The full validation report (per-class metrics, confusion matrix); nil without validation data.
    public var validation: EvaluationReport?
    /// Wall time of the epoch (training and validation).
    public var seconds: Double
    /// Whether the trainer's monitored metric improved this epoch.
    public var improved: Bool
    /// Whether the epoch trained (and validated) on cached backbone features (`Trainer.featureCache`).
    public var usedFeatureCache = false
}

/// The switch to phase 2 of a two-phase recipe.
public struct PhaseChange: Sendable {
    /// The new phase (2).
    public var phase: Int
    /// The first epoch of phase 2 (0-based).
    public var epoch: Int
    /// The global step at the switch (the schedule restarts from here).
    public var step: Int
    /// `state_dict` keys of the parameters that train in phase 2.
    public var trainableParameters: [String]
    /// Layer groups still frozen in phase 2 (empty when everything was unfrozen).
    public var frozenScopes: [String]
    /// Whether optimizer state of parameters trained before was carried into the new optimizer.
    public var carriedOptimizerState: Bool
    /// Why the state was not carried, when it was not.
    public var note: String?
    /// Why phase 2 started before its trigger (`Trainer.requestPhaseTwo`), nil when the trigger started it.
    public var reason: String? = nil
}

/// How `fit` ended.
public enum FitStatus: Equatable, Sendable, CustomStringConvertible {
    /// All epochs ran.
    case completed
    /// A callback (or `requestStop`) stopped the run; the trainer is in a consistent state.
    case stopped(reason: String)
    /// SIGINT/SIGTERM (or `SignalStop.trigger`): a resumable checkpoint was written to `checkpoint`
    /// when a checkpoint directory is configured.
    case interrupted(checkpoint: String?)
    /// The loss of optimizer step `step` (1-based) was NaN or infinite: training stopped before
    /// applying it, and no checkpoint was written after the last good one.
    case diverged(step: Int, loss: Double)

    /// The status as one word: "completed", "stopped", "interrupted" or "diverged" (also
    /// `TrainingState.status` and the run summary's `status`).
    public var name: String {
        switch self {
        case .completed: return "completed"
        case .stopped: return "stopped"
        case .interrupted: return "interrupted"
        case .diverged: return "diverged"
        }
    }

    /// The status with its detail, e.g. "stopped: early stopping: val_loss did not improve …" or
    /// "diverged at step 12 (loss nan)".
    public var description: String {
        switch self {
        case .completed: return "completed"
        case .stopped(let reason): return "stopped: \(reason)"
        case .interrupted(let path): return "interrupted" + (path.map { " (checkpoint \($0))" } ?? "")
        case .diverged(let step, let loss): return "diverged at step \(step) (loss \(Self.describe(loss: loss)))"
        }
    }

    /// A diverged loss as people read it: "NaN", "+infinity" or "-infinity" (Swift prints a NaN with
    /// its payload, e.g. "-nan(0x3e00000000000)"), else the number.
    public static func describe(loss: Double) -> String {
        if loss.isNaN { return "NaN" }
        if loss.isInfinite { return loss > 0 ? "+infinity" : "-infinity" }
        return "\(loss)"
    }
}

/// What `fit` returns.
public struct FitResult {
    /// How the run ended.
    public var status: FitStatus
    /// Epochs completed in total (including those before a resume).
    public var epochs: Int
    /// Optimizer steps taken in total (including those before a resume).
    public var globalStep: Int
    /// One row per completed epoch, resumed epochs included.
    public var history: [HistoryRow]
    /// The trainer's monitored metric: its name, mode, best value and epoch.
    public var best: MetricTracker?
}

/// The trainer's events, in order: `fitStart`, then per epoch `epochStart`, `batchStart`/`batchEnd`
/// per batch, `validationStart`/`validationEnd` (with validation data), `epochEnd`; `phaseChange`
/// before the first epoch of phase 2; finally `fitEnd` (also after a stop or interrupt).
public enum TrainingEvent {
    /// Before the first epoch.
    case fitStart(FitInfo)
    /// An epoch begins (`resumedAtBatch` > 0 when a run resumes mid-epoch).
    case epochStart(epoch: Int, resumedAtBatch: Int)
    /// A training batch is about to run; `step` is the global step before it.
    case batchStart(epoch: Int, batch: Int, step: Int)
    /// After the optimizer step of a batch.
    case batchEnd(BatchResult)
    /// Before the validation pass of `epoch`.
    case validationStart(epoch: Int)
    /// After the validation pass, with its report.
    case validationEnd(epoch: Int, report: EvaluationReport)
    /// After an epoch, its validation and its history row.
    case epochEnd(EpochResult)
    /// Phase 2 of a two-phase recipe begins (after unfreezing and rebuilding the optimizer).
    case phaseChange(PhaseChange)
    /// `fit` is about to return (after completion, a stop, an interrupt or divergence).
    case fitEnd(FitResult)

    /// A short name for logs: `fit_start`, `batch_end`, ….
    public var name: String {
        switch self {
        case .fitStart: return "fit_start"
        case .epochStart: return "epoch_start"
        case .batchStart: return "batch_start"
        case .batchEnd: return "batch_end"
        case .validationStart: return "validation_start"
        case .validationEnd: return "validation_end"
        case .epochEnd: return "epoch_end"
        case .phaseChange: return "phase_change"
        case .fitEnd: return "fit_end"
        }
    }
}

/// Receives the trainer's events. Throw `TrainingControl.stop` to end training cleanly (`fit`
/// returns normally with status `.stopped`); any other error ends `fit` by propagating.
/// Every callback sees every event, even when an earlier one asked to stop.
public protocol TrainingCallback: AnyObject {
    /// Called for every event, in order, on `fit`'s thread. Throw `TrainingControl.stop` to stop the
    /// run after the current batch.
    func handle(_ event: TrainingEvent, trainer: Trainer) throws
}

/// A callback whose state travels in checkpoints (e.g. EarlyStopping's best value and patience
/// count), so a resumed run behaves as the uninterrupted one would.
public protocol StatefulCallback: TrainingCallback {
    /// A key unique among the run's callbacks.
    var stateKey: String { get }
    /// The callback's state as text (JSON, typically), stored in the checkpoint under `stateKey`.
    func saveState() throws -> String
    /// Restores what `saveState` returned, when a run resumes (before `fitStart`).
    func restoreState(_ state: String) throws
    /// Whether a state saved under `key`, another key than `stateKey`, is this callback's: a run
    /// resumed from another path (moved, copied, through a link) finds its state this way when its key
    /// names a path. Only a saved key that one callback claims is restored. Default: never.
    func restores(fromSavedKey key: String) -> Bool
}

extension StatefulCallback {
    /// Never: a state is restored under its exact `stateKey` only.
    public func restores(fromSavedKey key: String) -> Bool { false }
}

/// Thrown by a callback to stop training cleanly.
public enum TrainingControl: Error, Equatable {
    /// Stop, with the reason "stopped by a callback".
    case stop
    /// Stop with a reason for logs and `FitStatus.stopped`.
    case stopBecause(String)

    /// The reason recorded in `FitStatus.stopped(reason:)`.
    public var reason: String {
        switch self {
        case .stop: return "stopped by a callback"
        case .stopBecause(let reason): return reason
        }
    }
}
