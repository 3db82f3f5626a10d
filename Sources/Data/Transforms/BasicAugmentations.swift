import Foundation

/// Resize to a fixed size (not preserving the aspect ratio), e.g. Keras' `target_size`.
public struct Resize: ImageAugmentation {
    /// Output height in pixels.
    public var height: Int
    /// Output width in pixels.
    public var width: Int
    /// The resampling filter (Pillow's bilinear by default; Keras' `flow_from_directory` uses nearest).
    public var interpolation: ResizeInterpolation

    /// A resize to `height`×`width`.
    public init(height: Int, width: Int, interpolation: ResizeInterpolation = .bilinear) {
        self.height = height
        self.width = width
        self.interpolation = interpolation
    }

    /// `image` resized to `height`×`width` (unchanged when it already has that size); throws
    /// `DataError.invalidDataset` for a size that is not positive. Uses no randomness.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        try image.resized(height: height, width: width, interpolation: interpolation)
    }
}

/// Flips left ↔ right with probability `p`.
public struct RandomHorizontalFlip: ImageAugmentation {
    /// Probability of flipping, in [0, 1].
    public var p: Double
    /// torchvision's `RandomHorizontalFlip(p)`; Keras' `horizontal_flip=True` is p = 0.5.
    public init(p: Double = 0.5) { self.p = p }

    /// The mirrored image with probability `p`, else `image`.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        random.chance(p) ? image.flippedHorizontally() : image
    }
}

/// Flips top ↔ bottom with probability `p`.
public struct RandomVerticalFlip: ImageAugmentation {
    /// Probability of flipping, in [0, 1].
    public var p: Double
    /// torchvision's `RandomVerticalFlip(p)`; Keras' `vertical_flip=True` is p = 0.5.
    public init(p: Double = 0.5) { self.p = p }

    /// The upside-down image with probability `p`, else `image`.
    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        random.chance(p) ? image.flippedVertically() : image
    }
}
