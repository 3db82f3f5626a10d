import Data
import Foundation
import NN
import Optim
import Torch
import Vision

// MARK: - State

/// Running sums of the current epoch's training batches.
public struct EpochAccumulator: Codable, Equatable, Sendable {
    /// Sum over the batches of mean batch loss × batch size.
    public var lossSum = 0.0
    /// Images trained on so far in the epoch.
    public var samples = 0
    /// Of those, how many were classified correctly.
    public var correct = 0
    /// Batches trained so far in the epoch.
    public var batches = 0

    /// Empty sums: the start of an epoch.
    public init() {}

    /// The epoch's mean loss per sample so far (NaN before the first batch): the `loss` metric.
    public var meanLoss: Double { samples > 0 ? lossSum / Double(samples) : .nan }
    /// The epoch's accuracy so far, a fraction in [0, 1]: the `accuracy` metric.
    public var accuracy: Double { samples > 0 ? Double(correct) / Double(samples) : 0 }
}

/// One epoch of history (what `history.csv` holds).
public struct HistoryRow: Codable, Equatable, Sendable {
    /// The epoch (0-based).
    public var epoch: Int
    /// The global step at the end of the epoch.
    public var step: Int
    /// The recipe phase the epoch trained in (1, or 2 in phase 2 of a two-phase run).
    public var phase: Int
    /// The epoch's metrics by name: `loss`, `accuracy`, `lr`, and `val_*` with validation data.
    public var metrics: [String: Double]
}

/// What determines a training loader's batches: with the same values, epoch `e`'s batches are the
/// same, so a run can resume in the middle of an epoch.
public struct LoaderPosition: Codable, Equatable, Sendable {
    /// The loader's seed (shuffle order and augmentations).
    public var seed: UInt64
    /// Whether the loader shuffles.
    public var shuffle: Bool
    /// Whether the loader draws class-balanced samples.
    public var balanced: Bool
    /// Images per batch.
    public var batchSize: Int
    /// Batches per epoch.
    public var batchesPerEpoch: Int
    /// Samples in the training dataset.
    public var samples: Int

    /// The settings that differ, as `seed 7, now 99; batch size 8, now 16`.
    func describedChanges(to other: LoaderPosition) -> String {
        let pairs: [(String, String, String)] = [
            ("seed", "\(seed)", "\(other.seed)"), ("shuffle", "\(shuffle)", "\(other.shuffle)"),
            ("balanced sampler", "\(balanced)", "\(other.balanced)"), ("batch size", "\(batchSize)", "\(other.batchSize)"),
            ("batches per epoch", "\(batchesPerEpoch)", "\(other.batchesPerEpoch)"), ("samples", "\(samples)", "\(other.samples)"),
        ]
        return pairs.filter { $0.1 != $0.2 }.map { "\($0.0) \($0.1), now \($0.2)" }.joined(separator: "; ")
    }

    /// The position-determining settings of `loader`.
    public init(_ loader: DataLoader) {
        seed = loader.seed
        shuffle = loader.shuffle
        balanced = loader.sampler != nil
        batchSize = loader.batchSize
        batchesPerEpoch = loader.batchesPerEpoch
        samples = loader.dataset.count
    }
}

/// Everything about a run's progress that a checkpoint must hold (`trainer.json`).
public struct TrainingState: Codable, Equatable {
    /// Epochs completed.
    public var epoch = 0
    /// Optimizer steps taken: the schedule's position.
    public var globalStep = 0
    /// The next batch number to train in epoch `epoch` (0 at an epoch boundary).
    public var batchInEpoch = 0
    /// Sums over the batches of epoch `epoch` trained so far.
    public var accumulator = EpochAccumulator()
    /// The `epochs` of the current `fit` and the loader's batches per epoch (for the schedule's length).
    public var totalEpochs: Int?
    /// Batches per epoch of the current `fit`'s training loader.
    public var stepsPerEpoch: Int?
    /// The monitored metric (name, mode, best value and epoch).
    public var best: MetricTracker?
    /// One row per completed epoch (what `history.csv` holds).
    public var history: [HistoryRow] = []
    /// Frozen scopes, the BatchNorm flag and the phase (1, or 2 in a two-phase run).
    public var freeze: FreezeState
    /// The recipe phase: 1, or 2 after a two-phase switch.
    public var phase = 1
    /// The epoch phase 2 began at (0 in phase 1).
    public var phaseStartEpoch = 0
    /// The global step phase 2 began at: phase 2's schedule counts from here.
    public var phaseStartStep = 0
    /// Phase 1's plateau detector (two-phase with a plateau trigger) and whether it fired.
    public var phaseOneTracker: MetricTracker?
    /// Set when the plateau trigger fired, or phase 2 was asked for early (`Trainer.requestPhaseTwo`):
    /// phase 2 starts at the next epoch boundary.
    public var phaseTwoPending = false
    /// The training loader's seed and batching (its epoch/batch position is `epoch`/`batchInEpoch`).
    public var loader: LoaderPosition?
    /// Each optimizer group's name and base (unscheduled) learning rate.
    public var parameterGroups: [String]
    /// Each group's learning rate before the schedule's factor, recomputed from the configuration on resume.
    public var baseLearningRates: [Double]
    /// `StatefulCallback` states by key.
    public var callbackStates: [String: String] = [:]
    /// `new`, `running`, `completed`, `stopped` or `interrupted`.
    public var status = "new"
    /// Gradient accumulation in progress: batches of the group trained since the last optimizer
    /// step, whose summed gradients wait in the parameters' `grad` (and in a checkpoint's
    /// `gradients.safetensors`). nil between optimizer steps.
    public var accumulation: AccumulationState?
    /// The number of data-parallel processes that trained the run (nil: one process).
    public var worldSize: Int?
    /// The pseudo-labels in use (`TrainingConfiguration.pseudoLabel`); nil before the first refresh.
    public var pseudoLabels: PseudoLabelState?

    /// The state of a run that has not trained yet.
    public init(freeze: FreezeState, parameterGroups: [String], baseLearningRates: [Double]) {
        self.freeze = freeze
        self.parameterGroups = parameterGroups
        self.baseLearningRates = baseLearningRates
    }
}

/// An accumulation group in progress (see `TrainingConfiguration.accumulationSteps`).
public struct AccumulationState: Codable, Equatable, Sendable {
    /// The group: batch number / K within the epoch.
    public var group: Int
    /// Batches of the group trained so far.
    public var batches: Int
}

// MARK: - Trainer

