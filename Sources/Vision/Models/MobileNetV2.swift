import NN
import Torch

/// MobileNetV2's inverted residual block, as torchvision's `InvertedResidual`: an optional 1×1
/// expansion (`conv.0`), a 3×3 depthwise convolution, a linear 1×1 projection and its BatchNorm, with a
/// residual connection when the stride is 1 and the channel count is unchanged.
public final class InvertedResidual: Module {
    /// Channels of the block's input.
    public let inChannels: Int
    /// Channels of the block's output (after the projection).
    public let outChannels: Int
    /// Stride of the depthwise convolution: 1, or 2 in the first block of a downsampling stage.
    public let stride: Int
    /// Whether the input is added back: stride 1 and `inChannels == outChannels` (torchvision's `use_res_connect`).
    public let useResidual: Bool
    /// The layers under torchvision's keys: `conv.0` 1×1 expansion + ReLU6 (absent at expansion 1), the
    /// 3×3 depthwise `Conv2dNormActivation`, then the 1×1 projection `Conv2d` and its `BatchNorm2d`.
    public let conv: Sequential

    /// - Parameters:
    ///   - stride: 1 or 2; anything else throws `NNError.invalidArgument`.
    ///   - expandRatio: the hidden width per input channel (t in the paper: 1 or 6), rounded as
    ///     Python's `round` does.
    public init(_ inChannels: Int, _ outChannels: Int, stride: Int, expandRatio: Double) throws {
        guard stride == 1 || stride == 2 else {
            throw NNError.invalidArgument("stride should be 1 or 2 instead of \(stride)")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        useResidual = stride == 1 && inChannels == outChannels
        // Python's int(round(inp * expand_ratio)) (ties to even).
        let hidden = Int((Double(inChannels) * expandRatio).rounded(.toNearestOrEven))
        var layers: [Module] = []
        if expandRatio != 1 {
            layers.append(try Conv2dNormActivation(inChannels, hidden, kernelSize: 1, activation: ReLU6(inplace: true)))
        }
        layers.append(try Conv2dNormActivation(hidden, hidden, kernelSize: 3, stride: stride, groups: hidden,
                                               activation: ReLU6(inplace: true)))
        layers.append(try Conv2d(hidden, outChannels, kernelSize: 1, bias: false))
        layers.append(try BatchNorm2d(outChannels))
        conv = Sequential(layers)
        super.init()
    }

    /// "InvertedResidual", torchvision's class name.
    public override var typeName: String { "InvertedResidual" }
    /// `conv`, torchvision's single child.
    public override var namedChildren: [(String, Module)] { [("conv", conv)] }

    /// `conv(x)`, plus `x` when `useResidual`: [N, inChannels, H, W] → [N, outChannels, H/stride, W/stride].
    public override func forward(_ x: Tensor) throws -> Tensor {
        useResidual ? try x + conv(x) : try conv(x)
    }
}

/// MobileNetV2 (Sandler et al. 2018) exactly as torchvision's `mobilenet_v2`: `features.0` (3×3 stem,
/// stride 2), `features.1` … `features.17` (inverted residuals), `features.18` (1×1 to 1280 channels),
/// then `classifier` = Dropout(0.2), Linear(1280, classes) at `classifier.1`. BatchNorm eps 1e-5,
/// ReLU6 activations. Loads torchvision's `mobilenet_v2-b0353104.pth` / `-7ebf99e0.pth` as is.
public final class MobileNetV2: FeaturesClassifier {
    /// torchvision's `inverted_residual_setting`: expansion t, channels c, repeats n, first stride s.
    public static let invertedResidualSetting: [(t: Double, c: Int, n: Int, s: Int)] = [
        (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
    ]

    /// torchvision's `width_mult` (1.0 for the pretrained weights): scales every layer's channels,
    /// rounded to multiples of 8; the last layer keeps at least 1280.
    public let widthMultiplier: Double

    /// - Parameters:
    ///   - options: head, pooling and dropout (default 0.2).
    ///   - widthMultiplier: torchvision's `width_mult` (channels rounded to multiples of 8). Pretrained
    ///     weights exist for 1.0 only.
    public init(_ options: ModelOptions = .init(), widthMultiplier: Double = 1.0) throws {
        guard widthMultiplier > 0 else {
            throw NNError.invalidArgument("widthMultiplier must be positive, got \(widthMultiplier)")
        }
        let dropout = try MobileHead.dropout(options, default: 0.2)
        var inputChannels = ChannelRounding.makeDivisible(32 * widthMultiplier)
        let lastChannels = ChannelRounding.makeDivisible(1280 * Swift.max(1.0, widthMultiplier))
        var layers: [Module] = [try Conv2dNormActivation(3, inputChannels, kernelSize: 3, stride: 2,
                                                         activation: ReLU6(inplace: true))]
        for (t, c, n, s) in Self.invertedResidualSetting {
            let outputChannels = ChannelRounding.makeDivisible(Double(c) * widthMultiplier)
            for i in 0..<n {
                layers.append(try InvertedResidual(inputChannels, outputChannels, stride: i == 0 ? s : 1,
                                                   expandRatio: t))
                inputChannels = outputChannels
            }
        }
        layers.append(try Conv2dNormActivation(inputChannels, lastChannels, kernelSize: 1, activation: ReLU6(inplace: true)))
        self.widthMultiplier = widthMultiplier
        // `classifier`: Dropout and the final Linear.
        super.init(architecture: "mobilenet_v2", options: options, top: .pooled, features: Sequential(layers),
                   avgpool: nil, classifier: try MobileHead.classifier(options, inFeatures: lastChannels, dropout: dropout),
                   headIndex: 1, embeddingSize: lastChannels, featureChannels: lastChannels)
    }

    /// MobileNetV2 with torchvision's default configuration.
    public static func make(_ options: ModelOptions = .init()) throws -> MobileNetV2 {
        try MobileNetV2(options)
    }

    /// "MobileNetV2", torchvision's class name.
    public override var typeName: String { "MobileNetV2" }

    // Children `features` and `classifier` (with a top); layer groups `features.0` … `features.18`, then
    // `classifier`: see `FeaturesClassifier`.
}
