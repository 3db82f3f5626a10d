import NN
import Torch

/// torchvision's `MBConv` (EfficientNet-B): optional 1×1 expansion, depthwise convolution, squeeze and
/// excitation (`fc1`/`fc2`, SiLU), linear 1×1 projection, all in `block`; stochastic depth on the
/// residual branch when the stride is 1 and the channel count is unchanged.
public final class MBConv: Module {
    /// Channels of the block's input.
    public let inChannels: Int
    /// Channels of the block's output (after the linear projection).
    public let outChannels: Int
    /// Stride of the depthwise convolution: 1, or 2 in the first block of a downsampling stage.
    public let stride: Int
    /// Whether the input is added back (stride 1 and `inChannels == outChannels`); only then is
    /// `stochasticDepth` used.
    public let useResidual: Bool
    /// The layers under torchvision's keys: `block.0` 1×1 expansion (absent at expansion ratio 1),
    /// then the depthwise k×k convolution, `SqueezeExcitation`, and the 1×1 projection without activation.
    public let block: Sequential
    /// Drops the residual branch per sample while training (`stochastic_depth`; p grows with the
    /// block's index in the network).
    public let stochasticDepth: StochasticDepth

    /// - Parameters:
    ///   - expandRatio: width of the hidden layer per input channel (1 or 6), rounded to a multiple of 8.
    ///   - kernelSize: the depthwise kernel, 3 or 5.
    ///   - stride: 1 or 2; anything else throws `NNError.invalidArgument`.
    ///   - stochasticDepthProbability: `p` of `stochasticDepth`.
    ///   - eps, momentum: the BatchNorm settings (EfficientNet-Lite passes TensorFlow's 1e-3 and 0.01).
    /// The squeeze width is a quarter of `inChannels` (at least 1).
    public init(expandRatio: Double, kernelSize: Int, stride: Int, inChannels: Int, outChannels: Int,
                stochasticDepthProbability: Double, eps: Double = 1e-5, momentum: Double? = 0.1) throws {
        guard stride == 1 || stride == 2 else { throw NNError.invalidArgument("illegal stride value \(stride)") }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        useResidual = stride == 1 && inChannels == outChannels
        let expanded = ChannelRounding.makeDivisible(Double(inChannels) * expandRatio)
        var layers: [Module] = []
        if expanded != inChannels {
            layers.append(try Conv2dNormActivation(inChannels, expanded, kernelSize: 1, eps: eps, momentum: momentum,
                                                   activation: SiLU()))
        }
        layers.append(try Conv2dNormActivation(expanded, expanded, kernelSize: kernelSize, stride: stride,
                                               groups: expanded, eps: eps, momentum: momentum, activation: SiLU()))
        layers.append(try SqueezeExcitation(inputChannels: expanded, squeezeChannels: Swift.max(1, inChannels / 4),
                                            activation: SiLU()))
        layers.append(try Conv2dNormActivation(expanded, outChannels, kernelSize: 1, eps: eps, momentum: momentum,
                                               activation: nil))
        block = Sequential(layers)
        stochasticDepth = try StochasticDepth(p: stochasticDepthProbability, mode: .row)
        super.init()
    }

    /// "MBConv", torchvision's class name.
    public override var typeName: String { "MBConv" }

    /// `block`, `stochastic_depth`.
    public override var namedChildren: [(String, Module)] {
        [("block", block), ("stochastic_depth", stochasticDepth)]
    }

    /// `block(x)`, plus `x` through stochastic depth when `useResidual`: [N, inChannels, H, W] →
    /// [N, outChannels, H/stride, W/stride].
    public override func forward(_ x: Tensor) throws -> Tensor {
        let result = try block(x)
        guard useResidual else { return result }
        return try stochasticDepth(result) + x
    }
}

/// EfficientNet-B0 … B3 (Tan & Le 2019) exactly as torchvision 0.14's `efficientnet_b*`:
/// `features.0` (3×3 stem, stride 2, SiLU), `features.1` … `features.7` (stages of `MBConv`),
/// `features.8` (1×1 to 4× the last stage's channels), `avgpool`, then `classifier` = Dropout, Linear at
/// `classifier.1`. BatchNorm is torchvision's default for these variants (eps 1e-5, momentum 0.1);
/// stochastic depth grows linearly to 0.2 × block index / block count.
public final class EfficientNet: FeaturesClassifier {
    /// The scaled variants with torchvision's width/depth multipliers and head dropout.
    public enum Variant: String, CaseIterable, Sendable {
        /// The four variants of the zoo (torchvision also has B4–B7): B0 is the 224×224 base network, B1
        /// 240, B2 288 and B3 300 pixels at inference with their ImageNet weights.
        case b0, b1, b2, b3

