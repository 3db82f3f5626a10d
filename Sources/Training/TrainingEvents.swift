import Dispatch
import Foundation

// Events the trainer emits, the callback protocol (in the style of swift-models' TrainingLoop),
// the metric tracking shared by the callbacks, and the Ctrl-C helper.

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

    public var name: String {
        switch self {
        case .completed: return "completed"
        case .stopped: return "stopped"
        case .interrupted: return "interrupted"
        }
    }

    public var description: String {
        switch self {
        case .completed: return "completed"
        case .stopped(let reason): return "stopped: \(reason)"
        case .interrupted(let path): return "interrupted" + (path.map { " (checkpoint \($0))" } ?? "")
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

// MARK: - Metric tracking

/// The best value of a monitored metric and how long since it improved (Keras' rule: an
/// improvement must beat the best by more than `minDelta`; NaN never improves).
public struct MetricTracker: Codable, Equatable, Sendable {
    public let metric: String
    /// `min` or `max` (resolved from `auto`).
    public let mode: MonitorMode
    public let minDelta: Double
    public private(set) var best: Double?
    public private(set) var bestEpoch: Int?
    /// Epochs since the last improvement.
    public private(set) var wait = 0

    public init(metric: String, mode: MonitorMode = .auto, minDelta: Double = 0) {
        self.metric = metric
        self.mode = mode.resolved(for: metric)
        self.minDelta = Swift.abs(minDelta)
    }

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

    /// The metric's value in `metrics`, or `TrainingError.unknownMetric`.
    public func value(in metrics: [String: Double]) throws -> Double {
        guard let v = metrics[metric] else {
            throw TrainingError.unknownMetric(metric: metric, available: Array(metrics.keys))
        }
        return v
    }
}

// MARK: - Ctrl-C

/// Turns SIGINT/SIGTERM into a flag the trainer polls after every batch: the trainer then writes a
/// resumable checkpoint (to `TrainingConfiguration.checkpointDirectory`/last) and `fit` returns
/// `.interrupted`. Signals are received with `DispatchSourceSignal`s (no code of ours runs in
/// signal context). A second signal while the first is pending restores the default disposition
/// and re-sends it, so the process ends as users expect from a second Ctrl-C (unless
/// `forceOnSecondSignal` is false). Once cancelled (or deinitialised) the instance no longer
/// catches anything; a signal that arrives while no `SignalStop` listens takes its default action.
public final class SignalStop: @unchecked Sendable {
    public static let defaultSignals: [Int32] = [SIGINT, SIGTERM]

    public let signals: [Int32]
    public let forceOnSecondSignal: Bool
    private let lock = NSLock()
    private var received: Int32?
    private var count = 0
    private var listening = false

    /// Starts listening for `signals` (none: only `trigger()` sets the flag). Returns once the
    /// dispatch sources are registered, so a signal sent after `init` is never missed.
    public init(signals: [Int32] = SignalStop.defaultSignals, forceOnSecondSignal: Bool = true) {
        self.signals = signals
        self.forceOnSecondSignal = forceOnSecondSignal
        if !signals.isEmpty {
            listening = true
            SignalHub.shared.subscribe(self, to: signals)
        }
    }

    deinit { cancel() }

    fileprivate func receive(_ number: Int32) {
        let n: Int = lock.withLock {
            count += 1
            if received == nil { received = number }
            return count
        }
        if n >= 2 && forceOnSecondSignal { SignalHub.terminate(with: number) }
    }

    /// Whether a signal (or `trigger`) has asked training to stop.
    public var isTriggered: Bool { lock.withLock { received != nil } }

    /// The signal received (`0` for `trigger()`), nil before.
    public var receivedSignal: Int32? { lock.withLock { received } }

    /// Sets the flag as a signal would (for programmatic interruption and tests).
    public func trigger(signal number: Int32 = 0) {
        lock.withLock {
            count += 1
            if received == nil { received = number }
        }
    }

    /// Clears the flag (after the trainer has handled it).
    public func reset() {
        lock.withLock {
            received = nil
            count = 0
        }
    }

    /// Stops listening.
    public func cancel() {
        let wasListening = lock.withLock { () -> Bool in
            defer { listening = false }
            return listening
        }
        if wasListening { SignalHub.shared.unsubscribe(self) }
    }
}

/// One dispatch source per signal for the life of the process, shared by every `SignalStop`.
/// (Sources are never cancelled: on Linux, libdispatch routes a signal to its signalfd through a
/// handler it installs once per signal; tearing that down and re-creating sources would leave
/// signals ignored or stuck.) With no listener, a signal takes its default action.
private final class SignalHub: @unchecked Sendable {
    static let shared = SignalHub()

    private let lock = NSLock()
    private let queue = DispatchQueue(label: "finetune.signal-stop")
    private var sources: [Int32: DispatchSourceSignal] = [:]
    private var listeners: [ObjectIdentifier: (stop: Weak, signals: [Int32])] = [:]

    struct Weak {
        weak var value: SignalStop?
    }

    func subscribe(_ stop: SignalStop, to signals: [Int32]) {
        var created: [DispatchSourceSignal] = []
        lock.withLock {
            listeners[ObjectIdentifier(stop)] = (Weak(value: stop), signals)
            for number in signals where sources[number] == nil {
                // Ignored until the source is registered: no default action (termination) meanwhile.
                Foundation.signal(number, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
                source.setEventHandler { [weak self] in self?.deliver(number) }
                sources[number] = source
                created.append(source)
            }
        }
        for source in created {
            let registered = DispatchSemaphore(value: 0)
            source.setRegistrationHandler { registered.signal() }
            source.resume()
            _ = registered.wait(timeout: .now() + 2)
        }
    }

    func unsubscribe(_ stop: SignalStop) {
        lock.withLock { _ = listeners.removeValue(forKey: ObjectIdentifier(stop)) }
    }

    private func deliver(_ number: Int32) {
        let targets: [SignalStop] = lock.withLock {
            listeners.values.filter { $0.signals.contains(number) }.compactMap { $0.stop.value }
        }
        if targets.isEmpty {
            Self.terminate(with: number)
            return
        }
        for stop in targets { stop.receive(number) }
    }

    /// The signal's default action (normally: the process ends).
    static func terminate(with number: Int32) {
        Foundation.signal(number, SIG_DFL)
        kill(getpid(), number)
    }
}
