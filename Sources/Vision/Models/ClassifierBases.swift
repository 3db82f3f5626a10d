import NN
import Torch

// The two shapes of top the zoo's torchvision models share: `avgpool` → [`dropout`] → `fc` (ResNet,
// GoogLeNet, Inception v3), and `features` → [`avgpool`] → `classifier` Sequentials (MobileNetV2,
// EfficientNet, AlexNet, VGG). Each base holds those children, lists them after (or instead of) the
// subclass's own, and implements `embedding`, `classify` and the head's scopes once. Traversal stays
// explicit: every subclass still names its own children in `namedChildren`.

extension ModelOptions {
    /// Throws unless a model built with a top has a positive `numClasses`.
    func checkClassCount() throws {
        if includeTop, numClasses <= 0 {
            throw NNError.invalidArgument("numClasses must be positive, got \(numClasses)")
        }
    }
}

/// Base of the models whose top is torchvision's `avgpool` (global average pooling), an optional
/// `dropout` and `fc`: with a top, `embedding` is the pooled `forwardFeatures` and `classify` is
/// `fc(dropout(embedding))`; without one there are no `dropout` and `fc` and `embedding` pools with
/// `options.pooling`. Subclasses list their trunk, then `topChildren`.
public class FCTopClassifier: ImageClassifier {
    /// Global average pooling of the trunk's maps to [N, C, 1, 1] (torchvision's `avgpool`); present
    /// with and without a top.
    public let avgpool = AdaptiveAvgPool2d(outputSize: 1)
    /// The dropout in front of `fc`; nil without a top, or when the model has none.
    public let dropout: Dropout?
    /// The head: torchvision's Linear, or a `configureHead` Sequential; nil without a top.
    public private(set) var fc: Module?

    /// - Parameters:
    ///   - width: channels of the trunk's last feature maps (the embedding's width).
    ///   - dropout: the rate of `dropout` with a top; nil for no `dropout` at all.
    init(architecture: String, options: ModelOptions, width: Int, dropout rate: Double?) throws {
        try options.checkClassCount()
        if options.includeTop {
            dropout = try rate.map { try Dropout(p: $0) }
            fc = try Linear(width, options.numClasses)
        } else {
            dropout = nil
            fc = nil
        }
        super.init(architecture: architecture, options: options, headPath: "fc", embeddingSize: width,
                   featureChannels: width)
    }

    /// `dropout`, when the model has one.
    public override var architectureHeadDropout: Dropout? { dropout }

    /// The children after the trunk's: `avgpool`, then `dropout` and `fc` when present.
    var topChildren: [(String, Module)] {
        var children: [(String, Module)] = [("avgpool", avgpool)]
        if let dropout { children.append(("dropout", dropout)) }
        if let fc { children.append(("fc", fc)) }
        return children
    }

    /// The layer group after the trunk's: `fc` with a top.
    var topGroups: [String] { fc == nil ? [] : ["fc"] }

    /// Replaces `fc` (what `replaceHead` and `configureHead` do); any other name goes to the subclass
    /// chain and throws `NNError.cannotReplace` where nothing accepts it.
    public override func setChild(_ name: String, to module: Module) throws {
        guard name == "fc", fc != nil else { return try super.setChild(name, to: module) }
        fc = module
    }

    /// `["dropout", "fc"]` (or `["fc"]` for a model without the dropout) with a top; empty without.
    public override var classifierScopes: [String] {
        fc == nil ? [] : (dropout == nil ? [] : ["dropout"]) + ["fc"]
    }

    /// With a top, `avgpool` of the feature maps (or the head's max pooling); without, `options.pooling`.
    public override func embedding(fromFeatures maps: Tensor) throws -> Tensor {
        guard options.includeTop else { return try super.embedding(fromFeatures: maps) }
        return try headPooling == .avg ? pooled(maps) : Self.globalPool(maps, headPooling)
    }

    /// `avgpool` of `maps`, flattened: what torchvision's forward passes to `dropout` and `fc`.
    func pooled(_ maps: Tensor) throws -> Tensor { try avgpool(maps).flatten(from: 1) }

    /// `fc(dropout(embedding))`: logits [N, classes] from [N, embeddingSize]. Throws
    /// `NNError.invalidArgument` for a model built without a top.
    public override func classify(_ embedding: Tensor) throws -> Tensor {
        guard let fc else {
            throw NNError.invalidArgument("\(architecture) was built without a top: there is no classifier")
        }
        return try fc(dropout.map { try $0(embedding) } ?? embedding)
    }

    /// Replaces the Linear at `path` (an auxiliary head's last layer), when there is one, with a fresh
    /// Linear of the same input width for `numClasses`.
    func replaceAuxLinear(at path: String, numClasses: Int) throws {
        guard let old = module(at: path) as? Linear else { return }
        try replaceModule(at: path, with: Linear(old.inFeatures, numClasses, dtype: old.weight.dtype,
                                                 device: old.weight.device))
    }
}

