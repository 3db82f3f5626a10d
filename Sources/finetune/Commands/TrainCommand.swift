import ArgumentParser
import Data
import Foundation
import NN
import Optim
import TensorIO
import Torch
import Training
import Vision

/// `finetune train DATA --arch A --weights imagenet --out RUN_DIR`: fine-tunes a zoo model on a
/// class-folder dataset and writes a run directory (see docs/cli.md).
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fine-tune a pretrained classifier on class folders and write a run directory.",
        discussion: """
            DATA is a folder of class folders, either with train/, val/ (or validation/) and test/
            splits, or plain class folders (then carve out a validation set with --val-split). The
            head is replaced to fit DATA's classes; the weights' own preprocessing is used for
            training and evaluation. Ctrl-C saves a resumable checkpoint (RUN_DIR/checkpoints/last).

            Examples:
              finetune train data/flowers --arch mobilenet_v2 --weights imagenet --out runs/flowers
              finetune train data/pets --arch resnet50 --recipe two-phase --phase1-epochs 3 --epochs 10 \\
                  --val-split 0.2 --out runs/pets --json
              finetune train --resume runs/pets --epochs 15
            """)

    static let optimizers = OptimizerConfig.Kind.allCases.map(\.rawValue)
    static let recipes = ["full", "head-only", "two-phase", "discriminative"]
    static let augmentations = ["none", "standard", "keras"]
    static let monitors = ["val_loss", "val_accuracy"]

    @Argument(help: "Class-folder root (with train/ val/ test/ splits, or plain class folders). Optional with --resume.")
    var data: String?

    // Model and output.
    @Option(help: "Architecture (see `finetune summary --help`).") var arch: String?
    @Option(help: "Initial weights: a catalog tag such as imagenet, a catalog name, a .pth/.safetensors file, or none.")
    var weights = "imagenet"
    @Option(help: "Run directory to create (an existing one is replaced only with --overwrite, and only if it is a finetune run).")
    var out: String?
    @Flag(help: "Replace --out if it holds an earlier finetune run (a folder holding anything else is never replaced).")
    var overwrite = false
    @Option(help: "Continue the run in RUN_DIR exactly from RUN_DIR/checkpoints/last (its saved settings are used; --epochs may extend it).")
    var resume: String?
    @Option(help: "Override the model's input size (crop side; the resize keeps the weights' ratio).")
    var inputSize: Int?

    // Optimisation.
    @Option(help: "Epochs in total (default 10; with --resume: the run's).") var epochs: Int?
    @Option(help: "Images per step.") var batchSize = 32
    @Option(help: "Optimizer: \(optimizers.joined(separator: ", ")).") var optimizer = "adam"
    @Option(help: "Learning rate of the head (default: 1e-3 for adam/adamw, 1e-2 for sgd/rmsprop).")
    var lr: Double?
    @Option(help: "Momentum (sgd, rmsprop).") var momentum = 0.9
    @Option(help: "Weight decay (decoupled for adamw).") var weightDecay: Double?
    @Option(help: "Learning-rate schedule, e.g. fixed, cosine, step:step_size=1000,gamma=0.1, onecycle.")
    var lrSchedule = "fixed"
    @Option(help: "Linear warmup steps in front of the schedule.") var warmup: Int?
    @Option(help: "Cross-entropy label smoothing in [0, 1).") var labelSmoothing = 0.0
    @Option(help: "Clip gradients to this global L2 norm.") var clipGradNorm: Double?
    @Flag(help: "Run forward passes under CPU bf16 autocast.") var bf16 = false
    @Flag(inversion: .prefixedNo, help: "Channels-last (NHWC) weights and inputs: oneDNN's fastest CPU layout.")
    var channelsLast = true

    // Head.
    @Option(help: "Global pooling of the backbone's feature maps in front of the head: avg or max.")
    var pooling = "avg"
    @Flag(help: "BatchNorm1d on the pooled features, as the first layer of the head.") var headBatchnorm = false
    @Option(help: "Dropout in front of each Dense layer of the head (default: the architecture's own).")
    var headDropout: Double?
    @Option(help: "Hidden Dense + ReLU layers of the head: comma-separated widths, e.g. 256 or 512,128.")
    var headHidden: String?
    @Flag(help: "Binary classification: one sigmoid output trained with binary cross entropy (DATA must have 2 classes).")
    var binary = false

    // Transfer-learning recipe and freezing.
    @Option(help: "Recipe: \(recipes.joined(separator: ", ")).") var recipe = "full"
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

    // Data.
    @Option(help: "Training augmentation: none, standard (random resized crop + flip), keras (shear 0.2, zoom 0.2, flip).")
    var augment = "standard"
    @Option(help: "Fraction of each class held out for validation when DATA has no val/ folder.") var valSplit: Double?
    @Option(help: "Use at most N images per class of each split.") var limitPerClass: Int?
    @Option(help: "Decoding threads.") var workers = 2
    @Option(help: "An image that cannot be decoded: skip (report it once, leave it out of the totals) or fail (stop, naming it).")
    var onBadImage: BadImagePolicy = .skip
    @Option(help: "Random seed (initialisation, shuffling, splits).") var seed: UInt64 = 0
    @Option(help: """
        Cached backbone features for head-only epochs: auto (use them whenever the backbone is frozen \
        and the inputs are unaugmented or --cache-augmentations is given), on (require them), off.
        """)
    var featureCache = "auto"
    @Option(help: "Cache K augmented views per image (epoch e trains on view e mod K) instead of falling back to the full network.")
    var cacheAugmentations: Int?
    @Option(help: "Folder of feature caches (default: ~/.cache/finetune/features).") var featureCacheDir: String?
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?

    // Callbacks.
    @Option(help: "Stop after PATIENCE epochs without improvement of --monitor (and keep the best weights).")
    var earlyStopping: Int?
    @Option(help: "Metric for best checkpoint and early stopping: val_loss or val_accuracy (loss/accuracy without validation).")
    var monitor = "val_loss"
    @Option(help: "Also save checkpoints/last every N optimizer steps.") var saveEverySteps: Int?
    @Option(help: "Also save checkpoints/last every S seconds.") var saveEverySeconds: Double?
    @Option(help: "Warm start: load this .safetensors/.pth state dict (non-strict) before training.")
    var checkpointPath: String?
    @Option(help: "With --checkpoint-path: skip keys under these comma-separated scopes (e.g. the old head).")
    var checkpointExcludeScopes: String?

    @Flag(help: "Print the final summary as one JSON object (progress goes to standard error).") var json = false

    static func list(_ text: String?) -> [String]? {
        text.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
    }

    func validate() throws {
        if resume == nil {
            guard data != nil else { throw ValidationError("give the DATA folder (or --resume RUN_DIR)") }
            guard arch != nil else { throw ValidationError("--arch is required (e.g. --arch mobilenet_v2)") }
            guard out != nil else { throw ValidationError("--out RUN_DIR is required") }
        }
        if let data {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("DATA folder \(data) does not exist or is not a folder")
            }
        }
        if let resume, !RunDirectory.isRun(resume) {
            throw ValidationError("--resume: \(resume) is not a run directory (no config.json)")
        }
        if let out, let data {
            do { try RunDirectory.checkSeparate(run: out, data: data) } catch { throw ValidationError("--out: \(error)") }
        }

        guard OptimizerConfig.Kind(rawValue: optimizer) != nil else {
            throw ValidationError("--optimizer: unknown optimizer '\(optimizer)'; expected \(Self.optimizers.joined(separator: ", "))")
        }
        guard Self.recipes.contains(recipe) else {
            throw ValidationError("--recipe: unknown recipe '\(recipe)'; expected \(Self.recipes.joined(separator: ", "))")
        }
        guard Self.augmentations.contains(augment) else {
            throw ValidationError("--augment: unknown augmentation '\(augment)'; expected \(Self.augmentations.joined(separator: ", "))")
        }
        guard ["auto", "on", "off"].contains(featureCache) else {
            throw ValidationError("--feature-cache: unknown mode '\(featureCache)'; expected auto, on or off")
        }
        if let cacheAugmentations, cacheAugmentations < 1 {
            throw ValidationError("--cache-augmentations must be at least 1")
        }
        if let cacheAugmentations, let epochs, cacheAugmentations > epochs {
            throw ValidationError("--cache-augmentations \(cacheAugmentations) is more than --epochs \(epochs): "
                                  + "epoch e trains on view e mod K, so views past the last epoch are never used")
        }
        guard Self.monitors.contains(monitor) else {
            throw ValidationError("--monitor: unknown metric '\(monitor)'; expected \(Self.monitors.joined(separator: ", "))")
        }
        do { _ = try ScheduleConfig(parsing: lrSchedule) } catch {
            throw ValidationError("--lr-schedule: \(error); schedules: \(ScheduleConfig.names.joined(separator: ", "))")
        }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        if let phase2Lr, !(phase2Lr > 0) { throw ValidationError("--phase2-lr must be positive") }
        if let weightDecay, weightDecay < 0 { throw ValidationError("--weight-decay must be ≥ 0") }
        guard momentum >= 0 else { throw ValidationError("--momentum must be ≥ 0") }
        if let warmup, warmup < 0 { throw ValidationError("--warmup must be ≥ 0 steps") }
        guard labelSmoothing >= 0 && labelSmoothing < 1 else { throw ValidationError("--label-smoothing must be in [0, 1)") }
        if let clipGradNorm, !(clipGradNorm > 0) { throw ValidationError("--clip-grad-norm must be positive") }
        if let phase1Epochs, phase1Epochs < 0 { throw ValidationError("--phase1-epochs must be ≥ 0") }
        if let unfreezeTop, unfreezeTop < 0 { throw ValidationError("--unfreeze-top must be ≥ 0") }
        if let lrFactor, !(lrFactor > 0) { throw ValidationError("--lr-factor must be positive") }
        if let layerDecay, !(layerDecay > 0) { throw ValidationError("--layer-decay must be positive") }
        if lrFactor != nil && layerDecay != nil { throw ValidationError("give --lr-factor or --layer-decay, not both") }
        if let valSplit, !(valSplit > 0 && valSplit < 1) { throw ValidationError("--val-split must be between 0 and 1") }
        if let limitPerClass, limitPerClass < 1 { throw ValidationError("--limit-per-class must be at least 1") }
        try checkWorkers(workers)
        if let earlyStopping, earlyStopping < 0 { throw ValidationError("--early-stopping patience must be ≥ 0") }
        if let saveEverySteps, saveEverySteps < 1 { throw ValidationError("--save-every-steps must be at least 1") }
        if let saveEverySeconds, !(saveEverySeconds > 0) { throw ValidationError("--save-every-seconds must be positive") }
        if let inputSize, inputSize < 16 { throw ValidationError("--input-size must be at least 16") }
        if let phase1Epochs, let epochs, recipe == "two-phase", phase1Epochs > epochs {
            throw ValidationError("--phase1-epochs \(phase1Epochs) is more than --epochs \(epochs): phase 2 would never start")
        }
        guard GlobalPooling(rawValue: pooling) != nil, pooling != "none" else {
            throw ValidationError("--pooling: unknown pooling '\(pooling)'; expected avg or max")
        }
        if let headDropout, !(headDropout >= 0 && headDropout < 1) {
            throw ValidationError("--head-dropout must be in [0, 1)")
        }
        _ = try hiddenUnits()
        if let checkpointPath, !FileManager.default.fileExists(atPath: checkpointPath) {
            throw ValidationError("--checkpoint-path: no such file: \(checkpointPath)")
        }
        if checkpointExcludeScopes != nil && checkpointPath == nil {
            throw ValidationError("--checkpoint-exclude-scopes needs --checkpoint-path")
        }
    }

    /// The widths of --head-hidden.
    func hiddenUnits() throws -> [Int] {
        try (Self.list(headHidden) ?? []).map {
            guard let units = Int($0), units >= 1 else {
                throw ValidationError("--head-hidden: '\($0)' is not a positive width; expected e.g. 256 or 512,128")
            }
            return units
        }
    }

    /// The head for `classCount` classes from the head flags.
    func headSpec(classCount: Int) throws -> HeadSpec {
        HeadSpec(outputs: binary ? 1 : classCount, pooling: GlobalPooling(rawValue: pooling) ?? .avg,
                 batchNorm: headBatchnorm, dropout: headDropout, hiddenUnits: try hiddenUnits())
    }

    /// Where human-readable progress goes: stdout, or stderr with --json.
    func say(_ text: String) {
        if json { printError(text) } else { print(text); fflush(stdout) }
    }

    // MARK: - Configuration

    func optimizerConfig(learningRate: Double) -> OptimizerConfig {
        let kind = OptimizerConfig.Kind(rawValue: optimizer)!
        switch kind {
        case .sgd: return .sgd(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay ?? 0)
        case .adam: return .adam(learningRate: learningRate, weightDecay: weightDecay ?? 0)
        case .adamw: return .adamw(learningRate: learningRate, weightDecay: weightDecay ?? 1e-2)
        case .rmsprop: return .rmsprop(learningRate: learningRate, momentum: momentum, weightDecay: weightDecay ?? 0)
        }
    }

    func trainingConfiguration(epochs: Int, checkpointDirectory: String, hasValidation: Bool) throws
        -> TrainingConfiguration {
        let kind = OptimizerConfig.Kind(rawValue: optimizer)!
        let headLR = lr ?? (kind == .sgd || kind == .rmsprop ? 1e-2 : 1e-3)
        var schedule = try ScheduleConfig(parsing: lrSchedule)
        if let warmup, warmup > 0 {
            if case .warmup = schedule {
                throw ValidationError("--warmup: the --lr-schedule already has warmup_steps")
            }
            schedule = .warmup(steps: warmup, startFactor: 0, then: schedule)
        }
        let policy: LearningRatePolicy? = layerDecay.map { .layerDecay($0) } ?? lrFactor.map { .backboneFactor($0) }
        var config = TrainingConfiguration(
            optimizer: optimizerConfig(learningRate: headLR), schedule: schedule, learningRates: policy ?? .uniform,
            labelSmoothing: labelSmoothing, gradientClipNorm: clipGradNorm, autocastBF16: bf16,
            monitor: monitorName(hasValidation: hasValidation), seed: seed,
            checkpointDirectory: checkpointDirectory)
        if binary { config.loss = .binary }
        switch recipe {
        case "head-only":
            config.apply(.headOnly(trainBatchNorm: trainBn))
        case "two-phase":
            let phaseOne = phase1Epochs ?? max(1, epochs / 2)
            let phaseTwo = PhaseTwo(trigger: .afterEpochs(phaseOne), unfreeze: unfreezeTop.map { .top($0) } ?? .all,
                                    optimizer: optimizerConfig(learningRate: phase2Lr ?? headLR / 10),
                                    learningRates: policy ?? .uniform, schedule: schedule)
            config.freeze = FreezeSpec(trainBatchNorm: trainBn)
            config.apply(.twoPhase(phaseTwo))
            config.learningRates = .uniform  // phase 1 trains the head only
        case "discriminative":
            config.apply(.discriminative(policy ?? .backboneFactor(10)))
        default:
            config.apply(.fullFineTune)
        }
        // Explicit freezing flags refine the recipe's.
        if trainableScopes != nil || freezeUntil != nil || freezeBackbone || trainBn {
            var spec = config.freeze ?? FreezeSpec()
            if let scopes = Self.list(trainableScopes) { spec.trainableScopes = scopes }
            if let freezeUntil { spec.freezeUntil = freezeUntil }
            if freezeBackbone { spec.freezeBackbone = true }
            spec.trainBatchNorm = trainBn
            config.freeze = spec
        }
        return config
    }

    func monitorName(hasValidation: Bool) -> String {
        hasValidation ? monitor : String(monitor.dropFirst(4))
    }

    // MARK: - Data

    struct Splits {
        var train: any ImageDataset
        var validation: (any ImageDataset)?
        var test: (any ImageDataset)?
        var hasSplitFolders: Bool
    }

    static func loadSplits(_ root: String, options: TrainOptions) throws -> Splits {
        let strict = (options.onBadImage ?? .skip).isStrict
        let found: ImageFolderSplits
        do {
            found = try ImageFolderDataset.splits(root: root, options: ScanOptions(strict: strict))
        } catch let error as DataError where strict {
            throw ValidationError("--on-bad-image fail: \(error)")
        }
        if !found.skipped.isEmpty, let warning = found.skipped.warning() { printError(warning) }
        var train: any ImageDataset = found.train
        var validation: (any ImageDataset)? = found.validation
        var test: (any ImageDataset)? = found.test
        if let n = options.limitPerClass {
            train = train.limited(perClass: n, seed: options.seed)
            validation = validation?.limited(perClass: n, seed: options.seed)
            test = test?.limited(perClass: n, seed: options.seed)
        }
        if let fraction = options.valSplit {
            guard validation == nil else {
                throw ValidationError("--val-split: \(root) already has a validation folder; drop --val-split")
            }
            let parts = try train.stratifiedSplit(validationFraction: fraction, seed: options.seed)
            train = parts.train
            validation = parts.validation
        }
        return Splits(train: train, validation: validation, test: test, hasSplitFolders: found.hasSplitFolders)
    }

    static func trainingTransform(_ augment: String, _ p: Preprocessing) -> any SampleTransform {
        switch augment {
        case "none":
            return EvaluationTransform(p)
        case "keras":
            // Keras' ImageDataGenerator(rescale, shear_range=0.2, zoom_range=0.2, horizontal_flip=True),
            // with the model's own scaling and normalisation folded into rescale/mean/std.
            let low = p.valueRange[0]
            return KerasImageDataGenerator(rescale: (p.valueRange[1] - low) / 255, shearRange: 0.2, zoomRange: 0.2,
                                           horizontalFlip: true, targetSize: (p.cropSize, p.cropSize),
                                           mean: p.mean.map { $0 - low }, std: p.std)
        default:
            return TrainingTransform.standard(p)
        }
    }

    // MARK: - Run

    func run() throws {
        try applyThreads(threads)
        let started = Date()
        if let resume { try runResumed(RunDirectory(resume), started: started) } else { try runNew(started: started) }
    }

    func runNew(started: Date) throws {
        let arch = arch!, root = URL(fileURLWithPath: data!).standardizedFileURL.path
        let options = TrainOptions(epochs: epochs ?? 10, batchSize: batchSize, augment: augment, valSplit: valSplit,
                                   limitPerClass: limitPerClass, seed: seed, workers: workers,
                                   earlyStoppingPatience: earlyStopping, monitor: monitor,
                                   saveEverySteps: saveEverySteps, saveEverySeconds: saveEverySeconds,
                                   inputSize: inputSize, checkpointPath: checkpointPath,
                                   checkpointExcludeScopes: Self.list(checkpointExcludeScopes),
                                   featureCache: featureCache, cacheAugmentations: cacheAugmentations,
                                   featureCacheDirectory: featureCacheDir, channelsLast: channelsLast,
                                   onBadImage: onBadImage)
        guard ModelZoo.architectures.contains(arch) else {
            throw ValidationError("--arch: unknown architecture '\(arch)'; known: \(ModelZoo.architectures.joined(separator: ", "))")
        }
        let splits = try Self.loadSplits(root, options: options)
        let classNames = splits.train.classNames
        if binary && classNames.count != 2 {
            throw ValidationError("--binary needs exactly 2 classes; \(root) has \(classNames.count): "
                                  + classNames.joined(separator: ", "))
        }
        let head = try headSpec(classCount: classNames.count)
        let initial = weights.lowercased() == "none" ? nil : weights
        Runtime.manualSeed(seed)
        let pretrained: PretrainedModel
        do {
            pretrained = try ModelZoo.make(arch, weights: initial, options: ModelOptions(numClasses: classNames.count))
        } catch {
            throw ValidationError("--weights \(weights): \(error)")
        }
        let model = pretrained.model
        if head != HeadSpec(outputs: classNames.count) {
            do { try model.configureHead(head) } catch { throw ValidationError("--pooling/--head-*: \(error)") }
        }
        var preprocessing = pretrained.preprocessing
        if let size = inputSize {
            preprocessing.resizeSize = Int((Double(size) * Double(preprocessing.resizeSize) / Double(preprocessing.cropSize)).rounded())
            preprocessing.cropSize = size
        }
        do {  // a batch never holds more images than the largest split
            let largest = max(splits.train.count, splits.validation?.count ?? 0, splits.test?.count ?? 0)
            try MemoryEstimate.checkImagePipeline(preprocessing: preprocessing, batchSize: min(batchSize, max(1, largest)),
                                                  workers: max(1, workers))
        } catch {
            throw ValidationError("--input-size \(preprocessing.cropSize) / --batch-size \(batchSize): \(error)")
        }
        if let path = checkpointPath { try warmStart(model, from: path, excluding: options.checkpointExcludeScopes ?? []) }
        try model.useChannelsLast(channelsLast)

        // Scope flags name the flag on error.
        let layout = ModelLayout(model)
        if let scope = freezeUntil, !layout.layerGroups.contains(scope) {
            throw ValidationError("--freeze-until: unknown scope '\(scope)'; layer groups of \(arch): "
                                  + layout.layerGroups.joined(separator: ", "))
        }

        let run = RunDirectory(out!)
        let lock: RunLock
        do { lock = try run.prepareNew(overwrite: overwrite, data: root) } catch { throw ValidationError("--out: \(error)") }
        defer { lock.release() }
        let configuration: TrainingConfiguration
        do {
            configuration = try trainingConfiguration(epochs: options.epochs, checkpointDirectory: run.checkpoints,
                                                      hasValidation: splits.validation != nil)
        }
        let trainer: Trainer
        do {
            trainer = try Trainer(model: model, configuration: configuration)
        } catch let error as TrainingError {
            if case .unknownScope = error {
                throw ValidationError("--trainable-scopes/--freeze-until: \(error)")
            }
            throw error
        }
        let now = RunDirectory.timestamp()
        var runConfig = RunConfig(
            architecture: arch, weights: initial, classNames: classNames, preprocessing: preprocessing,
            head: .init(numClasses: classNames.count, includeTop: true, spec: head), training: configuration,
            options: options,
            data: .init(path: root, hasSplitFolders: splits.hasSplitFolders, trainSamples: splits.train.count,
                        validationSamples: splits.validation?.count ?? 0, testSamples: splits.test?.count ?? 0),
            createdAt: now, updatedAt: now, finetuneVersion: finetuneVersion,
            libtorchVersion: Runtime.libTorchVersion, status: "running", epochsCompleted: 0)
        try run.write(runConfig)
        say("Run directory \(run.path): \(arch) (\(initial ?? "random init")), \(classNames.count) classes, "
            + "\(splits.train.count) training / \(splits.validation?.count ?? 0) validation / "
            + "\(splits.test?.count ?? 0) test images, recipe \(recipe), head \(head.description)")
        try train(trainer, run: run, runConfig: &runConfig, splits: splits, started: started)
    }

    func runResumed(_ run: RunDirectory, started: Date) throws {
        let lock: RunLock
        var runConfig: RunConfig
        do {
            lock = try RunLock(directory: run.path)
            runConfig = try run.readConfig()
        } catch {
            throw ValidationError("--resume: \(error)")
        }
        defer { lock.release() }
        guard let last = Checkpoint.locate(run.lastCheckpoint) else {
            throw ValidationError("--resume: \(run.lastCheckpoint) holds no complete checkpoint")
        }
        var options = runConfig.options
        if let epochs { options.epochs = epochs }
        options.workers = workers
        options.onBadImage = onBadImage
        runConfig.options = options
        do {
            let largest = max(runConfig.data.trainSamples, runConfig.data.validationSamples, runConfig.data.testSamples)
            try MemoryEstimate.checkImagePipeline(preprocessing: runConfig.preprocessing,
                                                  batchSize: min(options.batchSize, max(1, largest)), workers: max(1, workers))
        } catch {
            throw ValidationError("--resume: \(run.config): \(error)")
        }
        let root = data.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? runConfig.data.path
        let splits = try Self.loadSplits(root, options: options)
        try RunDirectory.checkClassNames(splits.train.classNames, run: runConfig.classNames, data: root)
        let model = try RunDirectory.buildModel(runConfig)
        try model.useChannelsLast(options.channelsLast ?? false)
        let trainer = try Trainer.resume(from: last, model: model) { $0.checkpointDirectory = run.checkpoints }
        say("Resuming \(run.path) from \(last) (epoch \(trainer.state.epoch), step \(trainer.state.globalStep)) "
            + "to \(options.epochs) epochs")
        try train(trainer, run: run, runConfig: &runConfig, splits: splits, started: started)
    }

    /// TF-slim's warm start: load a state dict, skipping keys under `excluding`, non-strict.
    func warmStart(_ model: Module, from path: String, excluding scopes: [String]) throws {
        let state: StateDict
        do {
            state = path.hasSuffix(".safetensors") ? try SafeTensors.load(path) : try PthImport.load(path)
        } catch {
            throw ValidationError("--checkpoint-path: cannot read \(path): \(error)")
        }
        var kept = StateDict()
        var skipped = 0
        for (key, tensor) in state {
            if scopes.contains(where: { key == $0 || key.hasPrefix($0 + ".") }) { skipped += 1 } else { kept[key] = tensor }
        }
        let report = try model.load(kept, strict: false)
        say("Warm start from \(path): \(skipped) tensors excluded (\(scopes.joined(separator: ", "))); \(report)")
    }

    /// The cached backbone features for head-only epochs (`--feature-cache`), or nil with the reason
    /// printed when a user would expect them.
    func prepareFeatureCache(_ trainer: Trainer, options: TrainOptions, preprocessing: Preprocessing, splits: Splits,
                             train: DataLoader, validation: DataLoader?) throws -> TrainingFeatures? {
        let mode = options.featureCache ?? "auto"
        guard mode != "off", let model = trainer.model as? ImageClassifier else { return nil }
        let augmented = options.augment != "none"
        let refuse = { (reason: String) throws -> TrainingFeatures? in
            if mode == "on" { throw ValidationError("--feature-cache on: \(reason)") }
            say("Feature cache not used: \(reason)")
            return nil
        }
        if let reason = FeatureCache.ineligibility(of: model) {
            // A full fine-tune never expected a cache; only say why when the backbone is (partly) frozen.
            if mode == "on" || trainer.state.freeze.frozenScopes.isEmpty == false {
                return try refuse("the backbone is not frozen (\(reason)); training goes through the full network")
            }
            return nil
        }
        if augmented && options.cacheAugmentations == nil {
            return try refuse("--augment \(options.augment) changes the inputs every epoch, so training goes through "
                              + "the full network; add --cache-augmentations K to cache K augmented views, or use --augment none")
        }
        let views = augmented ? options.cacheAugmentations ?? 1 : 1
        let directory = options.featureCacheDirectory ?? FeatureCache.defaultDirectory
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let description = String(decoding: try encoder.encode(preprocessing), as: UTF8.self)
        let started = Date()
        func prepare(_ dataset: any ImageDataset, _ loader: DataLoader, augmentation: String, views: Int) throws
            -> CachedFeatures {
            try FeatureCache.prepare(model: model, dataset: dataset, transform: loader.transform,
                                     transformDescription: "\(augmentation) \(description)", views: views,
                                     seed: loader.seed, autocastBF16: trainer.configuration.autocastBF16,
                                     batchSize: options.batchSize, workers: options.workers, directory: directory,
                                     strict: (options.onBadImage ?? .skip).isStrict)
        }
        let trainFeatures = try prepare(splits.train, train, augmentation: options.augment, views: views)
        var validationFeatures: CachedFeatures?
        if let dataset = splits.validation, let validation {
            validationFeatures = try prepare(dataset, validation, augmentation: "eval", views: 1)
        }
        let sets = [trainFeatures] + (validationFeatures.map { [$0] } ?? [])
        let reused = sets.allSatisfy(\.reused)
        say("Feature cache: \(trainFeatures.usableCount) training images × \(views) view\(views == 1 ? "" : "s")"
            + (validationFeatures.map { " + \($0.usableCount) validation images" } ?? "")
            + ", \(trainFeatures.embeddingSize) features each, "
            + (reused ? "reused" : String(format: "computed in %.1f s", Date().timeIntervalSince(started)))
            + " (\(directory)); head-only epochs skip the backbone")
        return TrainingFeatures(train: trainFeatures, validation: validationFeatures)
    }

    func train(_ trainer: Trainer, run: RunDirectory, runConfig: inout RunConfig, splits: Splits,
               started: Date) throws {
        let options = runConfig.options
        let p = runConfig.preprocessing
        let strict = (options.onBadImage ?? .skip).isStrict
        let trainLoader = try DataLoader(splits.train, batchSize: options.batchSize, shuffle: true, seed: options.seed,
                                         transform: Self.trainingTransform(options.augment, p), workers: options.workers,
                                         strict: strict)
        let evalTransform = EvaluationTransform(p)
        let validationLoader = try splits.validation.map {
            try DataLoader($0, batchSize: options.batchSize, transform: evalTransform, workers: options.workers,
                           strict: strict)
        }
        let skipped = SkippedFileReporter { split, entry in
            printError("warning: skipping \(entry.path) (\(split) data): \(entry.reason)")
        }
        skipped.watch(trainLoader, split: "training")
        if let validationLoader { skipped.watch(validationLoader, split: "validation") }
        let monitorMetric = validationLoader != nil ? options.monitor : String(options.monitor.dropFirst(4))
        let write: (String) -> Void = json ? { printError($0, terminator: "") } : { FileHandle.standardOutput.write(Foundation.Data($0.utf8)) }
        var callbacks: [TrainingCallback] = [
            ProgressPrinter(write: write),
            CSVLoggerCallback(path: run.history),
            JSONLinesLoggerCallback(path: run.events, everySteps: 10),
            TensorBoardCallback(logDirectory: run.tensorboard),
            ModelCheckpoint(directory: run.checkpoints, monitor: monitorMetric, saveBestOnly: true,
                            everySteps: options.saveEverySteps, everySeconds: options.saveEverySeconds),
        ]
        var earlyStopping: EarlyStopping?
        if let patience = options.earlyStoppingPatience {
            let callback = EarlyStopping(monitor: monitorMetric, patience: patience, restoreBestWeights: true)
            earlyStopping = callback
            callbacks.append(callback)
        }
        trainer.callbacks = callbacks
        trainer.featureCache = try badImageContext(strict) {
            try prepareFeatureCache(trainer, options: options, preprocessing: p, splits: splits,
                                    train: trainLoader, validation: validationLoader)
        }
        if let cache = trainer.featureCache {
            skipped.record(cache.train.skipped, split: "training")
            if let v = cache.validation { skipped.record(v.skipped, split: "validation") }
        }
        let stop = SignalStop()
        trainer.signalStop = stop
        defer { stop.cancel() }

        let result = try badImageContext(strict) {
            try trainer.fit(train: trainLoader, validation: validationLoader, epochs: options.epochs)
        }
        runConfig.status = result.status.name
        runConfig.epochsCompleted = result.epochs
        runConfig.training = trainer.configuration
        runConfig.updatedAt = RunDirectory.timestamp()
        if case .interrupted(let checkpoint) = result.status {
            try run.write(runConfig)
            say("Interrupted: checkpoint \(checkpoint ?? "not written"); continue with `finetune train --resume \(run.path)`")
            throw ExitCode(130)
        }

        // Final weights (the best epoch's when early stopping restored them).
        var modelEpoch = result.epochs
        if let restored = earlyStopping?.restoredEpoch {
            runConfig.modelWeights = "best"
            modelEpoch = restored + 1
        } else {
            runConfig.modelWeights = "final"
        }
        runConfig.modelEpoch = modelEpoch
        try SafeTensors.write(trainer.model.stateDict(), metadata: ["architecture": runConfig.architecture,
                                                                   "weights": runConfig.modelWeights ?? "final"],
                              to: run.model)

        // Plots: learning curves from the history, the confusion matrix of the final validation pass.
        var trainCurves: [Int: [String: Double]] = [:], validationCurves: [Int: [String: Double]] = [:]
        for row in trainer.state.history {
            for (key, value) in row.metrics {
                if key.hasPrefix("val_") {
                    let name = String(key.dropFirst(4))
                    validationCurves[row.epoch + 1, default: [:]][name == "macro_auc" ? "auc" : name] = value
                } else {
                    trainCurves[row.epoch + 1, default: [:]][key] = value
                }
            }
        }
        try Plots.writeLearningCurves(train: trainCurves, validation: validationCurves,
                                      metrics: ["loss", "accuracy", "auc"], directory: run.path)
        var validationReport: EvaluationReport?
        if let validationLoader {
            if earlyStopping?.restoredEpoch == nil, let last = trainer.lastValidationReport {
                validationReport = last
            } else {
                validationReport = try trainer.evaluate(validationLoader)
            }
            if let r = validationReport {
                try Plots.write(Plots.confusionMatrix(r.confusionMatrix, classNames: r.classNames,
                                                      title: "Confusion matrix (validation)"),
                                to: run.file("confusion_matrix.svg"))
            }
        }

        var testReport: EvaluationReport?
        if let test = splits.test {
            let loader = try DataLoader(test, batchSize: options.batchSize, transform: evalTransform, workers: options.workers,
                                        strict: strict)
            skipped.watch(loader, split: "test")
            testReport = try badImageContext(strict) { try trainer.evaluate(loader) }
        }
        runConfig.testAccuracy = testReport?.accuracy
        // The totals are the images actually used: files found unusable while decoding are not counted.
        let trainUsed = splits.train.count - skipped.count(split: "training")
        let validationUsed = (splits.validation?.count ?? 0) - skipped.count(split: "validation")
        let testUsed = (splits.test?.count ?? 0) - skipped.count(split: "test")
        runConfig.data.trainSamples = trainUsed
        runConfig.data.validationSamples = validationUsed
        runConfig.data.testSamples = testUsed
        try run.write(runConfig)

        let seconds = Date().timeIntervalSince(started)
        let finalMetrics = trainer.state.history.last?.metrics ?? [:]
        if json {
            var summary: [String: Any] = [
                "run_dir": run.path, "architecture": runConfig.architecture, "weights": runConfig.weights as Any,
                "classes": runConfig.classNames, "status": result.status.name,
                "stop_reason": { if case .stopped(let r) = result.status { return r as Any } else { return NSNull() } }(),
                "epochs": result.epochs, "global_step": result.globalStep,
                "train_samples": trainUsed, "validation_samples": validationUsed,
                "test_samples": testUsed, "final_metrics": finalMetrics,
                "monitor": result.best?.metric as Any, "best_value": result.best?.best as Any,
                "best_epoch": result.best?.bestEpoch.map { $0 + 1 } as Any,
                "model_weights": runConfig.modelWeights as Any, "model_epoch": modelEpoch,
                "test_accuracy": testReport?.accuracy as Any, "test_loss": testReport?.loss as Any,
                "validation_accuracy": validationReport?.accuracy as Any, "seconds": seconds,
            ]
            if let k = testReport?.topK { summary["test_top\(k)_accuracy"] = testReport?.topKAccuracy as Any }
            printJSON(summary)
        } else {
            print("Training \(result.status) after \(result.epochs) epochs, \(result.globalStep) steps "
                  + String(format: "(%.1f s)", seconds) + " on \(trainUsed) training images")
            if let best = result.best, let value = best.best, let epoch = best.bestEpoch {
                print(String(format: "best %@: %.4f (epoch %d)", best.metric, value, epoch + 1))
            }
            if let r = validationReport { print(String(format: "validation accuracy: %.2f%%", r.accuracy * 100)) }
            print("model.safetensors: \(runConfig.modelWeights ?? "final") weights (epoch \(modelEpoch))")
            if let r = testReport {
                print(String(format: "test accuracy: %.2f%% (%d images)", r.accuracy * 100, r.sampleCount))
            }
            print("run directory: \(run.path)")
        }
    }
}

/// Runs `body`; with `--on-bad-image fail`, a file that cannot be decoded becomes an error naming the flag.
func badImageContext<T>(_ strict: Bool, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let error as DataError where strict {
        throw ValidationError("--on-bad-image fail: \(error)")
    }
}

private func printError(_ text: String, terminator: String) {
    FileHandle.standardError.write(Foundation.Data((text + terminator).utf8))
}
