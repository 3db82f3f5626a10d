import NN
import Torch

/// GoogLeNet (Inception v1) as torchvision builds it (`torchvision.models.googlenet`): `conv1`–`conv3`,
/// `inception3a` … `inception5b`, optional auxiliary heads `aux1`/`aux2`, `avgpool`, `dropout` (0.2) and
/// `fc`. Every convolution is a `BasicConv2d` (conv without bias, BatchNorm with eps 0.001, ReLU).
///
/// - `transformInput` re-normalises input prepared with the ImageNet mean/std to the (x - 0.5) / 0.5
///   range the ported Google weights expect, exactly as torchvision's `transform_input`. torchvision's
///   builder turns it on when it loads the ImageNet weights, so the weights factory must set it then;
///   it defaults to false here, as in torchvision's class.
/// - `auxLogits` adds `aux1` (after `inception4a`) and `aux2` (after `inception4d`). They run only in
///   training mode (and only through `forwardWithAux`); `forward` always returns the main logits.
///   torchvision's ImageNet file contains their (untrained) weights: build with `auxLogits: true` to
///   load it strictly, then `removeAuxHeads()` as torchvision's builder does, or load non-strictly.
/// - With a top, `embedding` is the 1024-d average-pooled output of `inception5b`; `classify` applies
///   `dropout` (`ModelOptions.dropout`, default 0.2) and `fc`. Without a top there are no `dropout`,
///   `fc` or auxiliary heads, and `embedding` pools with `options.pooling`.
///
/// Layer groups: `conv1`, `conv2`, `conv3`, `inception3a` … `inception5b`, then (when present) `aux1`,
/// `aux2`, and `fc` with a top.
public final class GoogLeNet: FCTopClassifier {
    /// torchvision's `transform_input`.
    public var transformInput: Bool

    /// The pooling and layout, and `transform_input`, which changes the embedding too.
    public override var featureSettings: [String: String] {
        super.featureSettings.merging(["transform_input": "\(transformInput)"]) { $1 }
    }

