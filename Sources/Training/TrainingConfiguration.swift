import Foundation
import NN
import Optim

// The Codable description of a fine-tuning run: optimizer, schedule, loss, freezing and the
// two-phase recipe. Everything a resumed run needs to rebuild the trainer is here (it is stored
// in every checkpoint's `trainer.json`).

/// Errors raised by the trainer, freezing and checkpoints. Descriptions are user-facing.
public enum TrainingError: Error, Equatable, CustomStringConvertible {
    /// A scope (freeze/trainable pattern) matches no module or parameter of the model.
    case unknownScope(scope: String, validGroups: [String])
    /// A monitored metric is not among the epoch's metrics.
    case unknownMetric(metric: String, available: [String])
    /// A configuration value out of range or inconsistent with the model or data.
    case invalidConfiguration(String)
    /// Freezing left no trainable parameter.
    case nothingToTrain(String)
    /// A checkpoint directory is missing, incomplete or unreadable.
    case checkpoint(path: String, reason: String)
    /// A resumed run does not fit the checkpoint (different model, data or optimizer groups).
    case resumeMismatch(String)
    /// A split has no image that could be used (all were skipped as unreadable, or it is empty).
    case noUsableData(String)
    /// The loss of optimizer step `step` was NaN or infinite (the step was not applied).
    case diverged(step: Int, loss: Double)
    /// A `SignalStop` stopped work that comes before training (what it was doing), e.g. computing
    /// the feature cache; nothing of it was kept.
    case interrupted(String)

    /// The user-facing message, e.g. "unknown scope 'layer9': it matches no module … (layer groups: …)".
    public var description: String {
        switch self {
        case let .unknownScope(scope, groups):
            return "unknown scope '\(scope)': it matches no module or parameter of the model "
                + "(layer groups: \(groups.joined(separator: ", ")))"
        case let .unknownMetric(metric, available):
            return "unknown metric '\(metric)' (available: \(available.sorted().joined(separator: ", ")))"
        case .invalidConfiguration(let m): return "invalid training configuration: \(m)"
        case .nothingToTrain(let m): return "nothing to train: \(m)"
        case let .checkpoint(path, reason): return "checkpoint \(path): \(reason)"
        case .resumeMismatch(let m): return "cannot resume: \(m)"
        case .noUsableData(let m): return m
        case let .diverged(step, loss): return "training diverged: the loss of step \(step) is \(FitStatus.describe(loss: loss))"
        case .interrupted(let m): return "interrupted \(m)"
        }
    }
}

/// Whether a monitored metric should go down (`min`), up (`max`), or be guessed from its name
/// (`auto`: accuracy, AUC, F1, precision and recall go up, everything else down — Keras' rule).
public enum MonitorMode: String, Codable, Equatable, Sendable, CaseIterable {
    /// `min`: lower is better (losses); `max`: higher is better; `auto`: decided by the name.
    case min, max, auto

    /// `min` or `max` for `metric`.
    public func resolved(for metric: String) -> MonitorMode {
        guard self == .auto else { return self }
        let name = metric.lowercased()
        let increasing = ["acc", "auc", "f1", "precision", "recall"]
        return increasing.contains(where: { name.contains($0) }) ? .max : .min
    }
}

/// The optimizer and its hyperparameters (PyTorch semantics, see the Optim target).
public struct OptimizerConfig: Codable, Equatable, Sendable {
    /// The optimizer: `torch.optim.SGD`, `Adam`, `AdamW` or `RMSprop` (the raw value is the CLI's name).
    public enum Kind: String, Codable, Equatable, Sendable, CaseIterable {
        /// SGD (with optional momentum and Nesterov), Adam, AdamW (decoupled weight decay), RMSprop.
        case sgd, adam, adamw, rmsprop
    }