/// Fine-tunes a classifier: `fit` trains for a number of epochs with optional validation, emitting
/// `TrainingEvent`s to its callbacks; `evaluate` computes an `EvaluationReport` in inference mode;
/// `saveCheckpoint` / `Trainer.resume(from:model:)` save and restore the complete state, so a
/// resumed run (even from the middle of an epoch) ends with bit-identical weights.
///
/// * **Model.** Any `Module` whose forward maps images [N, 3, H, W] to logits [N, C] (or [N, 1] in
///   binary mode). Layer groups come from `ClassifierModel.layerGroups`, else the top-level children.
/// * **Step.** Zero gradients, set the scheduled learning rates (from the global step), forward
///   (under bf16 autocast with the layer policy when configured), loss (cross entropy with label smoothing and class
///   weights, or BCE-with-logits), backward, optional clipping to a global norm, optimizer step.
/// * **Modes.** `model.train()` at each epoch; frozen modules keep inference behaviour by
///   themselves (`Module.isFrozen`); evaluation runs `eval()` in inference mode.
/// * **Interruption.** With a `signalStop`, the flag is checked after every batch; when set, a
///   resumable checkpoint goes to `configuration.checkpointDirectory`/last and `fit` returns
///   `.interrupted`.
public final class Trainer {
    /// The network being trained (its forward must give [N, C] logits, or [N, 1] in binary mode).
    public let model: Module
    /// The model's layer groups and which form the backbone, read once at creation.
    public let layout: ModelLayout
    public private(set) var configuration: TrainingConfiguration
    public private(set) var optimizer: Optimizer
    public internal(set) var state: TrainingState
    /// Receive every `TrainingEvent`, in this order (loggers, checkpoints, early stopping, …).
    public var callbacks: [TrainingCallback]
    /// Polled after every batch (data-parallel: agreed by every rank before each batch; see `SignalStop`).
    public var signalStop: SignalStop?
    /// Called when a training batch of a single image is left out because a BatchNorm layer trains
    /// (BatchNorm needs more than one value per channel): the epoch, the batch number and the image's
    /// dataset index. Such a batch is an epoch's last when the images leave one over (N mod batch
    /// size = 1), or one whose other files could not be decoded; the run goes on without it, as for a
    /// batch of undecodable files. A loader whose batch size is 1 trains every batch, as PyTorch does
    /// (its BatchNorm then fails only where it sees one value per channel). In a data-parallel run the
    /// rank leaves its image out and takes part in the batch with none (see `DataParallel`).
    public var onSingleImageBatchLeftOut: ((_ epoch: Int, _ batch: Int, _ sample: Int) -> Void)?
    /// Called with each epoch's metrics before the trainer and callbacks use them: add custom
    /// metrics, or (in tests) inject values.
    public var epochMetricsHook: ((_ epoch: Int, _ metrics: inout [String: Double]) throws -> Void)?
    /// Cached backbone features: while the model's `embedding` is frozen (see
    /// `FeatureCache.ineligibility(of:)`, checked every epoch), epochs train and validate the head
    /// on these instead of running the backbone — e.g. phase 1 of a two-phase recipe, after which
    /// phase 2 goes through the full network. The features must come from the same datasets and
    /// transforms as the loaders passed to `fit` (`FeatureCache.prepare`): features of other images
    /// (another count, or another image at some index) are refused when an epoch starts; another
    /// transform cannot be seen.
    public var featureCache: TrainingFeatures?
    /// The last validation report and batch result.
    public private(set) var lastValidationReport: EvaluationReport?
    public private(set) var lastBatch: BatchResult?
    /// Data-parallel: this rank's non-finite loss in the current accumulation group, reported to every
    /// rank with the group's gradient all-reduce (`DataParallel.averageGradients(of:diverged:)`).
    private var divergedLoss: Double?
    /// The moving average of the weights (`configuration.ema`), updated after every optimizer step.
    public private(set) var ema: ModelEMA?
    /// Data-parallel training across processes (`DataParallel`): sharded data, averaged gradients,
    /// summed metrics. Set it on every rank before `fit`.
    public var distributed: DataParallel?
    /// The unlabelled images of a pseudo-labelling run (`configuration.pseudoLabel`); needed from its start epoch.
    public var pseudoLabeler: PseudoLabeler?

    /// Overrides the schedule: every group trains at this rate (the LR finder's steps).
    var fixedLearningRate: Double?
    private var stopReason: String?
    /// Data-parallel: the epoch's training sums over all ranks at the end of batch `batchInEpoch` of
    /// `epoch` (the last step's end, or a stop), which rank 0's checkpoints hold (`saveCheckpoint`).
    var sumsOverRanks: (epoch: Int, batchInEpoch: Int, accumulator: EpochAccumulator)?
    private var classWeightTensor: Tensor?
    private var pendingCallbackStates: [String: String] = [:]

    /// Prepares training: validates the configuration, seeds LibTorch (when `seed` is set), applies
    /// `configuration.freeze` (or records the model's current freeze state) and builds the optimizer.
    public convenience init(model: Module, configuration: TrainingConfiguration = TrainingConfiguration(),
                            callbacks: [TrainingCallback] = []) throws {
        try self.init(model: model, configuration: configuration, callbacks: callbacks, restoring: nil)
    }

    init(model: Module, configuration: TrainingConfiguration, callbacks: [TrainingCallback],
         restoring checkpoint: Checkpoint?) throws {
        try configuration.validate()
        let layout = ModelLayout(model)
        let freeze: FreezeState
        let phase: Int
        if let checkpoint {
            freeze = checkpoint.manifest.state.freeze
            phase = checkpoint.manifest.state.phase
            try freeze.apply(to: model)
        } else {
            if let seed = configuration.seed { Runtime.manualSeed(seed) }
            freeze = try configuration.freeze?.apply(to: model, layout: layout) ?? FreezeState.capture(model)
            phase = 1
        }
        let built = try Self.buildOptimizer(model: model, layout: layout,
                                            config: Self.optimizerConfig(configuration, phase: phase),
                                            policy: Self.learningRatePolicy(configuration, phase: phase))
        self.model = model
        self.layout = layout
        self.configuration = configuration
        self.callbacks = callbacks
        self.optimizer = built.optimizer
        self.state = TrainingState(freeze: freeze, parameterGroups: built.names, baseLearningRates: built.bases)
        self.classWeightTensor = try configuration.classWeights.map { try Tensor($0.map { Float($0) }) }
        if let checkpoint {
            try restore(checkpoint, baseLearningRates: built.bases)
        } else if let settings = configuration.ema {
            ema = try ModelEMA(model: model, configuration: settings)
        }
    }

    /// Rebuilds a trainer from a checkpoint directory written by `saveCheckpoint` (or a
    /// `ModelCheckpoint`): the configuration, model weights and buffers, freeze state and phase
    /// (never re-frozen from the configuration), optimizer state, schedule position, loader
    /// position, history, best metric, callback states and LibTorch's CPU generator.
    ///
    /// `model` must be the same architecture, freshly built. `configure` may change settings that do
    /// not affect the arithmetic (e.g. `checkpointDirectory`).
    public static func resume(from directory: String, model: Module, callbacks: [TrainingCallback] = [],
                              configure: ((inout TrainingConfiguration) -> Void)? = nil) throws -> Trainer {
        let checkpoint = try Checkpoint.read(from: directory)
        var configuration = checkpoint.manifest.configuration
        configure?(&configuration)
        return try Trainer(model: model, configuration: configuration, callbacks: callbacks, restoring: checkpoint)
    }

    private func restore(_ checkpoint: Checkpoint, baseLearningRates: [Double]) throws {
        let saved = checkpoint.manifest.state
        do {
            try model.load(checkpoint.model, strict: true)
        } catch {
            throw TrainingError.resumeMismatch("\(checkpoint.directory)/\(Checkpoint.modelFile) does not fit the model: \(error)")
        }
        guard saved.parameterGroups == state.parameterGroups else {
            throw TrainingError.resumeMismatch("the checkpoint's optimizer groups \(saved.parameterGroups) differ from "
                + "the model's \(state.parameterGroups)")
        }
        do {
            try optimizer.load(checkpoint.optimizer)
        } catch {
            throw TrainingError.resumeMismatch("\(checkpoint.directory)/\(Checkpoint.optimizerFile) does not fit the "
                + "optimizer: \(error)")
        }
        if let rng = checkpoint.rngState {
            do {
                try Runtime.setCPURNGState(rng)
            } catch {
                throw TrainingError.checkpoint(path: checkpoint.directory + "/" + Checkpoint.rngFile,
                                               reason: "not a random-generator state LibTorch can restore: \(error)")
            }
        }
        if let settings = configuration.ema {
            guard let averaged = checkpoint.ema else {
                throw TrainingError.resumeMismatch("the run averages its weights (EMA) but the checkpoint has no \(Checkpoint.emaFile)")
            }
            ema = try ModelEMA(model: model, configuration: settings, state: averaged)
        }
        if saved.accumulation != nil {
            guard let gradients = checkpoint.gradients else {
                throw TrainingError.resumeMismatch("the checkpoint stopped inside a gradient-accumulation group but has "
                    + "no \(Checkpoint.gradientsFile)")
            }
            try withNoGrad {
                for group in optimizer.parameterGroups {
                    for (name, parameter) in group.parameters {
                        // In the parameter's own layout (a clone keeps its strides), as autograd
                        // accumulates it: a contiguous copy of a channels-last gradient summed in another
                        // order, so --clip-grad-norm's norm, and the resumed run, differed.
                        try parameter.setGrad(gradients[name].map { saved in
                            let gradient = try parameter.clone()
                            try gradient.copy_(saved)
                            return gradient
                        })
                    }
                }
            }
        }
        state = saved
        // Recomputed from the configuration exactly as the original run computed them.
        state.baseLearningRates = baseLearningRates
        pendingCallbackStates = saved.callbackStates
    }

