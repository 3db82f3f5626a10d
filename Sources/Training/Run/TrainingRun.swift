import AtomicFiles
import Data
import Foundation
import NN
import TensorIO
import Torch
import Vision

/// A whole training run as a library value: it creates (or resumes) a run directory, trains to the
/// end, and writes the final weights, plots, test evaluation and `config.json`. `finetune train` is a
/// thin front end over it; servers, exporters and workers drive it the same way.
///
/// ```swift
/// var spec = TrainingRun.Specification(data: "photos", architecture: "mobilenet_v2", runDirectory: "runs/a")
/// spec.recipe.recipe = .headOnly
/// spec.options.epochs = 3
/// let run = try TrainingRun.create(spec)
/// let summary = try run.run()
/// ```
///
/// The run holds the directory's lock (`RunLock`) from `create`/`resume` until it is released,
/// so a run directory has one writer.
public final class TrainingRun {
    /// What to train, as a user states it.
    public struct Specification {
        /// A class-folder root (with train/ val/ test/ splits, or plain class folders).
        public var data: String
        /// A zoo architecture (`ModelZoo.architectures`).
        public var architecture: String
        /// Initial weights: a catalog tag (`imagenet`), a catalog name, a file, or nil for random.
        public var weights: String?
        /// The run directory to create.
        public var runDirectory: String
        /// Replace an earlier finetune run at `runDirectory` (see `RunDirectory.prepareNew`).
        public var overwrite = false
        /// The head put on the backbone; `outputs` is set from the data's classes (1 when binary).
        public var head = HeadSpec(outputs: 0)
        /// Optimisation and freezing.
        public var recipe = RecipeOptions()
        /// Data, batching, callbacks (`epochs` defaults to 10).
        public var options = TrainOptions(epochs: 10, batchSize: 32)

        /// A specification with ImageNet weights by default and every other setting at the CLI's default
        /// (full fine-tuning, Adam, 10 epochs of batch 32); nothing is checked until `TrainingRun.create`.
        public init(data: String, architecture: String, weights: String? = "imagenet", runDirectory: String) {
            self.data = data
            self.architecture = architecture
            self.weights = weights
            self.runDirectory = runDirectory
        }
    }

    /// Something a run tells its user while it prepares and trains (progress goes through callbacks).
    public enum Notice {
        /// A step of the run (created, resumed, warm start, feature cache, …).
        case info(String)
        /// Something the user should look at, e.g. an image that could not be decoded.
        case warning(String)
    }

    /// The run directory.
    public let directory: RunDirectory
    /// `config.json` as last written.
    public private(set) var config: RunConfig
    /// The trainer (its model, state and callbacks).
    public let trainer: Trainer
    /// The data splits.
    public let splits: RunSplits
    /// Where notices go (standard error by default).
    public var notify: (Notice) -> Void
    /// Callbacks added to the run's own (history, events, TensorBoard, checkpoints, early stopping):
    /// e.g. a `ProgressPrinter`.
    public var extraCallbacks: [TrainingCallback] = []
    /// Stops the run with a resumable checkpoint (Ctrl-C, SIGTERM); `run()` installs one when nil, which
    /// listens for `SignalStop.defaultSignals` while the run lasts. An application that keeps those
    /// signals for itself passes `SignalStop(signals: [])` and calls its `trigger()`.
    public var signalStop: SignalStop?

    private let lock: RunLock
    private let started = Date()
    /// For a resume: `config.json` as it was before the resume was accepted, written back when
    /// training refuses the checkpoint before its first step (a refused resume changes nothing).
    private var configBeforeResume: RunConfig?
    /// Whether `run()` has started (it runs once).
    private var hasRun = false
    /// LibTorch's CPU generator as `create` or `resume` left it (after seeding the run, or restoring
    /// its checkpoint's state): `run()` starts from it, so what ran in the process in between (another
    /// run, a failed `create`) does not change this run's dropout and augmentation draws.
    private let generatorState: Tensor?

    private init(directory: RunDirectory, config: RunConfig, trainer: Trainer, splits: RunSplits, lock: RunLock,
                 notify: @escaping (Notice) -> Void) {
        self.directory = directory
        self.config = config
        self.trainer = trainer
        self.splits = splits
        self.lock = lock
        self.notify = notify
        generatorState = try? Runtime.cpuRNGState()
    }

    /// Serialises the runs of this process: `create`, `resume`, `findLearningRate` and `run()` hold it
    /// throughout (re-entrant on one thread). LibTorch's random generator and its thread count are the
    /// process's, so runs on other threads (a Swift task group sweeping learning rates) interleaved
    /// their dropout and initialisation draws: three runs of one specification ended with three
    /// different losses, none of them that of the same run alone. Each now trains as it would alone;
    /// the second one says that it waits.
    private static let processLock = NSRecursiveLock()

    /// Runs `body` holding `processLock`, saying so through `notify` when another thread holds it.
    private static func exclusively<T>(notify: (Notice) -> Void, _ body: () throws -> T) throws -> T {
        if !processLock.try() {
            notify(.info("waiting for another run in this process: one run trains at a time in a process (LibTorch's "
                + "random generator and threads are the process's); start runs as separate processes to train them at once"))
            processLock.lock()
        }
        defer { processLock.unlock() }
        return try body()
    }

    /// Releases the run directory's lock (also on deinit). A resumed run released before `run()`
    /// puts `config.json` back as it was (the resume had marked it `running`).
    public func release() {
        if !hasRun, lock.isHeld, let before = configBeforeResume { try? directory.write(before) }
        lock.release()
    }

    deinit { release() }

    /// Writes standard error, as a terminal can show it harmlessly (`StandardStreams.displayable`).
    public static func printToStandardError(_ notice: Notice) {
        let text: String
        switch notice {
        case .info(let t): text = t
        case .warning(let t): text = "warning: " + t
        }
        StandardStreams.writeError(StandardStreams.displayable(text) + "\n")
    }

    // MARK: - Create

    /// Builds the model, checks every setting, then creates and locks the run directory and writes
    /// `config.json` (status `running`). Nothing is created or replaced when a check fails.
    ///
    /// Images are decoded with the specification's EXIF setting (`options.exif`, default `apply`), here
    /// and in `run()`, whatever `ImageCodec.exifOrientation` says; the process-wide setting is left
    /// as it is, so runs with different settings can share a process.
    ///
    /// `stop` (Ctrl-C from the command's start on) becomes the run's `signalStop`. Triggered during the
    /// learning-rate range test or before the run directory is made, it ends `create` with
    /// `TrainingError.interrupted` and nothing made; after that, `run()` stops at once with a
    /// resumable checkpoint.
    public static func create(_ spec: Specification, finetuneVersion: String = "library",
                              notify: @escaping (Notice) -> Void = printToStandardError,
                              stop: SignalStop? = nil) throws -> TrainingRun {
        let run = try exclusively(notify: notify) {
            try ImageCodec.withEXIFOrientation(spec.options.exif ?? .apply) {
                try createDecodingWithItsEXIF(spec, finetuneVersion: finetuneVersion, notify: notify, stop: stop)
            }
        }
        run.signalStop = stop
        return run
    }