    /// Which optimizer to build.
    public var kind: Kind
    /// The head's (or only group's) learning rate; discriminative policies derive the others from it.
    public var learningRate: Double
    /// Weight decay: an L2 term added to the gradient for SGD, Adam and RMSprop; decoupled (applied to
    /// the weights) for AdamW, as in PyTorch.
    public var weightDecay: Double
    /// SGD and RMSprop momentum.
    public var momentum: Double
    /// SGD's Nesterov momentum.
    public var nesterov: Bool
    /// Adam/AdamW's first-moment decay (PyTorch's `betas[0]`, default 0.9).
    public var beta1: Double
    /// Adam/AdamW's second-moment decay (PyTorch's `betas[1]`, default 0.999).
    public var beta2: Double
    /// Adam/AdamW/RMSprop epsilon.
    public var epsilon: Double
    /// RMSprop's smoothing constant.
    public var alpha: Double
    /// "No bias decay" (He et al., *Bag of Tricks*, 2019; timm's `filter_bias_and_bn`, fastai's
    /// `wd_bn_bias=False`): every parameter of one dimension (biases, normalisation weights and
    /// biases) trains without weight decay, in groups of its own (`ParameterGrouping.separatingNoDecay`).
    /// nil or false: weight decay applies to every parameter, as PyTorch's optimizers apply it.
    public var noBiasDecay: Bool?

    /// Every hyperparameter given explicitly; those the kind does not use are ignored. The static
    /// builders below set each kind's usual defaults.
    public init(kind: Kind, learningRate: Double, weightDecay: Double = 0, momentum: Double = 0,
                nesterov: Bool = false, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8,
                alpha: Double = 0.99) {
        self.kind = kind
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.alpha = alpha
    }

    /// SGD with momentum 0.9 by default (PyTorch's own default is 0; Keras' fine-tuning guide uses 0.9).
    public static func sgd(learningRate: Double, momentum: Double = 0.9, nesterov: Bool = false,
                           weightDecay: Double = 0) -> OptimizerConfig {
        OptimizerConfig(kind: .sgd, learningRate: learningRate, weightDecay: weightDecay, momentum: momentum,
                        nesterov: nesterov)
    }

    /// Adam with PyTorch's defaults (learning rate 1e-3, betas 0.9/0.999, eps 1e-8, no weight decay).
    public static func adam(learningRate: Double = 1e-3, weightDecay: Double = 0, beta1: Double = 0.9,
                            beta2: Double = 0.999, epsilon: Double = 1e-8) -> OptimizerConfig {
        OptimizerConfig(kind: .adam, learningRate: learningRate, weightDecay: weightDecay, beta1: beta1,
                        beta2: beta2, epsilon: epsilon)
    }

    /// AdamW with PyTorch's defaults (learning rate 1e-3, weight decay 0.01).
    public static func adamw(learningRate: Double = 1e-3, weightDecay: Double = 1e-2, beta1: Double = 0.9,
                             beta2: Double = 0.999, epsilon: Double = 1e-8) -> OptimizerConfig {
        OptimizerConfig(kind: .adamw, learningRate: learningRate, weightDecay: weightDecay, beta1: beta1,
                        beta2: beta2, epsilon: epsilon)
    }

    /// RMSprop with PyTorch's defaults (learning rate 1e-2, alpha 0.99, eps 1e-8).
    public static func rmsprop(learningRate: Double = 1e-2, alpha: Double = 0.99, momentum: Double = 0,
                               epsilon: Double = 1e-8, weightDecay: Double = 0) -> OptimizerConfig {
        OptimizerConfig(kind: .rmsprop, learningRate: learningRate, weightDecay: weightDecay, momentum: momentum,
                        epsilon: epsilon, alpha: alpha)
    }

    /// The Keras guide's fine-tuning optimizer: SGD, learning rate 1e-4, momentum 0.9.
    public static let fineTuneDefault = OptimizerConfig.sgd(learningRate: 1e-4, momentum: 0.9)

    /// Builds the optimizer over `groups` (each with its own learning rate, or this one when nil).
    public func makeOptimizer(_ groups: [ParameterGroup]) throws -> Optimizer {
        switch kind {
        case .sgd:
            return try SGD(groups, learningRate: learningRate, momentum: momentum, weightDecay: weightDecay,
                           nesterov: nesterov)
        case .adam:
            return try Adam(groups, learningRate: learningRate, betas: (beta1, beta2), epsilon: epsilon,
                            weightDecay: weightDecay)
        case .adamw:
            return try AdamW(groups, learningRate: learningRate, betas: (beta1, beta2), epsilon: epsilon,
                             weightDecay: weightDecay)
        case .rmsprop:
            return try RMSprop(groups, learningRate: learningRate, alpha: alpha, epsilon: epsilon,
                               weightDecay: weightDecay, momentum: momentum)
        }
    }
}

