import Foundation

// Events the trainer emits and the callback protocol (in the style of swift-models' TrainingLoop).
// The metric tracking shared by the callbacks is in MetricTracker.swift, the Ctrl-C helper in SignalStop.swift.

/// What `fit` is about to do.
public struct FitInfo: Sendable {
    /// The epoch the run stops at (epochs are counted from 0; the run covers `startEpoch..<epochs`).
    public var epochs: Int
    public var startEpoch: Int
    /// The global step the run starts from (0 for a fresh run).
    public var startStep: Int
    /// The batch of `startEpoch` the run resumes at (0 at an epoch boundary).
    public var startBatch: Int
    public var batchesPerEpoch: Int
    /// True when the trainer was restored from a checkpoint (or has trained before).
    public var resumed: Bool
    public var hasValidation: Bool
}

/// One optimizer step.
public struct BatchResult: Sendable {
    /// The epoch (0-based) and the batch's number within it.
    public var epoch: Int
    public var batch: Int
    /// The global step count after this step (1 for the first step of a run).
    public var step: Int
    public var samples: Int
    public var loss: Double
    public var accuracy: Double
    /// The learning rate of each parameter group for this step.
    public var learningRates: [Double]
    /// The global gradient norm before clipping (only when clipping is on).
    public var gradientNorm: Double?
    /// The epoch's running mean loss and accuracy so far.
    public var epochLoss: Double
    public var epochAccuracy: Double
}

/// The end of an epoch: training metrics (`loss`, `accuracy`, `lr`) and, with validation data,
/// the validation report's scalars prefixed `val_` (`val_loss`, `val_accuracy`,
/// `val_top5_accuracy`, `val_auc`, `val_macro_f1`, …).
public struct EpochResult {
    public var epoch: Int
    /// The global step at the end of the epoch.
    public var step: Int
    public var phase: Int
    public var metrics: [String: Double]
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
    public var phase: Int
    public var epoch: Int
    public var step: Int
    public var trainableParameters: [String]
    public var frozenScopes: [String]
    /// Whether optimizer state of parameters trained before was carried into the new optimizer.
    public var carriedOptimizerState: Bool
    /// Why the state was not carried, when it was not.
    public var note: String?
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

    public var name: String {
        switch self {
        case .completed: return "completed"
        case .stopped: return "stopped"
        case .interrupted: return "interrupted"
        case .diverged: return "diverged"
        }
    }

    public var description: String {
        switch self {
        case .completed: return "completed"
        case .stopped(let reason): return "stopped: \(reason)"
        case .interrupted(let path): return "interrupted" + (path.map { " (checkpoint \($0))" } ?? "")
        case .diverged(let step, let loss): return "diverged at step \(step) (loss \(loss))"
        }
    }
}

/// What `fit` returns.
public struct FitResult {
    public var status: FitStatus
    /// Epochs completed in total (including those before a resume).
    public var epochs: Int
    public var globalStep: Int
    public var history: [HistoryRow]
    /// The trainer's monitored metric: its name, mode, best value and epoch.
    public var best: MetricTracker?
}

/// The trainer's events, in order: `fitStart`, then per epoch `epochStart`, `batchStart`/`batchEnd`
/// per batch, `validationStart`/`validationEnd` (with validation data), `epochEnd`; `phaseChange`
/// before the first epoch of phase 2; finally `fitEnd` (also after a stop or interrupt).
public enum TrainingEvent {
    case fitStart(FitInfo)
    case epochStart(epoch: Int, resumedAtBatch: Int)
    case batchStart(epoch: Int, batch: Int, step: Int)
    case batchEnd(BatchResult)
    case validationStart(epoch: Int)
    case validationEnd(epoch: Int, report: EvaluationReport)
    case epochEnd(EpochResult)
    case phaseChange(PhaseChange)
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
    func handle(_ event: TrainingEvent, trainer: Trainer) throws
}

/// A callback whose state travels in checkpoints (e.g. EarlyStopping's best value and patience
/// count), so a resumed run behaves as the uninterrupted one would.
public protocol StatefulCallback: TrainingCallback {
    /// A key unique among the run's callbacks.
    var stateKey: String { get }
    func saveState() throws -> String
    func restoreState(_ state: String) throws
}

/// Thrown by a callback to stop training cleanly.
public enum TrainingControl: Error, Equatable {
    case stop
    case stopBecause(String)

    public var reason: String {
        switch self {
        case .stop: return "stopped by a callback"
        case .stopBecause(let reason): return reason
        }
    }
}
