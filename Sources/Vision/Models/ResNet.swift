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
        case basic, bottleneck

        /// Output channels per `planes` (torchvision's `expansion`).
        public var expansion: Int { self == .basic ? 1 : 4 }
    }

    public let block: Block
    /// Blocks per stage, e.g. `[3, 4, 6, 3]` for ResNet-50.
    public let blockCounts: [Int]

    public let conv1: Conv2d
    public let bn1: BatchNorm2d
    public let relu = ReLU(inplace: true)
    public let maxpool = MaxPool2d(kernelSize: 3, stride: 2, padding: 1)
    public let layer1: Sequential
    public let layer2: Sequential
    public let layer3: Sequential
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

    public static func resnet18(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet18", block: .basic, blockCounts: [2, 2, 2, 2], options: options)
    }

    public static func resnet34(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet34", block: .basic, blockCounts: [3, 4, 6, 3], options: options)
    }

    public static func resnet50(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet50", block: .bottleneck, blockCounts: [3, 4, 6, 3], options: options)
    }

    public static func resnet101(_ options: ModelOptions = .init()) throws -> ResNet {
        try ResNet(architecture: "resnet101", block: .bottleneck, blockCounts: [3, 4, 23, 3], options: options)
    }

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

    public override var typeName: String { "ResNet" }

    public override var namedChildren: [(String, Module)] {
        [("conv1", conv1), ("bn1", bn1), ("relu", relu), ("maxpool", maxpool),
         ("layer1", layer1), ("layer2", layer2), ("layer3", layer3), ("layer4", layer4)] + topChildren
    }

    public override var layerGroups: [String] {
        ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"] + topGroups
    }

    // MARK: Forward

    public override func forwardFeatures(_ x: Tensor) throws -> Tensor {
        var y = try maxpool(relu(conv1.forward(x, thenBatchNorm: bn1)))
        y = try layer4(layer3(layer2(layer1(y))))
        return y
    }

    // MARK: - Blocks

    /// torchvision's `BasicBlock`: conv3x3-bn-relu-conv3x3-bn, plus the (downsampled) input, relu.
    public final class BasicBlock: ResidualBlock {
        public let conv1: Conv2d
        public let bn1: BatchNorm2d
        public let conv2: Conv2d
        public let bn2: BatchNorm2d

        public init(_ inplanes: Int, _ planes: Int, stride: Int = 1) throws {
            conv1 = try Conv2d(inplanes, planes, kernelSize: 3, stride: stride, padding: 1, bias: false)
            bn1 = try BatchNorm2d(planes)
            conv2 = try Conv2d(planes, planes, kernelSize: 3, padding: 1, bias: false)
            bn2 = try BatchNorm2d(planes)
            try super.init(shortcutFrom: inplanes, to: planes, stride: stride)
        }

        public override var typeName: String { "BasicBlock" }

        public override var namedChildren: [(String, Module)] {
            [("conv1", conv1), ("bn1", bn1), ("relu", relu), ("conv2", conv2), ("bn2", bn2)] + shortcutChildren
        }

        public override func forward(_ x: Tensor) throws -> Tensor {
            try addShortcut(conv2.forward(relu(conv1.forward(x, thenBatchNorm: bn1)), thenBatchNorm: bn2), x)
        }
    }

    /// torchvision's `Bottleneck` (ResNet v1.5): conv1x1-bn-relu, conv3x3 (strided)-bn-relu, conv1x1-bn,
    /// plus the (downsampled) input, relu. Outputs `4 * planes` channels.
    public final class Bottleneck: ResidualBlock {
        public let conv1: Conv2d
        public let bn1: BatchNorm2d
        public let conv2: Conv2d
        public let bn2: BatchNorm2d
        public let conv3: Conv2d
        public let bn3: BatchNorm2d

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

        public override var typeName: String { "Bottleneck" }

        public override var namedChildren: [(String, Module)] {
            [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2), ("conv3", conv3), ("bn3", bn3),
             ("relu", relu)] + shortcutChildren
        }

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
