import Torch

/// A classifier the trainer can work with in parts: a backbone that maps inputs to an embedding,
/// a head that maps an embedding to class scores, and named layer groups for freezing, per-group
/// learning rates and feature caching. The model zoo's `ImageClassifier` conforms; so can any
/// module a user writes. The training library depends on this protocol, never on the zoo's classes.
public protocol ClassifierModel: Module {
    /// A name for reports and cache keys (e.g. `mobilenet_v2`).
    var architecture: String { get }
    /// The head's output width (nil when the model has no head).
    var numClasses: Int? { get }
    /// The width of `extractFeatures`' output.
    var embeddingSize: Int { get }
    /// Top-level module paths in input-to-output order, the units of freezing.
    var layerGroups: [String] { get }
    /// The layer groups in front of the head.
    var backboneGroups: [String] { get }
    /// Module paths that make up the head (what trains while features are cached).
    var classifierScopes: [String] { get }
    /// The pooled embedding of a batch of inputs (the model's own layout handled).
    func extractFeatures(_ x: Tensor) throws -> Tensor
    /// The head applied to an embedding.
    func classify(_ embedding: Tensor) throws -> Tensor
    /// What shapes `extractFeatures`' output besides the weights (the zoo's: `pooling`,
    /// `channels_last`, `transform_input`), as names and values. Part of the feature cache's key: a
    /// cache made under other settings is never reused (a max-pooling head trained on the average
    /// pooling's cached features, probe AJ). Empty by default.
    var featureSettings: [String: String] { get }
}

extension ClassifierModel {
    /// No settings besides the weights.
    public var featureSettings: [String: String] { [:] }
}