    private static func createDecodingWithItsEXIF(_ spec: Specification, finetuneVersion: String,
                                                  notify: @escaping (Notice) -> Void, stop: SignalStop?) throws -> TrainingRun {
        func bad(_ setting: String, _ reason: String) -> Error { RunError.invalidSetting(setting: setting, reason: reason) }
        var prepared = try prepare(spec, notify: notify, stop: stop)
        var found: LRFinder.Result?
        let directory = RunDirectory(spec.runDirectory)
        if spec.recipe.findLearningRate == true {
            try directory.checkNew(overwrite: spec.overwrite, data: prepared.imageFolder, listed: RunSplits.isCSV(prepared.root))
            let result = try runLRFinder(prepared, finder: LRFinder(), notify: notify, stop: stop)
            guard let lr = result.suggestion else {
                throw bad("learningRate", "find: the range test stopped after \(result.losses.count) steps, too few for "
                          + "a suggestion; give a learning rate")
            }
            var recipe = spec.recipe
            recipe.learningRate = lr
            recipe.findLearningRate = nil
            let autocastBF16 = prepared.configuration.autocastBF16  // `auto` as resolved for the model
            prepared.configuration = try configuration(recipe, options: prepared.options, splits: prepared.splits)
            prepared.configuration.autocastBF16 = autocastBF16
            found = result
            notify(.info(String(format: "LR finder: suggested learning rate %.3g (fastai's valley, %d steps)", lr,
                                result.losses.count)))
        }
        let (root, imageFolder, splits, classNames, head, model, preprocessing) = (prepared.root, prepared.imageFolder,
            prepared.splits, prepared.classNames, prepared.head, prepared.model, prepared.preprocessing)
        var options = prepared.options
        var configuration = prepared.configuration

        configuration.checkpointDirectory = directory.checkpoints
        let trainer = try makeTrainer(model, configuration)
        if options.featureCache == .on, let (reason, _) = featureCacheRefusal(options, trainer: trainer) {
            throw bad("featureCache", "on: \(reason)")
        }
        if stop?.isTriggered == true { throw TrainingError.interrupted("before the run directory was made") }
        let lock = try directory.prepareNew(overwrite: spec.overwrite, data: imageFolder, listed: RunSplits.isCSV(root))
        // (A custom head is a Sequential at the head's path: `fc.0.weight`, … .)
        let headParameters = model.namedParameters().filter { $0.0.hasPrefix(model.headPath + ".") }.map(\.1)
        if let scopes = spec.recipe.trainableScopes, !headParameters.isEmpty, headParameters.allSatisfy({ !$0.requiresGrad }) {
            // TF-slim's rule (what is not listed is frozen) froze the run's new, random head.
            notify(.warning("--trainable-scopes \(scopes.joined(separator: ",")) leaves out the new head (\(model.headPath)), "
                + "which then stays as randomly initialised; add it to the list to train it"))
        }
        options.threads = Runtime.numThreads
        let now = RunDirectory.timestamp()
        var config = RunConfig(
            architecture: spec.architecture, weights: spec.weights, classNames: classNames, preprocessing: preprocessing,
            head: .init(numClasses: classNames.count, includeTop: true, spec: head), training: configuration,
            options: options,
            data: .init(path: root, hasSplitFolders: splits.hasSplitFolders, trainSamples: splits.train.count,
                        validationSamples: splits.validation?.count ?? 0, testSamples: splits.test?.count ?? 0),
            createdAt: now, updatedAt: now, finetuneVersion: finetuneVersion,
            libtorchVersion: Runtime.libTorchVersion, status: "running", epochsCompleted: 0)
        config.learningRateFinder = found?.suggestion
        config.data.fingerprint = splits.fingerprint(base: imageFolder)
        try directory.write(config)
        if let found {
            try Plots.write(LRFinder.plot(found), to: directory.file("lr_find.svg"))
            try AtomicFile.write(Foundation.Data(LRFinder.csv(found).utf8), to: directory.file("lr_find.csv"))
        }
        notify(.info("Run directory \(directory.path): \(spec.architecture) (\(spec.weights ?? "random init")), "
            + "\(classNames.count) classes, \(splits.train.count) training / \(splits.validation?.count ?? 0) validation / "
            + "\(splits.test?.count ?? 0) test images, recipe \(spec.recipe.recipe.rawValue), head \(head.description)"))
        return TrainingRun(directory: directory, config: config, trainer: trainer, splits: splits, lock: lock, notify: notify)
    }

    /// Runs the LR range test (`LRFinder`) for `spec` without creating a run directory: the data,
    /// model, recipe and training transform are those `create` would use. Errors name the setting;
    /// a triggered `stop` ends the test with `TrainingError.interrupted`.
    public static func findLearningRate(_ spec: Specification, finder: LRFinder = LRFinder(),
                                        notify: @escaping (Notice) -> Void = printToStandardError,
                                        stop: SignalStop? = nil) throws -> LRFinder.Result {
        try exclusively(notify: notify) {
            try ImageCodec.withEXIFOrientation(spec.options.exif ?? .apply) {
                try runLRFinder(prepare(spec, notify: notify, stop: stop), finder: finder, notify: notify, stop: stop)
            }
        }
    }

    private static func runLRFinder(_ prepared: Prepared, finder: LRFinder, notify: (Notice) -> Void,
                                    stop: SignalStop?) throws -> LRFinder.Result {
        do { try finder.check() } catch { throw RunError.invalidSetting(setting: "lrFinder", reason: "\(error)") }
        let trainer = try makeTrainer(prepared.model, prepared.configuration)
        let loader = try trainLoader(prepared.splits, options: prepared.options, preprocessing: prepared.preprocessing)
        notify(.info("LR finder: up to \(finder.steps) steps from \(finder.startLearningRate) to \(finder.endLearningRate)"))
        return try finder.run(trainer, on: loader, stop: stop)
    }

    /// A trainer for a new run; an unknown scope is an error naming the setting.
    private static func makeTrainer(_ model: Module, _ configuration: TrainingConfiguration) throws -> Trainer {
        do {
            return try Trainer(model: model, configuration: configuration)
        } catch let error as TrainingError {
            if case .unknownScope = error {
                throw RunError.invalidSetting(setting: "trainableScopes", reason: "\(error)")
            }
            throw error
        }
    }

    /// The training loader of a run (shuffled or class-balanced, with the run's augmentation).
    static func trainLoader(_ splits: RunSplits, options: TrainOptions, preprocessing p: Preprocessing) throws -> DataLoader {
        let jitter = options.colorJitter.map { ColorJitter(brightness: $0[0], contrast: $0[1], saturation: $0[2], hue: $0[3]) }
        let policy = options.randAugment.map { RandAugment(n: $0[0], m: $0[1]) } ?? RandAugment()
        return try DataLoader(splits.train, batchSize: options.batchSize, shuffle: true, seed: options.seed,
                              transform: options.augment.transform(p, colorJitter: jitter, randAugment: policy,
                                                                   erasing: options.erasing),
                              workers: options.workers,
                              balanced: options.sampler == .balanced, strict: (options.onBadImage ?? .skip).isStrict)
    }

    /// The trainer configuration of `recipe` for the data and options.
    static func configuration(_ recipe: RecipeOptions, options: TrainOptions, splits: RunSplits) throws -> TrainingConfiguration {
        var configuration = try recipe.configuration(epochs: options.epochs)
        configuration.monitor = options.monitor.name(hasValidation: splits.validation != nil, ema: configuration.ema != nil)
        configuration.classWeights = try resolveClassWeights(options.classWeights, train: splits.train)
        configuration.pseudoLabel = try pseudoLabelSettings(options, mixing: configuration.mix != nil)
        if configuration.mix != nil && configuration.classWeights != nil {
            throw RunError.invalidSetting(setting: "classWeights",
                                          reason: "cannot be combined with MixUp/CutMix (their soft targets take no class weights)")
        }
        // Each image is mixed with its mirror in the batch: one image is its own mirror, and nothing
        // was mixed, without a word (timm refuses odd batches).
        if configuration.mix != nil && options.batchSize < 2 {
            throw RunError.invalidSetting(setting: recipe.mixingSetting, reason: "MixUp/CutMix mix each image with another of its "
                                          + "batch: they need --batch-size 2 or more, got \(options.batchSize)")
        }
        return configuration
    }

    /// What `create` and `findLearningRate` build before any file is written.
    private struct Prepared {
        var root: String
        var imageFolder: String
        var options: TrainOptions
        var splits: RunSplits
        var classNames: [String]
        var head: HeadSpec
        var model: ImageClassifier
        var preprocessing: Preprocessing
        var configuration: TrainingConfiguration
    }

