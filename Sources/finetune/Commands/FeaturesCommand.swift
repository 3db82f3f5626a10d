import ArgumentParser
import Data
import Foundation
import NN
import Torch
import Training
import Vision

/// `finetune features MODEL DATA --out FILE`: embeddings and labels for other tools.
struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Export the backbone's pooled features (embeddings) and labels of class folders.",
        discussion: """
            MODEL is an architecture (with --weights) or a run directory written by `finetune train` (its backbone, \
            head pooling and preprocessing). The features are what the model's final Linear consumes (e.g. 1280 floats \
            for MobileNetV2, 4096 for VGG's fc7), computed in inference mode with the weights' own evaluation \
            preprocessing. The format follows --out's extension:
              .safetensors  tensors "features" [N, D] float32 and "labels" [N] int64;
                            metadata "class_names" and "files" (JSON arrays),
                            "architecture", "weights"
              .npy          FILE holds the features; FILE's stem + "_labels.npy" the labels
              .csv          one row per image: path,label,class,f0,…,f(D-1)

            Unreadable images are skipped and listed on standard error.

            Examples:
              finetune features mobilenet_v2 data/flowers --out flowers.safetensors
              finetune features runs/flowers data/flowers --split test --out test.npy
              finetune features resnet50 data/pets --out pets.csv --json
            """)

    /// The file format, from --out's extension.
    typealias Format = FeatureExport.Format

    @Argument(help: "Architecture name or run directory.") var model: String
    @Argument(help: "Class-folder root (with splits), a folder of class folders, a path,label CSV file, or a folder of unlabelled images.")
    var data: String
    @Option(help: "Output file: .safetensors, .npy or .csv.") var out: String
    @Option(help: "Weights for an architecture: a catalog tag such as imagenet (the default), a file, or none.")
    var weights: String?
    @Option(help: ArgumentHelp("Which split: all (train + val + test, the default), train, val or test. On a plain folder DATA is used whole; with a run, a split is chosen as evaluate chooses it (the run's own where it chose among the images: its --val-split, --limit-per-class).", valueName: "split"))
    var split: DataSplit?
    @Option(help: "With a CSV file as DATA: the folder its relative paths start from (default: the CSV's folder).")
    var imageRoot: String?
    @Option(help: "Images per forward pass.") var batchSize = 32
    @Option(help: "Decoding threads.") var workers = 2
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var runWeights: RunWeightsOption
    @OptionGroup var precisionOptions: PrecisionOptions
    @Option(help: "Random seed (initialisation of --weights none).") var seed: UInt64 = 0
    @Flag(help: "Print a JSON summary.") var json = false
    @Flag(help: "Replace --out (and its _labels.npy) even when it is not recognisably an earlier finetune features file.")
    var overwrite = false

    func format() throws -> Format {
        let fileExtension = (out as NSString).pathExtension.lowercased()
        guard let format = Format(rawValue: fileExtension) else {
            throw ValidationError("--out \(out): unknown format '.\(fileExtension)'; use .safetensors, .npy or .csv")
        }
        return format
    }

    func validate() throws {
        let format = try format()
        var existing: [String] = []
        try checkOutputFolder(out, flag: "--out")
        for path in outputFiles(format) {
            try checkNotADanglingLink(path, flag: "--out")  // the labels' file too
            try checkRegularIfPresent(path, flag: "--out")
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue { throw ValidationError("--out: \(path) is a folder; give a file name") }
            existing.append(path)
        }
        if let path = existing.first, !overwrite, !FeatureExport.isEarlierOutput(out, format: format) {
            throw ValidationError("--out: \(path) exists and is not an earlier output of finetune features; move it "
                                  + "away, choose another file, or replace it with --overwrite")
        }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        try checkWorkers(workers)
        try checkDataArgument(data, imageRoot: imageRoot)  // a CSV-trained run's features too (CSV was "not a folder")
        if !RunDirectory.isRun(model) && !ModelZoo.architectures.contains(model) {
            throw ValidationError("MODEL '\(model)' is neither a run directory nor an architecture; architectures: "
                                  + ModelZoo.architectures.joined(separator: ", "))
        }
    }

    func run() throws {
        try runOptions.applyThreads()
        let classifier: ImageClassifier, preprocessing: Preprocessing, weightsName: String
        var runConfig: RunConfig?
        if RunDirectory.isRun(model) {
            // It was ignored without a word (probe AG): the run's weights are its model's.
            if let weights { throw ValidationError("--weights \(weights): \(model) is a run directory, which brings its own model; leave it out") }
            let run = RunDirectory(model)
            let config = try run.readConfig()
            runOptions.applyEXIF(run: config)
            let loaded = try runWeights.loadModel(run, config)
            classifier = loaded.model
            preprocessing = config.preprocessing
            weightsName = runWeights.weights == .final ? run.model : loaded.weights
            runConfig = config
        } else {
            try runWeights.check(isRun: false)
            runOptions.applyEXIF(run: nil)
            let weights = self.weights ?? "imagenet"
            let initial = weights.lowercased() == "none" ? nil : weights
            Runtime.manualSeed(seed)
            let pretrained: PretrainedModel
            do { pretrained = try ModelZoo.make(model, weights: initial) } catch {
                throw ValidationError("--weights \(weights): \(error)")
            }
            classifier = pretrained.model
            try classifier.useChannelsLast()
            preprocessing = pretrained.preprocessing
            weightsName = initial ?? "random"
        }
        let (dataset, _, scanSkipped, _) = try EvaluateCommand.dataset(data, split: split, unset: .all, run: runConfig,
                                                                    classNames: runConfig?.classNames, imageRoot: imageRoot,
                                                                    unlabelled: true)
        let started = Date()
        let format = try format()
        let written = outputFiles(format)
        let result = try FeatureExport.write(model: classifier, dataset: dataset, transform: EvaluationTransform(preprocessing),
                                             autocastBF16: precisionOptions.resolved(for: classifier) == .bf16,
                                             batchSize: batchSize, workers: workers, format: format, to: out,
                                             weights: weightsName)
        if let warning = result.skipped.warning() { printError(warning) }
        let samples = result.samples
        let seconds = Date().timeIntervalSince(started)
        if json {
            printEncodedJSON(Output(files: written, format: format.rawValue, images: samples.count,
                                    skipped: scanSkipped + dataset.count - samples.count, featureSize: classifier.embeddingSize,
                                    architecture: classifier.architecture, classes: dataset.classNames,
                                    seconds: seconds))
        } else {
            printLine(String(format: "%d images × %d features (%@) → %@ in %.1f s", samples.count, classifier.embeddingSize,
                             classifier.architecture, written.joined(separator: ", "), seconds))
        }
    }

    /// The files `--out` names: itself, and for .npy its labels beside it (`<stem>_labels.npy`).
    func outputFiles(_ format: Format) -> [String] { FeatureExport.files(format, path: out) }

    /// `features --json`.
    struct Output: Encodable {
        /// The files written (with .npy, the labels' file too).
        var files: [String]
        var format: String
        var images: Int
        /// Image files left out: unusable when scanned (empty, not JPEG/PNG, a broken link) or not decodable.
        var skipped: Int
        var featureSize: Int
        var architecture: String
        var classes: [String]
        var seconds: Double
    }
}
