import NN
import Torch

/// ResNet-18/34/50/101/152 as torchvision builds them (`torchvision.models.resnet`, v1.5: a Bottleneck
/// downsamples in its 3x3 convolution), with torchvision's `state_dict` keys: `conv1`, `bn1`,
/// `layer1.0.conv1`, …, `layer2.0.downsample.0/1`, …, `fc`.
///
/// - With a top, `embedding` is the globally average-pooled output of `layer4` (512 or 2048 wide) and
///   `classify` applies the optional dropout (`ModelOptions.dropout`; torchvision has none) and `fc`.
/// - Without a top there is no `fc` at all (the `state_dict` is the backbone only); `embedding` pools
///   the feature maps with `options.pooling`.
///
/// Layer groups: `conv1`, `bn1`, `layer1`, `layer2`, `layer3`, `layer4` and (with a top) `fc`.
public final class ResNet: FCTopClassifier {
    /// The residual block type: two 3x3 convolutions, or 1x1-3x3-1x1 with 4x expansion.
    public enum Block: Sendable {
        /// `basic`: `BasicBlock` (ResNet-18/34); `bottleneck`: `Bottleneck` (ResNet-50/101/152).
        case basic, bottleneck

        /// Output channels per `planes` (torchvision's `expansion`).
        public var expansion: Int { self == .basic ? 1 : 4 }
    }

    /// The residual block every stage uses (`.basic` for ResNet-18/34, `.bottleneck` from ResNet-50 up).
    public let block: Block
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    public let blockCounts: [Int]

    /// Stem: 7×7/2 convolution, 3 → 64 channels, no bias (224×224 → 112×112).
    public let conv1: Conv2d
    /// BatchNorm after `conv1` (folded into it when nothing trains them).
    public let bn1: BatchNorm2d
    /// The stem's ReLU (no parameters).
    public let relu = ReLU(inplace: true)
    /// 3×3/2 max-pool after the stem (→ 56×56).
    public let maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    /// Stage 1: `blockCounts[0]` blocks at 56×56, 64 × `expansion` channels (64 or 256).
    public let layer1: Sequential
    /// Stage 2: `blockCounts[1]` blocks, the first with stride 2 (→ 28×28), 128 × `expansion` channels.
    public let layer2: Sequential
    /// Stage 3: `blockCounts[2]` blocks, the first with stride 2 (→ 14×14), 256 × `expansion` channels.
    public let layer3: Sequential
    /// Stage 4: `blockCounts[3]` blocks, the first with stride 2 (→ 7×7), 512 × `expansion` channels
    /// (512 or 2048): the maps `forwardFeatures` returns.
    public let layer4: Sequential

    /// A ResNet with `block` and `blockCounts` per stage (torchvision's `ResNet(block, layers)`).
    /// `architecture` is the registry name reported by the model.
    public init(architecture: String, block: Block, blockCounts: [Int], options: ModelOptions = .init()) throws {
        guard blockCounts.count == 4, blockCounts.allSatisfy({ $0 > 0 }) else {
            throw NNError.invalidArgument("ResNet needs four positive block counts, got \(blockCounts)")
        }
        self.block = block
        self.blockCounts = blockCounts
        conv1 = try Conv2d(3, 64, kernelSize: 7, stride: 2, padding: 3, bias: false)
        bn1 = try BatchNorm2d(64)
        var inplanes = 64
        func makeLayer(_ planes: Int, _ count: Int, stride: Int) throws -> Sequential {
            var blocks: [Module] = []
            for i in 0..<count {
                let s = i == 0 ? stride : 1
                switch block {
                case .basic: blocks.append(try BasicBlock(inplanes, planes, stride: s))
                case .bottleneck: blocks.append(try Bottleneck(inplanes, planes, stride: s))
                }
                inplanes = planes * block.expansion
            }
            return Sequential(blocks)
        }
        layer1 = try makeLayer(64, blockCounts[0], stride: 1)
        layer2 = try makeLayer(128, blockCounts[1], stride: 2)
        layer3 = try makeLayer(256, blockCounts[2], stride: 2)
        layer4 = try makeLayer(512, blockCounts[3], stride: 2)
        // A `dropout` only when `options.dropout` asks for one (torchvision's ResNet has none).
        try super.init(architecture: architecture, options: options, width: 512 * block.expansion,
                       dropout: options.dropout.flatMap { $0 > 0 ? $0 : nil })
    }

    // MARK: Builders