        /// Scales every stage's channels (1.0, 1.0, 1.1, 1.2), rounded to multiples of 8.
        public var widthMultiplier: Double {
            switch self { case .b0, .b1: return 1.0; case .b2: return 1.1; case .b3: return 1.2 }
        }
        /// Scales every stage's block count, rounded up (1.0, 1.1, 1.2, 1.4).
        public var depthMultiplier: Double {
            switch self { case .b0: return 1.0; case .b1: return 1.1; case .b2: return 1.2; case .b3: return 1.4 }
        }
        /// The head's dropout rate in torchvision (0.2 for B0/B1, 0.3 for B2/B3).
        public var dropout: Double {
            switch self { case .b0, .b1: return 0.2; case .b2, .b3: return 0.3 }
        }
        /// The registry name, e.g. "efficientnet_b0".
        public var architecture: String { "efficientnet_" + rawValue }
    }

    /// torchvision's B0 stage table: expansion, kernel, stride, input channels, output channels, layers.
    public static let baseStages: [(expand: Double, kernel: Int, stride: Int, inChannels: Int, outChannels: Int,
                                    layers: Int)] = [
        (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
        (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
    ]

    /// Which of B0…B3 this is (its multipliers decide the widths and depths).
    public let variant: Variant
    /// The drop probability of the last block's residual branch; block `i` of `n` uses `p × i / n`.
    public let stochasticDepthProbability: Double

    /// - Parameters:
    ///   - options: head, pooling and dropout (default: the variant's, 0.2 or 0.3).
    ///   - stochasticDepthProbability: the largest drop probability (torchvision's 0.2).
    public init(_ variant: Variant, _ options: ModelOptions = .init(), stochasticDepthProbability: Double = 0.2) throws {
        guard stochasticDepthProbability >= 0, stochasticDepthProbability <= 1 else {
            throw NNError.invalidArgument("stochasticDepthProbability must be in [0, 1], got \(stochasticDepthProbability)")
        }
        let dropout = try MobileHead.dropout(options, default: variant.dropout)
        let width = variant.widthMultiplier, depth = variant.depthMultiplier
        let stages = EfficientNet.baseStages.map { s in
            (expand: s.expand, kernel: s.kernel, stride: s.stride,
             inChannels: ChannelRounding.makeDivisible(Double(s.inChannels) * width),
             outChannels: ChannelRounding.makeDivisible(Double(s.outChannels) * width),
             layers: ChannelRounding.scaledDepth(s.layers, depth))
        }
        let totalBlocks = stages.reduce(0) { $0 + $1.layers }
        var layers: [Module] = [try Conv2dNormActivation(3, stages[0].inChannels, kernelSize: 3, stride: 2,
                                                         activation: SiLU())]
        var blockID = 0
        for stage in stages {
            var blocks: [Module] = []
            for i in 0..<stage.layers {
                let p = stochasticDepthProbability * Double(blockID) / Double(totalBlocks)
                blocks.append(try MBConv(expandRatio: stage.expand, kernelSize: stage.kernel,
                                         stride: i == 0 ? stage.stride : 1,
                                         inChannels: i == 0 ? stage.inChannels : stage.outChannels,
                                         outChannels: stage.outChannels, stochasticDepthProbability: p))
                blockID += 1
            }
            layers.append(Sequential(blocks))
        }
        let lastIn = stages[stages.count - 1].outChannels
        let lastOut = 4 * lastIn
        layers.append(try Conv2dNormActivation(lastIn, lastOut, kernelSize: 1, activation: SiLU()))
        self.variant = variant
        self.stochasticDepthProbability = stochasticDepthProbability
        // `avgpool` is there with or without a top, as in torchvision; `classifier`: Dropout, final Linear.
        super.init(architecture: variant.architecture, options: options, top: .pooled, features: Sequential(layers),
                   avgpool: AdaptiveAvgPool2d(outputSize: 1),
                   classifier: try MobileHead.classifier(options, inFeatures: lastOut, dropout: dropout),
                   headIndex: 1, embeddingSize: lastOut, featureChannels: lastOut)
    }

    /// `torchvision.models.efficientnet_b0` (Keras' `EfficientNetB0`): 5.3 M parameters, 1280-d embedding.
    public static func b0(_ options: ModelOptions = .init()) throws -> EfficientNet { try EfficientNet(.b0, options) }
    /// `torchvision.models.efficientnet_b1`: 7.8 M parameters, 1280-d embedding.
    public static func b1(_ options: ModelOptions = .init()) throws -> EfficientNet { try EfficientNet(.b1, options) }
    /// `torchvision.models.efficientnet_b2`: 9.1 M parameters, 1408-d embedding.
    public static func b2(_ options: ModelOptions = .init()) throws -> EfficientNet { try EfficientNet(.b2, options) }
    /// `torchvision.models.efficientnet_b3`: 12.2 M parameters, 1536-d embedding.
    public static func b3(_ options: ModelOptions = .init()) throws -> EfficientNet { try EfficientNet(.b3, options) }

    /// "EfficientNet", torchvision's class name.
    public override var typeName: String { "EfficientNet" }

    // Children `features`, `avgpool` and `classifier` (with a top); layer groups `features.0` …
    // `features.8`, then `classifier`: see `FeaturesClassifier`.
}
