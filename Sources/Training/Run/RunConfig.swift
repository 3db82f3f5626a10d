import Data
import Foundation
import Torch
import Vision

/// The settings of a training run that are not part of `TrainingConfiguration` (data, batching,
/// augmentation, callbacks). Saved in `config.json` so that a resumed run rebuilds the same loaders.
public struct TrainOptions: Codable, Equatable, Sendable {
    /// Epochs in total.
    public var epochs: Int
    /// Images per optimizer step.
    public var batchSize: Int
    /// Training augmentation.
    public var augment: Augmentation
    /// Fraction of each class held out for validation when the data has no validation folder.
    public var valSplit: Double?
    /// At most this many images per class of each split.
    public var limitPerClass: Int?
    /// Seed of initialisation, shuffling and augmentation (and of the splits in runs that record no
    /// `splitSeed`).
    public var seed: UInt64
    /// Seed of the `valSplit` hold-out and the `limitPerClass` choice, kept apart from `seed` so that a
    /// sweep over seeds measures one validation set: with `seed` alone, each seed held out other
    /// images, and the runs' validation metrics differed by the split as well (stop 53). nil in runs
    /// from before it (their splits used `seed`); `TrainingRun.create` records 0 when it is not given.
    public var splitSeed: UInt64?
    /// Decoding threads.
    public var workers: Int
    /// Early-stopping patience in epochs (nil: no early stopping).
    public var earlyStoppingPatience: Int?
    /// The metric of the best checkpoint and early stopping (without validation, the training
    /// metric of the same name).
    public var monitor: MonitorMetric
    /// Also save `checkpoints/last` every N optimizer steps.
    public var saveEverySteps: Int?
    /// Also save `checkpoints/last` every S seconds.
    public var saveEverySeconds: Double?
    /// The crop side the model sees, when it overrides the weights' own.
    public var inputSize: Int?
    /// A warm-start state dict loaded before training.
    public var checkpointPath: String?
    /// Key scopes of `checkpointPath` that are not loaded.
    public var checkpointExcludeScopes: [String]?
    /// When to train on cached backbone features (nil in runs from before the feature cache: auto).
    public var featureCache: FeatureCacheMode?
    /// Augmented views cached per image.
    public var cacheAugmentations: Int?
    /// Where feature caches live (nil: the default folder).
    public var featureCacheDirectory: String?
    /// Weights and inputs in channels-last layout (nil in older runs: contiguous).
    public var channelsLast: Bool?
    /// What to do with an image that cannot be decoded: `skip` (report it once and leave it out) or
    /// `fail` (stop with an error naming it). nil in older runs: skip.
    public var onBadImage: BadImagePolicy?
    /// The intra-op threads the run trained with (nil in older runs). A resumed run uses them again:
    /// LibTorch's reductions split work by thread, so another count changes the last bits.
    public var threads: Int?
    /// Whether JPEGs were turned upright by their EXIF orientation (nil in older runs: applied).
    public var exif: EXIFOrientation?
    /// Per-class loss weights: `auto` (scikit-learn's "balanced", from the training split's counts),
    /// `none`, or a JSON file (an array in class order, or an object of class name → weight). nil: none.
    public var classWeights: String?
    /// How training batches are drawn: `shuffle` (nil) or `balanced` (with replacement, to equal class frequency).
    public var sampler: SamplerKind?
    /// torchvision's `ColorJitter(brightness, contrast, saturation, hue)` after the standard augmentation.
    public var colorJitter: [Double]?
    /// For a CSV DATA file: the folder its relative image paths resolve against (nil: the CSV's folder).
    public var imageRoot: String?
    /// `augment: randaugment`'s [n, m] (operations per image, magnitude bin of 31); nil: [2, 9].
    public var randAugment: [Int]?
    /// Random erasing's probability per image (timm's `--reprob`), applied to the normalised tensor
    /// after the augmentation; nil: none.
    public var randomErasing: Double?
    /// What random erasing fills the rectangle with (nil: `pixel`, timm's `train.py` default).
    public var erasingMode: RandomErasing.Mode?

