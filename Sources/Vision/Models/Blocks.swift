import NN
import Torch

// Building blocks shared by the mobile architectures (MobileNetV2, EfficientNet, EfficientNet-Lite),
// named and behaving like their torchvision counterparts (`torchvision.ops.misc`, `torchvision.ops`).

/// Convolution, BatchNorm and an optional activation in a `Sequential` keyed "0", "1", "2", like
/// torchvision's `Conv2dNormActivation`: padding `(kernel - 1) / 2`, no convolution bias.
public final class Conv2dNormActivation: Sequential {
    /// - Parameter activation: nil for none (torchvision's `activation_layer=None`).
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int = 3, stride: Int = 1, groups: Int = 1,
                eps: Double = 1e-5, momentum: Double? = 0.1, activation: Module?) throws {
        var layers: [Module] = [
            try Conv2d(inChannels, outChannels, kernelSize: kernelSize, stride: stride,
                       padding: .explicit((kernelSize - 1) / 2, (kernelSize - 1) / 2), groups: groups, bias: false),
            try BatchNorm2d(outChannels, eps: eps, momentum: momentum),
        ]
        if let activation { layers.append(activation) }
        super.init(layers)
    }

    /// "Conv2dNormActivation", torchvision's class name (shown by summaries instead of "Sequential").
    public override var typeName: String { "Conv2dNormActivation" }
}

/// torchvision's `SqueezeExcitation`: global average pool, `fc1` (1×1 conv), activation, `fc2`
/// (1×1 conv), sigmoid gate, then the input scaled by the gate.
public final class SqueezeExcitation: Module {
    /// The squeeze: global average pooling to [N, C, 1, 1].
    public let avgpool = AdaptiveAvgPool2d(outputSize: 1)
    /// 1×1 convolution (with bias) from the block's channels down to `squeezeChannels`.
    public let fc1: Conv2d
    /// 1×1 convolution (with bias) from `squeezeChannels` back to the block's channels: one gate logit per channel.
    public let fc2: Conv2d
    /// The activation between `fc1` and `fc2` (ReLU by default; SiLU in EfficientNet).
    public let activation: Module
    /// Turns `fc2`'s output into the per-channel gate (Sigmoid by default).
    public let scaleActivation: Module

    /// - Parameters:
    ///   - inputChannels: channels of the input, and of the output.
    ///   - squeezeChannels: width of the bottleneck between `fc1` and `fc2` (EfficientNet: a quarter of
    ///     the block's input channels).
    /// Throws when a channel count is not positive.
    public init(inputChannels: Int, squeezeChannels: Int, activation: Module = ReLU(),
                scaleActivation: Module = Sigmoid()) throws {
        fc1 = try Conv2d(inputChannels, squeezeChannels, kernelSize: 1)
        fc2 = try Conv2d(squeezeChannels, inputChannels, kernelSize: 1)
        self.activation = activation
        self.scaleActivation = scaleActivation
        super.init()
    }

    /// "SqueezeExcitation", torchvision's class name.
    public override var typeName: String { "SqueezeExcitation" }

    /// `avgpool`, `fc1`, `fc2`, `activation`, `scale_activation`, as torchvision names them (so the
    /// weights' keys are `….fc1.weight`, `….fc2.bias`).
    public override var namedChildren: [(String, Module)] {
        [("avgpool", avgpool), ("fc1", fc1), ("fc2", fc2), ("activation", activation),
         ("scale_activation", scaleActivation)]
    }

    /// `x * scaleActivation(fc2(activation(fc1(avgpool(x)))))`: [N, C, H, W] in and out.
    public override func forward(_ x: Tensor) throws -> Tensor {
        let scale = try scaleActivation(fc2(activation(fc1(avgpool(x)))))
        return try scale * x
    }
}

/// Stochastic depth (torchvision's `StochasticDepth(p, "row")`): while training, each row (sample) of
/// a residual branch is zeroed with probability `p` and the survivors are scaled by `1 / (1 - p)`; the
/// identity in eval mode, when frozen, or for `p == 0`. No parameters.
public final class StochasticDepth: Module {
    /// Whether the drop decision is taken per sample or once for the batch (torchvision's `mode`).
    public enum Mode: String, Sendable {
        /// One decision per sample.
        case row
        /// One decision for the whole batch.
        case batch
    }

