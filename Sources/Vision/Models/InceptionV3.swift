import NN
import Torch

/// Inception v3 as torchvision builds it (`torchvision.models.inception_v3`, 299x299 input, at least
/// 75x75): `Conv2d_1a_3x3` … `Conv2d_4a_3x3`, `Mixed_5b` … `Mixed_7c`, the auxiliary classifier
/// `AuxLogits` (after `Mixed_6e`), `avgpool`, `dropout` (0.5) and `fc`. Every convolution is a
/// `BasicConv2d` (conv without bias, BatchNorm with eps 0.001, ReLU).
///
/// - `AuxLogits` is present by default, as in torchvision's ImageNet `state_dict`; build with
///   `auxLogits: false` (or call `removeAuxLogits()`) to drop it. It runs only in training mode and only
///   through `forwardWithAux`; `forward` returns the main logits. Its pooling needs a 17x17 `Mixed_6e`
///   map, i.e. 299x299 input, in training mode.
/// - `transformInput` is torchvision's `transform_input` (see `GoogLeNet.transformInput`): off by
///   default, on for the ImageNet weights (the weights factory sets it).
/// - With a top, `embedding` is the 2048-d average-pooled output of `Mixed_7c`; `classify` applies
///   `dropout` (`ModelOptions.dropout`, default 0.5) and `fc`. Without a top there are no `dropout`,
///   `fc` or `AuxLogits`, and `embedding` pools with `options.pooling`.
///
/// Layer groups: the five stem convolutions, `Mixed_5b` … `Mixed_6e`, `AuxLogits` (when present),
/// `Mixed_7a` … `Mixed_7c`, and `fc` with a top (torchvision's definition order).
public final class InceptionV3: FCTopClassifier {
    /// torchvision's `transform_input`.
    public var transformInput: Bool

    /// The pooling and layout, and `transform_input`, which changes the embedding too.
    public override var featureSettings: [String: String] {
        super.featureSettings.merging(["transform_input": "\(transformInput)"]) { $1 }
    }

    /// Stem: 3×3/2 convolution, 3 → 32 channels (299×299 → 149×149).
    public let Conv2d_1a_3x3: BasicConv2d
    /// Stem: 3×3 convolution, 32 → 32 channels, no padding (→ 147×147).
    public let Conv2d_2a_3x3: BasicConv2d
    /// Stem: 3×3 convolution, 32 → 64 channels, padding 1.
    public let Conv2d_2b_3x3: BasicConv2d
    /// 3×3/2 max-pool after `Conv2d_2b_3x3` (→ 73×73). No parameters.
    public let maxpool1 = MaxPool2d(kernelSize: 3, stride: 2)
    /// Stem: 1×1 convolution, 64 → 80 channels.
    public let Conv2d_3b_1x1: BasicConv2d
    /// Stem: 3×3 convolution, 80 → 192 channels, no padding (→ 71×71).
    public let Conv2d_4a_3x3: BasicConv2d
    /// 3×3/2 max-pool after `Conv2d_4a_3x3` (→ 35×35). No parameters.
    public let maxpool2 = MaxPool2d(kernelSize: 3, stride: 2)
    /// First 35×35 Inception-A block: 192 → 256 channels (pool branch 32 wide).
    public let Mixed_5b: InceptionA
    /// 35×35 Inception-A block: 256 → 288 channels.
    public let Mixed_5c: InceptionA
    /// 35×35 Inception-A block: 288 → 288 channels.
    public let Mixed_5d: InceptionA
    /// Grid reduction 35×35 → 17×17: 288 → 768 channels.
    public let Mixed_6a: InceptionB
    /// 17×17 Inception-C block (7×7 branches 128 wide), 768 channels in and out.
    public let Mixed_6b: InceptionC
    /// 17×17 Inception-C block (7×7 branches 160 wide), 768 channels in and out.
    public let Mixed_6c: InceptionC
    /// 17×17 Inception-C block (7×7 branches 160 wide), 768 channels in and out.
    public let Mixed_6d: InceptionC
    /// Last 17×17 Inception-C block (7×7 branches 192 wide), 768 channels; `AuxLogits` reads its output.
    public let Mixed_6e: InceptionC
    /// The auxiliary classifier on `Mixed_6e`'s output; nil without a top, when built with
    /// `auxLogits: false`, or after `removeAuxLogits()`.
    public private(set) var AuxLogits: InceptionAux?
    /// Grid reduction 17×17 → 8×8: 768 → 1280 channels.
    public let Mixed_7a: InceptionD
    /// 8×8 Inception-E block: 1280 → 2048 channels.
    public let Mixed_7b: InceptionE
    /// Last 8×8 Inception-E block, 2048 channels in and out: the maps `forwardFeatures` returns.
    public let Mixed_7c: InceptionE

