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
public final class AlexNet: FeaturesClassifier {
    /// `avgpool` is AdaptiveAvgPool2d(6); it and `classifier` are nil without a top.
    public init(_ options: ModelOptions = .init()) throws {
        let features = Sequential(
            try Conv2d(3, 64, kernelSize: 11, stride: 4, padding: 2), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2),
            try Conv2d(64, 192, kernelSize: 5, padding: 2), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2),
            try Conv2d(192, 384, kernelSize: 3, padding: 1), ReLU(inplace: true),
            try Conv2d(384, 256, kernelSize: 3, padding: 1), ReLU(inplace: true),
            try Conv2d(256, 256, kernelSize: 3, padding: 1), ReLU(inplace: true),
            MaxPool2d(kernelSize: 3, stride: 2))
        try options.checkClassCount()
        var classifier: Sequential?
        if options.includeTop {
            let p = options.dropout ?? 0.5
            classifier = Sequential(
                try Dropout(p: p), try Linear(256 * 6 * 6, 4096), ReLU(inplace: true),
                try Dropout(p: p), try Linear(4096, 4096), ReLU(inplace: true),
                try Linear(4096, options.numClasses))
        }
        super.init(architecture: "alexnet", options: options, top: .dense, features: features,
                   avgpool: options.includeTop ? AdaptiveAvgPool2d(outputSize: 6) : nil, classifier: classifier,
                   headIndex: 6, embeddingSize: options.includeTop ? 4096 : 256, featureChannels: 256)
    }

    /// torchvision's `alexnet()`.
    public static func alexnet(_ options: ModelOptions = .init()) throws -> AlexNet { try AlexNet(options) }

    // MARK: Structure

    /// "AlexNet", torchvision's class name.
    public override var typeName: String { "AlexNet" }

    /// Each convolution.
    override var featureGroups: [String] { ["features.0", "features.3", "features.6", "features.8", "features.10"] }
}
