import Foundation
import Torch

/// A preprocessing setting that cannot be used, or an input it cannot be applied to.
public struct PreprocessingError: Error, CustomStringConvertible, Equatable {
    /// What is wrong, naming the field or the input size.
    public let message: String
    /// An error with `message`.
    public init(_ message: String) { self.message = message }
    /// The message itself, so `print(error)` shows it.
    public var description: String { message }
}

/// The input transform a set of weights was trained and evaluated with. It travels with the weights
/// (catalog, run config) and is applied automatically, so images are never normalised twice or
/// with the wrong statistics.
///
/// Evaluation: resize the shorter side to `resizeSize`, centre-crop `cropSize`, scale to
/// `valueRange`, subtract `mean` and divide by `std` — torchvision's `ImageClassification` transform.
public struct Preprocessing: Codable, Equatable, Sendable {
    /// Per-channel (R, G, B) mean subtracted after scaling to `valueRange`, e.g. ImageNet's [0.485, 0.456, 0.406].
    public var mean: [Double]
    /// Per-channel (R, G, B) standard deviation divided by after subtracting `mean`, e.g. [0.229, 0.224, 0.225]; all positive.
    public var std: [Double]
    /// Shorter side after resizing (before the centre crop).
    public var resizeSize: Int
    /// Side of the square the model sees.
    public var cropSize: Int
    /// "bilinear" or "bicubic" (antialiased when downsampling, like PIL).
    public var interpolation: String
    /// Range pixels are scaled to before normalising, usually [0, 1].
    public var valueRange: [Double]

    /// A transform with these settings, unchecked: call `validate()` before using values from a file or user.
    public init(mean: [Double], std: [Double], resizeSize: Int, cropSize: Int, interpolation: String = "bilinear",
                valueRange: [Double] = [0, 1]) {
        self.mean = mean
        self.std = std
        self.resizeSize = resizeSize
        self.cropSize = cropSize
        self.interpolation = interpolation
        self.valueRange = valueRange
    }

    /// These settings for a crop of `side` pixels: the resize side keeps its ratio to the crop
    /// (rounded: 256/224 at 96 gives 110), as `train --input-size` and `export --input-size` set it.
    public func withCropSize(_ side: Int) -> Preprocessing {
        var scaled = self
        // Unchecked, as `init`: a side no Int holds becomes Int.max, which `validate()` refuses (it trapped).
        let resize = (Double(side) * Double(resizeSize) / Double(cropSize)).rounded()
        scaled.resizeSize = resize.isFinite && abs(resize) < 0x1p62 ? Int(resize) : .max
        scaled.cropSize = side
        return scaled
    }

