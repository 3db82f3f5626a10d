import Foundation
import Torch

/// MNIST-format datasets read from IDX files (`train-images-idx3-ubyte[.gz]`, …).
public struct MNISTDataset {
    /// `train` reads the `train-*` files (60,000 images), `test` the `t10k-*` files (10,000).
    public enum Split: String { case train, test }

    /// Class names of Fashion-MNIST, in label order.
    public static let fashionClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                           "Shirt", "Sneaker", "Bag", "Ankle boot"]
    /// Class names of MNIST: "0" … "9".
    public static let digitClassNames = (0...9).map(String.init)

    /// Where Debian's `dataset-fashion-mnist` package puts the files.
    public static let debianFashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

    /// Images as uint8 [N, 28, 28].
    public let images: Tensor
    /// Labels as int64 [N].
    public let labels: Tensor
    /// Names of the classes, indexed by label (as passed to `init`; Fashion-MNIST's by default).
    public let classNames: [String]

    /// Loads `split` from `directory` holding the four standard IDX files (gzipped or not).
    public init(directory: String, split: Split, classNames: [String] = MNISTDataset.fashionClassNames) throws {
        let prefix = split == .train ? "train" : "t10k"
        func locate(_ stem: String) throws -> String {
            for candidate in ["\(directory)/\(stem)", "\(directory)/\(stem).gz"]
            where FileManager.default.fileExists(atPath: candidate) {
                return candidate
            }
            throw DataError.invalidDataset("no \(stem)[.gz] in \(directory)")
        }
        let imageFile = try IDXFile(path: locate("\(prefix)-images-idx3-ubyte"))
        let labelFile = try IDXFile(path: locate("\(prefix)-labels-idx1-ubyte"))
        guard imageFile.shape.count == 3, labelFile.shape.count == 1, imageFile.shape[0] == labelFile.shape[0] else {
            throw DataError.invalidDataset("\(imageFile.path) has shape \(imageFile.shape) but \(labelFile.path) " +
                                           "has \(labelFile.shape)")
        }
        images = try imageFile.uint8Tensor()
        labels = try labelFile.uint8Tensor().to(.int64)
        self.classNames = classNames
    }

    /// Number of images.
    public var count: Int { labels.shape[0] }
}
