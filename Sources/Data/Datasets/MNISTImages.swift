import Foundation
import Torch

/// MNIST-format IDX datasets (MNIST, Fashion-MNIST) as `ImageDataset`s of 28×28 gray images held
/// in memory (the transforms replicate gray to RGB, as PIL's `convert("RGB")` does).
extension MNISTDataset {
    /// Which MNIST-format dataset the IDX files hold (the raw value is the CLI's name).
    public enum Variant: String, Sendable, CaseIterable {
        /// Handwritten digits 0–9.
        case mnist
        /// Zalando's Fashion-MNIST: 10 clothing classes.
        case fashionMNIST = "fashion-mnist"

        /// "0" … "9" for MNIST; "T-shirt/top" … "Ankle boot" for Fashion-MNIST.
        public var classNames: [String] {
            self == .mnist ? MNISTDataset.digitClassNames : MNISTDataset.fashionClassNames
        }
    }

    /// Loads `split` of `variant` from `directory` (the four IDX files, gzipped or not).
    public init(directory: String, split: Split, variant: Variant) throws {
        try self.init(directory: directory, split: split, classNames: variant.classNames)
    }

    /// The images and labels as an `ImageDataset` (one shared pixel buffer, no per-image copies).
    public func imageDataset() throws -> LabeledDataset {
        let shape = images.shape
        guard shape.count == 3 else {
            throw DataError.invalidDataset("MNIST images have shape \(shape), expected [N, height, width]")
        }
        let store = try ImageStore(bytes: try images.toArray(UInt8.self), count: shape[0], width: shape[2],
                                   height: shape[1], channels: 1)
        let labelValues = try labels.toArray(Int64.self)
        var samples: [LabeledSample] = []
        samples.reserveCapacity(labelValues.count)
        for (i, label) in labelValues.enumerated() {
            guard label >= 0 && Int(label) < classNames.count else {
                throw DataError.invalidDataset("MNIST label \(label) of image \(i) is out of range for " +
                                               "\(classNames.count) classes")
            }
            samples.append(LabeledSample(source: .memory(store, index: i), label: Int(label)))
        }
        return LabeledDataset(samples: samples, classNames: classNames)
    }
}
