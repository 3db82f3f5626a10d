import Foundation
import NN
import Optim

/// The transfer-learning recipes a run can follow (see `Recipe` for what each sets).
public enum RecipeName: String, Codable, CaseIterable, Sendable {
    /// Everything trains at one learning rate.
    case full
    /// The backbone is frozen; only the head trains.
    case headOnly = "head-only"
    /// Head only first, then (part of) the backbone at a lower learning rate.
    case twoPhase = "two-phase"
    /// Everything trains; the backbone at lower learning rates than the head.
    case discriminative
}

/// The optimisation and freezing choices of a run, as a user states them (the command line's
/// flags), turned into a `TrainingConfiguration` by `configuration(epochs:)`.
public struct RecipeOptions: Codable, Equatable {
    /// The recipe (`--recipe`): full fine-tuning by default.
    public var recipe: RecipeName = .full
    /// The optimizer (`--optimizer`): Adam by default.
    public var optimizer: OptimizerConfig.Kind = .adam
    /// The head's learning rate (nil: 1e-3 for Adam/AdamW, 1e-2 for SGD/RMSprop).
    public var learningRate: Double?
    /// Run the LR range test first and train at its suggestion (`train --lr find`; `TrainingRun.create`).
    public var findLearningRate: Bool?
    /// Momentum for SGD and RMSprop (0.9 by default; ignored by Adam/AdamW).
    public var momentum = 0.9
    /// nil: 0, or 0.01 for AdamW (decoupled).
    public var weightDecay: Double?
    /// "No bias decay" (`--no-bias-decay`): biases and normalisation parameters train without weight
    /// decay (`OptimizerConfig.noBiasDecay`); nil: off.
    public var noBiasDecay: Bool?
    /// The learning-rate schedule (fixed by default), counted per optimizer step.
    public var schedule: ScheduleConfig = .fixed
    /// Linear warmup steps in front of `schedule`.
    public var warmupSteps: Int?
    /// Label smoothing in [0, 1) (PyTorch's `label_smoothing`).
    public var labelSmoothing = 0.0
    /// Clip gradients to this global L2 norm (nil: no clipping).
    public var gradientClipNorm: Double?
    /// Run forward passes under CPU bf16 autocast (`--bf16`).
    public var autocastBF16 = false
    /// `--precision`: `.bf16` as `autocastBF16`; `.auto` is resolved for the model by `TrainingRun.create`
    /// (`Precision.resolved`); nil or `.fp32`: `autocastBF16` decides.
    public var precision: Precision?
    /// Two-phase: head-only epochs before unfreezing (nil: half of the epochs, at least 1).
    public var phaseOneEpochs: Int?
    /// Two-phase: unfreeze only the top N backbone groups in phase 2 (nil: all).
    public var unfreezeTop: Int?
    /// Two-phase: the phase 2 learning rate (nil: the head's rate / 10).
    public var phaseTwoLearningRate: Double?
    /// Discriminative: backbone rate = head rate / factor.
    public var learningRateFactor: Double?
    /// Discriminative: group d below the head trains at rate × decay^d.
    public var layerDecay: Double?
    /// Train only these scopes (module paths or layer groups).
    public var trainableScopes: [String]?
    /// Freeze every layer group up to and including this one.
    public var freezeUntil: String?
    /// Freeze every backbone group, whatever the recipe.
    public var freezeBackbone = false
    /// Frozen BatchNorm layers keep updating their running statistics.
    public var trainBatchNorm = false
    /// Every BatchNorm layer in front of the head, frozen or not, keeps inference behaviour
    /// (`FreezeSpec.freezeBatchNormStatistics`).
    public var freezeBatchNormStatistics = false
    /// One sigmoid output trained with binary cross entropy.
    public var binary = false
    /// Seeds LibTorch's generator (initialisation, dropout) through `TrainingConfiguration.seed`.
    public var seed: UInt64 = 0
    /// Gradient accumulation: batches per optimizer step (nil: 1). See `TrainingConfiguration.accumulationSteps`.
    public var accumulateSteps: Int?
    /// The decay of an exponential moving average of the weights (timm's `--model-ema-decay`; nil: no EMA).
    public var emaDecay: Double?
    /// The EMA's decay warmup (timm's `--model-ema-warmup`); needs `emaDecay`.
    public var emaWarmup: Bool?
    /// MixUp's α (timm's `--mixup`; nil or 0: off). See `MixConfig`.
    public var mixupAlpha: Double?
    /// CutMix's α (timm's `--cutmix`; nil or 0: off).
    public var cutmixAlpha: Double?
    /// The probability that a batch is mixed (nil: 1).
    public var mixProbability: Double?
    /// With MixUp and CutMix, the probability of CutMix (nil: 0.5).
    public var mixSwitchProbability: Double?
    /// Mixing stops from this epoch on (0-based; nil: never).
    public var mixupOffEpoch: Int?