    /// The random erasing these options ask for (nil when `randomErasing` is nil or 0).
    public var erasing: RandomErasing? {
        randomErasing.flatMap { $0 > 0 ? RandomErasing(probability: $0, mode: erasingMode ?? .pixel) : nil }
    }
    /// A folder of unlabelled images for pseudo-labelling (read recursively; nil: none).
    public var unlabeled: String?
    /// In data-parallel training, BatchNorm statistics over every rank's batch together (PyTorch's
    /// `SyncBatchNorm`); nil or false: per rank, as DDP's default. No effect in a single process.
    public var syncBatchNorm: Bool?
    /// Pseudo-labelling's settings (with `unlabeled`; nil: the defaults). `TrainingRun` resolves the
    /// start epoch and puts them into the training configuration.
    public var pseudoLabel: PseudoLabelSettings?

    /// The CLI's defaults for everything but `epochs` and `batchSize`. `threads` is recorded by
    /// `TrainingRun.create`; `exif` is nil (applied) unless the caller sets it.
    public init(epochs: Int, batchSize: Int, augment: Augmentation = .standard, valSplit: Double? = nil,
                limitPerClass: Int? = nil, seed: UInt64 = 0, workers: Int = 2, earlyStoppingPatience: Int? = nil,
                monitor: MonitorMetric = .valLoss, saveEverySteps: Int? = nil, saveEverySeconds: Double? = nil,
                inputSize: Int? = nil, checkpointPath: String? = nil, checkpointExcludeScopes: [String]? = nil,
                featureCache: FeatureCacheMode? = nil, cacheAugmentations: Int? = nil, featureCacheDirectory: String? = nil,
                channelsLast: Bool? = nil, onBadImage: BadImagePolicy? = nil) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.augment = augment
        self.valSplit = valSplit
        self.limitPerClass = limitPerClass
        self.seed = seed
        self.workers = workers
        self.earlyStoppingPatience = earlyStoppingPatience
        self.monitor = monitor
        self.saveEverySteps = saveEverySteps
        self.saveEverySeconds = saveEverySeconds
        self.inputSize = inputSize
        self.checkpointPath = checkpointPath
        self.checkpointExcludeScopes = checkpointExcludeScopes
        self.featureCache = featureCache
        self.cacheAugmentations = cacheAugmentations
        self.featureCacheDirectory = featureCacheDirectory
        self.channelsLast = channelsLast
        self.onBadImage = onBadImage
    }
}

/// The metric that picks the best checkpoint and drives early stopping.
public enum MonitorMetric: String, Codable, CaseIterable, Sendable {
    /// The validation loss (lower is better); `loss` without validation data.
    case valLoss = "val_loss"
    /// The validation accuracy (higher is better); `accuracy` without validation data.
    case valAccuracy = "val_accuracy"

    /// The metric's name in a run with (`val_…`) or without validation data (the training metric).
    /// A run that keeps an EMA of its weights (`ema`) and validates watches the EMA's metric
    /// (`val_loss_ema`), timm's rule: the EMA's weights are the ones the run ends with and serves, so
    /// its best checkpoint and early stopping judge them. (The EMA has no training metric.)
    public func name(hasValidation: Bool, ema: Bool = false) -> String {
        guard hasValidation else { return String(rawValue.dropFirst(4)) }
        return ema ? rawValue + "_ema" : rawValue
    }
}

/// `config.json` of a run directory: everything `evaluate` and `predict` need to rebuild the model
/// and its preprocessing, and everything a resumed run needs to rebuild the loaders.
public struct RunConfig: Codable {
    /// The value of `format` that marks a finetune run.
    public static let formatName = "finetune-run"
    /// The `version`s this library reads.
    public static let supportedVersions = [1]

    /// The classification head the run trained.
    public struct Head: Codable, Equatable, Sendable {
        /// Classes (2 for a binary head with one output).
        public var numClasses: Int
        /// Whether the model ends in the classifier (false: an embedding model).
        public var includeTop: Bool
        /// The head training put on the backbone (nil in runs from before custom heads: a plain Linear).
        public var spec: HeadSpec?

        /// One sigmoid output trained with binary cross entropy.
        public var isBinary: Bool { spec?.outputs == 1 && numClasses == 2 }
        /// The model's output width.
        public var outputs: Int { spec?.outputs ?? numClasses }