/// How learning rates differ between layer groups.
public enum LearningRatePolicy: Codable, Equatable, Sendable {
    /// One parameter group, one learning rate.
    case uniform
    /// Discriminative fine-tuning: the head's groups use the optimizer's learning rate, every
    /// backbone group that rate divided by `factor`.
    case backboneFactor(Double)
    /// Layer-wise decay (ULMFiT / BEiT style): group `i` uses `headLR * decay^d`, `d` being its
    /// distance from the head (0 for the head, 1 for the backbone group just below it, …).
    case layerDecay(Double)

    /// The learning rate of the backbone group `distance` groups below the head (1 for the one just
    /// below it), with the head at `head`.
    public func backboneRate(head: Double, distance: Int) -> Double {
        switch self {
        case .uniform: return head
        case .backboneFactor(let factor): return head / factor
        case .layerDecay(let decay): return head * pow(decay, Double(distance))
        }
    }
}

/// The loss: softmax cross entropy over `C` logits, or binary (one logit per sample,
/// sigmoid + binary cross entropy; labels 0/1).
public enum LossMode: String, Codable, Equatable, Sendable {
    /// Softmax cross entropy over C logits (PyTorch's `CrossEntropyLoss`, Keras' `sparse_categorical_crossentropy`).
    case crossEntropy
    /// One logit per sample through a sigmoid (PyTorch's `BCEWithLogitsLoss`, Keras' `binary_crossentropy`
    /// with `from_logits=True`); two classes only.
    case binary
}

/// Everything that defines a training run besides the model and the data.
public struct TrainingConfiguration: Codable, Equatable {
    /// Phase 1's optimizer (the only phase without `phaseTwo`).
    public var optimizer: OptimizerConfig
    /// Learning-rate schedule, applied before every optimizer step from the step count (relative to
    /// the phase's first step), so a resumed run gets exactly the same rates.
    public var schedule: ScheduleConfig
    /// Phase 1's per-group learning rates.
    public var learningRates: LearningRatePolicy
    /// What to freeze at the start. nil keeps the model's freeze state as it is.
    public var freeze: FreezeSpec?
    /// The second phase of a two-phase recipe (unfreeze and continue with a new optimizer).
    public var phaseTwo: PhaseTwo?
    /// Cross entropy over the classes, or binary.
    public var loss: LossMode
    /// Cross-entropy label smoothing (PyTorch's `label_smoothing`); in binary mode the targets
    /// become `t * (1 - s) + s / 2` (Keras' `BinaryCrossentropy(label_smoothing:)`).
    public var labelSmoothing: Double
    /// Per-class loss weights (PyTorch's `weight`; in binary mode each sample is weighted by its class's).
    public var classWeights: [Double]?
    /// Clip gradients to this global L2 norm (PyTorch's `clip_grad_norm_`).
    public var gradientClipNorm: Double?
    /// Run forward passes under CPU bf16 autocast with `PrecisionPolicy.standard` (`--precision bf16`).
    public var autocastBF16: Bool
    /// `autocastBF16` as a `Precision` (.bf16 or .fp32), for `withPrecision`.
    public var precision: Precision { autocastBF16 ? .bf16 : .fp32 }
    /// The metric the trainer tracks as "best" (nil: `val_loss` with validation data, else `loss`).
    public var monitor: String?
    /// Whether the monitored metric should go down or up (`auto`: from its name).
    public var monitorMode: MonitorMode
    /// Seeds LibTorch's generator when the trainer is created (not when it resumes: the checkpoint's
    /// generator state is restored instead).
    public var seed: UInt64?
    /// Where an interrupted run (Ctrl-C, SIGTERM) writes its resumable checkpoint: `<dir>/last`.
    public var checkpointDirectory: String?
    /// The recipe this configuration came from, for reports.
    public var recipe: String?
    /// Gradient accumulation: the optimizer steps once every this many batches, each batch's loss
    /// divided by the size of its group (nil: 1, every batch). See `accumulationSteps`.
    public var accumulateSteps: Int?
    /// An exponential moving average of the weights, updated after every optimizer step (timm's
    /// `ModelEmaV3`); nil: none.
    public var ema: EMAConfig?
    /// MixUp / CutMix of the training batches (timm's `Mixup`); nil: none. Targets are smoothed by
    /// `labelSmoothing`; cross entropy only, without class weights.
    public var mix: MixConfig?
    /// Pseudo-labelling of unlabelled images (`Trainer.pseudoLabeler` supplies them); nil: none.
    public var pseudoLabel: PseudoLabelSettings?

