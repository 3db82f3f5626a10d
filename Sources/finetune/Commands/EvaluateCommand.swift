import ArgumentParser
import Data
import Foundation
import NN
import Torch
import Training
import Vision

/// `finetune evaluate RUN_DIR DATA`: metrics of a trained run on labelled class folders.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a run's model on class folders: accuracy, loss, top-5, AUC, per-class report, confusion matrix.",
        discussion: """
            RUN_DIR is a folder written by `finetune train` (config.json + model.safetensors); its preprocessing and \
            class names are used. DATA is a class-folder root with train/ val/ test/ splits (the test split by \
            default, see --split), a plain folder of class folders, or a `path,label` CSV file (evaluated whole; \
            relative paths start at --image-root, else the CSV's folder). DATA's class folders must be among the run's \
            classes, by name; a folder of some of them is evaluated on those.

            Examples:
              finetune evaluate runs/flowers data/flowers
              finetune evaluate runs/flowers data/flowers --split val --json
              finetune evaluate runs/flowers more-photos/
              finetune evaluate runs/pets test.csv --image-root /data/pets
            """)

    @Argument(help: "Run directory written by `finetune train`.") var runDir: String
    @Argument(help: "Class-folder root (with splits), a folder of class folders, or a path,label CSV file.") var data: String
    @Option(help: ArgumentHelp("Which split: test (the default), val, train, or all (train + val + test). On a plain folder or CSV file DATA is used whole. Where the run chose among the images (its --val-split hold-out; every split of its own DATA with --limit-per-class), the split is the run's own, made again.", valueName: "split"))
    var split: DataSplit?
    @Option(help: "With a CSV file as DATA: the folder its relative paths start from (default: the CSV's folder).")
    var imageRoot: String?
    @Option(help: "Images per forward pass.") var batchSize = 32
    @Option(help: "Decoding threads.") var workers = 2
    @Option(help: "An image that cannot be decoded: skip (report it once, leave it out of the totals) or fail (stop, naming it).")
    var onBadImage: BadImagePolicy = .skip
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var runWeights: RunWeightsOption
    @OptionGroup var precisionOptions: PrecisionOptions
    @Option(help: "Test-time augmentation: off, flip (average the softmax of the image and its mirror), crops (also torchvision's five crops).")
    var tta: TestTimeAugmentation = .off
    @Flag(help: "Print the evaluation report as one JSON object.") var json = false
    @Flag(help: "With --json, add `samples`: every image's path, label, predicted class, probabilities and loss.")
    var perSample = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        try checkWorkers(workers)
        guard RunDirectory.isRun(runDir) else {
            throw ValidationError("RUN_DIR \(runDir) is not a run directory (no config.json); train one with `finetune train`")
        }
        try checkDataArgument(data, imageRoot: imageRoot)
    }

    func run() throws {
        try runOptions.applyThreads()
        let directory = RunDirectory(runDir)
        let config = try directory.readConfig()
        runOptions.applyEXIF(run: config)
        let strict = onBadImage.isStrict
        let (dataset, splitName, _, notes) = try badImageContext(strict) {
            try Self.dataset(data, split: split, run: config, classNames: config.classNames, strict: strict, imageRoot: imageRoot)
        }
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: config.preprocessing, batchSize: min(batchSize, max(1, dataset.count)),
                                                  workers: max(1, workers))
        } catch {
            throw ValidationError("--batch-size \(batchSize): \(error)")
        }
        let (model, weightsUsed) = try runWeights.loadModel(directory, config)
        var evaluation = TrainingConfiguration()
        evaluation.loss = config.training.loss
        evaluation.autocastBF16 = precisionOptions.resolved(for: model) == .bf16
        let trainer = try Trainer(model: model, configuration: evaluation)
        let loader = try DataLoader(dataset, batchSize: batchSize, transform: tta.transform(config.preprocessing),
                                    workers: workers, strict: strict)
        SkippedFileReporter { _, entry in printError("warning: skipping \(entry.path): \(entry.reason)") }
            .watch(loader, split: splitName)
        var (report, samples) = try badImageContext(strict) { () -> (EvaluationReport, [SamplePrediction]?) in
            guard perSample else { return (try trainer.evaluate(loader, tta: tta), nil) }
            let result = try trainer.evaluateSamples(loader, tta: tta)
            return (result.report, result.samples)
        }
        report.notes += notes
        if json {
            let subject = Output.Subject(runDir: directory.path, data: data, split: splitName,
                                         architecture: config.architecture, weightsUsed: weightsUsed, tta: tta.rawValue)
            printEncodedJSON(Output(subject: subject, report: report, samples: samples))
        } else {
            printLine("\(config.architecture) from \(directory.path) on \(data) (\(splitName))"
                      + (tta == .off ? ":" : ", test-time augmentation \(tta.rawValue):"))
            printLine(report.rendered())
        }
    }

    /// `EvaluationData.select`, its warnings printed and a `--split` it refuses a usage error.
    static func dataset(_ root: String, split: DataSplit?, unset: DataSplit = .test, run: RunConfig?, classNames: [String]?,
                        strict: Bool = false, imageRoot: String? = nil,
                        unlabelled: Bool = false) throws -> (any ImageDataset, String, scanSkipped: Int, notes: [String]) {
        do {
            let selected = try EvaluationData.select(root, split: split, unset: unset, run: run, classNames: classNames,
                                                     strict: strict, imageRoot: imageRoot, unlabelled: unlabelled)
            selected.warnings.forEach(printError)
            return (selected.dataset, selected.split, selected.scanSkipped, selected.notes)
        } catch RunError.invalidSetting(let setting, let reason) where setting == "split" {
            throw ValidationError("--split \(reason)")
        } catch RunError.invalidSetting(let setting, let reason) where setting == "data" {
            throw ValidationError("DATA: \(reason)")  // the images changed since the run was made
        }
    }
}

extension EvaluateCommand {
    /// `evaluate --json`: what was evaluated, and beside it the `EvaluationReport` in its own `Codable`
    /// form (snake_case keys, see `printEncodedJSON`). A value the report does not have (`loss` without
    /// losses, `top_k` with 5 classes or fewer, `auc` or `macro_auc` when undefined, a class's `auc`,
    /// `samples` without --per-sample) leaves its key out; a non-finite loss (a diverged model) is `null`.
    struct Output: Encodable {
        /// What was evaluated: `run_dir`, `data`, `split` (`test`, `val`, `train`, `all`, or `folder`
        /// for a plain folder of class folders), `architecture`, `weights_used` (the run's weights
        /// evaluated: "model.safetensors", or a checkpoint's with `--checkpoint`, "checkpoints/best,
        /// epoch 3", with ", EMA weights" for a run with an EMA) and `tta` (off, flip or crops).
        struct Subject: Encodable {
            var runDir, data, split, architecture, weightsUsed, tta: String
        }
        var subject: Subject
        var report: EvaluationReport
        /// With --per-sample: each image's prediction, in dataset order.
        var samples: [SamplePrediction]?

        enum CodingKeys: CodingKey { case loss, samples }

        func encode(to encoder: Encoder) throws {
            // The report's keys and these share one object. Its numbers are fractions and AUCs, finite
            // by construction, but the mean loss is whatever the model produced.
            var report = report
            report.loss = nil
            try report.encode(to: encoder)
            try subject.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encodeNumberIfPresent(self.report.loss, forKey: .loss)
            try c.encodeIfPresent(samples, forKey: .samples)
        }
    }
}