    // MARK: - Optimizer construction

    static func optimizerConfig(_ configuration: TrainingConfiguration, phase: Int) -> OptimizerConfig {
        phase == 2 ? configuration.phaseTwo?.optimizer ?? configuration.optimizer : configuration.optimizer
    }

    static func learningRatePolicy(_ configuration: TrainingConfiguration, phase: Int) -> LearningRatePolicy {
        phase == 2 ? configuration.phaseTwo?.learningRates ?? configuration.learningRates : configuration.learningRates
    }

    static func buildOptimizer(model: Module, layout: ModelLayout, config: OptimizerConfig,
                               policy: LearningRatePolicy) throws
        -> (optimizer: Optimizer, names: [String], bases: [Double]) {
        var groups = try ParameterGrouping.groups(for: model, layout: layout, policy: policy,
                                                  headLearningRate: config.learningRate)
        if config.noBiasDecay == true { groups = ParameterGrouping.separatingNoDecay(groups) }
        let optimizer = try config.makeOptimizer(groups.map(\.group))
        return (optimizer, groups.map(\.name), optimizer.learningRates)
    }

    /// The optimizer groups' names (`all`, or layer groups for discriminative learning rates).
    public var parameterGroupNames: [String] { state.parameterGroups }

    // MARK: - Control

    /// Asks `fit` to stop after the current batch (status `.stopped`).
    public func requestStop(_ reason: String = "stop requested") {
        if stopReason == nil { stopReason = reason }
    }

    /// Whether `requestStop` (or a callback's `TrainingControl`) asked the current `fit` to stop.
    public var isStopRequested: Bool { stopReason != nil }

    func dispatch(_ event: TrainingEvent) throws {
        for callback in callbacks {
            do {
                try callback.handle(event, trainer: self)
            } catch let control as TrainingControl {
                requestStop(control.reason)
            }
        }
    }

    // MARK: - Fit

    /// Trains until `epochs` epochs are complete (counting epochs done before a resume; Keras'
    /// `initial_epoch` semantics), validating after each epoch when `validation` is given.
    ///
    /// The schedule spans `epochs` epochs, so a resumed run must pass the same `epochs` as the
    /// original to get the same learning rates.
    ///
    /// Returns normally when all epochs ran, when a callback threw `TrainingControl.stop`, or on an
    /// interrupt; other errors propagate (the state stays consistent at the last completed step).
    @discardableResult
    public func fit(train: DataLoader, validation: DataLoader? = nil, epochs: Int) throws -> FitResult {
        guard epochs >= 1 else { throw TrainingError.invalidConfiguration("epochs must be at least 1, got \(epochs)") }
        // A mid-epoch checkpoint's data position is that of its number of processes (a shard each).
        let worldSize = distributed?.worldSize ?? 1, savedWorldSize = state.worldSize ?? 1
        if state.batchInEpoch > 0, savedWorldSize != worldSize {
            throw TrainingError.resumeMismatch("the checkpoint was taken in the middle of an epoch by \(savedWorldSize) "
                + "process\(savedWorldSize == 1 ? "" : "es"); resume it with \(savedWorldSize), not \(worldSize)")
        }
        // The checkpoints from here on are this many processes' (one process records none, as a fresh run).
        if let distributed {
            // A data-parallel checkpoint is rank 0's, with the epoch's training sums over all ranks (those
            // of rank 0 alone in checkpoints of before 2026-12-07): rank 0 continues them and the other
            // ranks start theirs from zero, so the epoch's loss and accuracy count no sample twice (every
            // rank restored them, and the epoch's end added them once per rank).
            if distributed.rank > 0 && state.batchInEpoch > 0 { state.accumulator = EpochAccumulator() }
            try startDistributed(distributed, train: train, validation: validation, epochs: epochs)
        } else {
            state.worldSize = nil
        }
        let batchesPerEpoch = train.batchesPerEpoch
        guard batchesPerEpoch > 0 else {
            throw TrainingError.invalidConfiguration("the training loader yields no batch (\(train.dataset.count) "
                + "samples, batch size \(train.batchSize))")
        }
        let classCount = try resolveClassCount(train.dataset)
        let position = LoaderPosition(train)
        // Other loader settings first: a larger batch size also puts the position past the epoch's
        // end, which blamed trainer.json.
        if state.batchInEpoch > 0, let saved = state.loader, saved != position {
            throw TrainingError.resumeMismatch("the run stopped in the middle of epoch \(state.epoch + 1) with "
                + "other training data or batching than now (seed, shuffle, sampler, batch size, sample count: "
                + "saved \(saved.describedChanges(to: position))); resume with the settings it was started with")
        }
        guard state.batchInEpoch <= batchesPerEpoch else {
            throw TrainingError.resumeMismatch("the checkpoint's position, batch \(state.batchInEpoch + 1) of epoch "
                + "\(state.epoch + 1), is past the epoch's \(batchesPerEpoch) batches (\(Checkpoint.trainerFile) is damaged)")
        }
        state.loader = position
        let previousEpochs = state.totalEpochs
        state.totalEpochs = epochs
        planTrainingBatches(train)
        defer { trainingBatchesPerEpoch = nil }

        let monitor = configuration.monitor ?? (validation != nil ? "val_loss" : "loss")
        if state.best?.metric != monitor {
            state.best = MetricTracker(metric: monitor, mode: configuration.monitorMode)
        }
        if let p2 = configuration.phaseTwo, case let .plateau(metric, mode, _, minDelta) = p2.trigger,
           state.phaseOneTracker == nil {
            state.phaseOneTracker = MetricTracker(metric: metric, mode: mode, minDelta: minDelta)
        }
        for callback in callbacks {
            guard let stateful = callback as? StatefulCallback else { continue }
            var key = stateful.stateKey
            if pendingCallbackStates[key] == nil {
                let claimed = pendingCallbackStates.keys.filter { stateful.restores(fromSavedKey: $0) }
                guard claimed.count == 1 else { continue }
                key = claimed[0]
            }
            guard let saved = pendingCallbackStates.removeValue(forKey: key) else { continue }
            try stateful.restoreState(saved)
        }

        stopReason = nil
        checkedSchedulePhase = nil
        state.status = "running"
        let info = FitInfo(epochs: epochs, startEpoch: state.epoch, startStep: state.globalStep,
                           startBatch: state.batchInEpoch, batchesPerEpoch: batchesPerEpoch,
                           resumed: state.globalStep > 0 || state.epoch > 0, hasValidation: validation != nil,
                           previousEpochs: previousEpochs)
        try dispatch(.fitStart(info))

        var status = FitStatus.completed
        epochLoop: while state.epoch < epochs {
            if let reason = stopReason { status = .stopped(reason: reason); break }
            if let interrupted = try handleInterrupt(savingOnLostRank(restoring: false, agreeOnSignalStop)) {
                status = interrupted
                break
            }
            try enterPhaseTwoIfDue()
            let started = Date()
            model.train()
            planTrainingBatches(train)  // phase 2 may unfreeze BatchNorm
            try checkPhaseSchedule()
            let resumeAt = state.batchInEpoch
            if resumeAt == 0 { state.accumulator = EpochAccumulator() }
            try dispatch(.epochStart(epoch: state.epoch, resumedAtBatch: resumeAt))
            if let reason = stopReason { status = .stopped(reason: reason); break }

            // Resuming mid-epoch: the epoch's batches are a pure function of (seed, epoch), so
            // starting at the next untrained batch lands exactly where the checkpoint was taken.
            let cached = usableFeatureCache()
            let pseudo: PseudoLabelEpoch?
            do {
                pseudo = try pseudoLabelEpoch(train, startingAtBatch: resumeAt, input: cached == nil ? .images : .features)
            } catch is PseudoLabeler.Stopped {
                // Ctrl-C while the unlabelled images were labelled: the run stops at the epoch's start, as
                // before its first batch, and a resume labels them again.
                if let interrupted = try handleInterrupt(true) { status = interrupted }
                break epochLoop
            }
            defer { pseudo?.cancel() }
            let run: any BatchStream = cached.map { $0.train.epoch(state.epoch, of: train, startingAtBatch: resumeAt) }
                ?? train.epoch(state.epoch, startingAtBatch: resumeAt)
            // Data-parallel ranks go through every planned batch together, also one whose files were
            // all skipped on this rank, so that their collectives stay paired.
            var slots = BatchSlots(run, planned: distributed == nil ? nil : batchesPerEpoch, from: resumeAt)
            var trainedBatches = 0
            while let (number, delivered) = try slots.next() {
                var batch = delivered
                // Asked once per batch: the stream of pseudo-labelled images hands each part out once.
                let pseudoPart = try batch.flatMap { try pseudo?.part(for: $0) }
                // BatchNorm cannot train on one image. Under SyncBatchNorm its statistics are the whole
                // step's, so a rank's lone image is left out only when no other rank has one.
                let lone = batch.flatMap { $0.count == 1 && train.batchSize > 1 && batchNormTrains && pseudoPart == nil ? $0 : nil }
                let syncedBatchNorm = distributed?.syncBatchNorm == true
                if let lone, !syncedBatchNorm {
                    onSingleImageBatchLeftOut?(state.epoch, lone.number, lone.indices[0])
                    batch = nil
                }
                var lossScale: Double?
                if let distributed {
                    let agreed = try savingOnLostRank(restoring: false) {
                        try distributed.agreeOnBatch(images: batch?.count ?? 0, stop: signalStop?.isTriggered == true,
                                                     unless: signalStop)
                    }
                    if agreed.stop {
                        signalStop?.trigger(signal: SIGTERM)
                        // Inside an accumulation group each rank holds its own gradients, and the
                        // checkpoint would keep rank 0's alone: the group ends first.
                        if state.accumulation == nil { break }
                    }
                    // SyncBatchNorm's forward is a collective of every rank: all train the batch, or none.
                    if agreed.total == 0 || (syncedBatchNorm && batchNormTrains && agreed.images.contains(0)) {
                        if let lone, agreed.total == 1 { onSingleImageBatchLeftOut?(state.epoch, lone.number, lone.indices[0]) }
                        continue
                    }
                    lossScale = agreed.lossScale(rank: distributed.rank)
                } else if batch == nil {
                    continue
                }
                try dispatch(.batchStart(epoch: state.epoch, batch: number, step: state.globalStep))
                let result: BatchResult
                do {
                    result = try savingOnLostRank(restoring: true) {
                        try step(batch, number: number, input: cached == nil ? .images : .features,
                                 pseudo: pseudoPart, lossScale: lossScale)
                    }
                } catch TrainingError.diverged(let step, let loss) {
                    run.cancel()
                    status = .diverged(step: step, loss: loss)
                    break epochLoop
                }
                trainedBatches += 1
                try dispatch(.batchEnd(result))
                if try stopReason != nil || (distributed == nil && agreeOnSignalStop()) { break }
            }
            run.cancel()
            // A stop during the epoch's last batch reaches every rank.
            let stopping = try savingOnLostRank(restoring: false, agreeOnSignalStop)
            // A group whose last batches were all skipped (undecodable files) still steps at the epoch's
            // end (data-parallel: also before a stop, as above).
            if state.accumulation != nil && stopReason == nil && (!stopping || distributed != nil) {
                do {
                    try optimizerStep()
                } catch TrainingError.diverged(let step, let loss) {  // data-parallel: a rank's loss in the group
                    status = .diverged(step: step, loss: loss)
                    break epochLoop
                }
            }
            if trainedBatches == 0 && resumeAt == 0 && stopReason == nil && !stopping {
                throw TrainingError.noUsableData(Self.noUsableDataReason(train, split: "training"))
            }
            if let interrupted = try handleInterrupt(stopping) { status = interrupted; break epochLoop }
            if let reason = stopReason { status = .stopped(reason: reason); break epochLoop }
            do {
                try savingOnLostRank(restoring: false) {
                    try finishEpoch(validation: validation, classCount: classCount, started: started, cached: cached)
                }
            } catch is ValidationStopped {
                // Ctrl-C during the epoch's validation: the run stops as after the epoch's last batch (the
                // state the validation leaves untouched), and a resume validates the epoch again. Until
                // 2026-12-07 the validation ran to its end first.
                if let interrupted = try handleInterrupt(true) { status = interrupted }
                break epochLoop
            }
        }
        if status == .completed, let reason = stopReason { status = .stopped(reason: reason) }
        state.status = status.name
        let result = FitResult(status: status, epochs: state.epoch, globalStep: state.globalStep,
                               history: state.history, best: state.best)
        try dispatch(.fitEnd(result))
        return result
    }

