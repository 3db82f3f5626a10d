import NN
import Torch

/// VGG-11/13/16/19, with or without BatchNorm, as torchvision builds them (`torchvision.models.vgg`):
/// `features.N` (conv, [BatchNorm,] ReLU, …, MaxPool), `avgpool` = AdaptiveAvgPool2d(7) and
/// `classifier.0/3/6` = Linear(25088, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Dropout,
/// Linear(4096, classes). `headPath` is `classifier.6`.
///
/// - With a top, `embedding` is the 4096-d output of `classifier.0` … `classifier.5` (the input to the
///   final Linear) and `classify` applies `classifier.6`. `ModelOptions.dropout` overrides the rate of
///   both Dropout layers, as torchvision's `dropout` argument does.
/// - Without a top the model has no `avgpool` and no `classifier` at all (Keras' `include_top=False`):
///   its `state_dict` is `features` only and `embedding` is the globally pooled (`options.pooling`)
///   512-d output of the last convolution block.
///
/// Layer groups: torchvision numbers the layers of `features` flat, so a convolution block (the layers
/// between two max-pools) is no single module path. The groups are therefore one per layer with
/// parameters, in order: each convolution (`features.0`, `features.2`, … for `vgg16`) and, in the
/// `_bn` variants, its BatchNorm right after it (`features.0`, `features.1`, `features.3`, …), then
/// `classifier` with a top. `convBlocks` lists the same groups split by block.
public final class VGG: FeaturesClassifier {
    /// An entry of torchvision's configuration lists: a 3x3 convolution's width or a 2x2 max-pool.
    public enum LayerSpec: Equatable, Sendable {
        /// A 3×3 convolution (padding 1) to this many channels, followed by [BatchNorm and] ReLU.
        case conv(Int)
        /// A 2×2/2 max-pool, halving the resolution (torchvision's "M").
        case maxPool
    }

    /// torchvision's configurations "A", "B", "D" and "E" by depth.
    public static func configuration(depth: Int) throws -> [LayerSpec] {
        let m = LayerSpec.maxPool
        func c(_ n: Int, _ count: Int) -> [LayerSpec] { Array(repeating: .conv(n), count: count) }
        switch depth {
        case 11: return c(64, 1) + [m] + c(128, 1) + [m] + c(256, 2) + [m] + c(512, 2) + [m] + c(512, 2) + [m]
        case 13: return c(64, 2) + [m] + c(128, 2) + [m] + c(256, 2) + [m] + c(512, 2) + [m] + c(512, 2) + [m]
        case 16: return c(64, 2) + [m] + c(128, 2) + [m] + c(256, 3) + [m] + c(512, 3) + [m] + c(512, 3) + [m]
        case 19: return c(64, 2) + [m] + c(128, 2) + [m] + c(256, 4) + [m] + c(512, 4) + [m] + c(512, 4) + [m]
        default: throw NNError.invalidArgument("no VGG of depth \(depth) (11, 13, 16 or 19)")
        }
    }

    /// Number of weight layers: 11, 13, 16 or 19 (convolutions plus the three Linear layers).
    public let depth: Int
    /// Whether each convolution is followed by a BatchNorm2d (the `_bn` variants).
    public let batchNorm: Bool
    /// The layer groups of `features`, one array per convolution block (see the type's documentation).
    public let convBlocks: [[String]]

    /// VGG of `depth` 11, 13, 16 or 19; registry name `vgg<depth>` or `vgg<depth>_bn`. `avgpool` is
    /// AdaptiveAvgPool2d(7) and `classifier` has `classifier.0` … `classifier.6`; both are nil without a top.
    public init(depth: Int, batchNorm: Bool, options: ModelOptions = .init()) throws {
        self.depth = depth
        self.batchNorm = batchNorm
        var layers: [Module] = []
        var blocks: [[String]] = [[]]
        var channels = 3
        for spec in try Self.configuration(depth: depth) {
            switch spec {
            case .conv(let width):
                blocks[blocks.count - 1].append("features.\(layers.count)")
                layers.append(try Conv2d(channels, width, kernelSize: 3, padding: 1))
                if batchNorm {
                    blocks[blocks.count - 1].append("features.\(layers.count)")
                    layers.append(try BatchNorm2d(width))
                }
                layers.append(ReLU(inplace: true))
                channels = width
            case .maxPool:
                layers.append(MaxPool2d(kernelSize: 2, stride: 2))
                blocks.append([])
            }
        }
        convBlocks = blocks.filter { !$0.isEmpty }
        try options.checkClassCount()
        var classifier: Sequential?
        if options.includeTop {
            let p = options.dropout ?? 0.5
            classifier = Sequential(
                try Linear(512 * 7 * 7, 4096), ReLU(inplace: true), try Dropout(p: p),
                try Linear(4096, 4096), ReLU(inplace: true), try Dropout(p: p),
                try Linear(4096, options.numClasses))
        }
        super.init(architecture: "vgg\(depth)" + (batchNorm ? "_bn" : ""), options: options, top: .dense,
                   features: Sequential(layers), avgpool: options.includeTop ? AdaptiveAvgPool2d(outputSize: 7) : nil,
                   classifier: classifier, headIndex: 6, embeddingSize: options.includeTop ? 4096 : 512,
                   featureChannels: 512)
    }

    // MARK: Builders

    /// `torchvision.models.vgg11` / `vgg11_bn` (configuration "A"). Not in the zoo's registry and
    /// without catalog weights.
    public static func vgg11(batchNorm: Bool = false, _ options: ModelOptions = .init()) throws -> VGG {
        try VGG(depth: 11, batchNorm: batchNorm, options: options)
    }

    /// `torchvision.models.vgg13` / `vgg13_bn` (configuration "B"). Not in the zoo's registry and
    /// without catalog weights.
    public static func vgg13(batchNorm: Bool = false, _ options: ModelOptions = .init()) throws -> VGG {
        try VGG(depth: 13, batchNorm: batchNorm, options: options)
    }

    /// `torchvision.models.vgg16` / `vgg16_bn` (configuration "D", Keras' `VGG16`): 138 M parameters,
    /// 4096-d embedding with a top.
    public static func vgg16(batchNorm: Bool = false, _ options: ModelOptions = .init()) throws -> VGG {
        try VGG(depth: 16, batchNorm: batchNorm, options: options)
    }

    /// `torchvision.models.vgg19` / `vgg19_bn` (configuration "E", Keras' `VGG19`): 144 M parameters,
    /// 4096-d embedding with a top.
    public static func vgg19(batchNorm: Bool = false, _ options: ModelOptions = .init()) throws -> VGG {
        try VGG(depth: 19, batchNorm: batchNorm, options: options)
    }

    // MARK: Structure

    /// "VGG", torchvision's class name.
    public override var typeName: String { "VGG" }

    /// Each convolution and BatchNorm, block by block (`convBlocks`).
    override var featureGroups: [String] { convBlocks.flatMap { $0 } }
}