    /// `torchvision.models.resnet18`: basic blocks [2, 2, 2, 2], 11.7 M parameters, 512-d embedding
    /// (ImageNet weights: 69.8% top-1).
    public static func resnet18(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet18", block: .basic, blockCounts: [2, 2, 2, 2], options: options)
    }

    /// `torchvision.models.resnet34`: basic blocks [3, 4, 6, 3], 21.8 M parameters, 512-d embedding
    /// (ImageNet weights: 73.3% top-1).
    public static func resnet34(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet34", block: .basic, blockCounts: [3, 4, 6, 3], options: options)
    }

    /// `torchvision.models.resnet50` (Keras' `ResNet50` is v1, with the stride in the first 1×1):
    /// bottleneck blocks [3, 4, 6, 3], 25.6 M parameters, 2048-d embedding (ImageNet weights: 76.1%
    /// top-1; `imagenet_v2`: 80.9%).
    public static func resnet50(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet50", block: .bottleneck, blockCounts: [3, 4, 6, 3], options: options)
    }

    /// `torchvision.models.resnet101`: bottleneck blocks [3, 4, 23, 3], 44.5 M parameters, 2048-d
    /// embedding (ImageNet weights: 77.4% top-1).
    public static func resnet101(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet101", block: .bottleneck, blockCounts: [3, 4, 23, 3], options: options)
    }

    /// `torchvision.models.resnet152`: bottleneck blocks [3, 8, 36, 3], 60.2 M parameters, 2048-d
    /// embedding (ImageNet weights: 78.3% top-1).
    public static func resnet152(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet152", block: .bottleneck, blockCounts: [3, 8, 36, 3], options: options)
    }

    /// The ResNet of `depth` 18, 34, 50, 101 or 152.
    public static func make(depth: Int, _ options: ModelOptions = .init()) throws -> ResNet {
        switch depth {
        case 18: return try resnet18(options)
        case 34: return try resnet34(options)
        case 50: return try resnet50(options)
        case 101: return try resnet101(options)
        case 152: return try resnet152(options)
        default: throw NNError.invalidArgument("no ResNet of depth \(depth) (18, 34, 50, 101 or 152)")
        }
    }

    // MARK: Structure

    /// "ResNet", torchvision's class name.
    public override var typeName: String { "ResNet" }

    /// `conv1`, `bn1`, `relu`, `maxpool`, `layer1` … `layer4`, then `avgpool`, `dropout` (only when
    /// asked for) and `fc`: torchvision's order.
    public override var namedChildren: [(String, Module)] {
        [("conv1", conv1), ("bn1", bn1), ("relu", relu), ("maxpool", maxpool),
         ("layer1", layer1), ("layer2", layer2), ("layer3", layer3), ("layer4", layer4)] + topChildren
    }

    /// `conv1`, `bn1`, `layer1` … `layer4`, then `fc` with a top.
    public override var layerGroups: [String] {
        ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"] + topGroups
    }

    // MARK: Forward

    /// `layer4`: `forwardFeatures` ends there.
    public override var featureLayer: String { "layer4" }

    /// `layer4`'s maps: [N, 512 × expansion, H/32, W/32], e.g. [N, 2048, 7, 7] for ResNet-50 at 224×224.
    public override func forwardFeatures(_ x: Tensor) throws -> Tensor {
        var y = try maxpool(relu(conv1.forward(x, thenBatchNorm: bn1)))
        y = try layer4(layer3(layer2(layer1(y))))
        return y
    }

    // MARK: - Blocks

    /// torchvision's `BasicBlock`: conv3x3-bn-relu-conv3x3-bn, plus the (downsampled) input, relu.
    public final class BasicBlock: ResidualBlock {
        /// 3×3 convolution (stride `stride`), `inplanes` → `planes`, no bias.
        public let conv1: Conv2d
        /// BatchNorm after `conv1`.
        public let bn1: BatchNorm2d
        /// 3×3 convolution, `planes` → `planes`, no bias.
        public let conv2: Conv2d
        /// BatchNorm after `conv2`, before the shortcut is added.
        public let bn2: BatchNorm2d

        /// - Parameters:
        ///   - inplanes: input channels.
        ///   - planes: output channels (expansion 1).
        ///   - stride: 2 in the first block of `layer2`…`layer4`, else 1. A `downsample` shortcut is made
        ///     when the stride or the width changes.
        public init(_ inplanes: Int, _ planes: Int, stride: Int = 1) throws {
            conv1 = try Conv2d(inplanes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false)
            bn1 = try BatchNorm2d(planes)
            conv2 = try Conv2d(planes, planes, kernelSize: 3, padding: 1, bias: false)
            bn2 = try BatchNorm2d(planes)
            try super.init(shortcutFrom: inplanes, to: planes, stride: stride)
        }

