import NN
import Torch
import Vision

// One emitter per architecture of the zoo (its trunk, as its `forwardFeatures` runs it) and one per
// kind of top (as its `embedding` and `classify` run it), including every head `configureHead` builds.

extension ONNXEmitter {
    /// The logits of `model` for the [3, H, W] images `x` (per sample). Throws
    /// `ExportError.noTop` for a model built without a classifier.
    mutating func emitLogits(_ model: ImageClassifier, _ x: ONNXValue) throws -> ONNXValue {
        guard model.options.includeTop else { throw ExportError.noTop(architecture: model.architecture) }
        switch model {
        case let resnet as ResNet:
            return try emitFCTop(resnet, emitResNetTrunk(resnet, x))
        case let googlenet as GoogLeNet:
            return try emitFCTop(googlenet, emitGoogLeNetTrunk(googlenet, x))
        case let inception as InceptionV3:
            return try emitFCTop(inception, emitInceptionV3Trunk(inception, x))
        case let lite as EfficientNetLite:
            return try emitLiteTop(lite, emitLiteTrunk(lite, x))
        case let features as FeaturesClassifier:
            // MobileNetV2, EfficientNet-B*, VGG, AlexNet: the trunk is `features`.
            return try emitFeaturesTop(features, emitSequential(features.features, x, path: "features"))
        default:
            throw ExportError.unsupportedLayer(type: model.typeName, path: "")
        }
    }

    // MARK: Trunks

    mutating func emitResNetTrunk(_ m: ResNet, _ x: ONNXValue) throws -> ONNXValue {
        var y = try emitConv(m.conv1, batchNorm: m.bn1, x, path: "conv1")
        y = relu(y, path: "relu")
        y = try emit(m.maxpool, y, path: "maxpool")
        return try chain([("layer1", m.layer1), ("layer2", m.layer2), ("layer3", m.layer3), ("layer4", m.layer4)],
                         y, path: "")
    }

