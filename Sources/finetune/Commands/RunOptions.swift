import ArgumentParser
import Data
import Foundation
import Optim
import Training
import Vision

/// The flags that describe a training run: data, model, optimisation, head, recipe and freezing,
/// techniques, data loading and callbacks. `train` parses them into the run it starts, and `lr-find`
/// into the run whose range test it runs; `train` adds where the run goes (--out, --overwrite,
/// --resume), data-parallel launching and pseudo-labelling.
struct RunOptions: ParsableArguments {
    @Argument(help: "Class-folder root (with train/ val/ test/ splits, or plain class folders), or a path,label CSV file (see --image-root). `train --resume` needs it only for data that moved.")
    var data: String?

    // Model.
    @Option(help: "Architecture (see `finetune summary --help`).") var arch: String?
    @Option(help: "Initial weights: a catalog tag such as imagenet, a catalog name, a .pth/.safetensors file, or none.")
    var weights = "imagenet"
    @Option(help: "Override the model's input size (crop side; the resize keeps the weights' ratio).")
    var inputSize: Int?

    // Optimisation.
    @Option(help: "Epochs in total (default 10; a resumed run keeps its own unless given).") var epochs: Int?
    @Option(help: "Images per step.") var batchSize = 32
    @Option(help: ArgumentHelp("The optimizer: adam, adamw (Adam with decoupled weight decay: 0.01 unless --weight-decay "
            + "says otherwise), sgd (with --momentum, as torchvision's references train) or rmsprop (with --momentum)."))
    var optimizer: OptimizerConfig.Kind = .adam
    @Option(help: "Learning rate of the head (default: 1e-3 for adam/adamw/rmsprop, 1e-2 for sgd), or find: run `finetune lr-find` first and use its suggestion.")
    var lr: LearningRateArgument?
    @Option(help: "Momentum (sgd, rmsprop).") var momentum = 0.9
    @Option(help: "Weight decay (decoupled for adamw).") var weightDecay: Double?
    @Option(help: "Learning-rate schedule, e.g. fixed, cosine, step:step_size=1000,gamma=0.1, onecycle.")
    var lrSchedule = "fixed"
    @Option(help: "Linear warmup steps in front of the schedule.") var warmup: Int?
    @Option(help: "Cross-entropy label smoothing in [0, 1).") var labelSmoothing = 0.0
    @Option(help: "Clip gradients to this global L2 norm.") var clipGradNorm: Double?
    @OptionGroup var precisionOptions: PrecisionOptions
    @Flag(inversion: .prefixedNo, help: "Channels-last (NHWC) weights and inputs: oneDNN's fastest CPU layout.")
    var channelsLast = true

    // Head.
    @Option(help: "Global pooling of the backbone's feature maps in front of the head: avg or max.")
    var pooling: HeadPooling = .avg
    @Flag(help: "BatchNorm1d on the pooled features, as the first layer of the head.") var headBatchnorm = false
    @Option(help: "Dropout in front of each Dense layer of the head (default: the architecture's own).")
    var headDropout: Double?
    @Option(help: "Hidden Dense + ReLU layers of the head: comma-separated widths, e.g. 256 or 512,128.")
    var headHidden: String?
    @Flag(help: "Binary classification: one sigmoid output trained with binary cross entropy (DATA must have 2 classes).")
    var binary = false

    // Transfer-learning recipe and freezing.
    @Option(help: ArgumentHelp("The transfer-learning recipe: full (everything trains at --lr), head-only (the backbone frozen, "
            + "its BatchNorm statistics too: Keras' feature extraction), two-phase (head-only, then the backbone at "
            + "--phase2-lr: fastai's fine_tune) or discriminative (the backbone at lower rates: --lr-factor, --layer-decay)."))
    var recipe: RecipeName = .full
    @Option(name: .customLong("phase1-epochs"), help: "two-phase: head-only epochs before unfreezing (default: half of --epochs).")
    var phase1Epochs: Int?
    @Option(help: "two-phase: unfreeze only the top N backbone groups in phase 2 (default: all).") var unfreezeTop: Int?
    @Option(name: .customLong("phase2-lr"), help: "two-phase: phase 2 learning rate (default: --lr / 10).")
    var phase2Lr: Double?
    @Option(help: "Discriminative: backbone learning rate = head rate / FACTOR (default 10).") var lrFactor: Double?
    @Option(help: "Discriminative: layer-wise decay, group d below the head gets lr * DECAY^d.") var layerDecay: Double?
    @Option(help: "Train only these scopes (comma-separated module paths or layer groups).") var trainableScopes: String?
    @Option(help: "Freeze every layer group up to and including SCOPE.") var freezeUntil: String?
    @Flag(help: "Freeze the whole backbone (train the head only).") var freezeBackbone = false
    @Flag(help: "Keep frozen BatchNorm layers updating their running statistics.") var trainBn = false
    @Flag(help: ArgumentHelp("Keep the backbone's BatchNorm layers in inference behaviour, frozen or not (Keras' fine-tuning advice).",
                             discussion: "Running statistics are used and never updated; where unfrozen, their weight and bias still train. The head's own BatchNorm (--head-batchnorm) trains as usual."))
    var freezeBnStats = false
    @OptionGroup(title: "Techniques") var techniques: TechniqueOptions

