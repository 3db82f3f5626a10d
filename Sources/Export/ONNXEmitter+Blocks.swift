import NN
import Torch
import Vision

// One emitter per block type of the zoo, each mirroring the block's inference `forward`.

extension ONNXEmitter {
    /// The nodes of a zoo block, or nil when `module` is no block type (a plain layer or Sequential).
    /// `Conv2dNormActivation` is a `Sequential` and goes through `emitSequential`.
    mutating func emitBlock(_ module: Module, _ x: ONNXValue, path: String) throws -> ONNXValue? {
        switch module {
        case let block as InvertedResidual: return try emitInvertedResidual(block, x, path: path)
        case let block as MBConv: return try emitMBConv(block, x, path: path)
        case let block as SqueezeExcitation: return try emitSqueezeExcitation(block, x, path: path)
        case is StochasticDepth: return x
        case let block as EfficientNetLiteBlock: return try emitLiteBlock(block, x, path: path)
        case let block as BasicConv2d: return try emitBasicConv(block, x, path: path)
        case let block as ResNet.BasicBlock: return try emitResNetBasicBlock(block, x, path: path)
        case let block as ResNet.Bottleneck: return try emitBottleneck(block, x, path: path)
        case let block as GoogLeNet.Inception: return try emitGoogLeNetInception(block, x, path: path)
        case let block as InceptionV3.InceptionA: return try emitInceptionA(block, x, path: path)
        case let block as InceptionV3.InceptionB: return try emitInceptionB(block, x, path: path)
        case let block as InceptionV3.InceptionC: return try emitInceptionC(block, x, path: path)
        case let block as InceptionV3.InceptionD: return try emitInceptionD(block, x, path: path)
        case let block as InceptionV3.InceptionE: return try emitInceptionE(block, x, path: path)
        default: return nil
        }
    }

    // MARK: Mobile blocks

    /// `conv(x)`, plus `x` when the block is residual.
    mutating func emitInvertedResidual(_ block: InvertedResidual, _ x: ONNXValue, path: String) throws -> ONNXValue {
        let y = try emitSequential(block.conv, x, path: join(path, "conv"))
        return block.useResidual ? try add(x, y, path: path + ".add") : y
    }

    /// `block(x)`, plus `x` when residual (stochastic depth is the identity in inference).
    mutating func emitMBConv(_ block: MBConv, _ x: ONNXValue, path: String) throws -> ONNXValue {
        let y = try emitSequential(block.block, x, path: join(path, "block"))
        return block.useResidual ? try add(y, x, path: path + ".add") : y
    }

    /// `x · scale_activation(fc2(activation(fc1(avgpool(x)))))`.
    mutating func emitSqueezeExcitation(_ block: SqueezeExcitation, _ x: ONNXValue, path: String) throws -> ONNXValue {
        var s = try emit(block.avgpool, x, path: join(path, "avgpool"))
        s = try emitConv(block.fc1, batchNorm: nil, s, path: join(path, "fc1"))
        s = try emit(block.activation, s, path: join(path, "activation"))
        s = try emitConv(block.fc2, batchNorm: nil, s, path: join(path, "fc2"))
        s = try emit(block.scaleActivation, s, path: join(path, "scale_activation"))
        // [N, C, 1, 1] · [N, C, H, W] broadcasts over the map.
        return ONNXValue(name: graph.node("Mul", [s.name, x.name], name: path + ".scale"), shape: x.shape)
    }

    /// Expansion, depthwise convolution and projection (each folded with its BatchNorm), ReLU6, plus
    /// `x` when residual.
    mutating func emitLiteBlock(_ block: EfficientNetLiteBlock, _ x: ONNXValue, path: String) throws -> ONNXValue {
        var y = x
        if let expandConv = block.expandConv, let bn0 = block.bn0 {
            y = try emitConv(expandConv, batchNorm: bn0, y, path: join(path, "_expand_conv"))
            y = try emit(block.activation, y, path: join(path, "_swish"))
        }
        y = try emitConv(block.depthwiseConv, batchNorm: block.bn1, y, path: join(path, "_depthwise_conv"))
        y = try emit(block.activation, y, path: join(path, "_swish"))
        y = try emitConv(block.projectConv, batchNorm: block.bn2, y, path: join(path, "_project_conv"))
        return block.useResidual ? try add(y, x, path: path + ".add") : y
    }