    /// torchvision's `_transform_input` (GoogLeNet and Inception v3 with Google's weights): per
    /// channel `x · std/0.5 + (mean − 0.5)/0.5` with the ImageNet statistics, as
    /// `InceptionInputTransform` computes it.
    mutating func emitInceptionInputTransform(_ x: ONNXValue) throws -> ONNXValue {
        let mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225]
        let scale = try graph.constant(std.map { Float($0 / 0.5) }, shape: [3, 1, 1], name: "transform_input.scale")
        let shift = try graph.constant(mean.map { Float(($0 - 0.5) / 0.5) }, shape: [3, 1, 1],
                                       name: "transform_input.shift")
        let scaled = graph.node("Mul", [x.name, scale], name: "transform_input.mul")
        return ONNXValue(name: graph.node("Add", [scaled, shift], name: "transform_input"), shape: x.shape)
    }

    mutating func emitGoogLeNetTrunk(_ m: GoogLeNet, _ x: ONNXValue) throws -> ONNXValue {
        let input = m.transformInput ? try emitInceptionInputTransform(x) : x
        // The auxiliary heads run only while training: not part of the inference graph.
        return try chain([
            ("conv1", m.conv1), ("maxpool1", m.maxpool1), ("conv2", m.conv2), ("conv3", m.conv3), ("maxpool2", m.maxpool2),
            ("inception3a", m.inception3a), ("inception3b", m.inception3b), ("maxpool3", m.maxpool3),
            ("inception4a", m.inception4a), ("inception4b", m.inception4b), ("inception4c", m.inception4c),
            ("inception4d", m.inception4d), ("inception4e", m.inception4e), ("maxpool4", m.maxpool4),
            ("inception5a", m.inception5a), ("inception5b", m.inception5b),
        ], input, path: "")
    }

    mutating func emitInceptionV3Trunk(_ m: InceptionV3, _ x: ONNXValue) throws -> ONNXValue {
        let input = m.transformInput ? try emitInceptionInputTransform(x) : x
        // `AuxLogits` runs only while training: not part of the inference graph.
        return try chain([
            ("Conv2d_1a_3x3", m.Conv2d_1a_3x3), ("Conv2d_2a_3x3", m.Conv2d_2a_3x3), ("Conv2d_2b_3x3", m.Conv2d_2b_3x3),
            ("maxpool1", m.maxpool1), ("Conv2d_3b_1x1", m.Conv2d_3b_1x1), ("Conv2d_4a_3x3", m.Conv2d_4a_3x3),
            ("maxpool2", m.maxpool2), ("Mixed_5b", m.Mixed_5b), ("Mixed_5c", m.Mixed_5c), ("Mixed_5d", m.Mixed_5d),
            ("Mixed_6a", m.Mixed_6a), ("Mixed_6b", m.Mixed_6b), ("Mixed_6c", m.Mixed_6c), ("Mixed_6d", m.Mixed_6d),
            ("Mixed_6e", m.Mixed_6e), ("Mixed_7a", m.Mixed_7a), ("Mixed_7b", m.Mixed_7b), ("Mixed_7c", m.Mixed_7c),
        ], input, path: "")
    }

    mutating func emitLiteTrunk(_ m: EfficientNetLite, _ x: ONNXValue) throws -> ONNXValue {
        var y = try emitConv(m.convStem, batchNorm: m.bn0, x, path: "_conv_stem")
        y = try emit(m.activation, y, path: "_swish")
        y = try emitSequential(m.blocks, y, path: "_blocks")
        y = try emitConv(m.convHead, batchNorm: m.bn1, y, path: "_conv_head")
        return try emit(m.activation, y, path: "_swish")
    }

    // MARK: Tops

    /// The head's global pooling of [C, H, W] maps to a [C] embedding: average (torchvision's
    /// `avgpool`) or max (`--head-pooling max`).
    mutating func emitGlobalPool(_ maps: ONNXValue, _ pooling: GlobalPooling, path: String) throws -> ONNXValue {
        let pooled = pooling == .max ? try adaptiveMaxPool(maps, outputSize: (1, 1), path: path)
                                     : try adaptiveAvgPool(maps, outputSize: (1, 1), path: path)
        return flattenAll(pooled, path: path + ".flatten")
    }

    /// ResNet, GoogLeNet, Inception v3: pooling, `dropout` (dropped), then `fc` — torchvision's Linear
    /// or a `configureHead` Sequential.
    mutating func emitFCTop(_ m: FCTopClassifier, _ maps: ONNXValue) throws -> ONNXValue {
        guard let fc = m.fc else { throw ExportError.noTop(architecture: m.architecture) }
        let embedding = try emitGlobalPool(maps, m.headPooling, path: "avgpool")
        return try emit(fc, embedding, path: "fc")
    }

    /// MobileNetV2 and EfficientNet (`.pooled`): the global pool, then the whole `classifier`.
    /// VGG and AlexNet (`.dense`): `avgpool` to 7×7 or 6×6, flatten, then the whole `classifier`.
    mutating func emitFeaturesTop(_ m: FeaturesClassifier, _ maps: ONNXValue) throws -> ONNXValue {
        guard let classifier = m.classifier else { throw ExportError.noTop(architecture: m.architecture) }
        let embedding: ONNXValue
        switch m.top {
        case .pooled:
            embedding = try emitGlobalPool(maps, m.headPooling, path: "avgpool")
        case .dense:
            guard let avgpool = m.avgpool else { throw ExportError.noTop(architecture: m.architecture) }
            embedding = flattenAll(try emit(avgpool, maps, path: "avgpool"), path: "flatten")
        }
        return try emitSequential(classifier, embedding, path: "classifier")
    }

    /// EfficientNet-Lite: the global pool, `_dropout` (dropped), `_fc`.
    mutating func emitLiteTop(_ m: EfficientNetLite, _ maps: ONNXValue) throws -> ONNXValue {
        guard let fc = m.fc else { throw ExportError.noTop(architecture: m.architecture) }
        let embedding = try emitGlobalPool(maps, m.headPooling, path: "_avg_pooling")
        return try emit(fc, embedding, path: "_fc")
    }
}