    /// Batches per optimizer step (`accumulateSteps`, 1 when unset). Lightning's
    /// `accumulate_grad_batches` and timm's `--grad-accum-steps`: gradients of K batches are summed,
    /// each loss scaled by 1/K, so K batches of B approximate one batch of K × B (exactly, for a model
    /// without batch-dependent layers and an unweighted mean loss). The schedule counts optimizer
    /// steps. An epoch whose batch count is not a multiple of K ends with a smaller group, which
    /// steps with its losses scaled by 1/(its size), as timm does.
    public var accumulationSteps: Int { Swift.max(1, accumulateSteps ?? 1) }

    /// The defaults: Adam at 1e-3, a fixed learning rate, one group, no freezing, cross entropy, no
    /// smoothing, weights or clipping.
    public init(optimizer: OptimizerConfig = .adam(), schedule: ScheduleConfig = .fixed,
                learningRates: LearningRatePolicy = .uniform, freeze: FreezeSpec? = nil, phaseTwo: PhaseTwo? = nil,
                loss: LossMode = .crossEntropy, labelSmoothing: Double = 0, classWeights: [Double]? = nil,
                gradientClipNorm: Double? = nil, autocastBF16: Bool = false, monitor: String? = nil,
                monitorMode: MonitorMode = .auto, seed: UInt64? = nil, checkpointDirectory: String? = nil,
                recipe: String? = nil, accumulateSteps: Int? = nil, ema: EMAConfig? = nil) {
        self.optimizer = optimizer
        self.schedule = schedule
        self.learningRates = learningRates
        self.freeze = freeze
        self.phaseTwo = phaseTwo
        self.loss = loss
        self.labelSmoothing = labelSmoothing
        self.classWeights = classWeights
        self.gradientClipNorm = gradientClipNorm
        self.autocastBF16 = autocastBF16
        self.monitor = monitor
        self.monitorMode = monitorMode
        self.seed = seed
        self.checkpointDirectory = checkpointDirectory
        self.recipe = recipe
        self.accumulateSteps = accumulateSteps
        self.ema = ema
    }

    /// Sets the freezing, learning-rate and phase knobs of `recipe` (other settings are kept).
    public mutating func apply(_ recipe: Recipe) {
        recipe.apply(to: &self)
    }