    /// The checks of `spec`'s inputs that read no image and build no model: DATA (and an image root)
    /// exist, and the architecture is known. A front end makes them before any work: a data-parallel
    /// launcher before it starts its workers, each of which printed the same error.
    public static func checkInputs(_ spec: Specification) throws {
        func bad(_ setting: String, _ reason: String) -> Error { RunError.invalidSetting(setting: setting, reason: reason) }
        guard FileManager.default.fileExists(atPath: URL(fileURLWithPath: spec.data).standardizedFileURL.path) else {
            throw bad("data", "\(spec.data) does not exist (expected a class-folder root or a path,label CSV file)")
        }
        if let imageRoot = spec.options.imageRoot {
            guard RunSplits.isCSV(spec.data) else { throw bad("imageRoot", "only applies to a CSV file as DATA; \(spec.data) is a folder") }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: imageRoot, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw bad("imageRoot", "\(imageRoot) does not exist or is not a folder")
            }
        }
        guard ModelZoo.architectures.contains(spec.architecture) else {
            throw bad("architecture", "unknown architecture '\(spec.architecture)'; known: \(ModelZoo.architectures.joined(separator: ", "))")
        }
    }

    /// Checks `spec`, loads the data and builds the model and configuration; writes nothing.
    private static func prepare(_ spec: Specification, notify: (Notice) -> Void, stop: SignalStop?) throws -> Prepared {
        func bad(_ setting: String, _ reason: String) -> Error { RunError.invalidSetting(setting: setting, reason: reason) }
        try checkInputs(spec)
        let root = URL(fileURLWithPath: spec.data).standardizedFileURL.path
        let isCSV = RunSplits.isCSV(root)
        // The folder the images live in: the run directory must stay outside it.
        let imageFolder = isCSV ? spec.options.imageRoot.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            ?? (root as NSString).deletingLastPathComponent : root
        var options = spec.options
        // Recorded absolute, as the data's path is: report and resume may run from another folder.
        options.imageRoot = options.imageRoot.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        options.featureCacheDirectory = options.featureCacheDirectory.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        options.splitSeed = options.splitSeed ?? 0  // recorded: a run without it split with `seed`
        try validate(options)
        try spec.recipe.validate(epochs: options.epochs)
        try RunDirectory.checkSeparate(run: spec.runDirectory, data: imageFolder, listed: isCSV)

        let splits = try RunSplits.load(root, options: options)
        if let warning = splits.skipped.warning() { notify(.warning(String(warning.dropFirst("warning: ".count)))) }
        if let warning = splits.unusedFoldersWarning(root: root) { notify(.warning(warning)) }
        if let warning = splits.repeatedFilesWarning(validationSplit: options.valSplit != nil) { notify(.warning(warning)) }
        if let warning = splits.copiesOfTrainingImagesWarning(root: imageFolder) { notify(.warning(warning)) }
        notify(.info(DataCheck.quickSummary(train: splits.train, validation: splits.validation, test: splits.test,
                                            unusable: splits.skipped.count, correction: imbalanceCorrection(options))))
        let classNames = splits.train.classNames
        if spec.recipe.binary && classNames.count != 2 {
            throw bad("binary", "binary classification needs exactly 2 classes; \(root) has \(classNames.count): "
                      + classNames.joined(separator: ", "))
        }
        var head = spec.head
        head.outputs = spec.recipe.binary ? 1 : classNames.count
        if let invalid = head.invalidValue { throw bad("head." + invalid.field.rawValue, invalid.reason) }

        Runtime.manualSeed(spec.recipe.seed)
        let pretrained: PretrainedModel
        do {
            // Ctrl-C stops a first download of the weights (it went on to its end).
            pretrained = try ModelZoo.make(spec.architecture, weights: spec.weights,
                                           options: ModelOptions(numClasses: classNames.count),
                                           cache: WeightsCache(isCancelled: { stop?.isTriggered == true }))
        } catch WeightsError.interrupted(let what) {
            throw TrainingError.interrupted("while downloading \(what)")
        } catch {
            throw bad("weights", "\(spec.weights ?? "none"): \(error)")
        }
        let model = pretrained.model
        if head != HeadSpec(outputs: classNames.count) {
            do { try model.configureHead(head) } catch { throw bad("head", "\(error)") }
        }
        let preprocessing = options.inputSize.map(pretrained.preprocessing.withCropSize) ?? pretrained.preprocessing
        try checkInputSize(preprocessing.cropSize, model: model, architecture: spec.architecture)
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: preprocessing,
                                                  batchSize: min(options.batchSize, max(1, splits.largestCount)),
                                                  workers: max(1, options.workers))
        } catch {
            throw bad(options.inputSize != nil ? "inputSize" : "batchSize", "\(error)")
        }
        if let path = options.checkpointPath {
            let (note, unmatched) = try warmStart(model, from: path, excluding: options.checkpointExcludeScopes ?? [],
                                                  classNames: spec.recipe.binary ? nil : classNames)
            notify(.info(note))
            if !unmatched.isEmpty {
                notify(.warning("--checkpoint-exclude-scopes: \(unmatched.joined(separator: ", ")) matched no tensor of \(path), "
                    + "so nothing under \(unmatched.count == 1 ? "it" : "them") was excluded; a scope is a key's leading "
                    + "components, as `fc` or `layer4.1` (`finetune summary` lists the model's)"))
            }
        }
        // Channels-last (oneDNN's fastest CPU layout) unless the options say otherwise.
        options.channelsLast = options.channelsLast ?? true
        try model.useChannelsLast(options.channelsLast ?? true)
        let layout = ModelLayout(model)
        if let scope = spec.recipe.freezeUntil, !layout.layerGroups.contains(scope) {
            throw bad("freezeUntil", "unknown scope '\(scope)'; layer groups of \(spec.architecture): "
                      + layout.layerGroups.joined(separator: ", "))
        }
        var configuration = try configuration(spec.recipe, options: options, splits: splits)
        if let warning = spec.recipe.backboneFasterWarning { notify(.warning(warning)) }
        if let warning = imbalanceCorrectedTwiceWarning(configuration.classWeights, options: options, classNames: classNames) {
            notify(.warning(warning))
        }
        if let warning = smoothingCapsConfidenceWarning(configuration, classCount: classNames.count) { notify(.warning(warning)) }
        if spec.recipe.precision == .auto {
            configuration.autocastBF16 = Precision.auto.resolved(for: model) == .bf16
            notify(.info("Precision auto: \(configuration.precision.rawValue) (\(Precision.autoReason(for: model)))"))
        }
        return Prepared(root: root, imageFolder: imageFolder, options: options, splits: splits, classNames: classNames,
                        head: head, model: model, preprocessing: preprocessing, configuration: configuration)
    }

    static func validate(_ options: TrainOptions) throws {
        func bad(_ setting: String, _ reason: String) -> Error { RunError.invalidSetting(setting: setting, reason: reason) }
        guard options.epochs >= 1 else { throw bad("epochs", "must be at least 1") }
        guard options.batchSize >= 1 else { throw bad("batchSize", "must be at least 1") }
        guard (0...Runtime.maxThreads).contains(options.workers) else {
            throw bad("workers", "must be 0 to \(Runtime.maxThreads) (4 × \(Runtime.coresDescription))")
        }
        if let v = options.valSplit, !(v > 0 && v < 1) { throw bad("valSplit", "must be between 0 and 1") }
        if let n = options.limitPerClass, n < 1 { throw bad("limitPerClass", "must be at least 1") }
        if let p = options.earlyStoppingPatience, p < 0 { throw bad("earlyStoppingPatience", "must be ≥ 0") }
        if let n = options.saveEverySteps, n < 1 { throw bad("saveEverySteps", "must be at least 1") }
        if let s = options.saveEverySeconds, !(s > 0) { throw bad("saveEverySeconds", "must be positive") }
        if let size = options.inputSize, !(16...Preprocessing.largestSide).contains(size) {
            throw bad("inputSize", "must be 16 to \(Preprocessing.largestSide) pixels, got \(size)")
        }
        var isDirectory: ObjCBool = false
        if let folder = options.featureCacheDirectory, FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory),
           !isDirectory.boolValue {
            throw bad("featureCacheDirectory", "\(folder) is a file; give a folder for the feature caches")
        }
        if let k = options.cacheAugmentations {
            guard k >= 1 else { throw bad("cacheAugmentations", "must be at least 1") }
            guard k <= options.epochs else {
                throw bad("cacheAugmentations", "\(k) is more than the \(options.epochs) epochs: epoch e trains on view "
                          + "e mod K, so views past the last epoch are never used")
            }
        }
        if options.checkpointExcludeScopes != nil && options.checkpointPath == nil {
            throw bad("checkpointExcludeScopes", "needs a warm-start checkpoint path")
        }
        if let path = options.checkpointPath, !FileManager.default.fileExists(atPath: path) {
            throw bad("checkpointPath", "no such file: \(path)")
        }
        if let nm = options.randAugment {
            guard options.augment == .randaugment else { throw bad("randAugment", "n and m apply to --augment randaugment") }
            // n = 10⁹ kept the loader busy on one image for good (a batch never ended, so no stop was seen).
            guard nm.count == 2, (1...100).contains(nm[0]), (0..<31).contains(nm[1]) else {
                throw bad("randAugment", "expected 1 to 100 operations n and a magnitude m in 0…30, e.g. randaugment:n=2,m=9")
            }
        }
        if let jitter = options.colorJitter {
            guard jitter.count == 4, jitter.allSatisfy({ $0 >= 0 && $0.isFinite }), jitter[3] <= 0.5 else {
                throw bad("colorJitter", "expected 4 numbers B,C,S,H ≥ 0 (brightness, contrast, saturation, hue ≤ 0.5), e.g. 0.4,0.4,0.4,0.1")
            }
            guard options.augment == .standard else {
                throw bad("colorJitter", "follows the standard augmentation; --augment is \(options.augment.rawValue)")
            }
        }
        if let p = options.randomErasing, p != 0 {  // 0: off, as timm's --reprob 0
            guard p > 0, p <= 1 else { throw bad("randomErasing", "expected a probability in [0, 1], e.g. 0.25") }
            guard [.standard, .randaugment, .trivialaugment, .autoaugment].contains(options.augment) else {
                throw bad("randomErasing", "follows --augment standard, randaugment, trivialaugment or autoaugment; "
                    + "--augment is \(options.augment.rawValue)")
            }
        } else if options.erasingMode != nil {
            throw bad("erasingMode", "applies with --random-erasing")
        }
        try validatePseudoLabel(options)
    }

    /// What the options do about a class imbalance, as flags (`--class-weights auto`, `--sampler balanced`);
    /// nil: nothing.
    static func imbalanceCorrection(_ options: TrainOptions) -> String? {
        var flags: [String] = []
        if let weights = options.classWeights, weights != "none" { flags.append("--class-weights \(weights)") }
        if options.sampler == .balanced { flags.append("--sampler balanced") }
        return flags.isEmpty ? nil : flags.joined(separator: " and ")
    }

    /// A warning when the loss's class weights and the balanced sampler both correct the imbalance. The
    /// sampler already draws every class equally often, so the weights then tilt training towards the
    /// class they weigh most: with `auto`, the smallest class counts (largest / smallest count) times
    /// as much as the largest, the imbalance turned upside down (PyTorch's `WeightedRandomSampler` with a
    /// weighted `CrossEntropyLoss` is the same trap). nil when the weights tilt by less than the ratio
    /// that counts as imbalanced (`DataCheckOptions.imbalanceWarningRatio`).
    static func imbalanceCorrectedTwiceWarning(_ weights: [Double]?, options: TrainOptions, classNames: [String]) -> String? {
        guard options.sampler == .balanced, let weights, let setting = options.classWeights else { return nil }
        let used = weights.indices.filter { weights[$0] > 0 }
        guard let most = used.max(by: { weights[$0] < weights[$1] }), let least = used.min(by: { weights[$0] < weights[$1] })
        else { return nil }
        let tilt = weights[most] / weights[least]
        guard tilt >= DataCheckOptions().imbalanceWarningRatio else { return nil }
        return "--class-weights \(setting) with --sampler balanced corrects the class imbalance twice: the sampler already "
            + "draws each class equally often, so the weights then make '\(classNames[most])' count "
            + String(format: "%.1f", tilt) + "× as much as '\(classNames[least])'; use one of the two"
    }

    /// The loss's class weights for `setting` (see `TrainOptions.classWeights`), in class order.
    static func resolveClassWeights(_ setting: String?, train: any ImageDataset) throws -> [Double]? {
        func bad(_ reason: String) -> Error { RunError.invalidSetting(setting: "classWeights", reason: reason) }
        guard let setting, setting != "none" else { return nil }
        let names = train.classNames
        if setting == "auto" { return train.classWeights() }
        guard let data = FileManager.default.contents(atPath: setting) else {
            throw bad("\(setting) is not auto, none or a readable JSON file")
        }
        let json: Any
        do { json = try JSONSerialization.jsonObject(with: data) } catch {
            // Foundation's reason names what it could not read ("Number 1e400 is not representable").
            let reason = ((error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String).map { " (\($0))" } ?? ""
            throw bad("\(setting) is not JSON\(reason): expected an array of \(names.count) weights or an object of class → weight")
        }
        var weights: [Double]
        if let array = json as? [Any] {
            let numbers = array.compactMap { ($0 as? NSNumber)?.doubleValue }
            if let i = array.firstIndex(where: { !($0 is NSNumber) }) {
                throw bad("\(setting): entry \(i + 1) (\(array[i])) is not a number")
            }
            guard numbers.count == names.count else {
                throw bad("\(setting) has \(array.count) entries for \(names.count) classes (\(names.joined(separator: ", ")))")
            }
            weights = numbers
        } else if let object = json as? [String: Any] {
            if let unknown = object.keys.sorted().first(where: { !names.contains($0) }) {
                throw bad("\(setting) names class '\(unknown)', which the data does not have (\(names.joined(separator: ", ")))")
            }
            weights = try names.map {
                guard let value = object[$0] else { throw bad("\(setting) has no weight for class '\($0)'") }
                guard let w = (value as? NSNumber)?.doubleValue else {
                    throw bad("\(setting): the weight of class '\($0)' (\(value)) is not a number")
                }
                return w
            }
        } else {
            throw bad("\(setting): expected an array of \(names.count) weights or an object of class → weight")
        }
        guard weights.allSatisfy({ $0 >= 0 && Float($0).isFinite }) else {
            throw bad("\(setting): weights must be numbers ≥ 0 of float32's range (at most \(Float.greatestFiniteMagnitude))")
        }
        guard weights.contains(where: { $0 > 0 }) else { throw bad("\(setting): every weight is 0; at least one class must count") }
        return weights
    }

    /// A crop too small for the architecture (AlexNet below 63 px, Inception v3 below 75) failed in
    /// LibTorch once training started, leaving a failed run: one image of that size goes through the
    /// model first (in inference mode; below 128 px only, where it costs milliseconds).
    static func checkInputSize(_ side: Int, model: ImageClassifier, architecture: String) throws {
        guard side < 128 else { return }
        let wasTraining = model.isTraining
        defer { model.train(wasTraining) }
        model.eval()
        do {
            _ = try withInferenceMode { try model(Tensor.zeros([1, 3, side, side])) }
        } catch {
            throw RunError.invalidSetting(setting: "inputSize", reason: "\(side) px is too small for \(architecture): "
                + "\(String(describing: error).split(separator: "\n").first ?? ""); give a larger input size")
        }
    }

    /// TF-slim's warm start: loads a state dict, skipping keys under `excluding`, non-strict. A scope
    /// names a key's leading components (`layer4.1` holds `layer4.1.conv1.weight`, not
    /// `layer4.10…`); a trailing `.` or `.*` is dropped (`fc.` excluded nothing). Returns the note
    /// to print and the scopes that matched no key of the file.
    ///
    /// A file of a finetune run (`warmStartSource`) whose classes are not `classNames` (the new run's,
    /// nil for a binary head) gives its head's output layer row by class name: loaded by shape alone,
    /// the rows of a run on Bag, Coat, Shirt had become Coat, Shirt, Trouser (stop 53). A class of the
    /// data that the run did not have keeps the model's fresh row.
    static func warmStart(_ model: Module, from path: String, excluding given: [String], classNames: [String]? = nil) throws
        -> (note: String, unmatched: [String]) {
        let scopes = given.map { scope in
            var s = Substring(scope)
            if s.hasSuffix(".*") { s = s.dropLast(2) } else if s.hasSuffix(".") { s = s.dropLast() }
            return String(s)
        }
        let state: StateDict
        do {
            state = path.hasSuffix(".safetensors") ? try SafeTensors.load(path) : try PthImport.load(path)
        } catch {
            throw RunError.invalidSetting(setting: "checkpointPath", reason: "cannot read \(path): \(error)")
        }
        var kept = StateDict()
        var skipped = 0
        var matched = Set<String>()
        for (key, tensor) in state {
            if let scope = scopes.first(where: { key == $0 || key.hasPrefix($0 + ".") }) {
                skipped += 1
                matched.insert(scope)
            } else {
                kept[key] = tensor
            }
        }
        var headNote = ""
        if let classNames, let classifier = model as? ImageClassifier, let source = warmStartSource(path),
           source.classNames != classNames {
            let layer = classifier.outputLayerPath
            let current = model.stateDict()
            let keys = [layer + ".weight", layer + ".bias"].filter { kept[$0] != nil }
            // Row i of the new layer: the file's row of the same class, else the model's fresh row.
            let pairs = classNames.indices.map { i in (i, source.classNames.firstIndex(of: classNames[i])) }
            for key in keys {
                guard let old = kept[key], let fresh = current[key], old.shape.first == source.classNames.count,
                      fresh.shape.first == classNames.count, Array(old.shape.dropFirst()) == Array(fresh.shape.dropFirst())
                else { continue }  // another layer than the run's: the load's shape check reports it
                let rows = try Tensor(pairs.map { Int64($0.1 ?? source.classNames.count + $0.0) }, shape: [pairs.count])
                let both = try Tensor.cat([old.to(dtype: fresh.dtype, device: fresh.device), fresh], dim: 0)
                kept[key] = try both.indexSelect(dim: 0, index: rows)
            }
            let carried = pairs.filter { $0.1 != nil }.map { classNames[$0.0] }
            let fresh = classNames.filter { !carried.contains($0) }
            if !keys.isEmpty {
                headNote = "; \(source.run) was trained on other classes (\(source.classNames.joined(separator: ", "))), so the "
                    + "rows of the head's output layer (\(layer)) follow the data's classes by name: "
                    + (carried.isEmpty ? "none is the run's" : "\(carried.joined(separator: ", ")) from the run")
                    + (fresh.isEmpty ? "" : ", \(fresh.joined(separator: ", ")) trained anew")
            }
        }
        let report = try model.load(kept, strict: false)
        // Nothing loaded is a mistake (another architecture, a file of other names), not a warm start.
        guard report.loaded > 0 else {
            throw RunError.invalidSetting(setting: "checkpointPath", reason: "none of the \(kept.count) tensors of \(path) "
                + "fits the model (\(skipped) excluded; e.g. \(report.unexpected.prefix(3).joined(separator: ", "))): "
                + "a checkpoint of another architecture?")
        }
        let named = scopes.enumerated().filter { scopes.firstIndex(of: $0.element) == $0.offset }.map(\.element)
        return ("Warm start from \(path): \(skipped) tensors excluded (\(named.joined(separator: ", "))); \(report)" + headNote,
                zip(given, scopes).filter { !matched.contains($0.1) }.map(\.0))
    }

    /// The finetune run a warm-start file belongs to, and its classes: the `config.json` of the file's
    /// folder (`RUN/model.safetensors`) or of two folders up (`RUN/checkpoints/best/model.safetensors`)
    /// that is a run trained with a multi-class head; nil for any other file.
    static func warmStartSource(_ path: String) -> (run: String, classNames: [String])? {
        let folder = URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent()
        var run = folder
        if folder.deletingLastPathComponent().lastPathComponent == "checkpoints" {
            run = folder.deletingLastPathComponent().deletingLastPathComponent()
        }
        guard let config = try? RunDirectory(run.path).readConfig(), config.head.includeTop, !config.head.isBinary else {
            return nil
        }
        return (run.path, config.classNames)
    }

    // MARK: - Resume

    /// What a resumed run may change.
    public struct ResumeChanges {
        /// Another location of the data (nil: the recorded one).
        public var data: String?
        /// A new total of epochs (the schedule then spans it); at least the epochs the checkpoint has trained.
        public var epochs: Int?
        /// Decoding threads (nil: the run's).
        public var workers: Int?
        /// Undecodable images policy (nil: the run's).
        public var onBadImage: BadImagePolicy?
        /// Intra-op threads (nil: the run's own, which `resume` sets; another count is not bit-exact).
        public var threads: Int?
        /// Where a CSV run's relative image paths now start (nil: the recorded `imageRoot`): the same
        /// images moved elsewhere, checked like a moved DATA.
        public var imageRoot: String?
        /// Changes to apply on resume; every nil keeps the run's recorded value.
        public init(data: String? = nil, epochs: Int? = nil, workers: Int? = nil, onBadImage: BadImagePolicy? = nil,
                    threads: Int? = nil, imageRoot: String? = nil) {
            self.data = data
            self.epochs = epochs
            self.workers = workers
            self.onBadImage = onBadImage
            self.threads = threads
            self.imageRoot = imageRoot
        }
    }

    /// Locks `path`, reads its `config.json` and `checkpoints/last`, and rebuilds the model, data
    /// and trainer exactly as they were when the checkpoint was written. Images are decoded with the
    /// run's own EXIF setting, as in `create`.
    public static func resume(_ path: String, changes: ResumeChanges = .init(),
                              notify: @escaping (Notice) -> Void = printToStandardError) throws -> TrainingRun {
        try exclusively(notify: notify) { try resumeExclusively(path, changes: changes, notify: notify) }
    }

    private static func resumeExclusively(_ path: String, changes: ResumeChanges,
                                          notify: @escaping (Notice) -> Void) throws -> TrainingRun {
        let directory = RunDirectory(path)
        let lock = try RunLock(directory: directory.path)
        var config = try directory.readConfig()
        directory.removeStaleTemporaryFiles(lockedBy: lock)
        guard let last = Checkpoint.locate(directory.lastCheckpoint) else {
            if !FileManager.default.fileExists(atPath: directory.lastCheckpoint) {
                // "Start again with --overwrite" only when nothing was trained: that would delete it.
                let kept = directory.trainedState()
                guard kept.isEmpty else { throw RunError.lastCheckpointMissing(path: directory.path, kept: kept) }
                throw RunError.nothingToResume(path: directory.path, status: config.status)
            }
            throw RunError.notARun(path: directory.path, reason: "\(directory.lastCheckpoint) holds no complete checkpoint ("
                + (Checkpoint.whyIncomplete(directory.lastCheckpoint) ?? "unreadable") + ")")
        }
        if config.status == FitStatus.stopped(reason: "").name {
            throw RunError.stoppedEarly(path: directory.path)
        }
        let recorded = config  // as the run wrote it, before the changes
        if let epochs = changes.epochs { config.options.epochs = epochs }
        if let workers = changes.workers { config.options.workers = workers }
        if let policy = changes.onBadImage { config.options.onBadImage = policy }
        if let root = changes.imageRoot { config.options.imageRoot = URL(fileURLWithPath: root).standardizedFileURL.path }
        return try ImageCodec.withEXIFOrientation(config.options.exif ?? .apply) {
            try resumeDecodingWithItsEXIF(directory, config: config, recorded: recorded, last: last, lock: lock,
                                          changes: changes, notify: notify)
        }
    }

    private static func resumeDecodingWithItsEXIF(_ directory: RunDirectory, config: RunConfig, recorded: RunConfig,
                                                  last: String, lock: RunLock,
                                                  changes: ResumeChanges,
                                                  notify: @escaping (Notice) -> Void) throws -> TrainingRun {
        var config = config
        do { try validate(config.options) } catch RunError.invalidSetting(let setting, let reason)
            where !["epochs", "workers", "onBadImage", "imageRoot"].contains(setting) {
            // Not a flag of this resume: the value is config.json's (a resume named --input-size, never given).
            throw RunError.invalidConfig(path: directory.config, reason: "options.\(setting): \(reason)")
        }
        if let threads = changes.threads {
            try Runtime.setNumThreads(threads)
            if let trainedWith = config.options.threads, trainedWith != threads {
                notify(.warning("resuming with \(threads) intra-op threads; the run trained with \(trainedWith), so the "
                    + "result will differ from an uninterrupted run in the last bits"))
            }
            config.options.threads = threads
        } else if let trainedWith = config.options.threads {
            try Runtime.setNumThreads(min(trainedWith, Runtime.maxThreads))
            notify(.info("Using the run's \(trainedWith) intra-op threads (a resume is bit-exact only with the same count)"))
        }
        let root = changes.data.map { URL(fileURLWithPath: $0).standardizedFileURL.path } ?? config.data.path
        if changes.data == nil && !FileManager.default.fileExists(atPath: root) {
            // The generic "dataset folder … does not exist" said nothing of how to go on (probe AI).
            throw RunError.invalidSetting(setting: "data", reason: "the run's images were in \(root), which no longer exists; "
                + "if they have moved, give their new place after the run directory (the run checks they are the same images)")
        }
        let splits = try RunSplits.load(root, options: config.options)
        if let warning = splits.skipped.warning() { notify(.warning(String(warning.dropFirst("warning: ".count)))) }
        try RunDirectory.checkClassNames(splits.train.classNames, run: config.classNames, data: root)
        let newPlace = try checkSameData(splits, root: root, config: &config, recorded: recorded, notify: notify)
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: config.preprocessing,
                                                  batchSize: min(config.options.batchSize, max(1, splits.largestCount)),
                                                  workers: max(1, config.options.workers))
        } catch {
            throw RunError.invalidConfig(path: directory.config, reason: "\(error)")
        }
        let model = try RunDirectory.buildModel(config)
        try model.useChannelsLast(config.options.channelsLast ?? false)
        let trainer = try Trainer.resume(from: last, model: model) { $0.checkpointDirectory = directory.checkpoints }
        // Fewer epochs than the checkpoint holds would record a run of N epochs whose weights have more.
        let trained = trainer.state.epoch + (trainer.state.batchInEpoch > 0 ? 1 : 0)
        if let epochs = changes.epochs, epochs < trained {
            throw RunError.invalidSetting(setting: "epochs", reason: "\(epochs) is fewer than the \(trained) epoch"
                + (trained == 1 ? "" : "s") + " the checkpoint has trained"
                + (trainer.state.batchInEpoch > 0 ? " (the last in part)" : "") + "; give at least \(trained), or leave it out")
        }
        // Once the resume is accepted: the run is running again (readers said "resume it" meanwhile),
        // and where its images are now. Its other changes are recorded when it ends.
        var accepted = newPlace ?? recorded
        accepted.status = "running"
        accepted.updatedAt = RunDirectory.timestamp()
        try directory.write(accepted)
        notify(.info("Resuming \(directory.path) from \(last) (epoch \(trainer.state.epoch), step \(trainer.state.globalStep)) "
            + "to \(config.options.epochs) epochs"))
        let run = TrainingRun(directory: directory, config: config, trainer: trainer, splits: splits, lock: lock, notify: notify)
        run.configBeforeResume = recorded
        return run
    }

    /// A resume must see the images the run was created with: another set (an image added,
    /// removed, relabelled or resized) is refused, whatever DATA is called. The same images in
    /// another folder are accepted; the returned `config.json` (the recorded one with their new
    /// place and digest) is written once the resume is accepted, nil when nothing changed.
    private static func checkSameData(_ splits: RunSplits, root: String, config: inout RunConfig, recorded: RunConfig,
                                      notify: (Notice) -> Void) throws -> RunConfig? {
        let fingerprint = splits.fingerprint(base: RunSplits.imageBase(root, imageRoot: config.options.imageRoot))
        let moved = root != recorded.data.path || config.options.imageRoot != recorded.options.imageRoot
        if let digest = config.data.fingerprint, digest != fingerprint {
            throw RunError.invalidSetting(setting: "data", reason: "the images in \(root) are not those the run was created "
                + "with (an image was added, removed, moved to another class or changed in size; now \(splits.train.count) "
                + "training / \(splits.validation?.count ?? 0) validation / \(splits.test?.count ?? 0) test images). "
                + "A resume must train on the same images: restore them, or start a new run")
        }
        guard config.data.fingerprint == nil || moved else { return nil }
        if moved {
            let place = config.options.imageRoot.map { "\(root) (images in \($0))" } ?? root
            notify(.info(config.data.fingerprint == nil
                ? "Resuming on \(place) (the run was created from \(recorded.data.path), and records no digest of its images to compare)"
                : "The run's images are now in \(place) (it was created from \(recorded.data.path)); config.json records the new place"))
        }
        // Only where the images are, and their digest: the other changes are recorded when the run ends.
        var updated = recorded
        updated.data.path = root
        updated.options.imageRoot = config.options.imageRoot
        updated.data.fingerprint = fingerprint  // runs written before the digest existed are compared from now on
        config.data.path = root
        config.data.fingerprint = fingerprint
        return updated
    }

    // MARK: - Run

    /// Trains to the end (or to a stop or interrupt), then writes the final weights, plots, the test
    /// evaluation and `config.json`, and returns the summary. An interrupted run returns with status
    /// `interrupted` after writing its resumable checkpoint. Runs of one process train one at a time:
    /// while another thread creates, resumes or trains a run, this one waits (and says so), and then
    /// trains as it would alone.
    @discardableResult
    public func run() throws -> TrainingRunSummary {
        // One writer: a run whose lock is gone (released, or run() already ran) may not write, since
        // another writer may hold the directory now (it trained into a folder another run had locked).
        guard !hasRun, lock.isHeld else { throw RunError.released(directory: directory.path) }
        hasRun = true
        defer { release() }
        return try Self.exclusively(notify: notify) { try runExclusively() }
    }

    private func runExclusively() throws -> TrainingRunSummary {
        if let generatorState { try Runtime.setCPURNGState(generatorState) }
        do {
            return try ImageCodec.withEXIFOrientation(config.options.exif ?? .apply) { try runToEnd() }
        } catch TrainingError.resumeMismatch(let reason) where configBeforeResume != nil {
            // Training refused the checkpoint before its first step (another process count, or loader
            // settings that config.json no longer has): nothing was trained, so config.json goes back to
            // what it was (it said "failed", and the run could still be resumed as it was).
            try? directory.write(configBeforeResume!)
            throw RunError.resumeRefused(path: directory.path, reason: reason)
        } catch {
            // The run stopped with an error: say so in config.json (the last checkpoint stays).
            config.status = "failed"
            config.updatedAt = RunDirectory.timestamp()
            do { try directory.write(config) } catch let unrecorded {
                // A full disk: the atomic write needs room for its temporary file. The run's last
                // checkpoint is intact, but config.json still says "running" (probe AK).
                notify(.warning("could not record the failure in \(directory.file("config.json")), which still says "
                    + "\"running\": \(unrecorded)"))
            }
            throw error
        }
    }

    private func runToEnd() throws -> TrainingRunSummary {
        let options = config.options
        let p = config.preprocessing
        let strict = (options.onBadImage ?? .skip).isStrict
        let trainLoader = try Self.trainLoader(splits, options: options, preprocessing: p)
        let evalTransform = EvaluationTransform(p)
        let validationLoader = try splits.validation.map {
            try DataLoader($0, batchSize: options.batchSize, transform: evalTransform, workers: options.workers, strict: strict)
        }
        let notify = self.notify
        let skipped = SkippedFileReporter { split, entry in
            notify(.warning("skipping \(entry.path) (\(split) data): \(entry.reason)"))
        }
        skipped.watch(trainLoader, split: "training")
        if let validationLoader { skipped.watch(validationLoader, split: "validation") }

        // The metric recorded when the run was made: one from before 2026-12-07 that keeps an EMA resumes
        // watching the raw `val_loss` it began with.
        let monitorMetric = trainer.configuration.monitor ?? options.monitor.name(hasValidation: validationLoader != nil)
        let checkpoints = ModelCheckpoint(directory: directory.checkpoints, monitor: monitorMetric, saveBestOnly: true,
                                          everySteps: options.saveEverySteps, everySeconds: options.saveEverySeconds)
        checkpoints.writesCheckpoints = (trainer.distributed?.rank ?? 0) == 0
        // Early stopping counts an epoch before the checkpoint of that epoch is written (so that it
        // holds the count), and finds the best weights of a resumed run in the best checkpoint.
        let earlyStopping = options.earlyStoppingPatience.map {
            EarlyStopping(monitor: monitorMetric, patience: $0, restoreBestWeights: true)
        }
        earlyStopping?.bestCheckpoint = checkpoints.bestPath
        // A data-parallel rank sees its own shard's unreadable files only: the check is one process's.
        let unreadClasses = trainer.distributed == nil
            ? [UnreadClassesCheck(dataset: splits.train, skipped: skipped) { notify(.warning($0)) }] : []
        // The same steps on every rank: rank 0 says it.
        let runLength = (trainer.distributed?.rank ?? 0) == 0
            ? [RunLengthCheck { notify(.warning($0)) }] : []
        trainer.callbacks = unreadClasses + runLength + extraCallbacks + [
            CSVLoggerCallback(path: directory.history),
            JSONLinesLoggerCallback(path: directory.events, everySteps: 10),
            TensorBoardCallback(logDirectory: directory.tensorboard),
        ] + (earlyStopping.map { [$0] } ?? []) + [checkpoints]
        // Listening from here on: Ctrl-C while the feature cache is computed (minutes on a large
        // dataset) stops that work and leaves a resumable checkpoint, as it does during training.
        let stop = signalStop ?? SignalStop()
        trainer.signalStop = stop
        defer { if signalStop == nil { stop.cancel() } }
        if let distributed = trainer.distributed { try checkRanksAgree(distributed) }
        warnAboutOtherProcessCount()
        trainer.pseudoLabeler = try makePseudoLabeler(trainLoader, evalTransform: evalTransform, reporter: skipped)
        do {
            trainer.featureCache = try prepareFeatureCache(train: trainLoader, validation: validationLoader, stop: stop)
        } catch TrainingError.interrupted {
            stop.reset()
            return try interruptedBeforeTraining()
        }
        if let cache = trainer.featureCache {
            skipped.record(cache.train.skipped, split: "training")
            if let v = cache.validation { skipped.record(v.skipped, split: "validation") }
        }
        if options.syncBatchNorm == true {
            if let distributed = trainer.distributed {
                distributed.syncBatchNorm = true
            } else {
                notify(.info("sync-bn: a single process, so BatchNorm statistics are this process's batch's, as without it"))
            }
        }
        var leftOutBefore = false
        let ranks = trainer.distributed?.worldSize ?? 1
        trainer.onSingleImageBatchLeftOut = { [notify] epoch, batch, sample in
            guard !leftOutBefore else { return }  // once: shuffled epochs leave out another image each time
            leftOutBefore = true
            notify(.warning("batch \(batch + 1) of epoch \(epoch + 1) holds one image (\(trainLoader.dataset.samples[sample].source.description)) "
                            + "and BatchNorm cannot train on one, so it is left out, in every epoch where this happens; "
                            + "a batch size that does not leave one image over (\(trainLoader.dataset.count) training images"
                            + (ranks > 1 ? ", each rank's share of them" : "") + ") trains on all of them"
                            + (ranks > 1 && options.syncBatchNorm != true ? ", as does --sync-bn" : "")))
        }

        let result = try trainer.fit(train: trainLoader, validation: validationLoader, epochs: options.epochs)
        config.status = result.status.name
        config.epochsCompleted = result.epochs
        config.training = trainer.configuration
        config.updatedAt = RunDirectory.timestamp()
        var summary = TrainingRunSummary(run: directory.path, config: config, result: result)
        switch result.status {
        case .interrupted, .diverged:  // no final weights: resume (or fix the settings) from the last checkpoint
            try directory.write(config)
            summary.seconds = Date().timeIntervalSince(started)
            return summary
        case .completed, .stopped:
            break
        }

        // Final weights: the EMA's when the run keeps one (its best epoch's when early stopping watched
        // it and restored them), else the best epoch's when early stopping restored them.
        var modelEpoch = result.epochs
        if let ema = trainer.ema {
            try ema.copy(to: trainer.model)
            config.modelWeights = "ema"
            if let earlyStopping, let restored = earlyStopping.restoredEpoch, earlyStopping.watchesEMA(trainer) {
                modelEpoch = restored + 1
            }
        } else if let restored = earlyStopping?.restoredEpoch {
            config.modelWeights = "best"
            modelEpoch = restored + 1
        } else {
            config.modelWeights = "final"
        }
        config.modelEpoch = modelEpoch
        try SafeTensors.write(trainer.model.stateDict(), metadata: ["architecture": config.architecture,
                                                                   "weights": config.modelWeights ?? "final"],
                              to: directory.model)
        try writeLearningCurves()
        var validationReport: EvaluationReport?
        if let validationLoader {
            if earlyStopping?.restoredEpoch == nil, trainer.ema == nil, let last = trainer.lastValidationReport {
                validationReport = last
            } else {
                validationReport = try trainer.evaluate(validationLoader, unless: stop)
            }
            if let r = validationReport {
                try Plots.write(Plots.confusionMatrix(r.confusionMatrix, classNames: r.classNames,
                                                      title: "Confusion matrix (validation)"),
                                to: directory.file("confusion_matrix.svg"))
            }
        }
        var testReport: EvaluationReport?
        if let test = splits.test {
            let loader = try DataLoader(test, batchSize: options.batchSize, transform: evalTransform,
                                        workers: options.workers, strict: strict)
            skipped.watch(loader, split: "test")
            if !stop.isTriggered { testReport = try trainer.evaluate(loader, unless: stop) }
        }
        // Ctrl-C during the final evaluations: the run is complete and its weights written; only
        // the cut-short metrics are missing (`finetune evaluate` computes them).
        let evaluationInterrupted = stop.isTriggered && trainer.distributed == nil
        config.testAccuracy = testReport?.accuracy
        // The totals are the images actually used: files found unusable while decoding are not counted.
        config.data.trainSamples = splits.train.count - skipped.count(split: "training")
        config.data.validationSamples = (splits.validation?.count ?? 0) - skipped.count(split: "validation")
        config.data.testSamples = (splits.test?.count ?? 0) - skipped.count(split: "test")
        try directory.write(config)

        summary = TrainingRunSummary(run: directory.path, config: config, result: result)
        summary.modelEpoch = modelEpoch
        summary.validationAccuracy = validationReport?.accuracy
        summary.validationReport = validationReport
        summary.testReport = testReport
        summary.evaluationInterrupted = evaluationInterrupted
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Ends a run interrupted before its first step: writes the untrained state as the resumable
    /// checkpoint (`--resume` starts training from it) and `config.json` with status `interrupted`.
    private func interruptedBeforeTraining() throws -> TrainingRunSummary {
        let checkpoint = URL(fileURLWithPath: directory.checkpoints).appendingPathComponent("last").path
        trainer.state.status = "interrupted"
        try trainer.saveCheckpoint(to: checkpoint)
        config.status = "interrupted"
        config.updatedAt = RunDirectory.timestamp()
        try directory.write(config)
        var summary = TrainingRunSummary(run: directory.path, config: config,
                                         result: FitResult(status: .interrupted(checkpoint: checkpoint), epochs: 0,
                                                           globalStep: 0, history: [], best: nil))
        summary.seconds = Date().timeIntervalSince(started)
        return summary
    }

    /// Learning curves (loss, accuracy, AUC) from the history.
    private func writeLearningCurves() throws {
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
                                      metrics: ["loss", "accuracy", "auc"], directory: directory.path)
    }

    /// Why the run's training cannot use cached backbone features, and whether a user would expect
    /// them (a full fine-tune never did); nil when it can. `create` refuses `--feature-cache on` with
    /// it before the run directory is made (it failed the new run at its start).
    static func featureCacheRefusal(_ options: TrainOptions, trainer: Trainer) -> (reason: String, told: Bool)? {
        guard let model = trainer.model as? any ClassifierModel else { return nil }
        if let reason = FeatureCache.ineligibility(of: model) {
            return ("the backbone is not frozen (\(reason)); training goes through the full network",
                    !trainer.state.freeze.frozenScopes.isEmpty)
        }
        if trainer.configuration.mix != nil {
            return ("MixUp/CutMix mix each batch's images, so training goes through the full network", true)
        }
        if options.augment != .none && options.cacheAugmentations == nil {
            return ("augmentation \(options.augment.rawValue) changes the inputs every epoch, so training goes through the "
                    + "full network; cache K augmented views (--cache-augmentations K), or use no augmentation", true)
        }
        return nil
    }

    /// A resume at an epoch boundary with another number of processes than the run trained with is
    /// allowed (a mid-epoch one is refused by `Trainer.fit`), but it changes the training: each
    /// process's batch is `--batch-size`, so the images per optimizer step, the steps per epoch and the
    /// shards change. It was accepted without a word; rank 0 says so now.
    private func warnAboutOtherProcessCount() {
        let state = trainer.state
        let trainedWith = state.worldSize ?? 1, now = trainer.distributed?.worldSize ?? 1
        guard state.globalStep > 0, state.batchInEpoch == 0, state.epoch < config.options.epochs, trainedWith != now,
              (trainer.distributed?.rank ?? 0) == 0 else { return }
        func processes(_ n: Int) -> String { n == 1 ? "1 process" : "\(n) processes" }
        let batch = config.options.batchSize
        notify(.warning("resuming with \(processes(now)); the run trained with \(processes(trainedWith)), so from "
            + "epoch \(state.epoch + 1) each step takes \(now) × \(batch) = \(now * batch) images (it took "
            + "\(trainedWith * batch)) and the data is split \(now) way\(now == 1 ? "" : "s"): the steps and results differ "
            + "from an uninterrupted run (resume with \(processes(trainedWith)) to continue it exactly)"))
    }

    /// Throws unless every rank has this run's model and data settings, before any rank computes
    /// features: `Trainer.startDistributed` checks the training settings, but ranks started by hand
    /// (torchrun, Slurm, a PyTorchJob's separate Master and Worker commands) with another
    /// `--input-size`, `--pooling`, `--head-dropout`, `--augment` or `--exif` trained on without a
    /// word, and one wrote its features into a shared feature cache under rank 0's key. Left out:
    /// what each rank may set for itself (threads, decoding workers, checkpoint cadence, which only
    /// rank 0 follows) and paths on each machine.
    private func checkRanksAgree(_ distributed: DataParallel) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try encoder.encode(value), as: UTF8.self) }
        let o = config.options
        // Named one by one where a flag decides them; the rest together. (`Trainer.startDistributed`
        // names the epochs, batch size and training data.)
        var rest = o
        rest.workers = 0
        rest.threads = nil
        rest.saveEverySteps = nil
        rest.saveEverySeconds = nil
        rest.featureCacheDirectory = nil
        rest.imageRoot = nil
        rest.unlabeled = rest.unlabeled.map { _ in "given" }
        rest.checkpointPath = rest.checkpointPath.map { _ in "given" }
        rest.classWeights = rest.classWeights.map { _ in "given" }  // their values are the training settings'
        rest.epochs = 0
        rest.batchSize = 0
        rest.inputSize = nil
        rest.augment = .none
        rest.colorJitter = nil
        rest.randAugment = nil
        rest.randomErasing = nil
        rest.erasingMode = nil
        rest.exif = nil
        rest.featureCache = nil
        rest.cacheAugmentations = nil
        rest.valSplit = nil
        rest.limitPerClass = nil
        rest.earlyStoppingPatience = nil
        try distributed.checkSameSettings([
            ("model (--arch, --weights, --pooling, --head-*, --binary)",
             "\(config.architecture) \(config.weights ?? "none") " + (try json(config.head))),
            ("preprocessing (--input-size)", try json(config.preprocessing)),
            ("augmentation (--augment, --color-jitter, --random-erasing)",
             "\(o.augment.rawValue) \(o.colorJitter ?? []) \(o.randAugment ?? []) \(o.randomErasing ?? 0) "
                + (o.erasingMode?.rawValue ?? "")),
            ("EXIF orientation (--exif)", o.exif?.rawValue ?? "default"),
            ("feature cache (--feature-cache, --cache-augmentations)",
             "\(o.featureCache?.rawValue ?? "auto") \(o.cacheAugmentations ?? 1)"),
            ("data split (--val-split, --limit-per-class)", "\(o.valSplit ?? -1) \(o.limitPerClass ?? -1)"),
            ("early stopping (--early-stopping)", "\(o.earlyStoppingPatience ?? -1)"),
            ("test data", splits.test.map(DataParallel.fingerprint) ?? "no test split"),
            ("other run options (--monitor, --sampler, --unlabeled, --checkpoint-path, …)", try json(rest)),
        ])
    }

    /// The cached backbone features for head-only epochs, or nil (with the reason told when a user
    /// would expect them).
    private func prepareFeatureCache(train: DataLoader, validation: DataLoader?, stop: SignalStop) throws -> TrainingFeatures? {
        let options = config.options
        let mode = options.featureCache ?? .auto
        guard mode != .off, let model = trainer.model as? any ClassifierModel else { return nil }
        let augmented = options.augment != .none
        if let (reason, told) = Self.featureCacheRefusal(options, trainer: trainer) {
            if mode == .on { throw RunError.invalidSetting(setting: "featureCache", reason: "on: \(reason)") }
            if told { notify(.info("Feature cache not used: \(reason)")) }
            return nil
        }
        let views = augmented ? options.cacheAugmentations ?? 1 : 1
        let directory = options.featureCacheDirectory ?? FeatureCache.defaultDirectory
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let description = String(decoding: try encoder.encode(config.preprocessing), as: UTF8.self)
            + (options.exif == .ignore ? " exif=ignore" : "")  // other pixels, other features
        let started = Date()
        let strict = (options.onBadImage ?? .skip).isStrict
        let oneProcess = (trainer.distributed?.worldSize ?? 1) == 1  // ranks finish together (see `prepare`)
        func prepare(_ dataset: any ImageDataset, _ loader: DataLoader, augmentation: String, views: Int) throws
            -> CachedFeatures {
            try FeatureCache.prepare(model: model, dataset: dataset, transform: loader.transform,
                                     transformDescription: "\(augmentation) \(description)", views: views,
                                     seed: loader.seed, autocastBF16: trainer.configuration.autocastBF16,
                                     batchSize: options.batchSize, workers: options.workers, directory: directory,
                                     strict: strict, distributed: trainer.distributed, stop: oneProcess ? stop : nil)
        }
        let augmentation = options.augment.rawValue + (options.colorJitter.map { " jitter=\($0)" } ?? "")
            + (options.randAugment.map { " nm=\($0)" } ?? "")
            + (options.erasing.map { " erasing=\($0.probability),\($0.mode.rawValue)" } ?? "")
        let trainFeatures = try prepare(splits.train, train, augmentation: augmentation, views: views)
        var validationFeatures: CachedFeatures?
        if let dataset = splits.validation, let validation {
            validationFeatures = try prepare(dataset, validation, augmentation: "eval", views: 1)
        }
        if let labeler = trainer.pseudoLabeler, labeler.unlabeled.count > 0 {
            let teacher = try FeatureCache.prepare(
                model: model, dataset: labeler.unlabeled, transform: labeler.evalTransform,
                transformDescription: "eval \(description)", views: 1, seed: 0,  // no randomness: one cache for every seed
                autocastBF16: trainer.configuration.autocastBF16, batchSize: options.batchSize, workers: options.workers,
                directory: directory, strict: strict, distributed: trainer.distributed, stop: oneProcess ? stop : nil)
            let student = augmented ? try prepare(labeler.unlabeled, train, augmentation: augmentation, views: views) : teacher
            labeler.features = UnlabeledFeatures(teacher: teacher, student: student)
            notify(.info("Feature cache: \(teacher.usableCount) unlabelled images"
                + (augmented ? " (evaluation view + \(views) training view\(views == 1 ? "" : "s"))" : "")))
        }
        let sets = [trainFeatures] + (validationFeatures.map { [$0] } ?? [])
        let reused = sets.allSatisfy(\.reused)
        let kept = sets.compactMap(\.whyNotKept).first.map {
            "kept in memory for this run only, since \($0); --feature-cache-dir or FINETUNE_CACHE_DIR can name a folder "
                + "that keeps them for later runs"
        } ?? directory
        notify(.info("Feature cache: \(trainFeatures.usableCount) training images × \(views) view\(views == 1 ? "" : "s")"
            + (validationFeatures.map { " + \($0.usableCount) validation images" } ?? "")
            + ", \(trainFeatures.embeddingSize) features each, "
            + (reused ? "reused" : String(format: "computed in %.1f s", Date().timeIntervalSince(started))
                + (trainer.distributed.map { $0.worldSize > 1 ? " by \($0.worldSize) ranks" : "" } ?? ""))
            + " (\(kept)); head-only epochs skip the backbone"))
        return TrainingFeatures(train: trainFeatures, validation: validationFeatures)
    }
}
