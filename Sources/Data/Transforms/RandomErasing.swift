import Foundation
import Torch

/// Random erasing (Zhong et al. 2017) of a normalised image tensor, as timm's `RandomErasing` (its
/// `train.py` flags `--reprob`, `--remode`) and torchvision's `transforms.RandomErasing`: with
/// probability `probability`, one rectangle of the image is replaced.
///
/// The rectangle is drawn as both libraries draw it: up to 10 attempts, each an area of
/// `U(scale)` × the image's and an aspect ratio `exp(U(log ratio))`, giving
/// `h = round(√(area · aspect))`, `w = round(√(area / aspect))` (Python's round, half to even); the
/// first attempt that fits inside the image (`h < H`, `w < W`) is placed uniformly. After 10 misses the
/// image is left as it is. Randomness comes from the sample's `SampleRandom`, so a resumed run erases
/// the same rectangles, whatever the worker count.
public struct RandomErasing: Sendable, Equatable {
    /// What replaces the erased pixels, in the normalised space (0 is the dataset's mean colour).
    public enum Mode: String, Codable, CaseIterable, Sendable {
        /// Zeros (torchvision's default `value=0`; timm's `const`).
        case const
        /// One standard-normal value per channel (timm's `rand`).
        case rand
        /// A standard-normal value per pixel and channel (timm's `pixel`, its `train.py` default).
        case pixel
    }

    /// The chance that an image is erased (timm's `--reprob`, torchvision's `p`), in (0, 1].
    public var probability: Double
    /// What fills the rectangle.
    public var mode: Mode
    /// The rectangle's area as a fraction of the image's: `U(scale)`, (0.02, 1/3) by default.
    public var scale: ClosedRange<Double>
    /// The rectangle's aspect ratio h/w: log-uniform in `ratio`, (0.3, 1/0.3) by default.
    public var ratio: ClosedRange<Double>

    /// Erasing with torchvision's and timm's area and aspect ranges.
    public init(probability: Double, mode: Mode = .pixel, scale: ClosedRange<Double> = 0.02...(1.0 / 3),
                ratio: ClosedRange<Double> = 0.3...(1 / 0.3)) {
        self.probability = probability
        self.mode = mode
        self.scale = scale
        self.ratio = ratio
    }

    /// The rectangle (top, left, height, width) to erase in an image of `height` × `width`, or nil when
    /// this image is not erased (by chance, or after 10 attempts that do not fit).
    public func rectangle(height: Int, width: Int, random: inout SampleRandom)
        -> (top: Int, left: Int, height: Int, width: Int)? {
        guard random.chance(probability) else { return nil }
        let area = Double(height * width)
        let logRatio = (Foundation.log(ratio.lowerBound), Foundation.log(ratio.upperBound))
        for _ in 0..<10 {
            let target = random.uniform(scale.lowerBound, scale.upperBound) * area
            let aspect = Foundation.exp(random.uniform(logRatio.0, logRatio.1))
            guard let h = AugmentationSettings.pixels((target * aspect).squareRoot()),
                  let w = AugmentationSettings.pixels((target / aspect).squareRoot()) else { continue }
            if h < height && w < width {
                let top = random.integer(in: 0...(height - h))
                let left = random.integer(in: 0...(width - w))
                return (top, left, h, w)
            }
        }
        return nil
    }

    /// `image` (float32 [C, H, W], normalised) with one rectangle erased, or `image` itself when none
    /// is. The input is not changed. Throws when a setting is out of its range, naming it.
    public func apply(_ image: Tensor, random: inout SampleRandom) throws -> Tensor {
        try AugmentationSettings.check(probability, "probability", of: "RandomErasing", within: 0...1)
        try AugmentationSettings.checkScaleAndRatio(scale, ratio, of: "RandomErasing")
        let shape = image.shape
        guard shape.count == 3, let box = rectangle(height: shape[1], width: shape[2], random: &random),
              box.height > 0, box.width > 0 else { return image }
        let channels = shape[0]
        let erased = try image.clone()
        let patch = try erased.slice(dim: 1, start: box.top, end: box.top + box.height)
            .slice(dim: 2, start: box.left, end: box.left + box.width)
        switch mode {
        case .const:
            try patch.fill_(0)
        case .rand:
            for c in 0..<channels { try patch.select(dim: 0, index: c).fill_(random.normal()) }
        case .pixel:
            let count = channels * box.height * box.width
            var values = [Float](repeating: 0, count: count)
            for i in 0..<count { values[i] = Float(random.normal()) }
            try patch.copy_(try Tensor(values, shape: [channels, box.height, box.width]))
        }
        return erased
    }
}
