import ArgumentParser
import Data
import Foundation
import NN
import Training
import Torch
import Vision

/// `finetune predict`: classify image files with a pretrained model.
struct PredictCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Classify images (files or folders) and print the top-k classes.",
        discussion: """
            The weights' own preprocessing (resize, crop, mean/std) is applied automatically. When the first argument \
            is a run directory written by `finetune train` (it holds config.json), the run's model, class names and \
            preprocessing are used, and --arch/--weights are refused.

            Examples:
              finetune predict --arch mobilenet_v2 --weights imagenet --top-k 5 photo.jpg
              finetune predict --arch efficientnet_lite0 --weights imagenet --json photos/
              finetune predict runs/flowers --top-k 3 photos/
            """)

    @Option(help: "Architecture (see `finetune summary --help`); not needed with a run directory.") var arch: String?
    @Option(help: "Weights: a catalog tag such as imagenet (the default), a catalog name, a .pth/.safetensors file, or none.")
    var weights: String?
    @Option(help: "How many classes to report per image.") var topK = 5
    @Option(help: "Images per forward pass.") var batchSize = 16
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var runWeights: RunWeightsOption
    @OptionGroup var precisionOptions: PrecisionOptions
    @Option(help: "Test-time augmentation: off, flip (average the softmax of the image and its mirror), crops (also torchvision's five crops).")
    var tta: TestTimeAugmentation = .off
    @Flag(help: "One JSON object per image.") var json = false
    @Argument(help: "[RUN_DIR] then image files or folders of images.") var inputs: [String]

    func validate() throws {
        guard topK > 0 else { throw ValidationError("--top-k must be at least 1") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
        // `source()` is checked in `run()`: a ValidationError here comes before the parser's own
        // "Unknown option" error, so `predict RUN --topk` said to give images after RUN.
    }

    /// Where the model comes from: a run directory (the first input) or `--arch`, and the image
    /// files or folders.
    enum Source {
        case run(RunDirectory, images: [String])
        case architecture(String, images: [String])
    }

    func source() throws -> Source {
        guard let first = inputs.first else { throw ValidationError("give at least one image file or folder") }
        if RunDirectory.isRun(first) {
            // They were ignored without a word: the run's model answered for `--arch resnet18` (probe AG).
            if let given = arch.map({ "--arch \($0)" }) ?? weights.map({ "--weights \($0)" }) {
                throw ValidationError("\(given): \(first) is a run directory, which brings its own model; leave it out")
            }
            guard inputs.count > 1 else { throw ValidationError("give image files or folders after the run directory") }
            return .run(RunDirectory(first), images: Array(inputs.dropFirst()))
        }
        guard let arch else {
            throw ValidationError("--arch is required unless the first argument is a run directory (with config.json)")
        }
        return .architecture(arch, images: inputs)
    }

    func run() throws {
        try runOptions.applyThreads()
        let predictor: Predictor, files: [String], skippedInFolders: Int
        switch try source() {
        case .run(let run, let images):
            let config = try run.readConfig()
            runOptions.applyEXIF(run: config)
            (files, skippedInFolders) = try collectImageFiles(images)
            predictor = try Predictor(run: run, config: config, weights: runWeights.weights)
            runWeights.tell(predictor.weights ?? "")
        case .architecture(let arch, let images):
            try runWeights.check(isRun: false)
            runOptions.applyEXIF(run: nil)
            (files, skippedInFolders) = try collectImageFiles(images)
            let weights = self.weights ?? "imagenet"
            predictor = try Predictor(architecture: arch, weights: weights.lowercased() == "none" ? nil : weights)
        }
        predictor.precision = precisionOptions.resolved(for: predictor.model)
        predictor.exif = runOptions.exif ?? predictor.exif
        var failures = 0
        var notFinite: [String] = []
        for start in stride(from: 0, to: files.count, by: batchSize) {
            let chunk = Array(files[start..<min(start + batchSize, files.count)])
            var tensors: [Tensor] = [], kept: [String] = []
            for file in chunk {
                do {
                    tensors.append(try predictor.input(contentsOfFile: file, tta: tta))
                    kept.append(file)
                } catch {
                    failures += 1
                    let reason = "\(error)"  // most decoding errors begin with the path already
                    printError("skipping \(escapedName(file)): "
                        + escapedName(reason.hasPrefix(file + ": ") ? String(reason.dropFirst(file.count + 2)) : reason))
                }
            }
            guard !tensors.isEmpty else { continue }
            let ranked = try predictor.predict(tensors, k: Array(repeating: topK, count: tensors.count), tta: tta)
            for (file, topK) in zip(kept, ranked) {
                if topK.contains(where: { !$0.probability.isFinite }) { notFinite.append(file) }
                let prediction = Prediction(file: file, topK: topK, tta: tta == .off ? nil : tta.rawValue)
                if json {
                    printEncodedJSON(prediction)
                } else {
                    printLine(escapedName(file) + (tta == .off ? "" : " (test-time augmentation \(tta.rawValue))"))
                    for r in prediction.topK {
                        printLine(String(format: "  %6.2f%%  %4d  %@", r.probability * 100, r.index, escapedName(r.className)))
                    }
                }
            }
        }
        if let first = notFinite.first {  // null probabilities were printed without a word
            printError("warning: the model's outputs for \(notFinite.count) image\(notFinite.count == 1 ? "" : "s") (\(escapedName(first))"
                       + (notFinite.count > 1 ? ", …" : "") + ") are not finite (NaN, or −∞ for every class): their "
                       + "probabilities are null (nan) and their classes are in index order; the weights may have diverged")
        }
        if failures == files.count {
            throw CommandFailure("none of the \(files.count) image\(files.count == 1 ? "" : "s") could be read")
        }
        let unread = failures + skippedInFolders, total = files.count + skippedInFolders
        if unread > 0 { printError("\(unread) of \(total) images could not be read") }
    }
}

/// `predict --json`: one object per image, its `top_k` classes by probability.
struct Prediction: Encodable {
    var file: String
    var topK: [RankedClass]
    /// The test-time augmentation (flip or crops); nil (no key) when off.
    var tta: String?
}

/// Expands folders into JPEG/PNG files as datasets are scanned (`ImageFolderDataset.imageFiles`:
/// recursively, sorted, hidden files such as AppleDouble `._x.jpg` and system folders such as
/// `@eaDir` left out, the entries that cannot be read named); plain files are kept as given. A
/// missing input, or a folder without such a file, is an error naming it. Also returns how many
/// entries named like images the folders held that cannot be read (each named in a warning).
func collectImageFiles(_ inputs: [String]) throws -> (files: [String], skipped: Int) {
    var files: [String] = [], skippedCount = 0
    for input in inputs {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw ValidationError("no such file or folder: \(input)")
        }
        if isDirectory.boolValue {
            let options = ScanOptions()
            let (found, skipped) = try ImageFolderDataset.imageFiles(in: input, options: options)
            for entry in skipped.entries { printError("warning: skipping \(escapedName(entry.path)): \(escapedName(entry.reason))") }
            // Images only: a folder left out (a link to a folder above it) is no image that could not be
            // read ("1 of 2 images" for a folder of one image).
            skippedCount += skipped.entries.filter { options.isImageName(($0.path as NSString).lastPathComponent) }.count
            guard !found.isEmpty else {
                throw ValidationError("\(input) holds no .jpg, .jpeg or .png image (folders are searched recursively)")
            }
            files += found
        } else {
            files.append(input)
        }
    }
    return (files, skippedCount)
}
