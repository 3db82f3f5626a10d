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
            The weights' own preprocessing (resize, crop, mean/std) is applied automatically. When the
            first argument is a run directory written by `finetune train` (it holds config.json), the
            run's model, class names and preprocessing are used and --arch/--weights are not needed.

            Examples:
              finetune predict --arch mobilenet_v2 --weights imagenet --top-k 5 photo.jpg
              finetune predict --arch efficientnet_lite0 --weights imagenet --json photos/
              finetune predict runs/flowers --top-k 3 photos/
            """)

    @Option(help: "Architecture (see `finetune summary --help`); not needed with a run directory.") var arch: String?
    @Option(help: "Weights: a catalog tag such as imagenet, a catalog name, a .pth/.safetensors file, or none.")
    var weights = "imagenet"
    @Option(help: "How many classes to report per image.") var topK = 5
    @Option(help: "Images per forward pass.") var batchSize = 16
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @Option(help: "Test-time augmentation: off, flip (average the softmax of the image and its mirror), crops (also torchvision's five crops).")
    var tta: TestTimeAugmentation = .off
    @Flag(help: "One JSON object per image.") var json = false
    @Argument(help: "[RUN_DIR] then image files or folders of images.") var inputs: [String]

    func validate() throws {
        guard topK > 0 else { throw ValidationError("--top-k must be at least 1") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
        _ = try source()
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
        let model: ImageClassifier, preprocessing: Preprocessing, classNames: [String], files: [String]
        var binary = false
        switch try source() {
        case .run(let run, let images):
            let config = try run.readConfig()
            runOptions.applyEXIF(run: config)
            files = try collectImageFiles(images)
            model = try run.loadModel(config)
            preprocessing = config.preprocessing
            classNames = config.classNames
            binary = config.head.isBinary
        case .architecture(let arch, let images):
            runOptions.applyEXIF(run: nil)
            files = try collectImageFiles(images)
            let pretrained = try ModelZoo.make(arch, weights: weights.lowercased() == "none" ? nil : weights)
            model = pretrained.model
            try model.useChannelsLast()
            preprocessing = pretrained.preprocessing
            classNames = pretrained.classNames
        }
        model.eval()
        let precision = precisionOptions.resolved(for: model)
        let k = min(topK, classNames.count)
        var failures = 0
        for start in stride(from: 0, to: files.count, by: batchSize) {
            let chunk = Array(files[start..<min(start + batchSize, files.count)])
            var tensors: [Tensor] = [], kept: [String] = []
            for file in chunk {
                do {
                    let image = try Image(contentsOfFile: file)
                    var unused = SampleRandom(seed: 0)
                    tensors.append(try tta.transform(preprocessing).tensor(from: image.rgb(), random: &unused))
                    kept.append(file)
                } catch {
                    failures += 1
                    printError("skipping \(file): \(error)")
                }
            }
            guard !tensors.isEmpty else { continue }
            let probabilities = try withInferenceMode { () throws -> Tensor in
                let averaged = try tta.probabilities(Tensor.stack(tensors)) { view in
                    try withPrecision(precision) { try model(view).to(.float32) }
                }
                guard binary else { return averaged }
                // One sigmoid output: P(class 1) = sigmoid(z), P(class 0) = 1 - that.
                let positive = averaged
                return try Tensor.cat([1 - positive, positive], dim: 1)
            }
            let (values, indices) = try probabilities.topk(k, dim: 1)
            let p = try values.floats(), idx = try indices.toArray(Int64.self)
            for (row, file) in kept.enumerated() {
                let prediction = Prediction(file: file, topK: (0..<k).map { j in
                    let i = Int(idx[row * k + j])
                    return Prediction.Ranked(index: i, className: classNames[i], probability: Double(p[row * k + j]))
                }, tta: tta == .off ? nil : tta.rawValue)
                if json {
                    printEncodedJSON(prediction)
                } else {
                    print(file + (tta == .off ? "" : " (test-time augmentation \(tta.rawValue))"))
                    for r in prediction.topK {
                        print(String(format: "  %6.2f%%  %4d  %@", r.probability * 100, r.index, r.className))
                    }
                }
            }
        }
        if failures > 0 { printError("\(failures) of \(files.count) images could not be read") }
    }
}

/// `predict --json`: one object per image, its `top_k` classes by probability.
struct Prediction: Encodable {
    var file: String
    var topK: [Ranked]
    /// The test-time augmentation (flip or crops); nil (no key) when off.
    var tta: String?

    /// A class index, its name and its probability (`null` if not finite).
    struct Ranked: Encodable {
        var index: Int
        var className: String
        @JSONNumber var probability: Double

        enum CodingKeys: String, CodingKey { case index, className = "class", probability }
    }
}

/// Expands folders (recursively, sorted) into JPEG/PNG files; plain files are kept as given.
func collectImageFiles(_ inputs: [String]) throws -> [String] {
    let extensions: Set<String> = ["jpg", "jpeg", "png"]
    var files: [String] = []
    for input in inputs {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: input, isDirectory: &isDirectory) else {
            throw ValidationError("no such file or folder: \(input)")
        }
        if isDirectory.boolValue {
            let found = (FileManager.default.enumerator(atPath: input)?.allObjects as? [String] ?? [])
                .filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }
                .sorted()
                .map { (input as NSString).appendingPathComponent($0) }
            files += found
        } else {
            files.append(input)
        }
    }
    return files
}
