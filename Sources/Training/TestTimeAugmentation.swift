import Data
import Foundation
import Torch

/// Test-time augmentation (fastai's `Learner.tta`, without its random views): the class
/// probabilities averaged over several views of each image.
///
/// * `flip`: the evaluation image and its horizontal mirror.
/// * `crops`: those two and the five crops of torchvision's `FiveCrop` after the evaluation resize
///   (four corners and the centre; `FiveCropTransform`), 7 views.
///
/// Softmax probabilities are averaged (sigmoid ones for a one-output binary model).
public enum TestTimeAugmentation: String, Codable, CaseIterable, Sendable {
    /// One view: the evaluation transform.
    case off
    /// The image and its mirror.
    case flip
    /// The image, its mirror and five crops.
    case crops

    /// The per-image transform the loader must use: the evaluation transform, or five crops.
    public func transform(_ p: Preprocessing) -> any SampleTransform {
        self == .crops ? FiveCropTransform(p) : EvaluationTransform(p)
    }

    /// The views of a batch made by `transform`: [N, 3, H, W] each.
    public func views(_ batch: Tensor) throws -> [Tensor] {
        let channels = self == .crops ? 15 : 3
        guard batch.rank == 4, batch.shape[1] == channels else {
            throw PreprocessingError("test-time augmentation \(rawValue) takes a batch of shape [N, \(channels), H, W] "
                + "(\(self == .crops ? "five crops of 3 channels each, as its transform makes" : "the evaluation transform's")), "
                + "got \(batch.shape)")
        }
        switch self {
        case .off: return [batch]
        case .flip: return [batch, try batch.flip([3])]
        case .crops:
            let n = batch.shape[0], h = batch.shape[2], w = batch.shape[3]
            let crops = try batch.reshape([n, 5, 3, h, w])
            let centre = try crops.select(dim: 1, index: 4)
            return try [centre, centre.flip([3])] + (0..<5).map { try crops.select(dim: 1, index: $0) }
        }
    }

    /// The mean over the views of softmax(`forward(view)`) [N, C], or of sigmoid for a one-output
    /// model [N, 1].
    public func probabilities(_ batch: Tensor, forward: (Tensor) throws -> Tensor) throws -> Tensor {
        let views = try self.views(batch)
        var sum: Tensor?
        for view in views {
            let z = try forward(view.contiguous())
            let logits = z.dtype == .float32 ? z : try z.to(.float32)
            let p = logits.shape.count == 2 && logits.shape[1] == 1 ? try logits.sigmoid() : try Self.softmax(logits)
            sum = try sum.map { try $0 + p } ?? p
        }
        return try sum! / Double(views.count)
    }

    /// softmax over dim 1 of [N, C] logits, where a row holding +∞ (a model that overflowed) gets the
    /// softmax's limit, its mass shared by its +∞ classes: softmax itself is NaN there (∞ − ∞), and
    /// predict and serve ranked the NaNs in LibTorch's order, another top-1 than evaluate's.
    static func softmax(_ logits: Tensor) throws -> Tensor {
        let p = try Functional.softmax(logits, dim: 1)
        // (Any +∞ in the batch: its maximum would be NaN where another row holds a NaN.)
        guard logits.shape.count == 2, try logits.eq(.infinity).to(.float32).max().item() > 0 else { return p }
        let (n, c) = (logits.shape[0], logits.shape[1])
        let z = try logits.contiguous().toArray(Float.self)
        var values = try p.contiguous().toArray(Float.self)
        for row in 0..<n {
            let range = (row * c)..<((row + 1) * c)
            let infinite = z[range].filter { $0 == .infinity }.count
            guard infinite > 0 else { continue }
            for i in range { values[i] = z[i] == .infinity ? 1 / Float(infinite) : 0 }
        }
        return try Tensor(values, shape: [n, c])
    }
}