        /// A head of `numClasses` classes; `spec` nil means torchvision's plain Linear.
        public init(numClasses: Int, includeTop: Bool = true, spec: HeadSpec? = nil) {
            self.numClasses = numClasses
            self.includeTop = includeTop
            self.spec = spec
        }
    }

    /// The data a run was created from.
    public struct DataInfo: Codable, Equatable, Sendable {
        /// The DATA argument as given (absolute path).
        public var path: String
        /// Whether DATA had train/val/test folders.
        public var hasSplitFolders: Bool
        /// Images of each split actually used (files found unusable while decoding are not counted
        /// once the run has met them).
        public var trainSamples: Int
        /// Images of the validation split (held out, or the val/ folder) actually used; 0 without one.
        public var validationSamples: Int
        /// Images of the test/ folder actually used; 0 without one.
        public var testSamples: Int
        /// `RunSplits.fingerprint` of the images when the run was created (nil in runs written
        /// before 2026-12-05): a resume on other images is refused.
        public var fingerprint: String?

        /// The data description, counts as given.
        public init(path: String, hasSplitFolders: Bool, trainSamples: Int, validationSamples: Int, testSamples: Int) {
            self.path = path
            self.hasSplitFolders = hasSplitFolders
            self.trainSamples = trainSamples
            self.validationSamples = validationSamples
            self.testSamples = testSamples
        }
    }

    /// Always `finetune-run` (`formatName`).
    public var format = RunConfig.formatName
    /// The layout version of the run directory (one of `supportedVersions`).
    public var version = 1
    /// The zoo architecture.
    public var architecture: String
    /// The initial weights (`imagenet`, a catalog name or a file), nil for random initialisation.
    public var weights: String?
    /// Class names in label order.
    public var classNames: [String]
    /// The input transform of the model.
    public var preprocessing: Preprocessing
    /// The head the run trained (class count, binary or not, its `HeadSpec`).
    public var head: Head
    /// The trainer's configuration (optimizer, schedule, loss, freezing, recipe).
    public var training: TrainingConfiguration
    /// Batching, augmentation, data and checkpoint settings.
    public var options: TrainOptions
    /// Where the data came from and how many images each split used.
    public var data: DataInfo
    /// When the run was created (ISO 8601, UTC, to the second).
    public var createdAt: String
    /// When `config.json` was last written (ISO 8601).
    public var updatedAt: String
    /// The finetune version that wrote the run ("library" when created through the library directly).
    public var finetuneVersion: String
    /// The LibTorch version the run trained with, e.g. "1.13.1".
    public var libtorchVersion: String
    /// `running`, `completed`, `stopped`, `interrupted`, `diverged` or `failed`.
    public var status: String
    /// Epochs completed.
    public var epochsCompleted: Int
    /// What `model.safetensors` holds: `final` (the weights after the last epoch), `best` (early
    /// stopping restored the best epoch's weights) or `ema` (the moving average of the weights at the
    /// end, for runs with `training.ema`); nil before training ends.
    public var modelWeights: String?
    /// The learning rate the LR finder suggested and the run used (`train --lr find`); nil otherwise.
    public var learningRateFinder: Double?
    /// The epoch (1-based) whose weights `model.safetensors` holds.
    public var modelEpoch: Int?
    /// Accuracy on the test split after training, in [0, 1] (nil without test data).
    public var testAccuracy: Double?

    /// Set when `model.safetensors` may be older than the run: it was written when the run ended at
    /// epoch `modelEpoch`, and the run has not finished since (a resume that is `running`,
    /// `interrupted`, `diverged` or `failed`). Evaluating or exporting the run uses those weights.
    public var olderModelNotice: String? { olderModelNotice(trainingProcess: nil) }

