import NN
import Torch

/// Global pooling applied to the backbone's feature maps when the model has no top (Keras' `pooling`).
public enum GlobalPooling: String, CaseIterable, Sendable {
    /// `avg`: global average pooling (torchvision's `AdaptiveAvgPool2d(1)`, Keras' `pooling="avg"`);
    /// `max`: global max pooling (Keras' `pooling="max"`). Both give [N, C].
    case avg, max
    /// No pooling: `forward` returns the 4-D feature maps.
    case none
}

/// Construction options shared by every zoo architecture, in the spirit of Keras' application factories.
public struct ModelOptions: Equatable, Sendable {
    /// Size of the classification head when `includeTop` is set.
    public var numClasses: Int
    /// Keep the classifier (torchvision's `fc` / `classifier`). Without it `forward` returns the
    /// pooled embedding (or the feature maps when `pooling` is `.none`).
    public var includeTop: Bool
    /// Pooling used without a top.
    public var pooling: GlobalPooling
    /// Dropout before the final Linear; nil keeps the architecture's default (e.g. 0.2 for MobileNetV2).
    public var dropout: Double?

    /// The defaults build torchvision's model: a 1000-class top, average pooling, the architecture's dropout.
    public init(numClasses: Int = 1000, includeTop: Bool = true, pooling: GlobalPooling = .avg,
                dropout: Double? = nil) {
        self.numClasses = numClasses
        self.includeTop = includeTop
        self.pooling = pooling
        self.dropout = dropout
    }
}

/// Base class of the zoo's classifiers: a backbone, an embedding and a replaceable head.
///
/// Subclasses build their modules with torchvision's attribute names (so `stateDict()` keys match
/// torchvision's exactly) and override `forwardFeatures`, `embedding` and `classify`.
/// With `includeTop`, `forward(x) == classify(embedding(x))` and equals torchvision's logits.
open class ImageClassifier: Module {
    /// Registry name, e.g. "mobilenet_v2", "resnet50".
    public let architecture: String
    /// The options the model was built with (`includeTop` and `pooling` decide what `forward` returns).
    public let options: ModelOptions
    /// Dotted path of the final Linear layer, e.g. "fc", "classifier.1", "classifier.6".
    public let headPath: String
    /// Width of the vector the final Linear consumes (what `embedding` returns).
    public let embeddingSize: Int
    /// Channels of the backbone's last feature map.
    public let featureChannels: Int
    /// The global pooling in front of the top (`configureHead` sets it; avg is torchvision's).
    public internal(set) var headPooling: GlobalPooling = .avg

    /// For subclasses: records the registry name, options and head geometry. Subclasses build their
    /// modules after calling it.
    public init(architecture: String, options: ModelOptions, headPath: String, embeddingSize: Int,
                featureChannels: Int) {
        self.architecture = architecture
        self.options = options
        self.headPath = headPath
        self.embeddingSize = embeddingSize
        self.featureChannels = featureChannels
        super.init()
    }

    /// The backbone's last feature maps, [N, C, H, W].
    open func forwardFeatures(_ x: Tensor) throws -> Tensor {
        throw NNError.notImplemented("\(architecture).forwardFeatures")
    }

    /// The module whose output `forwardFeatures` returns, by its dotted name: the last convolutional
    /// stage, where Grad-CAM looks (e.g. `layer4`, `features.18`, `Mixed_7c`). By default the last
    /// backbone layer group.
    open var featureLayer: String { backboneGroups.last ?? architecture }

    /// The embedding the final Linear consumes, [N, embeddingSize]. With a top this includes any
    /// layers before the final Linear (e.g. VGG's first two fully connected layers); without one it is
    /// the globally pooled feature maps.
    public func embedding(_ x: Tensor) throws -> Tensor { try embedding(fromFeatures: forwardFeatures(x)) }

    /// The embedding computed from the trunk's last feature maps (what `forwardFeatures` returns):
    /// `embedding(x) == embedding(fromFeatures: forwardFeatures(x))`. Grad-CAM differentiates the
    /// logits with respect to those maps through it. By default a global pool of the maps.
    open func embedding(fromFeatures maps: Tensor) throws -> Tensor {
        try Self.globalPool(maps, embeddingPooling)
    }

    /// The pooling of the default `embedding(fromFeatures:)`: with a top the head's, else
    /// `options.pooling` (average for none).
    var embeddingPooling: GlobalPooling { options.includeTop ? headPooling : options.pooling == .none ? .avg : options.pooling }

    /// The pooling and the layout (`ClassifierModel.featureSettings`); GoogLeNet and Inception v3 add
    /// `transform_input`. A subclass whose embedding depends on another setting adds it.
    open var featureSettings: [String: String] {
        ["pooling": embeddingPooling.rawValue, "channels_last": "\(isChannelsLast)"]
    }