    // MARK: ResNet

    mutating func emitResNetBasicBlock(_ block: ResNet.BasicBlock, _ x: ONNXValue, path: String) throws -> ONNXValue {
        var y = try emitConv(block.conv1, batchNorm: block.bn1, x, path: join(path, "conv1"))
        y = relu(y, path: join(path, "relu"))
        y = try emitConv(block.conv2, batchNorm: block.bn2, y, path: join(path, "conv2"))
        return try residual(block, y, x, path: path)
    }

    mutating func emitBottleneck(_ block: ResNet.Bottleneck, _ x: ONNXValue, path: String) throws -> ONNXValue {
        var y = try emitConv(block.conv1, batchNorm: block.bn1, x, path: join(path, "conv1"))
        y = relu(y, path: join(path, "relu"))
        y = try emitConv(block.conv2, batchNorm: block.bn2, y, path: join(path, "conv2"))
        y = relu(y, path: join(path, "relu"))
        y = try emitConv(block.conv3, batchNorm: block.bn3, y, path: join(path, "conv3"))
        return try residual(block, y, x, path: path)
    }

    /// `relu(out + downsample(x))`, the end of both ResNet blocks.
    mutating func residual(_ block: ResNet.ResidualBlock, _ out: ONNXValue, _ x: ONNXValue, path: String) throws -> ONNXValue {
        let shortcut = try block.downsample.map { try emitSequential($0, x, path: join(path, "downsample")) } ?? x
        return relu(try add(out, shortcut, path: path + ".add"), path: join(path, "relu"))
    }

    // MARK: GoogLeNet and Inception v3

    /// `relu(bn(conv(x)))` with the BatchNorm folded.
    mutating func emitBasicConv(_ block: BasicConv2d, _ x: ONNXValue, path: String) throws -> ONNXValue {
        relu(try emitConv(block.conv, batchNorm: block.bn, x, path: join(path, "conv")), path: path + ".relu")
    }

    /// Several modules applied one after the other, each under its child name.
    mutating func chain(_ steps: [(String, Module)], _ x: ONNXValue, path: String) throws -> ONNXValue {
        var y = x
        for (name, module) in steps { y = try emit(module, y, path: join(path, name)) }
        return y
    }

    mutating func emitGoogLeNetInception(_ block: GoogLeNet.Inception, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try concatChannels([
            emit(block.branch1, x, path: join(path, "branch1")),
            emit(block.branch2, x, path: join(path, "branch2")),
            emit(block.branch3, x, path: join(path, "branch3")),
            emit(block.branch4, x, path: join(path, "branch4")),
        ], path: path + ".cat")
    }

    /// `F.avg_pool2d(x, 3, stride=1, padding=1)` (padding counted), Inception v3's pool branches.
    mutating func avgPool3x3(_ x: ONNXValue, path: String) throws -> ONNXValue {
        try pool2d("AveragePool", x, kernel: (3, 3), stride: (1, 1), padding: (1, 1), dilation: (1, 1), ceilMode: false,
                   countIncludePad: true, path: path)
    }

    /// `F.max_pool2d(x, 3, stride=2)`, the reduction blocks' pool branch.
    mutating func maxPool3x3s2(_ x: ONNXValue, path: String) throws -> ONNXValue {
        try pool2d("MaxPool", x, kernel: (3, 3), stride: (2, 2), padding: (0, 0), dilation: (1, 1), ceilMode: false,
                   countIncludePad: nil, path: path)
    }

