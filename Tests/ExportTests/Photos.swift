import Data
import Foundation
import ImagePreprocessing
import Torch

/// The photos through `preprocessing`'s evaluation transform, stacked: [N, 3, crop, crop].
func preprocessedPhotos(_ files: [String], _ preprocessing: Preprocessing) throws -> Tensor {
    try Tensor.stack(files.map { try preprocessing.evaluationTransform(Image(contentsOfFile: $0).rgb()) })
}
