import Data
import Foundation
import NN
import Torch
import Vision

/// A class index, its name and its probability: one entry of a prediction's top-k, the object of
/// `predict --json`'s `top_k` and of the server's answers (`class`, `index`, `probability`; a
/// probability that is not finite encodes as `null`).
public struct RankedClass: Encodable, Equatable, Sendable {
    /// The class index (the model output's row).
    public var index: Int
    /// The class name.
    public var className: String
    /// The softmax probability (sigmoid for a one-output binary model).
    public var probability: Double

    /// A ranked class.
    public init(index: Int, className: String, probability: Double) {
        self.index = index
        self.className = className
        self.probability = probability
    }

    enum CodingKeys: String, CodingKey { case index, className = "class", probability }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encode(className, forKey: .className)
        if probability.isFinite { try container.encode(probability, forKey: .probability) } else {
            try container.encodeNil(forKey: .probability)
        }
    }
}

/// A classifier ready for inference, from a run directory (its model, class names and preprocessing)
/// or from the model zoo: what `finetune predict` and `finetune serve` use to turn images into top-k
/// classes. The model is in eval mode (BatchNorm folded into its convolutions on the forward pass).
///
/// Not safe for concurrent use of `probabilities` (one inference loop at a time); `input(_:)` may be
/// called from several threads.
public final class Predictor: @unchecked Sendable {
    /// The network, in eval mode.
    public let model: ImageClassifier
    /// The input transform (resize, crop, mean/std) the model expects.
    public let preprocessing: Preprocessing
    /// One name per class index.
    public let classNames: [String]
    /// The zoo architecture name.
    public let architecture: String
    /// Whether the model has one sigmoid output for two classes.
    public let isBinary: Bool
    /// The run's config, nil for a zoo model.
    public let runConfig: RunConfig?
    /// Which of the run's weights were loaded ("model.safetensors", "checkpoints/best, epoch 3"), nil
    /// for a zoo model.
    public let weights: String?
    /// The precision of the forward pass (`--precision`; resolve `.auto` with `Precision.resolved(for:)`
    /// first): bf16 runs under the layer policy, and the outputs are float32 either way.
    public var precision: Precision = .fp32
    /// How JPEG EXIF orientation is handled when this predictor decodes (`input(decoding:)`,
    /// `input(contentsOfFile:)`): the run's own `--exif` for a run (`apply` for runs that predate the
    /// setting), nil for a zoo model, which then follows `ImageCodec.exifOrientation`.
    public var exif: EXIFOrientation?

    /// The run's model, classes and preprocessing (`config` is `run.readConfig()`), with its final
    /// weights or a checkpoint's (`weights`).
    public init(run: RunDirectory, config: RunConfig, weights: RunWeights = .final) throws {
        (model, self.weights) = try run.loadModel(config, from: weights)
        preprocessing = config.preprocessing
        classNames = config.classNames
        architecture = config.architecture
        isBinary = config.head.isBinary
        runConfig = config
        exif = config.options.exif ?? .apply
    }

    /// A zoo model with `weights` (a catalog tag or name, a weights file; nil: random), channels-last,
    /// with the weights' own head (a file's of any width: its classes are `class_0`, … unless 1000).
    public init(architecture: String, weights: String?) throws {
        let pretrained = try ModelZoo.make(architecture, weights: weights, keepingTheirHead: true)
        model = pretrained.model
        try model.useChannelsLast()
        model.eval()
        preprocessing = pretrained.preprocessing
        isBinary = pretrained.isBinary
        classNames = pretrained.predictedClassNames
        self.architecture = architecture
        runConfig = nil
        self.weights = nil
    }

    /// The model input [3, H, W] (or [5, 3, H, W] for `tta: .crops`) of one decoded image.
    public func input(_ image: Image, tta: TestTimeAugmentation = .off) throws -> Tensor {
        var unused = SampleRandom(seed: 0)
        return try tta.transform(preprocessing).tensor(from: image.rgb(), random: &unused)
    }

    /// The model input of encoded JPEG or PNG bytes: the same bits as `input(Image(decoding: bytes))`,
    /// through the loader's one-pass decode, crop, resize and normalisation where the transform has
    /// one (what `finetune serve` runs per image). `label` names the image in decoding errors.
    public func input<Bytes: ContiguousBytes>(decoding bytes: Bytes, label: String,
                                              tta: TestTimeAugmentation = .off) throws -> Tensor {
        try decoding {
            var unused = SampleRandom(seed: 0)
            return try tta.transform(preprocessing).tensor(decoding: bytes, label: label, random: &unused)
        }
    }

    /// The model input of the JPEG or PNG file at `path`, decoded with `exif`.
    public func input(contentsOfFile path: String, tta: TestTimeAugmentation = .off) throws -> Tensor {
        try input(decoding { try Image(contentsOfFile: path) }, tta: tta)
    }

    /// Runs a decode under `exif` (when set).
    private func decoding<Result>(_ body: () throws -> Result) rethrows -> Result {
        guard let exif else { return try body() }
        return try ImageCodec.withEXIFOrientation(exif, body)
    }

    /// Class probabilities [N, classes] of a batch of `input`s (averaged over the `tta` views).
    public func probabilities(_ inputs: [Tensor], tta: TestTimeAugmentation = .off) throws -> Tensor {
        try withInferenceMode { () throws -> Tensor in
            let averaged = try tta.probabilities(Tensor.stack(inputs)) { view in
                try withPrecision(precision) { try model(view).to(.float32) }
            }
            guard isBinary else { return averaged }
            // One sigmoid output: P(class 1) = sigmoid(z), P(class 0) = 1 - that.
            let positive = averaged
            return try Tensor.cat([1 - positive, positive], dim: 1)
        }
    }

    /// The top `k[i]` classes of row i of `probabilities` (each k at most the class count). Throws
    /// unless there is one k, at least 1, per row (a k per row too few or below 1 trapped).
    public func ranked(_ probabilities: Tensor, k: [Int]) throws -> [[RankedClass]] {
        let rows = probabilities.shape.first ?? 0
        guard k.count == rows, k.allSatisfy({ $0 >= 1 }) else {
            throw TrainingError.invalidConfiguration("ranked: needs one k of at least 1 per row (\(rows) rows), got \(k)")
        }
        // Sorted here rather than by `topk`, whose order of equal values (two classes at +∞ logits
        // sharing the probability) and of NaNs is LibTorch's: equal probabilities rank the lower class
        // first, as evaluate's top-1 does, and NaN (a model whose outputs are not finite) ranks last.
        let classes = classNames.count
        let p = try probabilities.contiguous().floats()
        return k.enumerated().map { row, wanted in
            let scores = Array(p[(row * classes)..<((row + 1) * classes)])
            let order = scores.indices.sorted { a, b in
                if scores[a].isNaN != scores[b].isNaN { return !scores[a].isNaN }
                return scores[a] != scores[b] && !scores[a].isNaN ? scores[a] > scores[b] : a < b
            }
            return order.prefix(wanted).map { RankedClass(index: $0, className: classNames[$0], probability: Double(scores[$0])) }
        }
    }

    /// `ranked(probabilities(inputs), k:)`.
    public func predict(_ inputs: [Tensor], k: [Int], tta: TestTimeAugmentation = .off) throws -> [[RankedClass]] {
        try ranked(probabilities(inputs, tta: tta), k: k)
    }
}