    /// Stem: 7×7/2 convolution, 3 → 64 channels (224×224 → 112×112).
    public let conv1: BasicConv2d
    /// 3×3/2 max-pool with ceil mode (→ 56×56). No parameters.
    public let maxpool1 = MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true)
    /// Stem: 1×1 convolution, 64 → 64 channels.
    public let conv2: BasicConv2d
    /// Stem: 3×3 convolution, 64 → 192 channels.
    public let conv3: BasicConv2d
    /// 3×3/2 max-pool (→ 28×28).
    public let maxpool2 = MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true)
    /// 28×28 Inception block: 192 → 256 channels.
    public let inception3a: Inception
    /// 28×28 Inception block: 256 → 480 channels.
    public let inception3b: Inception
    /// 3×3/2 max-pool (→ 14×14).
    public let maxpool3 = MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true)
    /// 14×14 Inception block: 480 → 512 channels; `aux1` reads its output.
    public let inception4a: Inception
    /// 14×14 Inception block: 512 → 512 channels.
    public let inception4b: Inception
    /// 14×14 Inception block: 512 → 512 channels.
    public let inception4c: Inception
    /// 14×14 Inception block: 512 → 528 channels; `aux2` reads its output.
    public let inception4d: Inception
    /// 14×14 Inception block: 528 → 832 channels.
    public let inception4e: Inception
    /// 2×2/2 max-pool (→ 7×7).
    public let maxpool4 = MaxPool2d(kernelSize: 2, stride: 2, ceilMode: true)
    /// 7×7 Inception block: 832 → 832 channels.
    public let inception5a: Inception
    /// Last 7×7 Inception block: 832 → 1024 channels, the maps `forwardFeatures` returns.
    public let inception5b: Inception
    /// Auxiliary head on `inception4a` (512 channels); nil unless built with `auxLogits` and a top.
    public private(set) var aux1: InceptionAux?
    /// Auxiliary head on `inception4d` (528 channels); nil unless built with `auxLogits` and a top.
    public private(set) var aux2: InceptionAux?

    /// - Parameters:
    ///   - auxLogits: build the auxiliary heads (only with a top).
    ///   - transformInput: torchvision's `transform_input` (true for the ImageNet weights).
    public init(_ options: ModelOptions = .init(), auxLogits: Bool = false, transformInput: Bool = false) throws {
        self.transformInput = transformInput
        conv1 = try BasicConv2d(3, 64, kernelSize: 7, stride: 2, padding: 3)
        conv2 = try BasicConv2d(64, 64, kernelSize: 1)
        conv3 = try BasicConv2d(64, 192, kernelSize: 3, padding: 1)
        inception3a = try Inception(192, 64, 96, 128, 16, 32, 32)
        inception3b = try Inception(256, 128, 128, 192, 32, 96, 64)
        inception4a = try Inception(480, 192, 96, 208, 16, 48, 64)
        inception4b = try Inception(512, 160, 112, 224, 24, 64, 64)
        inception4c = try Inception(512, 128, 128, 256, 24, 64, 64)
        inception4d = try Inception(512, 112, 144, 288, 32, 64, 64)
        inception4e = try Inception(528, 256, 160, 320, 32, 128, 128)
        inception5a = try Inception(832, 256, 160, 320, 32, 128, 128)
        inception5b = try Inception(832, 384, 192, 384, 48, 128, 128)
        // The auxiliary heads come before `fc`, as torchvision builds them (the order parameters draw
        // their initial values in).
        try options.checkClassCount()
        if options.includeTop, auxLogits {
            aux1 = try InceptionAux(512, options.numClasses)
            aux2 = try InceptionAux(528, options.numClasses)
        }
        try super.init(architecture: "googlenet", options: options, width: 1024, dropout: options.dropout ?? 0.2)
    }

    /// torchvision's `googlenet(aux_logits:transform_input:)` without weights.
    public static func googlenet(_ options: ModelOptions = .init(), auxLogits: Bool = false,
                                 transformInput: Bool = false) throws -> GoogLeNet {
        try GoogLeNet(options, auxLogits: auxLogits, transformInput: transformInput)
    }

    /// Whether the auxiliary heads are present.
    public var auxLogits: Bool { aux1 != nil }

    /// Drops the auxiliary heads (and their keys), as torchvision's builder does after loading the
    /// ImageNet weights when `aux_logits` was not requested.
    public func removeAuxHeads() {
        aux1 = nil
        aux2 = nil
    }

    // MARK: Structure

    /// "GoogLeNet", torchvision's class name.
    public override var typeName: String { "GoogLeNet" }

    /// The stem, the Inception blocks and max-pools, `aux1`/`aux2` when present, then `avgpool`,
    /// `dropout` and `fc`: torchvision's definition order, which its `state_dict` follows.
    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [
            ("conv1", conv1), ("maxpool1", maxpool1), ("conv2", conv2), ("conv3", conv3), ("maxpool2", maxpool2),
            ("inception3a", inception3a), ("inception3b", inception3b), ("maxpool3", maxpool3),
            ("inception4a", inception4a), ("inception4b", inception4b), ("inception4c", inception4c),
            ("inception4d", inception4d), ("inception4e", inception4e), ("maxpool4", maxpool4),
            ("inception5a", inception5a), ("inception5b", inception5b),
        ]
        if let aux1 { children.append(("aux1", aux1)) }
        if let aux2 { children.append(("aux2", aux2)) }
        return children + topChildren
    }

    /// Replaces `aux1`/`aux2` (with another `InceptionAux`, only while present) or `fc`; other names
    /// throw `NNError.cannotReplace`.
    public override func setChild(_ name: String, to module: Module) throws {
        switch (name, module) {
        case ("aux1", let aux as InceptionAux) where aux1 != nil: aux1 = aux
        case ("aux2", let aux as InceptionAux) where aux2 != nil: aux2 = aux
        default: try super.setChild(name, to: module)
        }
    }

    /// `conv1`, `conv2`, `conv3`, the nine Inception blocks, `aux1` and `aux2` when present, then `fc`
    /// with a top.
    public override var layerGroups: [String] {
        var groups = ["conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                      "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"]
        if aux1 != nil { groups.append("aux1") }
        if aux2 != nil { groups.append("aux2") }
        return groups + topGroups
    }

    /// Replaces `fc` and, when present, the auxiliary heads' final Linear layers (`aux1.fc2`,
    /// `aux2.fc2`) with fresh ones for `numClasses`.
    public override func replaceHead(numClasses: Int) throws {
        try super.replaceHead(numClasses: numClasses)
        for path in ["aux1.fc2", "aux2.fc2"] { try replaceAuxLinear(at: path, numClasses: numClasses) }
    }

    // MARK: Forward

    /// The trunk up to `inception5b`, with the auxiliary logits when asked for and the heads train.
    private func trunk(_ x: Tensor, computeAux: Bool) throws -> (Tensor, aux1: Tensor?, aux2: Tensor?) {
        var y = try transformInput ? InceptionInputTransform.apply(x) : x
        y = try maxpool2(conv3(conv2(maxpool1(conv1(y)))))
        y = try maxpool3(inception3b(inception3a(y)))
        y = try inception4a(y)
        var a1: Tensor?
        if computeAux, let aux1, aux1.usesTrainingBehaviour { a1 = try aux1(y) }
        y = try inception4d(inception4c(inception4b(y)))
        var a2: Tensor?
        if computeAux, let aux2, aux2.usesTrainingBehaviour { a2 = try aux2(y) }
        y = try maxpool4(inception4e(y))
        y = try inception5b(inception5a(y))
        return (y, a1, a2)
    }

    /// `inception5b`: `forwardFeatures` ends there.
    public override var featureLayer: String { "inception5b" }

    /// `inception5b`'s maps, [N, 1024, 7, 7] for 224×224 input (after `transformInput` when it is on);
    /// the auxiliary heads are not run.
    public override func forwardFeatures(_ x: Tensor) throws -> Tensor {
        try trunk(x, computeAux: false).0
    }

    /// The main logits and, in training mode with auxiliary heads, their logits (nil otherwise), as
    /// torchvision's `GoogLeNetOutputs`. Without a top: `forward(x)` and nils.
    public func forwardWithAux(_ x: Tensor) throws -> (logits: Tensor, aux1: Tensor?, aux2: Tensor?) {
        guard options.includeTop else { return (try forward(x), nil, nil) }
        let (y, a1, a2) = try trunk(x, computeAux: true)
        return (try classify(pooled(y)), a1, a2)
    }

    // MARK: - Blocks

    /// torchvision's GoogLeNet `Inception` block: four branches concatenated on channels (the "5x5"
    /// branch uses a 3x3 convolution, as torchvision's port does).
    public final class Inception: Module {
        /// 1×1 convolution → `ch1x1`.
        public let branch1: BasicConv2d
        /// 1×1 → `ch3x3red`, then 3×3 → `ch3x3`.
        public let branch2: Sequential
        /// 1×1 → `ch5x5red`, then 3×3 (a "5×5" in the paper) → `ch5x5`.
        public let branch3: Sequential
        /// 3×3/1 max-pool, then 1×1 → `poolProj`.
        public let branch4: Sequential

        /// The widths of the paper's table 1, in torchvision's argument order. Output channels:
        /// `ch1x1 + ch3x3 + ch5x5 + poolProj`; spatial size kept.
        public init(_ inChannels: Int, _ ch1x1: Int, _ ch3x3red: Int, _ ch3x3: Int, _ ch5x5red: Int, _ ch5x5: Int,
                    _ poolProj: Int) throws {
            branch1 = try BasicConv2d(inChannels, ch1x1, kernelSize: 1)
            branch2 = Sequential(try BasicConv2d(inChannels, ch3x3red, kernelSize: 1),
                                 try BasicConv2d(ch3x3red, ch3x3, kernelSize: 3, padding: 1))
            branch3 = Sequential(try BasicConv2d(inChannels, ch5x5red, kernelSize: 1),
                                 try BasicConv2d(ch5x5red, ch5x5, kernelSize: 3, padding: 1))
            branch4 = Sequential(MaxPool2d(kernelSize: 3, stride: 1, padding: 1, ceilMode: true),
                                 try BasicConv2d(inChannels, poolProj, kernelSize: 1))
            super.init()
        }

        /// "Inception", torchvision's class name.
        public override var typeName: String { "Inception" }

        /// `branch1` … `branch4`.
        public override var namedChildren: [(String, Module)] {
            [("branch1", branch1), ("branch2", branch2), ("branch3", branch3), ("branch4", branch4)]
        }

        /// The four branches on `x`, concatenated along channels.
        public override func forward(_ x: Tensor) throws -> Tensor {
            try Tensor.cat([branch1(x), branch2(x), branch3(x), branch4(x)], dim: 1)
        }
    }

    /// torchvision's GoogLeNet `InceptionAux`: adaptive average pool to 4x4, 1x1 BasicConv2d to 128,
    /// `fc1` (2048 → 1024) with ReLU, dropout 0.7, `fc2` (1024 → classes).
    public final class InceptionAux: Module {
        /// 1×1 convolution, `inChannels` → 128, after the adaptive 4×4 average pool.
        public let conv: BasicConv2d
        /// Linear 2048 (128 × 4 × 4) → 1024, followed by ReLU.
        public private(set) var fc1: Linear
        /// Linear 1024 → classes: the auxiliary logits (`replaceHead` renews it with the main head).
        public private(set) var fc2: Linear
        /// Dropout between `fc1` and `fc2` (p = 0.7 by default).
        public let dropout: Dropout

        /// - Parameters:
        ///   - inChannels: channels of the block it reads (512 for `aux1`, 528 for `aux2`).
        ///   - numClasses: outputs of `fc2`, the main head's class count.
        ///   - dropout: rate of `dropout`.
        public init(_ inChannels: Int, _ numClasses: Int, dropout: Double = 0.7) throws {
            conv = try BasicConv2d(inChannels, 128, kernelSize: 1)
            fc1 = try Linear(2048, 1024)
            fc2 = try Linear(1024, numClasses)
            self.dropout = try Dropout(p: dropout)
            super.init()
        }

        /// "InceptionAux", torchvision's class name.
        public override var typeName: String { "InceptionAux" }

        /// `conv`, `fc1`, `fc2`, `dropout`.
        public override var namedChildren: [(String, Module)] {
            [("conv", conv), ("fc1", fc1), ("fc2", fc2), ("dropout", dropout)]
        }

        /// Replaces `fc1` or `fc2` with another `Linear`; anything else throws `NNError.cannotReplace`.
        public override func setChild(_ name: String, to module: Module) throws {
            switch (name, module) {
            case ("fc1", let linear as Linear): fc1 = linear
            case ("fc2", let linear as Linear): fc2 = linear
            default: try super.setChild(name, to: module)
            }
        }

        /// Auxiliary logits [N, classes] from the block's [N, C, 14, 14] maps.
        public override func forward(_ x: Tensor) throws -> Tensor {
            var y = try conv(Functional.adaptiveAvgPool2d(x, outputSize: (4, 4))).flatten(from: 1)
            y = try dropout(fc1(y).relu())
            return try fc2(y)
        }
    }
}

