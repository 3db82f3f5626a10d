import Foundation
import Torch

/// One random (or deterministic) change to a decoded 8-bit image (HWC, 1 or 3 channels). All
/// randomness comes from `random`, so results depend only on its seed.
public protocol ImageAugmentation: Sendable {
    func apply(_ image: Image, random: inout SampleRandom) throws -> Image
}

extension ImageAugmentation {
    /// Applies the augmentation to a uint8 CHW tensor (returns uint8 CHW).
    public func apply(chw tensor: Tensor, random: inout SampleRandom) throws -> Tensor {
        try apply(Image(chw: tensor), random: &random).toTensor()
    }
}

/// What the loader runs on every decoded image: pixels in, a float32 [3, H, W] tensor out. Every
/// sample of a batch must come out the same size.
public protocol SampleTransform: Sendable {
    /// The shortest side the transform needs from the JPEG decoder: the loader passes it as
    /// `minSide`, so large photos are DCT-scaled while decoding (0 = always decode at full size).
    var decodeMinSide: Int { get }
    /// Whether JPEGs may be decoded with the fast (not PIL-exact) IDCT: true for training
    /// augmentation, false for evaluation.
    var decodeFast: Bool { get }
    func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor
}

extension SampleTransform {
    /// False: PIL-exact JPEG decoding unless a transform opts in.
    public var decodeFast: Bool { false }
}

/// How a transform turns its final uint8 image into floats.
public enum OutputScaling: Sendable, Equatable {
    /// The model's normalisation: scale to `valueRange`, subtract `mean`, divide by `std`.
    case normalize(Preprocessing)
    /// `pixel * factor` (Keras' `rescale`; 1/255 gives [0, 1]).
    case rescale(Double)

    /// The float32 [3, H, W] tensor of an 8-bit image (gray is replicated to RGB).
    public func apply(_ image: Image) throws -> Tensor {
        let chw = try image.rgb().toTensor()
        switch self {
        case .normalize(let p): return try p.normalize(chw)
        case .rescale(let f): return try chw.to(.float32) * f
        }
    }
}

/// The evaluation transform of a model: `Preprocessing.evaluationTransform` of the decoded image
/// (resize the shorter side with Pillow's arithmetic, centre crop, normalise — torchvision's
/// `ImageClassification` on a PIL image). Gray images are replicated to RGB first.
public struct EvaluationTransform: SampleTransform {
    /// The weights' preprocessing: resize size, crop size, filter, value range, mean and std.
    public var preprocessing: Preprocessing
    /// Shortest side asked of the JPEG decoder (0: full size).
    public var decodeMinSide: Int

    /// `decodeMinSide` defaults to 0: JPEGs are decoded at full size, as PIL decodes them for
    /// torchvision and as `finetune predict` and `serve` decode them, so evaluation, feature
    /// extraction, prediction and serving see the same pixels. Giving the resize size DCT-scales
    /// JPEGs at least twice that: faster, but other pixels (a 512-px photo's probabilities moved by
    /// up to 0.15 against the full decode in a weakly trained run).
    public init(_ preprocessing: Preprocessing, decodeMinSide: Int = 0) {
        self.preprocessing = preprocessing
        self.decodeMinSide = decodeMinSide
    }

    /// The normalised float32 [3, cropSize, cropSize] tensor; uses no randomness.
    public func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
        try preprocessing.evaluationTransform(image.rgb())
    }
}

/// A training transform: augmentations applied in order to the decoded image, then `output`.
/// The augmentations must produce a fixed size (end with a crop or resize to the model's input).
public struct TrainingTransform: SampleTransform {
    /// The augmentation steps, applied in order to the RGB image.
    public var augmentations: [any ImageAugmentation]
    /// How the final 8-bit image becomes floats (the model's normalisation, or a Keras-style rescale).
    public var output: OutputScaling
    /// Shortest side asked of the JPEG decoder (0: full size).
    public var decodeMinSide: Int
    /// Random augmentation does not need PIL-exact decoding, so the fast IDCT is used by default.
    public var decodeFast = true
    /// Random erasing of the normalised tensor, after `output` (timm's and torchvision's place for it).
    public var erasing: RandomErasing?

    /// A transform of `augmentations` then `output`; JPEGs decoded at full size unless `decodeMinSide` is set.
    public init(_ augmentations: [any ImageAugmentation], output: OutputScaling, decodeMinSide: Int = 0) {
        self.augmentations = augmentations
        self.output = output
        self.decodeMinSide = decodeMinSide
    }

    /// torchvision's ImageNet training recipe for a model's preprocessing: `RandomResizedCrop(cropSize)`,
    /// a horizontal flip with probability 0.5, optional colour jitter, then the model's normalisation.
    /// JPEGs are DCT-scaled to keep their shorter side at least `2 * cropSize` (smaller crops would be
    /// upsampled more than torchvision's full-size decode does; pass 0 to disable).
    public static func standard(_ preprocessing: Preprocessing, horizontalFlip: Bool = true,
                                colorJitter: ColorJitter? = nil, decodeMinSide: Int? = nil) -> TrainingTransform {
        var steps: [any ImageAugmentation] = [
            RandomResizedCrop(size: preprocessing.cropSize,
                              interpolation: preprocessing.interpolation.lowercased() == "bicubic" ? .bicubic : .bilinear),
        ]
        if horizontalFlip { steps.append(RandomHorizontalFlip()) }
        if let colorJitter { steps.append(colorJitter) }
        return TrainingTransform(steps, output: .normalize(preprocessing),
                                 decodeMinSide: decodeMinSide ?? 2 * preprocessing.cropSize)
    }

    /// `image` as RGB through every augmentation: the 8-bit image before `output`.
    public func augment(_ image: Image, random: inout SampleRandom) throws -> Image {
        var x = image.rgb()
        for step in augmentations { x = try step.apply(x, random: &random) }
        return x
    }

    /// `output.apply(augment(image))`, then `erasing`: float32 [3, H, W].
    public func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
        let tensor = try output.apply(augment(image, random: &random))
        return try erasing?.apply(tensor, random: &random) ?? tensor
    }
}
