import ArgumentParser
import AtomicFiles
import Data
import Foundation
import Optim
import Torch
import Training
import Vision

/// `finetune train DATA --arch A --weights imagenet --out RUN_DIR`: fine-tunes a zoo model on a
/// class-folder dataset and writes a run directory (see docs/cli.md). It parses flags into a
/// `TrainingRun.Specification` and prints what the run reports.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fine-tune a pretrained classifier on class folders and write a run directory.",
        discussion: """
            DATA is a folder of class folders, either with train/, val/ (or validation/, valid/) and test/
            splits, or plain class folders (then carve out a validation set with --val-split), or a
            path,label CSV file (all training data; relative paths start at --image-root). The
            head is replaced to fit DATA's classes; the weights' own preprocessing is used for
            training and evaluation. Ctrl-C saves a resumable checkpoint (RUN_DIR/checkpoints/last).

            Examples:
              finetune train data/flowers --arch mobilenet_v2 --weights imagenet --out runs/flowers
              finetune train data/pets --arch resnet50 --recipe two-phase --phase1-epochs 3 --epochs 10 \\
                  --val-split 0.2 --out runs/pets --json
              finetune train --resume runs/pets --epochs 15
            """)

    @Argument(help: "Class-folder root (with train/ val/ test/ splits, or plain class folders), or a path,label CSV file (see --image-root). Optional with --resume.")
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
    @Option(help: "Optimizer.") var optimizer: OptimizerConfig.Kind = .adam
    @Option(help: "Learning rate of the head (default: 1e-3 for adam/adamw, 1e-2 for sgd/rmsprop), or find: run `finetune lr-find` first and use its suggestion.")
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
    @Option(help: "Recipe.") var recipe: RecipeName = .full
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
    @OptionGroup(title: "Data-parallel training (docs/distributed.md)") var distributed: DistributedOptions
    @OptionGroup(title: "Pseudo-labelling") var pseudoLabel: PseudoLabelOptions

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
    @Option(help: "Random seed (initialisation, shuffling, splits).") var seed: UInt64 = 0
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
    @Option(help: "Metric for best checkpoint and early stopping (loss/accuracy without validation).")
    var monitor: MonitorMetric = .valLoss
    @Option(help: "Also save checkpoints/last every N optimizer steps.") var saveEverySteps: Int?
    @Option(help: "Also save checkpoints/last every S seconds.") var saveEverySeconds: Double?
    @Option(help: "Warm start: load this .safetensors/.pth state dict (non-strict) before training.")
    var checkpointPath: String?
    @Option(help: "With --checkpoint-path: skip keys under these comma-separated scopes (e.g. the old head).")
    var checkpointExcludeScopes: String?

    @Flag(help: "Print the final summary as one JSON object (progress goes to standard error).") var json = false

    func validate() throws {
        if resume == nil {
            guard data != nil else { throw ValidationError("give the DATA folder (or --resume RUN_DIR)") }
            guard arch != nil else { throw ValidationError("--arch is required (e.g. --arch mobilenet_v2)") }
            guard out != nil else { throw ValidationError("--out RUN_DIR is required") }
        }
        if let resume, !RunDirectory.isRun(resume) {
            throw ValidationError("--resume: \(resume) is not a run directory (no config.json)")
        }
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        do { _ = try ScheduleConfig(parsing: lrSchedule) } catch {
            throw ValidationError("--lr-schedule: \(error); schedules: \(ScheduleConfig.names.joined(separator: ", "))")
        }
        _ = try hiddenUnits()
        try checkWorkers(workers)
        if resume == nil { try mapErrors { try specification().recipe.validate(epochs: epochs ?? 10) } }
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

    /// The run the flags describe.
    func specification() throws -> TrainingRun.Specification {
        var spec = TrainingRun.Specification(data: data ?? "", architecture: arch ?? "",
                                             weights: weights.lowercased() == "none" ? nil : weights, runDirectory: out ?? "")
        spec.overwrite = overwrite
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
        spec.options.randAugment = augment.randAugment
        try techniques.apply(to: &spec.options)
        pseudoLabel.apply(to: &spec.options)
        if distributed.syncBatchNorm { spec.options.syncBatchNorm = true }
        return spec
    }

    func run() throws {
        // Refused before any worker starts or any folder is made: the run directory was created and
        // left "failed", so the next plain `train` needed --overwrite (probe AI).
        let pseudoLabelling = resume == nil && pseudoLabel.unlabeled != nil
        if pseudoLabelling, (distributed.nprocPerNode ?? 1) > 1 {
            throw ValidationError("--unlabeled: pseudo-labelling does not run data-parallel yet; train without --nproc-per-node")
        }
        if let status = try distributed.launchWorkers(threads: threads) { if status != 0 { throw ExitCode(status) }; return }
        let parallel = try distributed.join(), rank = parallel?.rank ?? 0
        if pseudoLabelling, let parallel, parallel.worldSize > 1 {
            throw ValidationError("--unlabeled: pseudo-labelling does not run data-parallel yet; train with one process "
                                  + "(no RANK or WORLD_SIZE)")
        }
        // A resumed run keeps its own thread count unless --threads says otherwise (bit-exact resume).
        if resume == nil || threads != nil { try applyThreads(threads) }
        let notices = RankNotices(rank: rank, json: json)
        let notify = notices.notify
        // Listening before the run is made: Ctrl-C during `--lr find`'s range test, or before the run
        // directory exists, stops with nothing made; after that, the run stops at once, resumable.
        let stop = SignalStop()
        defer { stop.cancel() }
        let trainingRun = try mapErrors { () -> TrainingRun in
            if let resume {
                ResumeFlags.warnAboutIgnored(rank: rank)
                let changes = TrainingRun.ResumeChanges(data: data, epochs: epochs, workers: workers, onBadImage: onBadImage,
                                                        threads: threads, imageRoot: techniques.imageRoot)
                let resumed = try TrainingRun.resume(try DistributedOptions.resumeFolder(resume, rank: rank), changes: changes,
                                                     notify: notify)
                resumed.signalStop = stop
                return resumed
            }
            return try TrainingRun.create(DistributedOptions.specification(try specification(), rank: rank),
                                          finetuneVersion: finetuneVersion, notify: notify, stop: stop)
        }
        notices.runIsMade = true
        trainingRun.trainer.distributed = parallel
        // With --json, progress goes to standard error: its style follows that stream.
        let style = ProgressPrinter.defaultStyle(isTerminal: isatty(json ? STDERR_FILENO : STDOUT_FILENO) != 0)
        trainingRun.extraCallbacks = rank > 0 ? [] : [ProgressPrinter(style: style, write: json ? StandardStreams.writeError : StandardStreams.writeOutput)]
        let summary = try mapErrors { try WorkerProcess.finishing { try trainingRun.run() } }
        if let parallel, rank == 0 { notify(.info(DistributedOptions.allReduceReport(parallel))) }
        if let notice = summary.interruptionNotice(processes: parallel?.worldSize ?? 1) {
            if json && rank == 0 { printEncodedJSON(summary) }  // status `interrupted`: a script tells it from a crash
            notify(.info(notice))
            throw ExitCode(130)
        }
        if summary.status == "diverged" {
            // Ranks other than 0 train into a private folder, removed at exit: rank 0 names the checkpoint.
            if rank > 0 { throw CommandFailure("training diverged on rank \(rank): \(summary.stopReason ?? "non-finite loss")") }
            if json { printEncodedJSON(summary) }
            let last = trainingRun.directory.lastCheckpoint
            let checkpoint = Checkpoint.isComplete(last) ? "The last good checkpoint is \(last) ; "
                : "It diverged before its first checkpoint; "
            throw CommandFailure("training diverged: \(summary.stopReason ?? "non-finite loss"); the step was not applied. "
                + checkpoint + "lower the learning rates (--lr, and the backbone's through --lr-factor, --layer-decay or "
                + "--phase2-lr where given) or clip gradients with --clip-grad-norm, and train again")
        }
        if rank > 0 { return }
        if json { printEncodedJSON(summary); return }
        print("Training \(summary.status)\(summary.stopReason.map { " (\($0))" } ?? "") after \(summary.epochs) epochs, "
              + "\(summary.globalStep) steps " + String(format: "(%.1f s)", summary.seconds)
              + " on \(summary.trainSamples) training images")
        // The best epoch's metric is printed once, by the progress printer ("Best val_loss: …").
        if let accuracy = summary.validationAccuracy { print(String(format: "validation accuracy: %.2f%%", accuracy * 100)) }
        print("model.safetensors: \(summary.modelWeights ?? "final") weights (epoch \(summary.modelEpoch ?? summary.epochs))")
        if let r = summary.testReport {
            print(String(format: "test accuracy: %.2f%% (%d images)", r.accuracy * 100, r.sampleCount))
        }
        print("run directory: \(summary.run)")
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

    /// Runs `body`, turning the run's errors into messages that name the flag (or the run directory's
    /// flag, --out or --resume).
    func mapErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch RunError.invalidSetting(let setting, let reason) {
            let flag = Self.flags[setting] ?? TechniqueOptions.flags[setting] ?? PseudoLabelOptions.flags[setting]
            throw ValidationError("\(flag ?? setting): \(reason)")
        } catch let error as RunError {
            throw ValidationError((resume != nil ? "--resume: " : "--out: ") + "\(error)")
        } catch TrainingError.interrupted(let moment) {
            printError("interrupted \(moment): nothing was written")  // Ctrl-C before the run existed
            throw ExitCode(130)
        } catch DataError.invalidDataset(let message) {
            throw ValidationError(message)  // a dataset that cannot be used, as check-data says (status 64)
        } catch let error as DataError where onBadImage == .fail {
            throw CommandFailure("--on-bad-image fail: \(error)")
        }
    }
}