    /// Probability of dropping the branch, in [0, 1] (EfficientNet grows it linearly with block index,
    /// up to 0.2).
    public let p: Double
    /// `.row` (per sample, what EfficientNet uses) or `.batch`.
    public let mode: Mode

    /// Throws `NNError.invalidArgument` unless `p` is in [0, 1].
    public init(p: Double, mode: Mode = .row) throws {
        guard p >= 0, p <= 1 else {
            throw NNError.invalidArgument("drop probability has to be between 0 and 1, but got \(p)")
        }
        self.p = p
        self.mode = mode
        super.init()
    }

    /// "StochasticDepth", torchvision's class name.
    public override var typeName: String { "StochasticDepth" }

    /// `StochasticDepth.apply` with this layer's `p` and `mode`, in training mode only while the layer
    /// trains (not in eval mode, not when frozen).
    public override func forward(_ x: Tensor) throws -> Tensor {
        try Self.apply(x, p: p, mode: mode, training: usesTrainingBehaviour)
    }

    /// `torchvision.ops.stochastic_depth`.
    public static func apply(_ x: Tensor, p: Double, mode: Mode = .row, training: Bool) throws -> Tensor {
        guard training, p > 0 else { return x }
        let shape = x.shape
        guard !shape.isEmpty else { return x }
        let size = mode == .row ? [shape[0]] + Array(repeating: 1, count: shape.count - 1)
                                : Array(repeating: 1, count: shape.count)
        let survival = 1 - p
        let noise = try Tensor.empty(size, dtype: x.dtype, device: x.device)
        try withNoGrad {
            try noise.bernoulli_(survival)
            if survival > 0 { try noise.div_(survival) }
        }
        return try x * noise
    }
}

extension StochasticDepth: ModuleDescribing {
    /// "p=0.2, mode=row", as PyTorch prints the layer.
    public var extraDescription: String { "p=\(p), mode=\(mode.rawValue)" }
}

/// Channel rounding used by the TensorFlow mobile model families.
public enum ChannelRounding {
    /// torchvision's `_make_divisible` (= EfficientNet's `round_filters`): the nearest multiple of
    /// `divisor`, at least `minValue` (default `divisor`), never more than 10% below `value`.
    public static func makeDivisible(_ value: Double, divisor: Int = 8, minValue: Int? = nil) -> Int {
        var result = Swift.max(minValue ?? divisor, Int(value + Double(divisor) / 2) / divisor * divisor)
        if Double(result) < 0.9 * value { result += divisor }
        return result
    }

    /// EfficientNet's depth scaling: `ceil(layers * multiplier)`.
    public static func scaledDepth(_ layers: Int, _ multiplier: Double) -> Int {
        Int((Double(layers) * multiplier).rounded(.up))
    }
}

/// Head helpers shared by the mobile architectures.
enum MobileHead {
    /// The classifier, or an error naming the architecture when it was built without a top.
    static func require<T>(_ head: T?, _ architecture: String) throws -> T {
        guard let head else {
            throw NNError.invalidArgument("\(architecture) was built without a top (includeTop: false): no classifier")
        }
        return head
    }

    /// Validates `options` for a model whose default head dropout is `defaultDropout`; returns the dropout.
    static func dropout(_ options: ModelOptions, default defaultDropout: Double) throws -> Double {
        try options.checkClassCount()
        let p = options.dropout ?? defaultDropout
        guard p >= 0, p <= 1 else {
            throw NNError.invalidArgument("dropout probability has to be between 0 and 1, but got \(p)")
        }
        return p
    }

    /// The `classifier` of MobileNetV2 and EfficientNet with a top: Dropout(`dropout`), then the
    /// Linear from `inFeatures` to the classes. nil without a top.
    static func classifier(_ options: ModelOptions, inFeatures: Int, dropout: Double) throws -> Sequential? {
        guard options.includeTop else { return nil }
        return Sequential(try Dropout(p: dropout), try Linear(inFeatures, options.numClasses))
    }
}