        /// "BasicBlock", torchvision's class name.
        public override var typeName: String { "BasicBlock" }

        /// `conv1`, `bn1`, `relu`, `conv2`, `bn2`, then `downsample` when present.
        public override var namedChildren: [(String, Module)] {
            [("conv1", conv1), ("bn1", bn1), ("relu", relu), ("conv2", conv2), ("bn2", bn2)] + shortcutChildren
        }

        /// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
        public override func forward(_ x: Tensor) throws -> Tensor {
            try addShortcut(conv2.forward(relu(conv1.forward(x, thenBatchNorm: bn1)), thenBatchNorm: bn2), x)
        }
    }

    /// torchvision's `Bottleneck` (ResNet v1.5): conv1x1-bn-relu, conv3x3 (strided)-bn-relu, conv1x1-bn,
    /// plus the (downsampled) input, relu. Outputs `4 * planes` channels.
    public final class Bottleneck: ResidualBlock {
        /// 1×1 convolution, `inplanes` → `planes` (the bottleneck's reduction), no bias.
        public let conv1: Conv2d
        /// BatchNorm after `conv1`.
        public let bn1: BatchNorm2d
        /// 3×3 convolution with the block's stride (v1.5), `planes` → `planes`, no bias.
        public let conv2: Conv2d
        /// BatchNorm after `conv2`.
        public let bn2: BatchNorm2d
        /// 1×1 convolution, `planes` → `4 × planes` (the expansion), no bias.
        public let conv3: Conv2d
        /// BatchNorm after `conv3`, before the shortcut is added (torchvision's `zero_init_residual` is off).
        public let bn3: BatchNorm2d

        /// - Parameters:
        ///   - inplanes: input channels.
        ///   - planes: the bottleneck's width; the block outputs `4 × planes`.
        ///   - stride: 2 in the first block of `layer2`…`layer4` (applied by `conv2`), else 1.
        public init(_ inplanes: Int, _ planes: Int, stride: Int = 1) throws {
            let outplanes = planes * 4
            conv1 = try Conv2d(inplanes, planes, kernelSize: 1, bias: false)
            bn1 = try BatchNorm2d(planes)
            conv2 = try Conv2d(planes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false)
            bn2 = try BatchNorm2d(planes)
            conv3 = try Conv2d(planes, outplanes, kernelSize: 1, bias: false)
            bn3 = try BatchNorm2d(outplanes)
            try super.init(shortcutFrom: inplanes, to: outplanes, stride: stride)
        }

        /// "Bottleneck", torchvision's class name.
        public override var typeName: String { "Bottleneck" }

        /// `conv1`, `bn1`, `conv2`, `bn2`, `conv3`, `bn3`, `relu`, then `downsample` when present
        /// (torchvision's definition order).
        public override var namedChildren: [(String, Module)] {
            [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2), ("conv3", conv3), ("bn3", bn3),
             ("relu", relu)] + shortcutChildren
        }

        /// `relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))`.
        public override func forward(_ x: Tensor) throws -> Tensor {
            var out = try relu(conv1.forward(x, thenBatchNorm: bn1))
            out = try relu(conv2.forward(out, thenBatchNorm: bn2))
            return try addShortcut(conv3.forward(out, thenBatchNorm: bn3), x)
        }
    }

    /// What `BasicBlock` and `Bottleneck` share: their `relu` and the shortcut, `downsample` (a 1x1
    /// convolution `downsample.0` and BatchNorm `downsample.1`) when the block changes the resolution or
    /// the width, else the identity.
    public class ResidualBlock: Module {
        /// The block's ReLU, used after each inner BatchNorm and after the addition (no parameters).
        public let relu = ReLU(inplace: true)
        /// nil when the shortcut is the identity.
        public let downsample: Sequential?

        init(shortcutFrom inplanes: Int, to outplanes: Int, stride: Int) throws {
            downsample = stride != 1 || inplanes != outplanes
                ? Sequential(try Conv2d(inplanes, outplanes, kernelSize: 1, stride: stride, bias: false),
                             try BatchNorm2d(outplanes))
                : nil
            super.init()
        }

        /// `downsample`, when present: the last child.
        var shortcutChildren: [(String, Module)] { downsample.map { [("downsample", $0)] } ?? [] }

        /// `relu(out + shortcut(x))`, the end of both blocks' forward pass.
        func addShortcut(_ out: Tensor, _ x: Tensor) throws -> Tensor {
            try relu(out + (downsample?.forward(x) ?? x))
        }
    }
}
