import Foundation
import Torch

/// torchvision's `FiveCrop` after the evaluation resize: the image's shorter side resized to the
/// preprocessing's `resizeSize` (PIL-exact), then the four corner crops and the centre crop of
/// `cropSize`, each normalised, stacked as float32 [15, crop, crop] (crop k in channels 3k..<3k+3;
/// order top-left, top-right, bottom-left, bottom-right, centre). Test-time augmentation reads them back.
public struct FiveCropTransform: SampleTransform {
    /// The weights' preprocessing.
    public var preprocessing: Preprocessing
    /// Shortest side asked of the JPEG decoder: 0, full size, as `EvaluationTransform` (and
    /// `predict --tta crops`) decode.
    public var decodeMinSide: Int { 0 }

    /// The five crops of `preprocessing`'s evaluation resize.
    public init(_ preprocessing: Preprocessing) { self.preprocessing = preprocessing }

    /// Float32 [15, crop, crop]; uses no randomness.
    public func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
        let p = preprocessing
        let rgb = image.rgb()
        let (h, w) = Preprocessing.resizedSize(height: rgb.height, width: rgb.width, shorterSide: p.resizeSize)
        let c = p.cropSize
        guard h >= c, w >= c else { throw DataError.unsupported("cannot take \(c)×\(c) crops from \(h)×\(w)") }
        // Each crop of the resize is resampled on its own (`resizedWindow`: the same pixels), never the
        // whole resize, which for a very long image is gigabytes.
        let centre = (Int((Double(h - c) / 2).rounded(.toNearestOrEven)), Int((Double(w - c) / 2).rounded(.toNearestOrEven)))
        let corners = [(0, 0), (0, w - c), (h - c, 0), (h - c, w - c), centre]
        let filter = Image.Filter(name: p.interpolation) ?? .bilinear
        let crops = try corners.map { top, left in
            try rgb.resizedWindow(scaledWidth: w, scaledHeight: h, x: left, y: top, width: c, height: c, filter: filter).toTensor()
        }
        return try Tensor.cat(crops.map { try p.normalize($0.contiguous()) }, dim: 0)
    }
}