    mutating func emitInceptionA(_ b: InceptionV3.InceptionA, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try concatChannels([
            emit(b.branch1x1, x, path: join(path, "branch1x1")),
            chain([("branch5x5_1", b.branch5x5_1), ("branch5x5_2", b.branch5x5_2)], x, path: path),
            chain([("branch3x3dbl_1", b.branch3x3dbl_1), ("branch3x3dbl_2", b.branch3x3dbl_2),
                   ("branch3x3dbl_3", b.branch3x3dbl_3)], x, path: path),
            emit(b.branch_pool, avgPool3x3(x, path: path + ".avg_pool"), path: join(path, "branch_pool")),
        ], path: path + ".cat")
    }

    mutating func emitInceptionB(_ b: InceptionV3.InceptionB, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try concatChannels([
            emit(b.branch3x3, x, path: join(path, "branch3x3")),
            chain([("branch3x3dbl_1", b.branch3x3dbl_1), ("branch3x3dbl_2", b.branch3x3dbl_2),
                   ("branch3x3dbl_3", b.branch3x3dbl_3)], x, path: path),
            maxPool3x3s2(x, path: path + ".max_pool"),
        ], path: path + ".cat")
    }

    mutating func emitInceptionC(_ b: InceptionV3.InceptionC, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try concatChannels([
            emit(b.branch1x1, x, path: join(path, "branch1x1")),
            chain([("branch7x7_1", b.branch7x7_1), ("branch7x7_2", b.branch7x7_2), ("branch7x7_3", b.branch7x7_3)],
                  x, path: path),
            chain([("branch7x7dbl_1", b.branch7x7dbl_1), ("branch7x7dbl_2", b.branch7x7dbl_2),
                   ("branch7x7dbl_3", b.branch7x7dbl_3), ("branch7x7dbl_4", b.branch7x7dbl_4),
                   ("branch7x7dbl_5", b.branch7x7dbl_5)], x, path: path),
            emit(b.branch_pool, avgPool3x3(x, path: path + ".avg_pool"), path: join(path, "branch_pool")),
        ], path: path + ".cat")
    }

    mutating func emitInceptionD(_ b: InceptionV3.InceptionD, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try concatChannels([
            chain([("branch3x3_1", b.branch3x3_1), ("branch3x3_2", b.branch3x3_2)], x, path: path),
            chain([("branch7x7x3_1", b.branch7x7x3_1), ("branch7x7x3_2", b.branch7x7x3_2),
                   ("branch7x7x3_3", b.branch7x7x3_3), ("branch7x7x3_4", b.branch7x7x3_4)], x, path: path),
            maxPool3x3s2(x, path: path + ".max_pool"),
        ], path: path + ".cat")
    }

    mutating func emitInceptionE(_ b: InceptionV3.InceptionE, _ x: ONNXValue, path: String) throws -> ONNXValue {
        let s3 = try emit(b.branch3x3_1, x, path: join(path, "branch3x3_1"))
        let sd = try chain([("branch3x3dbl_1", b.branch3x3dbl_1), ("branch3x3dbl_2", b.branch3x3dbl_2)], x, path: path)
        return try concatChannels([
            emit(b.branch1x1, x, path: join(path, "branch1x1")),
            concatChannels([emit(b.branch3x3_2a, s3, path: join(path, "branch3x3_2a")),
                            emit(b.branch3x3_2b, s3, path: join(path, "branch3x3_2b"))], path: path + ".cat3x3"),
            concatChannels([emit(b.branch3x3dbl_3a, sd, path: join(path, "branch3x3dbl_3a")),
                            emit(b.branch3x3dbl_3b, sd, path: join(path, "branch3x3dbl_3b"))], path: path + ".cat3x3dbl"),
            emit(b.branch_pool, avgPool3x3(x, path: path + ".avg_pool"), path: join(path, "branch_pool")),
        ], path: path + ".cat")
    }
}