    /// torchvision's ImageNet defaults: 256 → 224, ImageNet mean and std.
    public static let imagenet = Preprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225],
                                               resizeSize: 256, cropSize: 224)

    /// The smallest std `validate()` accepts.
    public static let smallestStd = 1e-4
    /// The largest mean magnitude `validate()` accepts (a `valueRange` of [0, 255] wants about 128).
    public static let largestMean = 1e4
    /// The largest crop side `validate()` accepts, and `train`'s and `export`'s largest `--input-size`
    /// (ImageNet models train at 224 to 600 px; 2⁶³ − 1 trapped computing the resize side).
    public static let largestSide = 4096
    /// The largest resize side `validate()` accepts (the crop's, with room for a crop ratio of 0.5).
    public static let largestResizeSide = 8192

    /// Checks the values make sense; errors say which field is wrong.
    public func validate() throws {
        guard mean.count == 3, std.count == 3 else {
            throw PreprocessingError("preprocessing needs 3 mean and 3 std values, got \(mean.count) and \(std.count)")
        }
        // (x - mean) / std must stay in float32's comfortable range: a subnormal std or a mean of 1e308
        // turned every input into infinity and every prediction into NaN, without an error.
        guard std.allSatisfy({ $0 >= Self.smallestStd && $0.isFinite }) else {
            throw PreprocessingError("preprocessing std must be finite and at least \(Self.smallestStd): \(std)")
        }
        guard mean.allSatisfy({ $0.isFinite && abs($0) <= Self.largestMean }) else {
            throw PreprocessingError("preprocessing mean must be finite and within ±\(Self.largestMean): \(mean)")
        }
        guard cropSize > 0, resizeSize >= cropSize else {
            throw PreprocessingError("preprocessing needs 0 < cropSize (\(cropSize)) <= resizeSize (\(resizeSize))")
        }
        guard cropSize <= Self.largestSide, resizeSize <= Self.largestResizeSide else {
            throw PreprocessingError("preprocessing sizes must be at most \(Self.largestSide) (crop) and \(Self.largestResizeSide) "
                + "(resize) pixels, got \(cropSize) and \(resizeSize)")
        }
        guard interpolationMode != nil else {
            throw PreprocessingError("unknown interpolation '\(interpolation)': expected bilinear or bicubic")
        }
        // [0, 1e308] scaled every pixel to infinity: NaN predictions with status 0.
        guard valueRange.count == 2, valueRange[1] > valueRange[0],
              valueRange.allSatisfy({ $0.isFinite && abs($0) <= Self.largestMean }) else {
            throw PreprocessingError("preprocessing valueRange must be [low, high] within ±\(Self.largestMean), got \(valueRange)")
        }
    }

    var interpolationMode: Functional.InterpolationMode? {
        switch interpolation.lowercased() {
        case "bilinear": return .bilinear
        case "bicubic": return .bicubic
        default: return nil
        }
    }

    /// torchvision's `Resize(size)` output size for an image of `height`×`width`: the shorter side
    /// becomes `size`, the longer side `int(size * long / short)`. Sides of 0 or less, or a longer side
    /// no Int holds, give `size` there (it trapped; the transforms refuse empty images first).
    public static func resizedSize(height: Int, width: Int, shorterSide size: Int) -> (height: Int, width: Int) {
        func longer(_ long: Int, _ short: Int) -> Int {
            let side = Double(size) * Double(long) / Double(short)
            return short > 0 && side.isFinite && abs(side) < 0x1p62 ? Int(side) : size
        }
        return height <= width ? (size, longer(width, height)) : (longer(height, width), size)
    }

    /// Throws unless `image` is what the transforms take: uint8 (0–255) of shape [C, H, W] or
    /// [N, C, H, W], C = 3 (RGB) or 1 (grey, normalised as its RGB replica), H and W at least 1. A float
    /// image in [0, 1] (torchvision's `ToTensor` output) was taken for 0–255, and a grey [H, W] one trapped.
    public static func checkImages(_ image: Tensor) throws {
        let shape = image.shape
        guard shape.count == 3 || shape.count == 4, [1, 3].contains(shape[shape.count - 3]) else {
            throw PreprocessingError("expected images of shape [C, H, W] or [N, C, H, W] with C = 3 (RGB) or 1 (grey), "
                + "got shape \(shape)")
        }
        guard image.dtype == .uint8 else {
            throw PreprocessingError("expected uint8 images (0–255), got \(image.dtype): scale float images to 0–255 "
                + "and convert them to uint8 first")
        }
        guard shape[shape.count - 2] > 0, shape[shape.count - 1] > 0 else {
            throw PreprocessingError("expected images of at least 1×1 pixels, got shape \(shape)")
        }
    }

    /// Resize + centre crop of uint8 CHW (or NCHW) images, rounded back to uint8 like PIL.
    public func resizeAndCrop(_ image: Tensor) throws -> Tensor {
        try Self.checkImages(image)
        let batched = image.rank == 3 ? try image.unsqueeze(dim: 0) : image
        let h = batched.shape[2], w = batched.shape[3]
        let (rh, rw) = Self.resizedSize(height: h, width: w, shorterSide: resizeSize)
        var x = batched
        if rh != h || rw != w {
            let resized = try Functional.interpolate(batched.to(.float32), size: (rh, rw),
                                                     mode: interpolationMode ?? .bilinear, antialias: true)
            x = try resized.round().clamp(min: 0, max: 255).to(.uint8)
        }
        x = try Self.centerCrop(x, size: cropSize)
        return image.rank == 3 ? try x.squeeze(dim: 0) : x
    }

    /// Centre crop as torchvision: offsets `round((H - size) / 2)`, `round((W - size) / 2)`.
    public static func centerCrop(_ x: Tensor, size: Int) throws -> Tensor {
        guard x.rank >= 2 else { throw PreprocessingError("cannot centre-crop a tensor of shape \(x.shape): it has no H and W") }
        let h = x.shape[x.rank - 2], w = x.shape[x.rank - 1]
        guard h >= size, w >= size else {
            throw PreprocessingError("cannot centre-crop \(size)×\(size) from \(h)×\(w)")
        }
        let top = Int((Double(h - size) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(w - size) / 2).rounded(.toNearestOrEven))
        return try x.slice(dim: x.rank - 2, start: top, end: top + size).slice(dim: x.rank - 1, start: left, end: left + size)
    }

    /// uint8 images (CHW or NCHW) → float32 scaled to `valueRange` and normalised.
    public func normalize(_ image: Tensor) throws -> Tensor {
        try Self.checkImages(image)
        let batched = image.rank == 3 ? try image.unsqueeze(dim: 0) : image
        let scale = (valueRange[1] - valueRange[0]) / 255
        var x = try batched.to(.float32) * scale + valueRange[0]
        let m = try Tensor(mean.map(Float.init), shape: [1, 3, 1, 1])
        let s = try Tensor(std.map(Float.init), shape: [1, 3, 1, 1])
        x = try (x - m) / s
        return image.rank == 3 ? try x.squeeze(dim: 0) : x
    }

    /// The full evaluation transform of uint8 images: resize, centre crop, normalise.
    public func evaluationTransform(_ image: Tensor) throws -> Tensor {
        try normalize(resizeAndCrop(image))
    }
}