/// Base of the models built as torchvision's `features`, an optional `avgpool` and a `classifier`
/// Sequential (nil without a top): the children, `forwardFeatures` (= `features`), the layer groups
/// (`featureGroups`, then `classifier`) and the head.
public class FeaturesClassifier: ImageClassifier {
    /// How `classifier` meets the feature maps.
    public enum Top: Sendable {
        /// The globally pooled maps are the embedding; the whole `classifier` (dropout, Linear) is the
        /// head, and `features` and `classifier` may be replaced by other Sequentials (MobileNetV2,
        /// EfficientNet).
        case pooled
        /// The maps through `avgpool` (to a fixed size), flattened, then the fully connected layers
        /// in front of the head are the embedding; the head is only the final Linear (AlexNet, VGG).
        case dense
    }

    /// Where the embedding ends and the head starts (`.pooled` or `.dense`), fixed by the architecture.
    public let top: Top
    public private(set) var features: Sequential
    /// AdaptiveAvgPool2d in front of `classifier`; nil where the model has none.
    public let avgpool: AdaptiveAvgPool2d?
    /// The classifier; nil without a top.
    public private(set) var classifier: Sequential?
    /// Index of the final Linear in `classifier` (`headPath` is `classifier.<headIndex>`).
    let headIndex: Int

    init(architecture: String, options: ModelOptions, top: Top, features: Sequential, avgpool: AdaptiveAvgPool2d?,
         classifier: Sequential?, headIndex: Int, embeddingSize: Int, featureChannels: Int) {
        self.top = top
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier
        self.headIndex = headIndex
        super.init(architecture: architecture, options: options, headPath: "classifier.\(headIndex)",
                   embeddingSize: embeddingSize, featureChannels: featureChannels)
    }

    /// `features`, then `avgpool` and `classifier` when present, as in torchvision's modules.
    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [("features", features)]
        if let avgpool { children.append(("avgpool", avgpool)) }
        if let classifier { children.append(("classifier", classifier)) }
        return children
    }

    /// For `.pooled` models, replaces `features` or `classifier` with another `Sequential` (throws
    /// `NNError.cannotReplace` for anything else); `.dense` models accept no replacement here.
    public override func setChild(_ name: String, to module: Module) throws {
        guard case .pooled = top else { return try super.setChild(name, to: module) }
        guard let sequential = module as? Sequential else {
            throw NNError.cannotReplace("\(typeName).\(name) must be a Sequential")
        }
        switch name {
        case "features": features = sequential
        case "classifier" where classifier != nil: classifier = sequential
        default: try super.setChild(name, to: module)
        }
    }

    /// The layer groups of `features`: by default each of its children.
    var featureGroups: [String] { (0..<features.count).map { "features.\($0)" } }

    /// `featureGroups`, then `classifier` (with a top).
    public override var layerGroups: [String] { featureGroups + (classifier == nil ? [] : ["classifier"]) }

    /// `["classifier"]` for `.pooled` models with a top (dropout and Linear); `classifier.<headIndex>`
    /// only for `.dense` ones; empty without a top.
    public override var classifierScopes: [String] {
        guard case .pooled = top else { return super.classifierScopes }
        return classifier == nil ? [] : ["classifier"]
    }

    /// `classifier.<headIndex - 1>` when it is a Dropout and the top is `.pooled`.
    public override var architectureHeadDropout: Dropout? {
        guard case .pooled = top, let classifier, headIndex >= 1, headIndex - 1 < classifier.count else { return nil }
        return classifier[headIndex - 1] as? Dropout
    }

    /// True for `.pooled` models; false for `.dense` ones, whose first Linear takes the flattened
    /// `avgpool` maps (e.g. 512×7×7 for VGG).
    public override var supportsHeadPooling: Bool {
        guard case .pooled = top else { return false }
        return true
    }

    /// The last module of `features` (e.g. `features.18` for MobileNetV2): `forwardFeatures` ends there.
    public override var featureLayer: String { "features.\(features.count - 1)" }

    /// `features(x)`: the trunk's last maps, e.g. [N, 1280, 7, 7] for MobileNetV2 at 224×224.
    public override func forwardFeatures(_ x: Tensor) throws -> Tensor { try features(x) }

    /// `.dense` with a top: `avgpool`, flatten, then `classifier` up to the final Linear (e.g. VGG's
    /// 4096-d output of `classifier.0`…`classifier.5`). Otherwise the globally pooled feature maps.
    public override func embedding(fromFeatures maps: Tensor) throws -> Tensor {
        guard case .dense = top, let classifier, let avgpool else { return try super.embedding(fromFeatures: maps) }
        var y = try avgpool(maps).flatten(from: 1)
        for i in 0..<headIndex { y = try classifier[i](y) }
        return y
    }

    /// `.pooled`: the whole `classifier`; `.dense`: only its final Linear. Throws
    /// `NNError.invalidArgument` for a model built without a top.
    public override func classify(_ embedding: Tensor) throws -> Tensor {
        switch top {
        case .pooled:
            return try MobileHead.require(classifier, architecture)(embedding)
        case .dense:
            guard let classifier else {
                throw NNError.invalidArgument("\(architecture) was built without a top: there is no classifier")
            }
            return try classifier[headIndex](embedding)
        }
    }
}
