import ArgumentParser
import Data
import Foundation
import NN
import TensorIO
import Torch
import Training
import Vision

/// The version written into run directories.
let finetuneVersion = "0.1.0"

/// The settings of `finetune train` that are not part of `TrainingConfiguration` (data, batching,
/// augmentation, callbacks). Saved in `config.json` so `--resume` rebuilds the same loaders.
struct TrainOptions: Codable, Equatable {
    var epochs: Int
    var batchSize: Int
    var augment: String
    var valSplit: Double?
    var limitPerClass: Int?
    var seed: UInt64
    var workers: Int
    var earlyStoppingPatience: Int?
    var monitor: String
    var saveEverySteps: Int?
    var saveEverySeconds: Double?
    var inputSize: Int?
    var checkpointPath: String?
    var checkpointExcludeScopes: [String]?
    /// `auto`, `on` or `off` (nil in runs from before the feature cache: auto).
    var featureCache: String?
    var cacheAugmentations: Int?
    var featureCacheDirectory: String?
    /// Weights and inputs in channels-last layout (nil in older runs: contiguous).
    var channelsLast: Bool?
}

/// `config.json` of a run directory: everything `evaluate` and `predict` need to rebuild the model
/// and its preprocessing, and everything `train --resume` needs to rebuild the loaders.
struct RunConfig: Codable {
    struct Head: Codable, Equatable {
        var numClasses: Int
        var includeTop: Bool
        /// The head training put on the backbone (nil in runs from before custom heads: a plain Linear).
        var spec: HeadSpec?

        /// One sigmoid output trained with binary cross entropy.
        var isBinary: Bool { spec?.outputs == 1 && numClasses == 2 }
    }

    struct DataInfo: Codable, Equatable {
        /// The DATA argument as given (absolute path).
        var path: String
        /// Whether DATA had train/val/test folders.
        var hasSplitFolders: Bool
        var trainSamples: Int
        var validationSamples: Int
        var testSamples: Int
    }

    var format = "finetune-run"
    var version = 1
    var architecture: String
    /// The initial weights (`imagenet`, a catalog name or a file), nil for random initialisation.
    var weights: String?
    var classNames: [String]
    var preprocessing: Preprocessing
    var head: Head
    var training: TrainingConfiguration
    var options: TrainOptions
    var data: DataInfo
    var createdAt: String
    var updatedAt: String
    var finetuneVersion: String
    var libtorchVersion: String
    /// `running`, `completed`, `stopped` or `interrupted`.
    var status: String
    /// Epochs completed.
    var epochsCompleted: Int
    /// What `model.safetensors` holds: `final` (the weights after the last epoch) or `best` (early
    /// stopping restored the best epoch's weights); nil before training ends.
    var modelWeights: String?
    /// The epoch (1-based) whose weights `model.safetensors` holds.
    var modelEpoch: Int?
    var testAccuracy: Double?
}

/// Paths inside a run directory.
struct RunDirectory {
    static let configFile = "config.json"
    static let modelFile = "model.safetensors"

    let path: String

    init(_ path: String) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
    }

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    var config: String { file(Self.configFile) }
    var model: String { file(Self.modelFile) }
    var checkpoints: String { file("checkpoints") }
    var lastCheckpoint: String { file("checkpoints/last") }
    var bestCheckpoint: String { file("checkpoints/best") }
    var history: String { file("history.csv") }
    var events: String { file("events.jsonl") }
    var tensorboard: String { file("tensorboard") }

    /// Whether `path` is a folder holding `config.json`.
    static func isRun(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(configFile))
    }

    func readConfig() throws -> RunConfig {
        guard FileManager.default.fileExists(atPath: config) else {
            throw ValidationError("\(path) is not a run directory: \(config) is missing")
        }
        do {
            return try TrainingJSON.decoder.decode(RunConfig.self, from: Foundation.Data(contentsOf: URL(fileURLWithPath: config)))
        } catch {
            throw ValidationError("cannot read \(config): \(error)")
        }
    }

    /// Writes `config.json` atomically.
    func write(_ runConfig: RunConfig) throws {
        let data = try TrainingJSON.encoder.encode(runConfig)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: config), options: .atomic)
    }

    /// The run's model with `model.safetensors` loaded, in eval mode.
    func loadModel(_ runConfig: RunConfig) throws -> ImageClassifier {
        guard FileManager.default.fileExists(atPath: model) else {
            throw ValidationError("\(model) is missing: the run has not finished (status \(runConfig.status)); "
                                  + "resume it with `finetune train --resume \(path)`")
        }
        let classifier = try Self.buildModel(runConfig)
        try classifier.load(try SafeTensors.load(model), strict: true)
        try classifier.useChannelsLast(runConfig.options.channelsLast ?? false)
        classifier.eval()
        return classifier
    }

    /// The architecture exactly as training built it (same head size; for pretrained weights the
    /// variant the zoo builds for them, e.g. InceptionV3's `transform_input`), randomly initialised:
    /// load the run's state dict over it. The original pretrained weights are not needed.
    static func buildModel(_ runConfig: RunConfig) throws -> ImageClassifier {
        let head = runConfig.head
        let options = ModelOptions(numClasses: head.spec?.outputs ?? head.numClasses, includeTop: head.includeTop)
        let model = runConfig.weights == nil ? try ModelZoo.make(runConfig.architecture, options: options)
                                             : try ModelZoo.makePretrainedVariant(runConfig.architecture, options: options)
        if let spec = head.spec, spec != HeadSpec(outputs: options.numClasses) { try model.configureHead(spec) }
        return model
    }

    static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }
}

/// Checks that `found` (a data folder's classes) equals the run's classes, naming the differences.
func checkClassNames(_ found: [String], run expected: [String], data: String) throws {
    guard found != expected else { return }
    let missing = expected.filter { !found.contains($0) }
    let extra = found.filter { !expected.contains($0) }
    var parts: [String] = []
    if !missing.isEmpty { parts.append("missing from \(data): \(missing.joined(separator: ", "))") }
    if !extra.isEmpty { parts.append("not classes of the run: \(extra.joined(separator: ", "))") }
    if parts.isEmpty { parts.append("same classes in a different order") }
    throw ValidationError("the class folders of \(data) do not match the run's \(expected.count) classes ("
                          + parts.joined(separator: "; ") + ")")
}

/// An `EvaluationReport` as a JSON-ready dictionary with snake_case keys.
func reportDictionary(_ report: EvaluationReport) throws -> [String: Any] {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity",
                                                                  negativeInfinity: "-Infinity", nan: "NaN")
    let data = try encoder.encode(report)
    return try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
}