    /// Whether a BatchNorm layer of the model normalises with its batch's statistics (training
    /// behaviour), which a batch of one image cannot give.
    var batchNormTrains: Bool { batchNormTrains(whenTraining: false) }

    /// `batchNormTrains` now, or (`whenTraining`) once the model is put in training mode.
    func batchNormTrains(whenTraining: Bool) -> Bool {
        model.namedModules().contains {
            $0.1 is BatchNormLayer && (whenTraining || $0.1.isTraining) && $0.1.usesTrainingBehaviourWhenTraining
        }
    }

    /// The batches of an epoch of the current `fit` that train (nil outside `fit`: the loader's).
    private var trainingBatchesPerEpoch: Int?

    /// Sets `trainingBatchesPerEpoch` and the schedule's `stepsPerEpoch` for `train`'s epochs under the
    /// model's freezing now. A last batch of one image is left out while BatchNorm trains (`fit`), so
    /// it is not counted: the schedule's length and the divisor of the epoch's last accumulation group
    /// are those of the batches that train, as with timm's `drop_last` (they counted it: a cosine
    /// schedule ended early, and a group of one batch was divided by two). Pseudo-labelling may fill
    /// that batch up, so its runs count it.
    private func planTrainingBatches(_ train: DataLoader) {
        let batches = train.batchesPerEpoch
        let leftOut = batches > 1 && train.batchSize > 1 && train.lastBatchSize == 1 && batchNormTrains(whenTraining: true)
            && configuration.pseudoLabel == nil
        trainingBatchesPerEpoch = leftOut ? batches - 1 : batches
        let k = configuration.accumulationSteps, trained = batches - (leftOut ? 1 : 0)
        state.stepsPerEpoch = trained / k + (trained % k == 0 ? 0 : 1)  // (n + k − 1) / k overflowed for k = Int.max
    }

    /// Thrown by `finishEpoch` when a stop (Ctrl-C) cut the epoch's validation short.
    private struct ValidationStopped: Error {}

    /// With `stopping` (a stop signal, agreed by every rank), writes checkpoints/last and returns the
    /// interrupted status.
    private func handleInterrupt(_ stopping: Bool) throws -> FitStatus? {
        guard stopping, let signalStop else { return nil }
        signalStop.reset()
        // Every rank agreed to stop here: the epoch's training sums over all ranks, for rank 0's checkpoint.
        if let distributed {
            let sums = try savingOnLostRank(restoring: false) { try distributed.summed(state.accumulator) }
            sumsOverRanks = (state.epoch, state.batchInEpoch, sums)
        }
        var path: String?
        if let directory = configuration.checkpointDirectory {
            let target = URL(fileURLWithPath: directory).appendingPathComponent("last").path
            state.status = "interrupted"
            try saveCheckpoint(to: target)
            path = target
        }
        return .interrupted(checkpoint: path)
    }