    /// The defaults: full fine-tuning with Adam at 1e-3, no schedule, smoothing or clipping.
    public init() {}

    /// The head's learning rate after defaults.
    public var headLearningRate: Double {
        // RMSprop adapts its step to each parameter as Adam does, and takes Keras' 1e-3: PyTorch's 1e-2,
        // with --momentum's 0.9, trained the main job's head to a training loss of 38 (stop 53).
        learningRate ?? (optimizer == .sgd ? 1e-2 : 1e-3)
    }

    func optimizerConfig(learningRate: Double) -> OptimizerConfig {
        var config: OptimizerConfig
        switch optimizer {
        case .sgd: config = .sgd(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay ?? 0)
        case .adam: config = .adam(learningRate: learningRate, weightDecay: weightDecay ?? 0)
        case .adamw: config = .adamw(learningRate: learningRate, weightDecay: weightDecay ?? 1e-2)
        case .rmsprop: config = .rmsprop(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay ?? 0)
        }
        if noBiasDecay == true { config.noBiasDecay = true }
        return config
    }

    /// Checks what can be checked without the model or data. Errors name the setting.
    public func validate(epochs: Int?) throws {
        func bad(_ setting: String, _ reason: String) -> Error { RunError.invalidSetting(setting: setting, reason: reason) }
        // Rates and factors reach LibTorch as float32: 1e39 was finite here and overflowed there.
        func fits(_ x: Double) -> Bool { x.isFinite && abs(x) <= Double(Float.greatestFiniteMagnitude) }
        if let learningRate, !(learningRate > 0 && fits(learningRate)) { throw bad("learningRate", "must be a positive number float32 holds") }
        if let phaseTwoLearningRate, !(phaseTwoLearningRate > 0 && fits(phaseTwoLearningRate)) {
            throw bad("phaseTwoLearningRate", "must be a positive number float32 holds")
        }
        if let weightDecay, !(weightDecay >= 0 && fits(weightDecay)) { throw bad("weightDecay", "must be a number ≥ 0 that float32 holds") }
        // PyTorch takes any momentum ≥ 0; from 1 on the velocity never decays and training diverges
        // (`--momentum 2` trained 3 epochs to chance accuracy without a word).
        guard momentum >= 0 && momentum < 1 else {
            throw bad("momentum", "must be in [0, 1) (0.9 is usual): from 1 on the velocity grows without end, got \(momentum)")
        }
        if let warmupSteps, warmupSteps < 0 { throw bad("warmupSteps", "must be ≥ 0 steps") }
        guard labelSmoothing >= 0 && labelSmoothing < 1 else { throw bad("labelSmoothing", "must be in [0, 1)") }
        if let gradientClipNorm, !(gradientClipNorm > 0 && fits(gradientClipNorm)) { throw bad("gradientClipNorm", "must be a positive number float32 holds") }
        if let phaseOneEpochs, phaseOneEpochs < 0 { throw bad("phaseOneEpochs", "must be ≥ 0") }
        if let phaseOneEpochs, let epochs, recipe == .twoPhase, phaseOneEpochs > epochs {
            throw bad("phaseOneEpochs", "\(phaseOneEpochs) is more than the \(epochs) epochs: phase 2 would never start")
        }
        if let unfreezeTop, unfreezeTop < 0 { throw bad("unfreezeTop", "must be ≥ 0") }
        if trainBatchNorm && freezeBatchNormStatistics {
            throw bad("freezeBatchNormStatistics", "cannot be combined with trainBatchNorm (--train-bn): BatchNorm statistics either update or stay frozen")
        }
        if let learningRateFactor, !(learningRateFactor > 0 && fits(learningRateFactor)) { throw bad("learningRateFactor", "must be a positive number float32 holds") }
        if let layerDecay, !(layerDecay > 0 && fits(layerDecay)) { throw bad("layerDecay", "must be a positive number float32 holds") }
        if learningRateFactor != nil && layerDecay != nil {
            throw bad("layerDecay", "give a learning-rate factor or a layer decay, not both")
        }
        if let accumulateSteps, accumulateSteps < 1 { throw bad("accumulateSteps", "must be at least 1 batch per step") }
        if let emaDecay, !(emaDecay >= 0 && emaDecay < 1) {
            throw bad("emaDecay", "must be in [0, 1), e.g. 0.999 (the weight of the average at each step)")
        }
        if emaWarmup == true && emaDecay == nil { throw bad("emaWarmup", "needs an EMA decay") }
        if let a = mixupAlpha, !(a >= 0 && a.isFinite) { throw bad("mixupAlpha", "must be ≥ 0 (Beta(α, α); 0.2 to 1 is usual)") }
        if let a = cutmixAlpha, !(a >= 0 && a.isFinite) { throw bad("cutmixAlpha", "must be ≥ 0 (Beta(α, α); 1 is usual)") }
        if let p = mixProbability, !(0...1).contains(p) { throw bad("mixProbability", "must be in [0, 1]") }
        if let p = mixSwitchProbability, !(0...1).contains(p) { throw bad("mixSwitchProbability", "must be in [0, 1]") }
        if let n = mixupOffEpoch, n < 0 { throw bad("mixupOffEpoch", "must be ≥ 0") }
        let mixing = (mixupAlpha ?? 0) > 0 || (cutmixAlpha ?? 0) > 0
        if !mixing, let setting = [("mixProbability", mixProbability != nil), ("mixSwitchProbability", mixSwitchProbability != nil),
                                   ("mixupOffEpoch", mixupOffEpoch != nil)].first(where: \.1)?.0 {
            throw bad(setting, "needs MixUp or CutMix (an α above 0)")
        }
        if mixing && binary { throw bad(mixingSetting, "MixUp/CutMix mix softmax targets; binary mode has one sigmoid output") }
        if let cycle = schedule.momentumCycle, cycle != OneCycle.MomentumCycle(), momentum == 0, optimizer == .sgd || optimizer == .rmsprop {
            // PyTorch would switch momentum on here; finetune keeps --momentum 0, so the range is unused.
            throw bad("schedule", "base_momentum/max_momentum cycle the optimizer's momentum, which --momentum 0 turns off; give --momentum above 0, or leave them out")
        }
        if noBiasDecay == true && optimizerConfig(learningRate: headLearningRate).weightDecay == 0 {
            throw bad("noBiasDecay", "leaves biases and normalisation parameters out of weight decay, and there is none; give --weight-decay above 0")
        }
        if warmupSteps ?? 0 > 0, case .warmup = schedule {
            throw bad("warmupSteps", "the schedule already has warmup_steps")
        }
    }