    /// The architecture's own dropout right in front of its final Linear (MobileNetV2's and
    /// EfficientNet's `classifier.0`, GoogLeNet's and Inception's `dropout`), which a head with its own
    /// dropout replaces (`configureHead`); nil when there is none, or for dense tops (VGG, AlexNet),
    /// whose dropouts sit between their fully connected layers.
    open var architectureHeadDropout: Dropout? { nil }

    /// Whether the top consumes a global pool of the feature maps (so `HeadSpec.pooling` may be max).
    /// False for VGG and AlexNet, whose classifiers take 7×7 maps.
    open var supportsHeadPooling: Bool { true }

    /// The head applied to an embedding (dropout, then the final Linear): logits.
    open func classify(_ embedding: Tensor) throws -> Tensor {
        throw NNError.notImplemented("\(architecture).classify")
    }

    /// Whether weights and inputs use the channels-last (NHWC) layout (`useChannelsLast`).
    public private(set) var isChannelsLast = false

    /// Re-lays out the convolution kernels in channels-last order, and makes `forward` and
    /// `extractFeatures` convert their inputs likewise: oneDNN's fastest layout on CPUs (about
    /// 1.7× for MobileNetV2 on this project's machines). The values are unchanged.
    public func useChannelsLast(_ enabled: Bool = true) throws {
        try to(memoryFormat: enabled ? .channelsLast : .contiguous)
        isChannelsLast = enabled
    }

    /// `x` in the model's input layout.
    func laidOut(_ x: Tensor) throws -> Tensor {
        isChannelsLast && x.rank == 4 ? try x.contiguous(.channelsLast) : x
    }

    /// Runs the model on a batch of preprocessed images, [N, 3, H, W]: with a top, logits [N, classes];
    /// without one, the pooled embedding [N, embeddingSize], or the feature maps [N, C, h, w] when
    /// `options.pooling` is `.none` (Keras' `include_top=False`).
    open override func forward(_ x: Tensor) throws -> Tensor {
        let x = try laidOut(x)
        if options.includeTop { return try classify(embedding(x)) }
        if options.pooling == .none { return try forwardFeatures(x) }
        return try embedding(x)
    }

    /// Pooled embedding for feature extraction (`finetune features`, the bottleneck cache): the
    /// "features(x)" of the model-zoo contract. (Not named `features` because torchvision calls
    /// many trunks `features`, a stored `Sequential` here, and the two would collide.)
    public func extractFeatures(_ x: Tensor) throws -> Tensor { try embedding(laidOut(x)) }

    /// Layer groups (freezable scopes) from input to output, the head's scope last: e.g.
    /// `["features.0", …, "features.18", "classifier"]` or `["conv1", "bn1", "layer1", …, "fc"]`.
    /// Freezing and discriminative learning rates address these.
    open var layerGroups: [String] { namedChildren.map(\.0) }

    /// The modules `classify` runs (the head and any dropout in front of it), e.g. `["fc"]`,
    /// `["classifier"]` or `["dropout", "fc"]`: everything else is what `embedding` runs, which is
    /// what a frozen-backbone feature cache stores.
    open var classifierScopes: [String] { options.includeTop ? [headPath] : [] }

    /// The scopes that make up the backbone (every layer group but the head's).
    public var backboneGroups: [String] {
        let headGroup = String(headPath.split(separator: ".").first ?? "")
        return layerGroups.filter { $0 != headGroup && !$0.hasPrefix(headGroup + ".") }
    }

    /// Replaces the head (the final Linear, or a `configureHead` head) with a freshly initialised
    /// Linear for `numClasses`, keeping everything else (including the backbone's weights). Only for
    /// models built with a top.
    open func replaceHead(numClasses: Int) throws {
        guard options.includeTop else {
            throw NNError.invalidArgument("\(architecture) was built without a top: there is no head to replace")
        }
        guard numClasses > 0 else { throw NNError.invalidArgument("numClasses must be positive, got \(numClasses)") }
        let old = try finalLinear()
        let head = try Linear(embeddingSize, numClasses, bias: old.bias != nil, dtype: old.weight.dtype,
                              device: old.weight.device)
        try replaceModule(at: headPath, with: head)
    }

    /// The current number of outputs of the head (nil without a top).
    public var numClasses: Int? {
        guard options.includeTop, let head = try? finalLinear() else { return nil }
        return head.outFeatures
    }

    /// Global average or max pooling of [N, C, H, W] to [N, C].
    public static func globalPool(_ x: Tensor, _ pooling: GlobalPooling) throws -> Tensor {
        switch pooling {
        case .max: return try Functional.adaptiveMaxPool2d(x, outputSize: (1, 1)).flatten(from: 1)
        case .avg, .none: return try Functional.adaptiveAvgPool2d(x, outputSize: (1, 1)).flatten(from: 1)
        }
    }
}
extension ImageClassifier: ClassifierModel {}
