import Foundation

/// Resize to a fixed size (not preserving the aspect ratio), e.g. Keras' `target_size`.
public struct Resize: ImageAugmentation {
    public var height: Int
    public var width: Int
    public var interpolation: ResizeInterpolation

    public init(height: Int, width: Int, interpolation: ResizeInterpolation = .bilinear) {
        self.height = height
        self.width = width
        self.interpolation = interpolation
    }

    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        try image.resized(height: height, width: width, interpolation: interpolation)
    }
}

/// Flips left ↔ right with probability `p`.
public struct RandomHorizontalFlip: ImageAugmentation {
    public var p: Double
    public init(p: Double = 0.5) { self.p = p }

    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        random.chance(p) ? image.flippedHorizontally() : image
    }
}

/// Flips top ↔ bottom with probability `p`.
public struct RandomVerticalFlip: ImageAugmentation {
    public var p: Double
    public init(p: Double = 0.5) { self.p = p }

    public func apply(_ image: Image, random: inout SampleRandom) throws -> Image {
        random.chance(p) ? image.flippedVertically() : image
    }
}