    private func finishEpoch(validation: DataLoader?, classCount: Int, started: Date, cached: TrainingFeatures?) throws {
        let epoch = state.epoch
        let accumulator = try distributed.map { try $0.summed(state.accumulator) } ?? state.accumulator
        var metrics: [String: Double] = ["loss": accumulator.meanLoss, "accuracy": accumulator.accuracy]
        if let lr = optimizer.learningRates.last { metrics["lr"] = lr }
        var report: EvaluationReport?
        if let validation {
            try dispatch(.validationStart(epoch: epoch))
            // Ctrl-C stops the validation after its batch (`ValidationStopped`): a large validation split
            // takes minutes. Data-parallel ranks agree on it after every batch (`AgreedStopBatches`).
            func validate() throws -> EvaluationReport {
                let base: any BatchStream = cached?.validation.map { $0.epoch(0, of: validation) } ?? validation.epoch(0)
                let input: Input = cached?.validation == nil ? .images : .features
                guard let stop = signalStop else { return try evaluate(validation, input: input, batches: base) }
                let agreed = distributed.map { AgreedStopBatches(base: base, stop: stop, distributed: $0) }
                // Data-parallel ranks go by what they agreed: a signal after the last round would part them.
                let stopped = { agreed?.stopped ?? stop.isTriggered }
                do {
                    let r = try evaluate(validation, input: input, batches: agreed ?? StoppableBatches(base: base, stop: stop))
                    if stopped() { throw ValidationStopped() }
                    return r
                } catch TrainingError.noUsableData where stopped() {
                    throw ValidationStopped()  // stopped before its first batch
                }
            }
            let r = try validate()
            report = r
            lastValidationReport = r
            for (key, value) in r.scalars { metrics["val_" + key] = value }
            if let ema {
                let averaged = try ema.withAveragedWeights(in: model) { try validate() }
                for (key, value) in averaged.scalars { metrics["val_" + key + "_ema"] = value }
            }
            try dispatch(.validationEnd(epoch: epoch, report: r))
        }
        metrics.merge(pseudoLabelMetrics(), uniquingKeysWith: { a, _ in a })
        try epochMetricsHook?(epoch, &metrics)

        var improved = false
        if var tracker = state.best {
            improved = tracker.update(try tracker.value(in: metrics), epoch: epoch)
            state.best = tracker
        }
        if state.phase == 1, let p2 = configuration.phaseTwo, case let .plateau(_, _, patience, _) = p2.trigger,
           var tracker = state.phaseOneTracker {
            let better = tracker.update(try tracker.value(in: metrics), epoch: epoch)
            state.phaseOneTracker = tracker
            // Keras' EarlyStopping rule: `patience` epochs in a row without improvement.
            if !better && tracker.wait >= patience { state.phaseTwoPending = true }
        }
        state.history.append(HistoryRow(epoch: epoch, step: state.globalStep, phase: state.phase, metrics: metrics))
        state.epoch += 1
        state.batchInEpoch = 0
        state.accumulator = EpochAccumulator()
        try dispatch(.epochEnd(EpochResult(epoch: epoch, step: state.globalStep, phase: state.phase, metrics: metrics,
                                           validation: report, seconds: Date().timeIntervalSince(started),
                                           improved: improved, usedFeatureCache: cached != nil)))
    }

    // MARK: - Phases

    private func enterPhaseTwoIfDue() throws {
        guard state.phase == 1, state.batchInEpoch == 0, let p2 = configuration.phaseTwo else { return }
        switch p2.trigger {
        case .afterEpochs(let n): guard state.epoch >= n || state.phaseTwoPending else { return }
        case .plateau: guard state.phaseTwoPending else { return }
        }
        try enterPhaseTwo(p2)
    }

    /// Why phase 2 was asked for early (`requestPhaseTwo`), for its `PhaseChange`.
    private var phaseTwoReason: String?

    /// Asks a two-phase run in phase 1 to start phase 2 at the next epoch (as its plateau trigger
    /// does), because of `reason`: `EarlyStopping` does this where its patience runs out in phase 1,
    /// as fastai's `fine_tune` ends only its frozen fit there. Returns false when no phase 2 is to
    /// come (a one-phase run, phase 2 already on, or one that starts after the run's last epoch);
    /// true when it will start at the next epoch (already due then: nothing changes).
    public func requestPhaseTwo(because reason: String) -> Bool {
        guard state.phase == 1, let p2 = configuration.phaseTwo else { return false }
        let total = state.totalEpochs ?? Int.max
        guard state.epoch < total else { return false }
        if case .afterEpochs(let n) = p2.trigger {
            guard n < total else { return false }
            if state.epoch >= n { return true }
        }
        if !state.phaseTwoPending { phaseTwoReason = reason }
        state.phaseTwoPending = true
        return true
    }

    /// Unfreezes for phase 2 and rebuilds the optimizer, carrying the state of parameters trained
    /// in phase 1 over by name when the optimizer kind and state layout agree.
    private func enterPhaseTwo(_ p2: PhaseTwo) throws {
        let frozen: [String]
        switch p2.unfreeze {
        case .all: frozen = []
        case .top(let n): frozen = Array(layout.backboneGroups.prefix(Swift.max(0, layout.backboneGroups.count - n)))
        }
        let freeze = FreezeState(frozenScopes: frozen, trainBatchNorm: p2.trainBatchNorm ?? state.freeze.trainBatchNorm,
                                 freezeBatchNormStatistics: state.freeze.freezeBatchNormStatistics, phase: 2)
        try freeze.apply(to: model)
        let previous = optimizer.stateDict()
        let built = try Self.buildOptimizer(model: model, layout: layout, config: p2.optimizer, policy: p2.learningRates)
        let next = built.optimizer
        var carried = false
        var note: String?
        let nextKind = next.stateDict().hyperparameters.optimizer
        if previous.hyperparameters.optimizer == nextKind {
            let groups = next.parameterGroups
            do {
                try next.load(previous)
                carried = true
            } catch {
                note = "optimizer state starts fresh: \(error)"
            }
            // `load` adopts the saved groups' rates; phase 2 has its own.
            for i in next.parameterGroups.indices {
                next.parameterGroups[i].learningRate = groups[i].learningRate
                next.parameterGroups[i].weightDecay = groups[i].weightDecay
            }
        } else {
            note = "phase 1 used \(previous.hyperparameters.optimizer), phase 2 uses \(nextKind): optimizer state starts fresh"
        }
        optimizer = next
        state.freeze = freeze.capturingResult(of: model)
        state.phase = 2
        state.phaseStartEpoch = state.epoch
        state.phaseStartStep = state.globalStep
        state.phaseTwoPending = false
        state.parameterGroups = built.names
        state.baseLearningRates = built.bases
        try dispatch(.phaseChange(PhaseChange(phase: 2, epoch: state.epoch, step: state.globalStep,
                                              trainableParameters: state.freeze.trainableParameters,
                                              frozenScopes: frozen, carriedOptimizerState: carried, note: note,
                                              reason: phaseTwoReason)))
        phaseTwoReason = nil
    }

    // MARK: - Steps

    /// Sets every group's rate (and cycled momentum) for this step from the phase's schedule.
    private func applySchedule() throws {
        let (schedule, totalSteps) = phaseSchedule()
        try schedule.apply(to: optimizer, baseLearningRates: state.baseLearningRates,
                           step: state.globalStep - state.phaseStartStep, totalSteps: totalSteps)
    }

    /// The schedule of the phase training now, and the phase's length in optimizer steps in a run of
    /// `totalEpochs` (nil: the run's).
    private func phaseSchedule(totalEpochs: Int? = nil) -> (any LearningRateSchedule, totalSteps: Int) {
        let config = state.phase == 2 ? configuration.phaseTwo?.schedule ?? configuration.schedule
                                      : configuration.schedule
        let perEpoch = state.stepsPerEpoch ?? 1
        let total = totalEpochs ?? state.totalEpochs ?? 1
        var phaseEpochs = total - state.phaseStartEpoch
        if state.phase == 1, let p2 = configuration.phaseTwo, case .afterEpochs(let n) = p2.trigger {
            phaseEpochs = Swift.min(n, total)
        }
        return (config.schedule, Swift.max(1, Self.saturatingProduct(phaseEpochs, perEpoch)))
    }

