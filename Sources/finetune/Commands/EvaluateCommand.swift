import ArgumentParser
import Data
import Foundation
import Torch
import Training
import Vision

/// `finetune evaluate RUN_DIR DATA`: metrics of a trained run on labelled class folders.
struct EvaluateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evaluate",
        abstract: "Evaluate a run's model on class folders: accuracy, loss, top-5, AUC, per-class report, confusion matrix.",
        discussion: """
            RUN_DIR is a folder written by `finetune train` (config.json + model.safetensors); its
            preprocessing and class names are used. DATA is a class-folder root with train/ val/ test/
            splits (the test split by default, see --split) or a plain folder of class folders. DATA's
            classes must be the run's.

            Examples:
              finetune evaluate runs/flowers data/flowers
              finetune evaluate runs/flowers data/flowers --split val --json
              finetune evaluate runs/flowers more-photos/
            """)

    static let splitNames = ["test", "val", "train", "all"]

    @Argument(help: "Run directory written by `finetune train`.") var runDir: String
    @Argument(help: "Class-folder root (with splits) or a folder of class folders.") var data: String
    @Option(help: "Which split of a DATA with split folders: test, val, train or all (train + val + test).")
    var split = "test"
    @Option(help: "Images per forward pass.") var batchSize = 32
    @Option(help: "Decoding threads.") var workers = 2
    @Option(help: "An image that cannot be decoded: skip (report it once, leave it out of the totals) or fail (stop, naming it).")
    var onBadImage: BadImagePolicy = .skip
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @Flag(help: "Print the evaluation report as one JSON object.") var json = false

    func validate() throws {
        guard Self.splitNames.contains(split) else {
            throw ValidationError("--split: unknown split '\(split)'; expected \(Self.splitNames.joined(separator: ", "))")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        try checkWorkers(workers)
        guard RunDirectory.isRun(runDir) else {
            throw ValidationError("RUN_DIR \(runDir) is not a run directory (no config.json); train one with `finetune train`")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: data, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ValidationError("DATA folder \(data) does not exist or is not a folder")
        }
    }

    func run() throws {
        try applyThreads(threads)
        let directory = RunDirectory(runDir)
        let config = try directory.readConfig()
        let strict = onBadImage.isStrict
        let (dataset, splitName) = try badImageContext(strict) {
            try Self.dataset(data, split: split, classNames: config.classNames, strict: strict)
        }
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: config.preprocessing, batchSize: min(batchSize, max(1, dataset.count)),
                                                  workers: max(1, workers))
        } catch {
            throw ValidationError("--batch-size \(batchSize): \(error)")
        }
        let model = try directory.loadModel(config)
        var evaluation = TrainingConfiguration()
        evaluation.loss = config.training.loss
        let trainer = try Trainer(model: model, configuration: evaluation)
        let loader = try DataLoader(dataset, batchSize: batchSize, transform: EvaluationTransform(config.preprocessing),
                                    workers: workers, strict: strict)
        SkippedFileReporter { _, entry in printError("warning: skipping \(entry.path): \(entry.reason)") }
            .watch(loader, split: splitName)
        let report = try badImageContext(strict) { try trainer.evaluate(loader) }
        if json {
            var object = try reportDictionary(report)
            object["run_dir"] = directory.path
            object["data"] = data
            object["split"] = splitName
            object["architecture"] = config.architecture
            printJSON(object)
        } else {
            print("\(config.architecture) from \(directory.path) on \(data) (\(splitName)):")
            print(report.rendered())
        }
    }

    /// The images of `split` (`train`, `val`, `test` or `all`: every split) of a class-folder root,
    /// and the split's name (`folder` for a plain folder of class folders, which is used whole).
    /// With `classNames`, the folders' classes must be those.
    static func dataset(_ root: String, split: String, classNames: [String]?,
                        strict: Bool = false) throws -> (any ImageDataset, String) {
        let splits = try ImageFolderDataset.splits(root: root, options: ScanOptions(strict: strict))
        if let warning = splits.skipped.warning() { printError(warning) }
        if let classNames { try RunDirectory.checkClassNames(splits.train.classNames, run: classNames, data: root) }
        guard splits.hasSplitFolders else { return (splits.train, "folder") }
        let chosen: (any ImageDataset)?
        switch split {
        case "train": chosen = splits.train
        case "val": chosen = splits.validation
        case "test": chosen = splits.test
        default:
            let parts: [any ImageDataset] = [splits.train] + [splits.validation, splits.test].compactMap { $0 }
            return (LabeledDataset(samples: parts.flatMap(\.samples), classNames: splits.train.classNames), "all")
        }
        guard let chosen else {
            throw ValidationError("--split \(split): \(root) has no \(split)/ folder; use another --split or all")
        }
        return (chosen, split)
    }
}
