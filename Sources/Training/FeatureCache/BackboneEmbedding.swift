import Data
import Foundation
import ImagePreprocessing
import NN
import Torch
import Vision

/// `DataCheck`'s embedding for near-duplicate search: a pretrained backbone's pooled features (what
/// its final Linear consumes), computed in inference mode with the weights' own evaluation
/// preprocessing and kept in the feature cache, so a second check of the same files reads them back.
public final class BackboneEmbedding: ImageEmbedding {
    /// The network (frozen, in eval behaviour).
    public let model: ImageClassifier
    /// The weights' evaluation preprocessing.
    public let preprocessing: Preprocessing
    /// Where the features are cached (nil: computed each time).
    public let cacheDirectory: String?
    /// Images per forward pass and decoding workers.
    public let batchSize: Int, workers: Int
    public let name: String

    /// Loads `architecture` with `weights` (a catalog tag such as "imagenet", a catalog name or a
    /// file). Throws when the weights cannot be loaded (e.g. not in the cache and no network).
    public init(architecture: String = "mobilenet_v2", weights: String = "imagenet",
                cacheDirectory: String? = FeatureCache.defaultDirectory, batchSize: Int = 32, workers: Int = 2) throws {
        let pretrained = try ModelZoo.make(architecture, weights: weights)
        model = pretrained.model
        try model.freeze()
        preprocessing = pretrained.preprocessing
        self.cacheDirectory = cacheDirectory
        self.batchSize = batchSize
        self.workers = workers
        name = "\(architecture) (\(weights) weights, \(preprocessing.cropSize) px)"
    }

    public func embed(_ dataset: any ImageDataset) throws -> (features: Tensor, valid: [Bool]) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let description = "eval " + String(decoding: try encoder.encode(preprocessing), as: UTF8.self)
            + (ImageCodec.effectiveEXIFOrientation == .ignore ? " exif=ignore" : "")  // other pixels, other features
        let cached = try FeatureCache.prepare(model: model, dataset: dataset, transform: EvaluationTransform(preprocessing),
                                              transformDescription: description, batchSize: batchSize, workers: workers,
                                              directory: cacheDirectory)
        return (try cached.features.select(dim: 0, index: 0), cached.valid)
    }
}

/// How `finetune check-data` and the run report search for near-duplicates.
public enum NearDuplicateMethod: String, CaseIterable, Sendable {
    /// Backbone embeddings where the weights can be loaded, else the perceptual hash (the report says which).
    case auto
    /// Backbone embeddings (an error when the weights cannot be loaded).
    case embedding
    /// Perceptual hash and thumbnail correlation: no network, no weights.
    case phash
}

extension DataCheck {
    /// `run(_:options:embedding:)` with the embedding `method` asks for: `architecture`'s `weights`
    /// through the feature cache. With `.auto`, weights that cannot be loaded fall back to the perceptual
    /// hash, and `nearDuplicateMethod` says why.
    public static func run(_ root: String, options: DataCheckOptions = DataCheckOptions(), method: NearDuplicateMethod,
                           architecture: String = "mobilenet_v2", weights: String = "imagenet") throws -> DataCheckReport {
        var embedding: BackboneEmbedding?
        var unavailable: String?
        if method != .phash {
            do {
                embedding = try BackboneEmbedding(architecture: architecture, weights: weights)
            } catch {
                if method == .embedding { throw error }
                unavailable = "\(error)"
            }
        }
        var report = try run(root, options: options, embedding: embedding)
        if let unavailable {
            report.nearDuplicateMethod += " (\(architecture) \(weights) embeddings unavailable: \(unavailable))"
        }
        return report
    }
}