    /// The learning rate of the group with the highest base rate (the head) at global step `step` of
    /// the phase training now, in a run of `totalEpochs` epochs; nil before the phase's first step.
    func scheduledHeadRate(step: Int, totalEpochs: Int) -> Double? {
        guard step >= state.phaseStartStep, let base = state.baseLearningRates.max() else { return nil }
        let (schedule, totalSteps) = phaseSchedule(totalEpochs: totalEpochs)
        return schedule.learningRate(base: base, step: step - state.phaseStartStep, totalSteps: totalSteps)
    }

    /// The phase whose schedule `checkPhaseSchedule` has checked in this `fit`.
    private var checkedSchedulePhase: Int?

    /// Before a phase's first step in a `fit`, refuses a schedule that gives an unusable rate at any of
    /// the phase's steps still to come (the first million; later ones are checked as they are taken):
    /// `exponential:decay_steps=1,rate=1e9` passed every parameter check, trained an epoch at 1e24,
    /// checkpointed it and failed at step 5, and a resume could not change the schedule (probe AD).
    ///
    /// In phase 1 of a two-phase run whose phase 2 starts after a set number of epochs, phase 2's
    /// schedule is checked too, with its head rate (and backbone rate under `backboneFactor`; phase 2's
    /// groups are built at its start, where its exact rates are checked): a bad phase-2 schedule failed
    /// only after phase 1 had trained, and no resume could change it.
    private func checkPhaseSchedule() throws {
        guard checkedSchedulePhase != state.phase else { return }
        checkedSchedulePhase = state.phase
        func firstUnusable(_ schedule: any LearningRateSchedule, bases: [Double], from first: Int,
                           totalSteps: Int) -> (step: Int, rate: Double, base: Double)? {
            guard first < totalSteps else { return nil }
            return schedule.firstUnusableRate(baseLearningRates: bases,
                                              steps: first..<(first + Swift.min(1_000_000, totalSteps - first)),
                                              totalSteps: totalSteps)
        }
        let (schedule, totalSteps) = phaseSchedule()
        if let bad = firstUnusable(schedule, bases: state.baseLearningRates, from: state.globalStep - state.phaseStartStep,
                                   totalSteps: totalSteps) {
            throw ScheduleError.unusableRate(step: bad.step, rate: bad.rate, base: bad.base)
        }
        if state.phase == 1, let p2 = configuration.phaseTwo, case .afterEpochs(let n) = p2.trigger,
           let total = state.totalEpochs, n < total {
            let steps = Swift.max(1, Self.saturatingProduct(total - n, state.stepsPerEpoch ?? 1))
            if let bad = firstUnusable(p2.schedule.schedule, bases: phaseTwoBaseRates(p2), from: 0, totalSteps: steps) {
                throw TrainingError.invalidConfiguration(
                    "phase 2: \(ScheduleError.unusableRate(step: bad.step, rate: bad.rate, base: bad.base))")
            }
        }
    }

    /// The base rates phase 2's groups will have, as `ParameterGrouping.groups` gives them: the head's
    /// and each unfrozen backbone group's (the check in phase 1 left layer decay out, so a decay of
    /// 1e10 trained phase 1 and then failed, unresumably: probe AF).
    private func phaseTwoBaseRates(_ p2: PhaseTwo) -> [Double] {
        let head = p2.optimizer.learningRate
        let count = layout.backboneGroups.count
        let unfrozen: Int
        switch p2.unfreeze {
        case .all: unfrozen = count
        case .top(let n): unfrozen = Swift.min(Swift.max(0, n), count)
        }
        return [head] + (0..<unfrozen).map { p2.learningRates.backboneRate(head: head, distance: $0 + 1) }
    }

    /// `a × b`, or `Int.max` when that overflows (a run of `Int.max` epochs is legal: it ends by a
    /// stop, an interrupt or early stopping).
    static func saturatingProduct(_ a: Int, _ b: Int) -> Int {
        let (product, overflow) = a.multipliedReportingOverflow(by: b)
        return overflow ? Int.max : product
    }

    /// One optimizer step on `batch` (public for custom loops; `fit` calls it).
    @discardableResult
    public func trainStep(_ batch: Batch) throws -> BatchResult { try step(batch, number: batch.number, input: .images) }

    /// What a batch's `images` hold: images, or cached backbone features (`FeatureCache`).
    enum Input { case images, features }

    /// The model's output for `input`: `model(x)`, or the classifier applied to cached features.
    func forward(_ x: Tensor, input: Input) throws -> Tensor {
        switch input {
        case .images: return try model(x)
        case .features:
            guard let classifier = model as? any ClassifierModel else {
                throw TrainingError.invalidConfiguration("cached features need a ClassifierModel")
            }
            return try classifier.classify(x)
        }
    }

    /// The feature cache, when set and the model's embedding is frozen now.
    private func usableFeatureCache() -> TrainingFeatures? {
        // Mixed batches are new images: cached features cannot stand for them.
        guard let featureCache, configuration.mix == nil, FeatureCache.ineligibility(of: model) == nil else { return nil }
        return featureCache
    }

    /// Trains batch `number`: forward, loss (times `lossScale`, a data-parallel rank's share of the
    /// batch's images; see `BatchAgreement.lossScale`), backward and, at the end of an accumulation
    /// group, the optimizer step. Without a `batch` (a data-parallel rank that has no image of it while
    /// others do), the rank adds zero gradients and steps with the others.
    private func step(_ batch: Batch?, number: Int, input: Input, pseudo: Batch? = nil,
                      lossScale: Double? = nil) throws -> BatchResult {
        if let distributed {
            Runtime.manualSeed(distributed.batchSeed(runSeed: configuration.seed ?? 0, epoch: state.epoch, batch: number))
        }
        let k = configuration.accumulationSteps
        let group = number / k
        // A group left unfinished (its last batches skipped) steps before the next one starts.
        if let pending = state.accumulation, pending.group != group { try optimizerStep() }
        try applySchedule()
        if let lr = fixedLearningRate {
            for i in optimizer.parameterGroups.indices { optimizer.parameterGroups[i].learningRate = lr }
        }
        let learningRates = optimizer.learningRates
        let momentum = optimizer.parameterGroups.last?.momentum
        if state.accumulation == nil { try optimizer.zeroGrad() }
        // timm's grad-accum rule: a group's losses are divided by its size, which is K except for the
        // epoch's last group when the batch count is not a multiple of K.
        let batchesPerEpoch = trainingBatchesPerEpoch ?? state.loader?.batchesPerEpoch ?? (number + 1)
        let groupSize = Swift.max(1, Swift.min(k, batchesPerEpoch - group * k))
        var lossValue = Double.nan
        var correct = 0
        var trains = batch != nil
        if let batch {
            let (loss, logits) = try forwardLoss(batch, input: input, pseudo: pseudo)
            // A NaN or infinite loss stops the run before it can poison the weights (and checkpoints).
            // Data-parallel: every rank must stop at the same step, so the rank adds no gradient and
            // says so in the group's gradient all-reduce, after which all stop (`optimizerStep`).
            lossValue = try loss.item()
            if !lossValue.isFinite {
                guard distributed != nil else { throw TrainingError.diverged(step: state.globalStep + 1, loss: lossValue) }
                divergedLoss = lossValue
                trains = false
            } else {
                let divisor = Double(groupSize) / (lossScale ?? 1)
                try (divisor != 1 ? try loss / divisor : loss).backward()
                correct = try withNoGrad { try countCorrect(logits: logits.detach(), labels: batch.labels) }
            }
        }
        if !trains {
            // The all-reduce sums every trainable parameter's gradient on every rank. The zeros take the
            // parameter's layout (a clone keeps its strides), as autograd's gradients do: contiguous zeros
            // for a channels-last weight made LibTorch warn, at the next batch of an accumulation group,
            // that "grad and param do not obey the gradient layout contract".
            for parameter in optimizer.parameterGroups.flatMap(\.parameters) where parameter.tensor.grad == nil {
                let zeros = try withNoGrad { try parameter.tensor.detach().clone() }
                try zeros.zero_()
                try parameter.tensor.setGrad(zeros)
            }
        }
        let trained = (state.accumulation?.batches ?? 0) + 1
        state.accumulation = AccumulationState(group: group, batches: trained)
        var norm: Double?
        let stepped = (number + 1) % k == 0 || number + 1 >= batchesPerEpoch
        let n = trains ? batch?.count ?? 0 : 0
        if n > 0 {
            state.accumulator.lossSum += lossValue * Double(n)
            state.accumulator.samples += n
            state.accumulator.correct += correct
            state.accumulator.batches += 1
        }
        if stepped { norm = try optimizerStep(summingMetricsAtBatch: number + 1) }
        state.batchInEpoch = number + 1
        let result = BatchResult(epoch: state.epoch, batch: number, step: state.globalStep, samples: n,
                                 loss: lossValue, accuracy: n > 0 ? Double(correct) / Double(n) : 0,
                                 learningRates: learningRates, momentum: momentum, gradientNorm: norm,
                                 epochLoss: state.accumulator.meanLoss, epochAccuracy: state.accumulator.accuracy,
                                 optimizerStepped: stepped)
        lastBatch = result
        return result
    }

