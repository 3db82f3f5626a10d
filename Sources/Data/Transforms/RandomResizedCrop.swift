import Foundation

/// torchvision's `RandomResizedCrop`: a random region covering `scale` of the area with aspect ratio
/// in `ratio` (sampled log-uniformly), resized to `height`×`width`.
///
/// The region is chosen as torchvision's `get_params` does: up to 10 attempts of
/// `area * U(scale)` with `exp(U(log ratio))`, `w = round(sqrt(area * r))`, `h = round(sqrt(area / r))`,
/// accepted when it fits, placed uniformly; otherwise a centre crop of the whole image clamped to
/// the ratio range.
public struct RandomResizedCrop: ImageAugmentation {
    /// Output height in pixels.
    public var height: Int
    /// Output width in pixels.
    public var width: Int
    /// Range of the crop's area as a fraction of the image's (torchvision's default 0.08...1).
    public var scale: ClosedRange<Double>
    /// Range of the crop's aspect ratio, width / height (default 3/4...4/3).
    public var ratio: ClosedRange<Double>
    /// Filter for resizing the crop (the weights' preprocessing: bilinear, or bicubic for EfficientNet-B).
    public var interpolation: ResizeInterpolation

    /// A square output of `size`×`size` (torchvision's `RandomResizedCrop(size)`).
    public init(size: Int, scale: ClosedRange<Double> = 0.08...1, ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3),
                interpolation: ResizeInterpolation = .bilinear) {
        self.init(height: size, width: size, scale: scale, ratio: ratio, interpolation: interpolation)
    }

    /// An output of `height`×`width`.
    public init(height: Int, width: Int, scale: ClosedRange<Double> = 0.08...1,
                ratio: ClosedRange<Double> = (3.0 / 4)...(4.0 / 3), interpolation: ResizeInterpolation = .bilinear) {
        self.height = height
        self.width = width
        self.scale = scale
        self.ratio = ratio
        self.interpolation = interpolation
    }

    /// The crop (top, left, height, width) for an image of `imageHeight`×`imageWidth`.
    public static func parameters(imageHeight: Int, imageWidth: Int, scale: ClosedRange<Double>,
                                  ratio: ClosedRange<Double>, random: inout SampleRandom)
        -> (top: Int, left: Int, height: Int, width: Int) {
        let area = Double(imageHeight * imageWidth)
        let logRatio = (Foundation.log(ratio.lowerBound), Foundation.log(ratio.upperBound))
        for _ in 0..<10 {
            let targetArea = area * random.uniform(scale.lowerBound, scale.upperBound)
            let aspect = Foundation.exp(random.uniform(logRatio.0, logRatio.1))
            guard let w = AugmentationSettings.pixels((targetArea * aspect).squareRoot()),
                  let h = AugmentationSettings.pixels((targetArea / aspect).squareRoot()) else { continue }
            if w > 0 && w <= imageWidth && h > 0 && h <= imageHeight {
                let top = random.integer(in: 0...(imageHeight - h))
                let left = random.integer(in: 0...(imageWidth - w))
                return (top, left, h, w)
            }
        }
        // Fallback: centre crop.
        let inRatio = Double(imageWidth) / Double(imageHeight)
        var w = imageWidth, h = imageHeight
        if inRatio < ratio.lowerBound {
            h = AugmentationSettings.pixels(Double(w) / ratio.lowerBound) ?? h
        } else if inRatio > ratio.upperBound {
            w = AugmentationSettings.pixels(Double(h) * ratio.upperBound) ?? w
        }
        h = min(max(h, 1), imageHeight)
        w = min(max(w, 1), imageWidth)
        return ((imageHeight - h) / 2, (imageWidth - w) / 2, h, w)
    }

    /// Draws a crop with `parameters` and resizes it to `height`×`width`. Throws when `scale` is not
    /// within 0...1 or `ratio` not positive and finite, naming the field.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        try AugmentationSettings.checkScaleAndRatio(scale, ratio, of: "RandomResizedCrop")
        let p = Self.parameters(imageHeight: image.height, imageWidth: image.width, scale: scale, ratio: ratio,
                                random: &random)
        return try image.cropped(top: p.top, left: p.left, height: p.height, width: p.width)
            .resized(height: height, width: width, interpolation: interpolation)
    }
}