/// torchvision's `BasicConv2d` (GoogLeNet, Inception v3): a convolution without bias (`conv`), BatchNorm
/// with eps 0.001 (`bn`) and ReLU.
public final class BasicConv2d: Module {
    /// The convolution, without bias.
    public let conv: Conv2d
    /// BatchNorm with eps 0.001 (the TensorFlow value the ported weights were trained with).
    public let bn: BatchNorm2d

    /// A convolution with a rectangular kernel (Inception v3's 1×7, 7×1, 1×3, 3×1). Throws when a
    /// size is not positive.
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0)) throws {
        conv = try Conv2d(inChannels, outChannels, kernelSize: kernelSize, stride: stride,
                          padding: .explicit(padding.0, padding.1), bias: false)
        bn = try BatchNorm2d(outChannels, eps: 0.001)
        super.init()
    }

    /// A convolution with a square kernel, stride and padding.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Int = 0) throws {
        try self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                      padding: (padding, padding))
    }

    /// "BasicConv2d", torchvision's class name.
    public override var typeName: String { "BasicConv2d" }

    /// `conv`, `bn`.
    public override var namedChildren: [(String, Module)] { [("conv", conv), ("bn", bn)] }

    /// `relu(bn(conv(x)))`, with the BatchNorm folded into the convolution when nothing trains them.
    public override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.relu(conv.forward(x, thenBatchNorm: bn), inplace: true)
    }
}

/// torchvision's `_transform_input` for GoogLeNet and Inception v3: maps input normalised with the
/// ImageNet mean/std to the `(x - 0.5) / 0.5` normalisation of the ported Google weights, channel by
/// channel, with torchvision's exact arithmetic.
public enum InceptionInputTransform {
    /// `x` [N, 3, H, W] re-normalised per channel: `x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5`. Throws
    /// `NNError.invalidArgument` for any other shape.
    public static func apply(_ x: Tensor) throws -> Tensor {
        guard x.rank == 4, x.shape[1] == 3 else {
            throw NNError.invalidArgument("transform_input expects [N, 3, H, W] input, got \(x.shape)")
        }
        let ch0 = try x.slice(dim: 1, start: 0, end: 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        let ch1 = try x.slice(dim: 1, start: 1, end: 2) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        let ch2 = try x.slice(dim: 1, start: 2, end: 3) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        return try Tensor.cat([ch0, ch1, ch2], dim: 1)
    }
}