    /// The batch's forward pass under the configured precision, Mixup/CutMix and pseudo-labels: the
    /// loss and the float32 logits.
    private func forwardLoss(_ batch: Batch, input: Input, pseudo: Batch?) throws -> (loss: Tensor, logits: Tensor) {
        let labels = batch.labels
        var images = batch.images
        if let pseudo { images = try Tensor.cat([images, pseudo.images]) }
        var mixed: MixDraw?
        if input == .images, let mix = configuration.mix, mix.isActive(epoch: state.epoch), images.shape.count == 4 {
            let draw = mix.draw(epoch: state.epoch, batch: batch.number, height: images.shape[2], width: images.shape[3])
            images = try BatchMixing.mix(images, draw)
            mixed = draw
        }
        return try withPrecision(configuration.precision) { () throws -> (Tensor, Tensor) in
            let output = try forward(images, input: input)
            let logits = output.dtype == .float32 ? output : try output.to(.float32)
            if let pseudo { return try pseudoLabelLoss(logits: logits, labels: labels, pseudo: pseudo.labels) }
            guard let mixed else { return (try computeLoss(logits: logits, labels: labels), logits) }
            let targets = try BatchMixing.targets(labels.toArray(Int64.self).map { Int($0) }, classes: logits.shape[1],
                                                  lambda: mixed.lambda, smoothing: configuration.labelSmoothing)
            return (try BatchMixing.softTargetCrossEntropy(logits: logits, targets: targets), logits)
        }
    }

    /// Clips, steps the optimizer on the accumulated gradients, clears them, counts the step and
    /// updates the EMA. Returns the gradient norm before clipping when clipping is on. Data-parallel,
    /// with `summingMetricsAtBatch` (the step's end, as a batch number in the epoch): every rank's
    /// training sums for the epoch so far, for rank 0's checkpoints (`sumsOverRanks`).
    @discardableResult
    private func optimizerStep(summingMetricsAtBatch batch: Int? = nil) throws -> Double? {
        var norm: Double?
        if let distributed {
            let diverged = try distributed.averageGradients(of: optimizer.parameterGroups.flatMap { $0.parameters.map(\.tensor) },
                                                            diverged: divergedLoss != nil)
            if diverged {
                try optimizer.zeroGrad()
                state.accumulation = nil
                throw TrainingError.diverged(step: state.globalStep + 1, loss: divergedLoss ?? .nan)
            }
            // After the gradients' all-reduce, where the ranks have just met (before it, this collective
            // waited for the slowest rank's backward pass), and before the step, so that a rank lost in
            // it leaves the parameters as the checkpoint written then assumes them: unchanged.
            if let batch { sumsOverRanks = (state.epoch, batch, try distributed.summed(state.accumulator)) }
        }
        if let maxNorm = configuration.gradientClipNorm {
            norm = try Self.clipGradientNorm(optimizer.parameterGroups.flatMap { $0.parameters.map(\.tensor) },
                                             maxNorm: maxNorm)
        }
        try optimizer.step()
        try optimizer.zeroGrad()
        state.accumulation = nil
        state.globalStep += 1
        try ema?.update(from: model, step: state.globalStep)
        return norm
    }

    /// The loss `evaluate` reports: the plain cross-entropy (or binary cross-entropy) of the model's
    /// predictions, without the training objective's class weights and label smoothing, as timm's
    /// `validate` and Keras (class weights weigh training only) report it. A weighted mean per batch
    /// made `val_loss` depend on the batch size (validation batches hold few classes each) and differ
    /// from `finetune evaluate` on the same weights.
    public func evaluationLoss(logits: Tensor, labels: Tensor) throws -> Tensor {
        switch configuration.loss {
        case .crossEntropy:
            return try Functional.crossEntropy(logits, target: labels)
        case .binary:
            return try Functional.binaryCrossEntropyWithLogits(logits.reshape([-1]), target: labels.to(.float32))
        }
    }

    /// The configured loss of float32 `logits` against int64 class `labels`.
    ///
    /// With class weights, cross-entropy is PyTorch's weighted mean, Σ wᵧ·ℓ / Σ wᵧ, except for a batch
    /// whose every image is of a class weighted 0: PyTorch gives 0/0 = NaN there, which would read as a
    /// diverged run; here such a batch has a loss of 0 and no gradient, as the weights ask. Binary
    /// cross-entropy with class weights is PyTorch's `BCEWithLogitsLoss(weight=)`: Σ wᵧ·ℓ / N.
    public func computeLoss(logits: Tensor, labels: Tensor) throws -> Tensor {
        let smoothing = configuration.labelSmoothing
        switch configuration.loss {
        case .crossEntropy:
            if let weights = classWeightTensor, configuration.classWeights?.contains(0) == true,
               try weights.indexSelect(dim: 0, index: labels).sum().item() == 0 {
                return try logits.sum() * 0
            }
            return try Functional.crossEntropy(logits, target: labels, weight: classWeightTensor,
                                               labelSmoothing: smoothing)
        case .binary:
            let z = try logits.reshape([-1])
            guard z.count == labels.count else {
                throw TrainingError.invalidConfiguration("binary mode needs one logit per sample; the model's output "
                    + "has shape \(logits.shape) for \(labels.count) labels")
            }
            var target = try labels.to(.float32)
            if smoothing > 0 { target = try target * (1 - smoothing) + smoothing / 2 }
            let weight = try classWeightTensor.map { try $0.indexSelect(dim: 0, index: labels) }
            return try Functional.binaryCrossEntropyWithLogits(z, target: target, weight: weight)
        }
    }

    private func countCorrect(logits: Tensor, labels: Tensor) throws -> Int {
        switch configuration.loss {
        case .crossEntropy:
            return try logits.argmax(dim: 1).eq(labels).sum().itemInt()
        case .binary:
            return try logits.reshape([-1]).gt(0).to(.int64).eq(labels).sum().itemInt()
        }
    }

    /// Scales the gradients of `parameters` in place so their global L2 norm is at most `maxNorm`
    /// (PyTorch's `clip_grad_norm_`: coefficient `min(1, maxNorm / (norm + 1e-6))`, computed with
    /// tensor ops). Returns the norm before clipping.
    @discardableResult
    public static func clipGradientNorm(_ parameters: [Tensor], maxNorm: Double) throws -> Double {
        let gradients = parameters.compactMap(\.grad)
        guard !gradients.isEmpty else { return 0 }
        return try withNoGrad {
            let norms = try Tensor.stack(gradients.map { try $0.norm(p: 2) })
            let total = try norms.norm(p: 2)
            let coefficient = try ((total + 1e-6).reciprocal() * maxNorm).clamp(max: 1)
            for g in gradients { try g.mul_(coefficient) }
            return try total.item()
        }
    }