    /// Checks ranges that do not depend on the model or the data.
    public func validate() throws {
        func positive(_ x: Double, _ name: String) throws {
            guard x.isFinite, x >= 0 else { throw TrainingError.invalidConfiguration("\(name) must be ≥ 0, got \(x)") }
        }
        try positive(optimizer.learningRate, "learning rate")
        guard labelSmoothing >= 0, labelSmoothing < 1 else {
            throw TrainingError.invalidConfiguration("label smoothing must be in [0, 1), got \(labelSmoothing)")
        }
        if let clip = gradientClipNorm, !(clip > 0) || !clip.isFinite {
            throw TrainingError.invalidConfiguration("gradient clip norm must be positive, got \(clip)")
        }
        if let weights = classWeights {
            guard !weights.isEmpty, weights.allSatisfy({ Float($0).isFinite && $0 >= 0 }) else {
                throw TrainingError.invalidConfiguration("class weights must be non-negative numbers of float32's range "
                    + "(at most \(Float.greatestFiniteMagnitude)), got \(weights)")
            }
            guard weights.contains(where: { $0 > 0 }) else {
                throw TrainingError.invalidConfiguration("class weights must give at least one class a positive weight, got \(weights)")
            }
            if loss == .binary && weights.count != 2 {
                throw TrainingError.invalidConfiguration("binary mode takes 2 class weights, got \(weights.count)")
            }
        }
        if let k = accumulateSteps, k < 1 {
            throw TrainingError.invalidConfiguration("gradient accumulation needs at least 1 batch per step, got \(k)")
        }
        try ema?.validate()
        try pseudoLabel?.validate()
        if pseudoLabel != nil && mix != nil {
            throw TrainingError.invalidConfiguration("pseudo-labelling cannot be combined with MixUp/CutMix")
        }
        if let mix {
            try mix.validate()
            guard loss == .crossEntropy, classWeights == nil else {
                throw TrainingError.invalidConfiguration("MixUp/CutMix need the cross-entropy loss without class weights")
            }
        }
        switch learningRates {
        case .uniform: break
        case .backboneFactor(let f):
            guard f > 0, f.isFinite else { throw TrainingError.invalidConfiguration("backbone factor must be > 0") }
        case .layerDecay(let d):
            guard d > 0, d.isFinite else { throw TrainingError.invalidConfiguration("layer decay must be > 0") }
        }
        if let p2 = phaseTwo {
            try positive(p2.optimizer.learningRate, "phase-two learning rate")
            switch p2.trigger {
            case .afterEpochs(let n):
                guard n >= 0 else { throw TrainingError.invalidConfiguration("phase one needs ≥ 0 epochs") }
            case .plateau(_, _, let patience, let minDelta):
                guard patience >= 0, minDelta >= 0 else {
                    throw TrainingError.invalidConfiguration("phase-one patience and min delta must be ≥ 0")
                }
            }
            if case .top(let n) = p2.unfreeze, n < 0 {
                throw TrainingError.invalidConfiguration("cannot unfreeze \(n) groups")
            }
        }
    }
}

/// When and how a two-phase run switches to fine-tuning.
public struct PhaseTwo: Codable, Equatable {
    /// What ends phase 1.
    public enum Trigger: Codable, Equatable, Sendable {
        /// Phase 2 starts after this many epochs.
        case afterEpochs(Int)
        /// Phase 2 starts after `metric` has not improved for `patience` epochs (early stopping
        /// applied to phase 1 only).
        case plateau(metric: String, mode: MonitorMode, patience: Int, minDelta: Double)
    }

    /// What phase 2 trains.
    public enum Unfreeze: Codable, Equatable, Sendable {
        /// Everything.
        case all
        /// The head and the top `n` backbone groups (the backbone groups below stay frozen).
        case top(Int)
    }

    /// When phase 1 ends.
    public var trigger: Trigger
    /// What becomes trainable in phase 2.
    public var unfreeze: Unfreeze
    /// Phase 2's optimizer. The optimizer is rebuilt over the newly trainable parameters; state of
    /// parameters already trained in phase 1 is carried over by name when the optimizer kind and
    /// its state layout agree.
    public var optimizer: OptimizerConfig
    /// Phase 2's per-group learning rates.
    public var learningRates: LearningRatePolicy
    /// Phase 2's schedule, counted from phase 2's first step.
    public var schedule: ScheduleConfig
    /// Overrides phase 1's `trainBatchNorm` for phase 2 (nil keeps it).
    public var trainBatchNorm: Bool?

    /// The defaults follow Keras' guide: unfreeze everything and continue with SGD at 1e-4, momentum 0.9.
    public init(trigger: Trigger, unfreeze: Unfreeze = .all, optimizer: OptimizerConfig = .fineTuneDefault,
                learningRates: LearningRatePolicy = .uniform, schedule: ScheduleConfig = .fixed,
                trainBatchNorm: Bool? = nil) {
        self.trigger = trigger
        self.unfreeze = unfreeze
        self.optimizer = optimizer
        self.learningRates = learningRates
        self.schedule = schedule
        self.trainBatchNorm = trainBatchNorm
    }
}