    /// A warning when the backbone's learning rates would be above the head's: a layer decay above 1
    /// (each group below the head gets lr × decay^d: timm's `--layer-decay` is below 1, 0.65 to 0.9) or
    /// a factor below 1 (the backbone gets lr / factor). Both are taken, as timm and fastai take them,
    /// but read like a decay of "halve per group" given as 2.
    var backboneFasterWarning: String? {
        if let layerDecay, layerDecay > 1 {
            return "--layer-decay \(layerDecay) raises the learning rate of each layer group below the head (lr × "
                + "\(layerDecay)^d, d groups down): a decay below 1 lowers it (0.75 is usual)"
        }
        if let learningRateFactor, learningRateFactor < 1 {
            return "--lr-factor \(learningRateFactor) gives the backbone a higher learning rate than the head (lr / "
                + "\(learningRateFactor)): a factor above 1 lowers it (10 is usual)"
        }
        return nil
    }

    /// The setting that turns mixing on, for an error about it: `mixupAlpha`, or `cutmixAlpha` when only
    /// CutMix is on (`--cutmix 1` alone was refused as `--mixup`).
    var mixingSetting: String { (mixupAlpha ?? 0) > 0 ? "mixupAlpha" : "cutmixAlpha" }

    /// The trainer's configuration for a run of `epochs` epochs.
    public func configuration(epochs: Int) throws -> TrainingConfiguration {
        try validate(epochs: epochs)
        let headLR = headLearningRate
        var schedule = self.schedule
        if let warmupSteps, warmupSteps > 0 { schedule = .warmup(steps: warmupSteps, startFactor: 0, then: schedule) }
        let policy: LearningRatePolicy? = layerDecay.map { .layerDecay($0) } ?? learningRateFactor.map { .backboneFactor($0) }
        var config = TrainingConfiguration(
            optimizer: optimizerConfig(learningRate: headLR), schedule: schedule, learningRates: policy ?? .uniform,
            labelSmoothing: labelSmoothing, gradientClipNorm: gradientClipNorm, autocastBF16: autocastBF16 || precision == .bf16, seed: seed)
        if binary { config.loss = .binary }
        config.accumulateSteps = accumulateSteps
        config.ema = emaDecay.map { EMAConfig(decay: $0, warmup: emaWarmup ?? false) }
        if (mixupAlpha ?? 0) > 0 || (cutmixAlpha ?? 0) > 0 {
            config.mix = MixConfig(mixupAlpha: mixupAlpha ?? 0, cutmixAlpha: cutmixAlpha ?? 0,
                                   probability: mixProbability ?? 1, switchProbability: mixSwitchProbability ?? 0.5,
                                   offEpoch: mixupOffEpoch, seed: seed)
        }
        switch recipe {
        case .headOnly:
            config.apply(.headOnly(trainBatchNorm: trainBatchNorm))
        case .twoPhase:
            let phaseOne = phaseOneEpochs ?? max(1, epochs / 2)
            let phaseTwo = PhaseTwo(trigger: .afterEpochs(phaseOne), unfreeze: unfreezeTop.map { .top($0) } ?? .all,
                                    optimizer: optimizerConfig(learningRate: phaseTwoLearningRate ?? headLR / 10),
                                    learningRates: policy ?? .uniform, schedule: schedule)
            config.freeze = FreezeSpec(trainBatchNorm: trainBatchNorm)
            config.apply(.twoPhase(phaseTwo))
            config.learningRates = .uniform  // phase 1 trains the head only
        case .discriminative:
            config.apply(.discriminative(policy ?? .backboneFactor(10)))
        case .full:
            config.apply(.fullFineTune)
        }
        // Explicit freezing settings refine the recipe's.
        if trainableScopes != nil || freezeUntil != nil || freezeBackbone || trainBatchNorm || freezeBatchNormStatistics {
            var spec = config.freeze ?? FreezeSpec()
            if let trainableScopes { spec.trainableScopes = trainableScopes }
            if let freezeUntil { spec.freezeUntil = freezeUntil }
            if freezeBackbone { spec.freezeBackbone = true }
            spec.trainBatchNorm = trainBatchNorm
            spec.freezeBatchNormStatistics = freezeBatchNormStatistics
            config.freeze = spec
        }
        return config
    }
}