    // MARK: - Evaluation

    /// Loss, accuracy, top-5 (more than 5 classes), AUC and the rest of `EvaluationReport` over
    /// `loader`, in eval mode and LibTorch's inference mode. The model's mode is restored after.
    ///
    /// With test-time augmentation (`tta`, whose `transform` the loader must use), the metrics and the
    /// loss are those of the views' averaged probabilities.
    public func evaluate(_ loader: DataLoader, tta: TestTimeAugmentation = .off) throws -> EvaluationReport {
        if let distributed { loader.shard = distributed.evaluationShard }
        return try evaluate(loader, input: .images, batches: loader.epoch(0), tta: tta)
    }

    /// `evaluate(_:)`, cut short when `stop` is triggered between batches: nil then (a partial
    /// report would pass for a whole one). For evaluations a user may stop with Ctrl-C, such as a
    /// run's final test pass. A data-parallel trainer evaluates to the end (its ranks evaluate
    /// together, and one that left early would leave the others waiting).
    public func evaluate(_ loader: DataLoader, unless stop: SignalStop) throws -> EvaluationReport? {
        if distributed != nil { return try evaluate(loader) }
        guard !stop.isTriggered else { return nil }
        do {
            let report = try evaluate(loader, input: .images, batches: StoppableBatches(base: loader.epoch(0), stop: stop))
            return stop.isTriggered ? nil : report
        } catch TrainingError.noUsableData where stop.isTriggered {
            return nil  // stopped before its first batch: no image was evaluated, none was unusable
        }
    }

    /// `evaluate(_:)`'s report, and every image's prediction in the loader's order (dataset order;
    /// files that could not be decoded left out): what a run report's top losses and
    /// `evaluate --per-sample` list.
    public func evaluateSamples(_ loader: DataLoader, tta: TestTimeAugmentation = .off)
        throws -> (report: EvaluationReport, samples: [SamplePrediction]) {
        var samples: [SamplePrediction] = []
        let binary = configuration.loss == .binary
        let report = try evaluate(loader, input: .images, batches: loader.epoch(0), tta: tta) { batch, logits in
            samples += try SamplePrediction.rows(logits: logits, binary: binary, batch: batch, dataset: loader.dataset)
        }
        return (report, samples)
    }

    private func evaluate(_ loader: DataLoader, input: Input, batches run: any BatchStream,
                          tta: TestTimeAugmentation = .off,
                          onBatch: ((Batch, Tensor) throws -> Void)? = nil) throws -> EvaluationReport {
        let classCount = try resolveClassCount(loader.dataset)
        let names = loader.dataset.classNames
        var metrics = try ClassificationMetrics(classCount: classCount,
                                                classNames: names.count == classCount ? names : nil)
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        // Data-parallel: every rank evaluates its share with rank 0's running statistics.
        if let distributed { try distributed.broadcastBuffers(of: model) }
        let binary = configuration.loss == .binary
        try withInferenceMode {
            while let batch = try run.nextBatch() {
                let logits: Tensor
                if tta != .off {
                    // Averaged probabilities as logits: log p (softmax of it is p), or logit(p) for one output.
                    let p = try tta.probabilities(batch.images) { view in
                        try withPrecision(configuration.precision) { try forward(view, input: input) }
                    }.clamp(min: 1e-12, max: 1 - 1e-7)
                    logits = binary ? try p.log() - (-p).log1p() : try p.log()
                } else {
                    let output = try withPrecision(configuration.precision) {
                        try forward(batch.images, input: input)
                    }
                    logits = output.dtype == .float32 ? output : try output.to(.float32)
                }
                let loss = try evaluationLoss(logits: logits, labels: batch.labels).item()
                try metrics.update(logits: binary ? logits.reshape([-1]) : logits, labels: batch.labels, loss: loss)
                try onBatch?(batch, logits)
            }
        }
        if let distributed { try metrics.combine(sum: distributed.sum, gather: distributed.gather) }
        let report = metrics.report()
        guard report.sampleCount > 0 else {
            throw TrainingError.noUsableData(Self.noUsableDataReason(loader, split: "evaluation"))
        }
        return report
    }

    /// "no usable image in the … data: …", with the first skipped files and why.
    static func noUsableDataReason(_ loader: DataLoader, split: String) -> String {
        let skipped = loader.skippedFiles
        var text = "no usable image in the \(split) data: "
        if loader.dataset.count == 0 { return text + "it has no images" }
        text += "all \(loader.dataset.count) image\(loader.dataset.count == 1 ? "" : "s") could not be decoded"
        if let warning = skipped.warning(limit: 5) { text += "\n" + warning }
        return text
    }

    private func resolveClassCount(_ dataset: any ImageDataset) throws -> Int {
        let outputs = (model as? any ClassifierModel)?.numClasses
        if configuration.loss == .binary {
            // Fewer than 2 trained on without a word (probe AD): nothing to tell apart.
            guard dataset.classNames.count == 2 else {
                throw TrainingError.invalidConfiguration("binary mode needs 2 classes, the data has "
                    + "\(dataset.classNames.count)")
            }
            if let outputs, outputs != 1 {
                throw TrainingError.invalidConfiguration("binary mode needs a head with 1 output, the model has \(outputs)")
            }
            return 2
        }
        let count = dataset.classNames.count
        // One class: cross-entropy of one logit is 0 whatever the weights, so training would "converge"
        // at once and learn nothing (and `evaluate` refuses it).
        guard count >= 2 else {
            throw TrainingError.invalidConfiguration("a classifier needs at least 2 classes, the data has \(count)"
                + (dataset.classNames.first.map { " (\"\($0)\")" } ?? ""))
        }
        if let outputs, outputs != count {
            throw TrainingError.invalidConfiguration("the model has \(outputs) outputs but the data has \(count) classes")
        }
        if let weights = configuration.classWeights, weights.count != count {
            throw TrainingError.invalidConfiguration("\(weights.count) class weights for \(count) classes")
        }
        return count
    }

    // MARK: - Checkpoints

    /// The model's name recorded in checkpoints.
    public var modelName: String { (model as? any ClassifierModel)?.architecture ?? model.typeName }

    /// Writes a resumable checkpoint (see `Checkpoint`) atomically to `directory`.
    public func saveCheckpoint(to directory: String) throws {
        var snapshot = state
        // A data-parallel checkpoint is rank 0's, and holds the epoch's training sums over all ranks where
        // they are known for this moment (each step's end, a stop): a resume continues them exactly. It
        // held rank 0's own, and on resume every rank counted them (rank 0's part twice, rank 1's never).
        if distributed != nil, let sums = sumsOverRanks, sums.epoch == state.epoch, sums.batchInEpoch == state.batchInEpoch {
            snapshot.accumulator = sums.accumulator
        }
        var states = pendingCallbackStates
        for callback in callbacks {
            if let stateful = callback as? StatefulCallback { states[stateful.stateKey] = try stateful.saveState() }
        }
        snapshot.callbackStates = states
        let manifest = CheckpointManifest(model: modelName, configuration: configuration, state: snapshot,
                                          hasRNGState: true)
        var gradients: StateDict?
        if state.accumulation != nil {
            var pending = StateDict()
            for group in optimizer.parameterGroups {
                for (name, parameter) in group.parameters { if let grad = parameter.grad { pending[name] = grad } }
            }
            gradients = pending
        }
        try Checkpoint.write(to: directory, manifest: manifest, model: model.stateDict(),
                             optimizer: optimizer.stateDict(), rngState: Runtime.cpuRNGState(),
                             ema: ema?.state, gradients: gradients)
    }
}