    // Data.
    @Option(help: "Training augmentation: none, standard (random resized crop + flip), keras (shear 0.2, zoom 0.2, flip), randaugment[:n=2,m=9], trivialaugment or autoaugment (standard, then torchvision's policy; autoaugment: its ImageNet policy).")
    var augment: AugmentArgument = AugmentArgument(kind: .standard)
    @Option(help: "Fraction of each class held out for validation when DATA has no val/ folder.") var valSplit: Double?
    @Option(help: "Use at most N images per class of each split.") var limitPerClass: Int?
    @Option(help: "Decoding threads.") var workers = 2
    @Option(help: "An image that cannot be decoded: skip (report it once, leave it out of the totals) or fail (stop, naming it).")
    var onBadImage: BadImagePolicy = .skip
    @Option(help: "JPEG EXIF orientation: apply (turn photos upright, as viewers show them) or ignore (as torchvision/PIL and Keras do).")
    var exif: EXIFOrientation = .apply
    @Option(help: "Random seed (initialisation, shuffling, augmentation; the split has --split-seed).") var seed: UInt64 = 0
    @Option(help: "Seed of the --val-split hold-out and the --limit-per-class choice (default: 0, whatever --seed is, so that a sweep over --seed keeps one validation set).")
    var splitSeed: UInt64?
    @Option(help: """
        Cached backbone features for head-only epochs: auto (use them whenever the backbone is frozen \
        and the inputs are unaugmented or --cache-augmentations is given), on (require them), off.
        """)
    var featureCache: FeatureCacheMode = .auto
    @Option(help: "Cache K augmented views per image (epoch e trains on view e mod K) instead of falling back to the full network.")
    var cacheAugmentations: Int?
    @Option(help: "Folder of feature caches (default: ~/.cache/finetune/features).") var featureCacheDir: String?
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?

    // Callbacks.
    @Option(help: "Stop after PATIENCE epochs without improvement of --monitor (and keep the best weights).")
    var earlyStopping: Int?
    @Option(help: "Metric for best checkpoint and early stopping (loss/accuracy without validation; with --ema, the EMA's: val_loss_ema).")
    var monitor: MonitorMetric = .valLoss
    @Option(help: "Also save checkpoints/last every N optimizer steps.") var saveEverySteps: Int?
    @Option(help: "Also save checkpoints/last every S seconds.") var saveEverySeconds: Double?
    @Option(help: "Warm start: load this .safetensors/.pth state dict (non-strict) before training.")
    var checkpointPath: String?
    @Option(help: "With --checkpoint-path: skip keys under these comma-separated scopes (e.g. the old head).")
    var checkpointExcludeScopes: String?

