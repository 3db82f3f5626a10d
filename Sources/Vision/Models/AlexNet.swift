import NN
import Torch

/// AlexNet as torchvision builds it (`torchvision.models.alexnet`, the "one weird trick" variant):
/// `features.0/3/6/8/10` (convolutions with ReLU and three 3x3/2 max-pools), `avgpool` =
/// AdaptiveAvgPool2d(6) and `classifier` = Dropout, Linear(9216, 4096), ReLU, Dropout,
/// Linear(4096, 4096), ReLU, Linear(4096, classes). `headPath` is `classifier.6`.
///
/// - With a top, `embedding` is the 4096-d output of `classifier.0` … `classifier.5` and `classify`
///   applies `classifier.6`. `ModelOptions.dropout` overrides the rate of both Dropout layers (0.5),
///   as torchvision's `dropout` argument does.
/// - Without a top there is no `avgpool` and no `classifier`: `embedding` is the globally pooled
///   (`options.pooling`) 256-d output of `features`.
///
/// Layer groups: each convolution (`features.0`, `features.3`, `features.6`, `features.8`,
/// `features.10`), then `classifier` with a top.
public final class AlexNet: ImageClassifier {
    public let features: Sequential
    /// AdaptiveAvgPool2d(6); nil without a top.
    public let avgpool: AdaptiveAvgPool2d?
    /// nil without a top.
    public let classifier: Sequential?

    public init(_ options: ModelOptions = .init()) throws {
        features = Sequential(
            try Conv2d(3, 64, kernelSize: 11, stride: 4, padding: 2), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2),
            try Conv2d(64, 192, kernelSize: 5, padding: 2), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2),
            try Conv2d(192, 384, kernelSize: 3, padding: 1), ReLU(inplace: true),
            try Conv2d(384, 256, kernelSize: 3, padding: 1), ReLU(inplace: true),
            try Conv2d(256, 256, kernelSize: 3, padding: 1), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2))
        if options.includeTop {
            guard options.numClasses > 0 else {
                throw NNError.invalidArgument("numClasses must be positive, got \(options.numClasses)")
            }
            let p = options.dropout ?? 0.5
            avgpool = AdaptiveAvgPool2d(outputSize: 6)
            classifier = Sequential(
                try Dropout(p: p), try Linear(256 * 6 * 6, 4096), ReLU(inplace: true),
                try Dropout(p: p), try Linear(4096, 4096), ReLU(inplace: true),
                try Linear(4096, options.numClasses))
        } else {
            avgpool = nil
            classifier = nil
        }
        super.init(architecture: "alexnet", options: options, headPath: "classifier.6",
                   embeddingSize: options.includeTop ? 4096 : 256, featureChannels: 256)
    }

    /// torchvision's `alexnet()`.
    public static func alexnet(_ options: ModelOptions = .init()) throws -> AlexNet { try AlexNet(options) }

    // MARK: Structure

    public override var typeName: String { "AlexNet" }

    public override var namedChildren: [(String, Module)] {
        var children: [(String, Module)] = [("features", features)]
        if let avgpool { children.append(("avgpool", avgpool)) }
        if let classifier { children.append(("classifier", classifier)) }
        return children
    }

    public override var layerGroups: [String] {
        ["features.0", "features.3", "features.6", "features.8", "features.10"]
            + (classifier == nil ? [] : ["classifier"])
    }

    // MARK: Forward

    public override func forwardFeatures(_ x: Tensor) throws -> Tensor { try features(x) }

    public override var supportsHeadPooling: Bool { false }

    public override func embedding(_ x: Tensor) throws -> Tensor {
        guard let classifier, let avgpool else { return try super.embedding(x) }
        var y = try avgpool(forwardFeatures(x)).flatten(from: 1)
        for i in 0..<6 { y = try classifier[i](y) }
        return y
    }

    public override func classify(_ embedding: Tensor) throws -> Tensor {
        guard let classifier else {
            throw NNError.invalidArgument("alexnet was built without a top: there is no classifier")
        }
        return try classifier[6](embedding)
    }
}