    /// - Parameters:
    ///   - auxLogits: build `AuxLogits` (only with a top); torchvision's default and ImageNet file have it.
    ///   - transformInput: torchvision's `transform_input` (true for the ImageNet weights).
    public init(_ options: ModelOptions = .init(), auxLogits: Bool = true, transformInput: Bool = false) throws {
        self.transformInput = transformInput
        Conv2d_1a_3x3 = try BasicConv2d(3, 32, kernelSize: 3, stride: 2)
        Conv2d_2a_3x3 = try BasicConv2d(32, 32, kernelSize: 3)
        Conv2d_2b_3x3 = try BasicConv2d(32, 64, kernelSize: 3, padding: 1)
        Conv2d_3b_1x1 = try BasicConv2d(64, 80, kernelSize: 1)
        Conv2d_4a_3x3 = try BasicConv2d(80, 192, kernelSize: 3)
        Mixed_5b = try InceptionA(192, poolFeatures: 32)
        Mixed_5c = try InceptionA(256, poolFeatures: 64)
        Mixed_5d = try InceptionA(288, poolFeatures: 64)
        Mixed_6a = try InceptionB(288)
        Mixed_6b = try InceptionC(768, channels7x7: 128)
        Mixed_6c = try InceptionC(768, channels7x7: 160)
        Mixed_6d = try InceptionC(768, channels7x7: 160)
        Mixed_6e = try InceptionC(768, channels7x7: 192)
        Mixed_7a = try InceptionD(768)
        Mixed_7b = try InceptionE(1280)
        Mixed_7c = try InceptionE(2048)
        // `AuxLogits` comes before `fc`, as torchvision builds them (the order parameters draw their
        // initial values in).
        try options.checkClassCount()
        if options.includeTop, auxLogits { AuxLogits = try InceptionAux(768, options.numClasses) }
        try super.init(architecture: "inception_v3", options: options, width: 2048, dropout: options.dropout ?? 0.5)
    }

    /// torchvision's `inception_v3(aux_logits:transform_input:)` without weights.
    public static func inceptionV3(_ options: ModelOptions = .init(), auxLogits: Bool = true,
                                   transformInput: Bool = false) throws -> InceptionV3 {
        try InceptionV3(options, auxLogits: auxLogits, transformInput: transformInput)
    }

    /// Whether `AuxLogits` is present.
    public var auxLogits: Bool { AuxLogits != nil }

    /// Drops `AuxLogits` (and its keys).
    public func removeAuxLogits() { AuxLogits = nil }

    // MARK: Structure

    /// "Inception3", torchvision's class name.
    public override var typeName: String { "Inception3" }

