import Data
import Foundation
import Torch

/// One evaluated image: its class, the model's probabilities and its own loss.
public struct SamplePrediction: Codable, Equatable, Sendable {
    /// The image's index in the evaluated dataset.
    public var index: Int
    /// The file, when the image came from one.
    public var path: String?
    /// The true class.
    public var label: Int
    /// The most probable class (the first of equals).
    public var predicted: Int
    /// Class probabilities (softmax of the logits; for a binary head [1 − σ(z), σ(z)]).
    public var probabilities: [Double]
    /// This image's loss without label smoothing or class weights: −log p(label) computed from the
    /// logits (log-softmax; for a binary head, binary cross entropy).
    public var loss: Double

    /// The probability of the predicted class (NaN when `predicted` is not an index of `probabilities`,
    /// as in a hand-made or damaged value: it trapped).
    public var confidence: Double { probabilities.indices.contains(predicted) ? probabilities[predicted] : .nan }

    /// The rows of one batch. Binary logits [N, 1] are read as two-class logits [0, z], whose
    /// softmax is [1 − σ(z), σ(z)] and whose log-softmax gives binary cross entropy.
    static func rows(logits: Tensor, binary: Bool, batch: Batch, dataset: any ImageDataset) throws -> [SamplePrediction] {
        let z = binary ? try Tensor.cat([Tensor.zeros([batch.count, 1]), logits.reshape([batch.count, 1])], dim: 1)
                       : logits
        let classes = z.shape[1]
        let logProbabilities = try Functional.logSoftmax(z.to(.float64), dim: 1).contiguous().toArray(Double.self)
        let labels = try batch.labels.toArray(Int64.self)
        return batch.indices.enumerated().map { row, index in
            let logs = Array(logProbabilities[(row * classes)..<((row + 1) * classes)])
            let label = Int(labels[row])
            var predicted = 0
            for c in 1..<max(1, classes) where logs[c] > logs[predicted] { predicted = c }
            return SamplePrediction(index: index, path: dataset.samples[index].source.path, label: label,
                                    predicted: predicted, probabilities: logs.map { Foundation.exp($0) }, loss: -logs[label])
        }
    }

    /// The `count` predictions with the largest loss, largest first (ties: dataset order), as fastai's
    /// `top_losses`.
    public static func topLosses(_ samples: [SamplePrediction], count: Int) -> [SamplePrediction] {
        Array(samples.sorted { $0.loss != $1.loss ? $0.loss > $1.loss : $0.index < $1.index }.prefix(max(0, count)))
    }
}

extension SamplePrediction {
    enum CodingKeys: String, CodingKey { case index, path, label, predicted, probabilities, loss }

    /// A probability or loss that is not finite (a model whose logits overflowed to infinity) is
    /// `null`, as `evaluate --json`'s loss is: JSON has no NaN, and the whole output failed.
    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(index, forKey: .index)
        try container.encodeIfPresent(path, forKey: .path)
        try container.encode(label, forKey: .label)
        try container.encode(predicted, forKey: .predicted)
        try container.encode(probabilities.map { $0.isFinite ? $0 : nil }, forKey: .probabilities)
        try container.encode(loss.isFinite ? loss : nil, forKey: .loss)
    }

    /// Reads what `encode(to:)` writes (`null` as NaN).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        index = try container.decode(Int.self, forKey: .index)
        path = try container.decodeIfPresent(String.self, forKey: .path)
        label = try container.decode(Int.self, forKey: .label)
        predicted = try container.decode(Int.self, forKey: .predicted)
        probabilities = try container.decode([Double?].self, forKey: .probabilities).map { $0 ?? .nan }
        loss = try container.decodeIfPresent(Double.self, forKey: .loss) ?? .nan
    }
}