    /// `olderModelNotice`, naming `trainingProcess` when it is known to train the run now
    /// (`RunLock.holder`).
    public func olderModelNotice(trainingProcess: Int32?) -> String? {
        guard let modelEpoch, !["completed", "stopped"].contains(status) else { return nil }
        let now = status != "running" ? "is \(status) now"
            : "was resumed and has not finished (" + (trainingProcess.map { "process \($0) is training it" } ?? "still training, or killed") + ")"
        // While a process trains it, a resume only meets its lock: the advice is to wait.
        return "model.safetensors holds the weights of epoch \(modelEpoch), written when the run last finished; it \(now): "
            + (trainingProcess == nil ? "finish it with `finetune train --resume` to replace them"
                                      : "they are replaced when that process finishes")
    }

    /// Every field given; `modelWeights`, `modelEpoch` and `testAccuracy` start nil. Nothing is checked
    /// (see `validate()`).
    public init(architecture: String, weights: String?, classNames: [String], preprocessing: Preprocessing,
                head: Head, training: TrainingConfiguration, options: TrainOptions, data: DataInfo,
                createdAt: String, updatedAt: String, finetuneVersion: String, libtorchVersion: String,
                status: String, epochsCompleted: Int) {
        self.architecture = architecture
        self.weights = weights
        self.classNames = classNames
        self.preprocessing = preprocessing
        self.head = head
        self.training = training
        self.options = options
        self.data = data
        self.createdAt = createdAt
        self.updatedAt = updatedAt
        self.finetuneVersion = finetuneVersion
        self.libtorchVersion = libtorchVersion
        self.status = status
        self.epochsCompleted = epochsCompleted
    }

    /// Checks what a reader relies on: the format and version, a class list that fits the head,
    /// preprocessing that can be applied (positive std, sane sizes, an image that fits in memory)
    /// and loader settings in range. Errors say which field is wrong.
    public func validate() throws {
        func bad(_ reason: String) -> Error { RunError.invalidConfig(path: "config.json", reason: reason) }
        guard format == Self.formatName else { throw bad("format is '\(format)', expected '\(Self.formatName)'") }
        guard Self.supportedVersions.contains(version) else {
            throw bad("version \(version) is not one this finetune reads (\(Self.supportedVersions.map(String.init).joined(separator: ", ")))")
        }
        guard ModelZoo.architectures.contains(architecture) else {
            throw bad("architecture '\(architecture)' is not one of the zoo's (\(ModelZoo.architectures.joined(separator: ", ")))")
        }
        guard !classNames.isEmpty else { throw bad("classNames is empty") }
        guard Set(classNames).count == classNames.count else { throw bad("classNames has duplicates") }
        guard head.numClasses == classNames.count else {
            throw bad("head.numClasses is \(head.numClasses) but classNames lists \(classNames.count) classes")
        }
        let outputs = head.outputs
        guard outputs == classNames.count || (outputs == 1 && classNames.count == 2) else {
            throw bad("the head has \(outputs) outputs but classNames lists \(classNames.count) classes")
        }
        do { try preprocessing.validate() } catch { throw bad("preprocessing: \(error)") }
        if let spec = head.spec {
            do { try spec.validate() } catch { throw bad("head.spec: \(error)") }
        }
        guard options.batchSize >= 1 else { throw bad("options.batchSize must be at least 1") }
        guard options.epochs >= 1 else { throw bad("options.epochs must be at least 1") }
        guard options.workers >= 0, options.workers <= Runtime.maxThreads else {
            throw bad("options.workers must be 0 to \(Runtime.maxThreads)")
        }
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: preprocessing, batchSize: 1)
        } catch {
            throw bad("preprocessing: \(error)")
        }
    }
}

extension RunConfig {
    /// The run's preprocessing for a crop of `side` pixels (`export --input-size`). When the run's
    /// was its weights' own scaled to its `--input-size`, the weights' own is scaled to `side`:
    /// scaling the run's rounded resize side again rounded twice (a 96 px run, resize 110, exported
    /// at 224 got 257 where `train --input-size 224` gives 256). Otherwise the run's is scaled.
    public func preprocessing(cropSize side: Int) -> Preprocessing {
        guard side != preprocessing.cropSize else { return preprocessing }
        let own = ModelZoo.preprocessing(architecture, weights: weights)
        return own.withCropSize(preprocessing.cropSize) == preprocessing ? own.withCropSize(side) : preprocessing.withCropSize(side)
    }
}