    /// The stem, `Mixed_5b` … `Mixed_6e`, `AuxLogits` (when present), `Mixed_7a` … `Mixed_7c`, then
    /// `avgpool`, `dropout` and `fc`: torchvision's definition order, which its `state_dict` follows.
    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [
            ("Conv2d_1a_3x3", Conv2d_1a_3x3), ("Conv2d_2a_3x3", Conv2d_2a_3x3), ("Conv2d_2b_3x3", Conv2d_2b_3x3),
            ("maxpool1", maxpool1), ("Conv2d_3b_1x1", Conv2d_3b_1x1), ("Conv2d_4a_3x3", Conv2d_4a_3x3),
            ("maxpool2", maxpool2), ("Mixed_5b", Mixed_5b), ("Mixed_5c", Mixed_5c), ("Mixed_5d", Mixed_5d),
            ("Mixed_6a", Mixed_6a), ("Mixed_6b", Mixed_6b), ("Mixed_6c", Mixed_6c), ("Mixed_6d", Mixed_6d),
            ("Mixed_6e", Mixed_6e),
        ]
        if let AuxLogits { children.append(("AuxLogits", AuxLogits)) }
        return children + [("Mixed_7a", Mixed_7a), ("Mixed_7b", Mixed_7b), ("Mixed_7c", Mixed_7c)] + topChildren
    }

    /// Replaces `AuxLogits` (with another `InceptionAux`, only while one is present) or `fc`; other
    /// names throw `NNError.cannotReplace`.
    public override func setChild(_ name: String, to module: Module) throws {
        switch (name, module) {
        case ("AuxLogits", let aux as InceptionAux) where AuxLogits != nil: AuxLogits = aux
        default: try super.setChild(name, to: module)
        }
    }

    /// The five stem convolutions, each Mixed block, `AuxLogits` after `Mixed_6e` when present, then
    /// `fc` with a top. (The max-pools hold no parameters and are not groups.)
    public override var layerGroups: [String] {
        var groups = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                      "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"]
        if AuxLogits != nil { groups.append("AuxLogits") }
        return groups + ["Mixed_7a", "Mixed_7b", "Mixed_7c"] + topGroups
    }

    /// Replaces `fc` and, when present, `AuxLogits.fc` with fresh Linear layers for `numClasses`.
    public override func replaceHead(numClasses: Int) throws {
        try super.replaceHead(numClasses: numClasses)
        try replaceAuxLinear(at: "AuxLogits.fc", numClasses: numClasses)
    }

    // MARK: Forward

    private func trunk(_ x: Tensor, computeAux: Bool) throws -> (Tensor, aux: Tensor?) {
        var y = try transformInput ? InceptionInputTransform.apply(x) : x
        y = try maxpool1(Conv2d_2b_3x3(Conv2d_2a_3x3(Conv2d_1a_3x3(y))))
        y = try maxpool2(Conv2d_4a_3x3(Conv2d_3b_1x1(y)))
        y = try Mixed_5d(Mixed_5c(Mixed_5b(y)))
        y = try Mixed_6e(Mixed_6d(Mixed_6c(Mixed_6b(Mixed_6a(y)))))
        var aux: Tensor?
        if computeAux, let AuxLogits, AuxLogits.usesTrainingBehaviour { aux = try AuxLogits(y) }
        y = try Mixed_7c(Mixed_7b(Mixed_7a(y)))
        return (y, aux)
    }

    /// `Mixed_7c`: `forwardFeatures` ends there.
    public override var featureLayer: String { "Mixed_7c" }

    /// `Mixed_7c`'s maps, [N, 2048, 8, 8] for 299×299 input (after `transformInput` when it is on);
    /// `AuxLogits` is not run.
    public override func forwardFeatures(_ x: Tensor) throws -> Tensor {
        try trunk(x, computeAux: false).0
    }

    /// The main logits and, in training mode with `AuxLogits`, the auxiliary logits (nil otherwise), as
    /// torchvision's `InceptionOutputs`. Without a top: `forward(x)` and nil.
    public func forwardWithAux(_ x: Tensor) throws -> (logits: Tensor, aux: Tensor?) {
        guard options.includeTop else { return (try forward(x), nil) }
        let (y, aux) = try trunk(x, computeAux: true)
        return (try classify(pooled(y)), aux)
    }

    // MARK: - Blocks

    /// 35x35 block: 1x1, 5x5, double 3x3 and average-pool branches.
    public final class InceptionA: Module {
        /// The branches, by torchvision's names: `branch1x1` (1×1 → 64); `branch5x5_1`/`_2` (1×1 → 48,
        /// 5×5 → 64); `branch3x3dbl_1`…`_3` (1×1 → 64, 3×3 → 96, 3×3 → 96); `branch_pool` (3×3 average
        /// pool, 1×1 → `poolFeatures`).
        public let branch1x1, branch5x5_1, branch5x5_2, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3,
                   branch_pool: BasicConv2d

        /// Output channels: 224 + `poolFeatures` (256 or 288 in Inception v3).
        public init(_ inChannels: Int, poolFeatures: Int) throws {
            branch1x1 = try BasicConv2d(inChannels, 64, kernelSize: 1)
            branch5x5_1 = try BasicConv2d(inChannels, 48, kernelSize: 1)
            branch5x5_2 = try BasicConv2d(48, 64, kernelSize: 5, padding: 2)
            branch3x3dbl_1 = try BasicConv2d(inChannels, 64, kernelSize: 1)
            branch3x3dbl_2 = try BasicConv2d(64, 96, kernelSize: 3, padding: 1)
            branch3x3dbl_3 = try BasicConv2d(96, 96, kernelSize: 3, padding: 1)
            branch_pool = try BasicConv2d(inChannels, poolFeatures, kernelSize: 1)
            super.init()
        }

        /// "InceptionA", torchvision's class name.
        public override var typeName: String { "InceptionA" }

        /// The seven convolutions in torchvision's order.
        public override var namedChildren: [(String, Module)] {
            [("branch1x1", branch1x1), ("branch5x5_1", branch5x5_1), ("branch5x5_2", branch5x5_2),
             ("branch3x3dbl_1", branch3x3dbl_1), ("branch3x3dbl_2", branch3x3dbl_2),
             ("branch3x3dbl_3", branch3x3dbl_3), ("branch_pool", branch_pool)]
        }

        /// The four branches on `x`, concatenated along channels (1×1, 5×5, double 3×3, pool).
        public override func forward(_ x: Tensor) throws -> Tensor {
            let b1 = try branch1x1(x)
            let b5 = try branch5x5_2(branch5x5_1(x))
            let b3 = try branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)))
            let bp = try branch_pool(avgPool3x3(x))
            return try Tensor.cat([b1, b5, b3, bp], dim: 1)
        }
    }

    /// 35x35 → 17x17 reduction: strided 3x3, double 3x3 and max-pool branches.
    public final class InceptionB: Module {
        /// `branch3x3` (3×3/2 → 384); `branch3x3dbl_1`…`_3` (1×1 → 64, 3×3 → 96, 3×3/2 → 96). The third
        /// branch, a 3×3/2 max-pool, has no parameters.
        public let branch3x3, branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3: BasicConv2d

        /// Output channels: 480 + `inChannels` (768 in Inception v3); spatial size (H − 3) / 2 + 1.
        public init(_ inChannels: Int) throws {
            branch3x3 = try BasicConv2d(inChannels, 384, kernelSize: 3, stride: 2)
            branch3x3dbl_1 = try BasicConv2d(inChannels, 64, kernelSize: 1)
            branch3x3dbl_2 = try BasicConv2d(64, 96, kernelSize: 3, padding: 1)
            branch3x3dbl_3 = try BasicConv2d(96, 96, kernelSize: 3, stride: 2)
            super.init()
        }

        /// "InceptionB", torchvision's class name.
        public override var typeName: String { "InceptionB" }

        /// The four convolutions in torchvision's order.
        public override var namedChildren: [(String, Module)] {
            [("branch3x3", branch3x3), ("branch3x3dbl_1", branch3x3dbl_1), ("branch3x3dbl_2", branch3x3dbl_2),
             ("branch3x3dbl_3", branch3x3dbl_3)]
        }

        /// The strided 3×3, double-3×3 and max-pool branches, concatenated along channels.
        public override func forward(_ x: Tensor) throws -> Tensor {
            let b3 = try branch3x3(x)
            let bd = try branch3x3dbl_3(branch3x3dbl_2(branch3x3dbl_1(x)))
            let bp = try Functional.maxPool2d(x, kernelSize: (3, 3), stride: (2, 2))
            return try Tensor.cat([b3, bd, bp], dim: 1)
        }
    }

    /// 17x17 block with factorised 7x7 convolutions (1x7 and 7x1).
    public final class InceptionC: Module {
        /// 1×1 → 192.
        public let branch1x1: BasicConv2d
        /// 1×1 → c7, 1×7 → c7, 7×1 → 192 (c7 is `channels7x7`).
        public let branch7x7_1, branch7x7_2, branch7x7_3: BasicConv2d
        /// 1×1 → c7, then 7×1, 1×7, 7×1 (all c7) and 1×7 → 192.
        public let branch7x7dbl_1, branch7x7dbl_2, branch7x7dbl_3, branch7x7dbl_4, branch7x7dbl_5: BasicConv2d
        /// 3×3 average pool, then 1×1 → 192.
        public let branch_pool: BasicConv2d

        /// - Parameter c7: width of the factorised 7×7 branches (128, 160, 160, 192 in `Mixed_6b`…`6e`).
        /// Output: 768 channels, spatial size kept.
        public init(_ inChannels: Int, channels7x7 c7: Int) throws {
            branch1x1 = try BasicConv2d(inChannels, 192, kernelSize: 1)
            branch7x7_1 = try BasicConv2d(inChannels, c7, kernelSize: 1)
            branch7x7_2 = try BasicConv2d(c7, c7, kernelSize: (1, 7), padding: (0, 3))
            branch7x7_3 = try BasicConv2d(c7, 192, kernelSize: (7, 1), padding: (3, 0))
            branch7x7dbl_1 = try BasicConv2d(inChannels, c7, kernelSize: 1)
            branch7x7dbl_2 = try BasicConv2d(c7, c7, kernelSize: (7, 1), padding: (3, 0))
            branch7x7dbl_3 = try BasicConv2d(c7, c7, kernelSize: (1, 7), padding: (0, 3))
            branch7x7dbl_4 = try BasicConv2d(c7, c7, kernelSize: (7, 1), padding: (3, 0))
            branch7x7dbl_5 = try BasicConv2d(c7, 192, kernelSize: (1, 7), padding: (0, 3))
            branch_pool = try BasicConv2d(inChannels, 192, kernelSize: 1)
            super.init()
        }

        /// "InceptionC", torchvision's class name.
        public override var typeName: String { "InceptionC" }

        /// The ten convolutions in torchvision's order.
        public override var namedChildren: [(String, Module)] {
            [("branch1x1", branch1x1), ("branch7x7_1", branch7x7_1), ("branch7x7_2", branch7x7_2),
             ("branch7x7_3", branch7x7_3), ("branch7x7dbl_1", branch7x7dbl_1), ("branch7x7dbl_2", branch7x7dbl_2),
             ("branch7x7dbl_3", branch7x7dbl_3), ("branch7x7dbl_4", branch7x7dbl_4),
             ("branch7x7dbl_5", branch7x7dbl_5), ("branch_pool", branch_pool)]
        }

        /// The 1×1, 7×7, double-7×7 and pool branches, concatenated along channels.
        public override func forward(_ x: Tensor) throws -> Tensor {
            let b1 = try branch1x1(x)
            let b7 = try branch7x7_3(branch7x7_2(branch7x7_1(x)))
            var bd = try branch7x7dbl_3(branch7x7dbl_2(branch7x7dbl_1(x)))
            bd = try branch7x7dbl_5(branch7x7dbl_4(bd))
            let bp = try branch_pool(avgPool3x3(x))
            return try Tensor.cat([b1, b7, bd, bp], dim: 1)
        }
    }

    /// 17x17 → 8x8 reduction: 3x3, 7x7-then-3x3 (strided) and max-pool branches.
    public final class InceptionD: Module {
        /// 1×1 → 192, then 3×3/2 → 320.
        public let branch3x3_1, branch3x3_2: BasicConv2d
        /// 1×1 → 192, 1×7 → 192, 7×1 → 192, then 3×3/2 → 192.
        public let branch7x7x3_1, branch7x7x3_2, branch7x7x3_3, branch7x7x3_4: BasicConv2d

        /// Output channels: 512 + `inChannels` (1280 in Inception v3); 17×17 → 8×8.
        public init(_ inChannels: Int) throws {
            branch3x3_1 = try BasicConv2d(inChannels, 192, kernelSize: 1)
            branch3x3_2 = try BasicConv2d(192, 320, kernelSize: 3, stride: 2)
            branch7x7x3_1 = try BasicConv2d(inChannels, 192, kernelSize: 1)
            branch7x7x3_2 = try BasicConv2d(192, 192, kernelSize: (1, 7), padding: (0, 3))
            branch7x7x3_3 = try BasicConv2d(192, 192, kernelSize: (7, 1), padding: (3, 0))
            branch7x7x3_4 = try BasicConv2d(192, 192, kernelSize: 3, stride: 2)
            super.init()
        }

        /// "InceptionD", torchvision's class name.
        public override var typeName: String { "InceptionD" }

        /// The six convolutions in torchvision's order.
        public override var namedChildren: [(String, Module)] {
            [("branch3x3_1", branch3x3_1), ("branch3x3_2", branch3x3_2), ("branch7x7x3_1", branch7x7x3_1),
             ("branch7x7x3_2", branch7x7x3_2), ("branch7x7x3_3", branch7x7x3_3), ("branch7x7x3_4", branch7x7x3_4)]
        }

        /// The 3×3, 7×7-then-3×3 and 3×3/2 max-pool branches, concatenated along channels.
        public override func forward(_ x: Tensor) throws -> Tensor {
            let b3 = try branch3x3_2(branch3x3_1(x))
            let b7 = try branch7x7x3_4(branch7x7x3_3(branch7x7x3_2(branch7x7x3_1(x))))
            let bp = try Functional.maxPool2d(x, kernelSize: (3, 3), stride: (2, 2))
            return try Tensor.cat([b3, b7, bp], dim: 1)
        }
    }

    /// 8x8 block with expanded (1x3 and 3x1 side by side) branches.
    public final class InceptionE: Module {
        /// 1×1 → 320.
        public let branch1x1: BasicConv2d
        /// 1×1 → 384, then 1×3 → 384 and 3×1 → 384 side by side (768 together).
        public let branch3x3_1, branch3x3_2a, branch3x3_2b: BasicConv2d
        /// 1×1 → 448, 3×3 → 384, then 1×3 → 384 and 3×1 → 384 side by side (768 together).
        public let branch3x3dbl_1, branch3x3dbl_2, branch3x3dbl_3a, branch3x3dbl_3b: BasicConv2d
        /// 3×3 average pool, then 1×1 → 192.
        public let branch_pool: BasicConv2d

        /// Output: 2048 channels (320 + 768 + 768 + 192), spatial size kept.
        public init(_ inChannels: Int) throws {
            branch1x1 = try BasicConv2d(inChannels, 320, kernelSize: 1)
            branch3x3_1 = try BasicConv2d(inChannels, 384, kernelSize: 1)
            branch3x3_2a = try BasicConv2d(384, 384, kernelSize: (1, 3), padding: (0, 1))
            branch3x3_2b = try BasicConv2d(384, 384, kernelSize: (3, 1), padding: (1, 0))
            branch3x3dbl_1 = try BasicConv2d(inChannels, 448, kernelSize: 1)
            branch3x3dbl_2 = try BasicConv2d(448, 384, kernelSize: 3, padding: 1)
            branch3x3dbl_3a = try BasicConv2d(384, 384, kernelSize: (1, 3), padding: (0, 1))
            branch3x3dbl_3b = try BasicConv2d(384, 384, kernelSize: (3, 1), padding: (1, 0))
            branch_pool = try BasicConv2d(inChannels, 192, kernelSize: 1)
            super.init()
        }

        /// "InceptionE", torchvision's class name.
        public override var typeName: String { "InceptionE" }

        /// The nine convolutions in torchvision's order.
        public override var namedChildren: [(String, Module)] {
            [("branch1x1", branch1x1), ("branch3x3_1", branch3x3_1), ("branch3x3_2a", branch3x3_2a),
             ("branch3x3_2b", branch3x3_2b), ("branch3x3dbl_1", branch3x3dbl_1), ("branch3x3dbl_2", branch3x3dbl_2),
             ("branch3x3dbl_3a", branch3x3dbl_3a), ("branch3x3dbl_3b", branch3x3dbl_3b),
             ("branch_pool", branch_pool)]
        }

        /// The 1×1, expanded 3×3, expanded double-3×3 and pool branches, concatenated along channels.
        public override func forward(_ x: Tensor) throws -> Tensor {
            let b1 = try branch1x1(x)
            let s3 = try branch3x3_1(x)
            let b3 = try Tensor.cat([branch3x3_2a(s3), branch3x3_2b(s3)], dim: 1)
            let sd = try branch3x3dbl_2(branch3x3dbl_1(x))
            let bd = try Tensor.cat([branch3x3dbl_3a(sd), branch3x3dbl_3b(sd)], dim: 1)
            let bp = try branch_pool(avgPool3x3(x))
            return try Tensor.cat([b1, b3, bd, bp], dim: 1)
        }
    }

    /// The auxiliary classifier on `Mixed_6e`: average pool 5x5/3, `conv0` (1x1 → 128), `conv1`
    /// (5x5 → 768), global average pool, `fc` (768 → classes).
    public final class InceptionAux: Module {
        /// 1×1 convolution, `inChannels` → 128, after the 5×5/3 average pool.
        public let conv0: BasicConv2d
        /// 5×5 convolution, 128 → 768 (a 17×17 input has become 5×5, so this gives 1×1).
        public let conv1: BasicConv2d
        /// Linear 768 → classes: the auxiliary logits (`replaceHead` renews it with the main head).
        public private(set) var fc: Linear

        /// - Parameters:
        ///   - inChannels: channels of `Mixed_6e`'s output (768).
        ///   - numClasses: outputs of `fc`, the main head's class count.
        public init(_ inChannels: Int, _ numClasses: Int) throws {
            conv0 = try BasicConv2d(inChannels, 128, kernelSize: 1)
            conv1 = try BasicConv2d(128, 768, kernelSize: 5)
            fc = try Linear(768, numClasses)
            super.init()
        }

        /// "InceptionAux", torchvision's class name.
        public override var typeName: String { "InceptionAux" }

        /// `conv0`, `conv1`, `fc`.
        public override var namedChildren: [(String, Module)] { [("conv0", conv0), ("conv1", conv1), ("fc", fc)] }

        /// Replaces `fc` with another `Linear`; anything else throws `NNError.cannotReplace`.
        public override func setChild(_ name: String, to module: Module) throws {
            guard name == "fc", let linear = module as? Linear else { return try super.setChild(name, to: module) }
            fc = linear
        }

        /// Auxiliary logits [N, classes] from `Mixed_6e`'s [N, 768, 17, 17] maps.
        public override func forward(_ x: Tensor) throws -> Tensor {
            var y = try Functional.avgPool2d(x, kernelSize: (5, 5), stride: (3, 3))
            y = try conv1(conv0(y))
            y = try Functional.adaptiveAvgPool2d(y, outputSize: (1, 1)).flatten(from: 1)
            return try fc(y)
        }
    }
}

/// `F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)` (padding counted in the average).
private func avgPool3x3(_ x: Tensor) throws -> Tensor {
    try Functional.avgPool2d(x, kernelSize: (3, 3), stride: (1, 1), padding: (1, 1))
}