    /// The checks made before any work: the epoch count, the schedule, the head's widths, the workers
    /// and, for a new run, its inputs (`TrainingRun.checkInputs`: DATA, --image-root, --arch) and the
    /// recipe's settings.
    func check(resuming: Bool) throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        do { _ = try ScheduleConfig(parsing: lrSchedule) } catch {
            throw ValidationError("--lr-schedule: \(error); schedules: \(ScheduleConfig.names.joined(separator: ", "))")
        }
        _ = try hiddenUnits()
        try checkWorkers(workers)
        guard !resuming else { return }
        try mapErrors {
            let spec = try specification(runDirectory: "")
            try TrainingRun.checkInputs(spec)  // before a launcher starts workers that would each say it
            try spec.recipe.validate(epochs: epochs ?? 10)
        }
    }

    /// The widths of --head-hidden.
    func hiddenUnits() throws -> [Int] {
        try (list(headHidden) ?? []).map {
            guard let units = Int($0), units >= 1 else {
                throw ValidationError("--head-hidden: '\($0)' is not a positive width; expected e.g. 256 or 512,128")
            }
            return units
        }
    }

    func list(_ text: String?) -> [String]? {
        text.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }

    /// The run the flags describe, to be written in `runDirectory`.
    func specification(runDirectory: String) throws -> TrainingRun.Specification {
        var spec = TrainingRun.Specification(data: data ?? "", architecture: arch ?? "",
                                             weights: weights.lowercased() == "none" ? nil : weights, runDirectory: runDirectory)
        spec.head = HeadSpec(outputs: 0, pooling: pooling.pooling, batchNorm: headBatchnorm, dropout: headDropout,
                             hiddenUnits: try hiddenUnits())
        var r = RecipeOptions()
        r.recipe = recipe
        r.optimizer = optimizer
        r.learningRate = lr?.value
        r.findLearningRate = lr == .find ? true : nil
        r.momentum = momentum
        r.weightDecay = weightDecay
        r.schedule = try ScheduleConfig(parsing: lrSchedule)
        r.warmupSteps = warmup
        r.labelSmoothing = labelSmoothing
        r.gradientClipNorm = clipGradNorm
        precisionOptions.apply(to: &r)
        r.phaseOneEpochs = phase1Epochs
        r.unfreezeTop = unfreezeTop
        r.phaseTwoLearningRate = phase2Lr
        r.learningRateFactor = lrFactor
        r.layerDecay = layerDecay
        r.trainableScopes = list(trainableScopes)
        r.freezeUntil = freezeUntil
        r.freezeBackbone = freezeBackbone
        r.trainBatchNorm = trainBn
        r.freezeBatchNormStatistics = freezeBnStats
        r.binary = binary
        r.seed = seed
        techniques.apply(to: &r)
        spec.recipe = r
        spec.options = TrainOptions(
            epochs: epochs ?? 10, batchSize: batchSize, augment: augment.kind, valSplit: valSplit, limitPerClass: limitPerClass,
            seed: seed, workers: workers, earlyStoppingPatience: earlyStopping, monitor: monitor,
            saveEverySteps: saveEverySteps, saveEverySeconds: saveEverySeconds, inputSize: inputSize,
            checkpointPath: checkpointPath, checkpointExcludeScopes: list(checkpointExcludeScopes),
            featureCache: featureCache, cacheAugmentations: cacheAugmentations, featureCacheDirectory: featureCacheDir,
            channelsLast: channelsLast, onBadImage: onBadImage)
        spec.options.exif = exif
        spec.options.splitSeed = splitSeed
        spec.options.randAugment = augment.randAugment
        try techniques.apply(to: &spec.options)
        return spec
    }

    /// The flag that a `TrainingRun` setting comes from.
    static let flags: [String: String] = [
        "data": "DATA", "architecture": "--arch", "weights": "--weights", "inputSize": "--input-size",
        "batchSize": "--batch-size", "epochs": "--epochs", "workers": "--workers", "valSplit": "--val-split",
        "limitPerClass": "--limit-per-class", "earlyStoppingPatience": "--early-stopping",
        "saveEverySteps": "--save-every-steps", "saveEverySeconds": "--save-every-seconds",
        "cacheAugmentations": "--cache-augmentations", "checkpointPath": "--checkpoint-path",
        "checkpointExcludeScopes": "--checkpoint-exclude-scopes", "head": "--pooling/--head-*", "head.dropout": "--head-dropout",
        "head.hiddenUnits": "--head-hidden", "head.pooling": "--pooling", "binary": "--binary", "freezeUntil": "--freeze-until", "trainableScopes": "--trainable-scopes/--freeze-until",
        "featureCache": "--feature-cache", "featureCacheDirectory": "--feature-cache-dir", "learningRate": "--lr", "phaseTwoLearningRate": "--phase2-lr",
        "weightDecay": "--weight-decay", "momentum": "--momentum", "warmupSteps": "--warmup",
        "labelSmoothing": "--label-smoothing", "gradientClipNorm": "--clip-grad-norm",
        "phaseOneEpochs": "--phase1-epochs", "unfreezeTop": "--unfreeze-top", "learningRateFactor": "--lr-factor",
        "layerDecay": "--layer-decay", "randAugment": "--augment", "freezeBatchNormStatistics": "--freeze-bn-stats",
        "schedule": "--lr-schedule",
    ]

    /// Runs `body`, turning the run's errors into messages that name the flag (the run directory's
    /// errors name `runFlag`: --out, or --resume). A stop before the run existed is said unless
    /// `quietInterruption` (a data-parallel rank above 0: the launcher passed the Ctrl-C to every
    /// rank, and each said so).
    func mapErrors<T>(runFlag: String = "--out", quietInterruption: Bool = false, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch RunError.invalidSetting(let setting, let reason) {
            let flag = Self.flags[setting] ?? TechniqueOptions.flags[setting] ?? PseudoLabelOptions.flags[setting]
            throw ValidationError("\(flag ?? setting): \(reason)")
        } catch let error as RunError {
            throw ValidationError("\(runFlag): \(error)")
        } catch TrainingError.interrupted(let moment) {
            if !quietInterruption { printError("interrupted \(moment): nothing was written") }  // Ctrl-C before the run existed
            throw ExitCode(130)
        } catch DataError.invalidDataset(let message) {
            throw ValidationError(message)  // a dataset that cannot be used, as check-data says (status 64)
        } catch let error as DataError where onBadImage == .fail {
            throw CommandFailure("--on-bad-image fail: \(error)")
        }
    }
}
