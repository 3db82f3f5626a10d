import Data
import Foundation
import Torch

/// MixUp and CutMix as timm's `Mixup` (mode "batch", `correct_lam=True`): per batch, with
/// probability `probability`, λ ~ Beta(α, α) and the batch is paired with itself reversed; CutMix
/// (chosen with `switchProbability` when both are on) pastes a box of area ≈ (1 − λ) from the paired
/// image and corrects λ to the box's real area; MixUp blends `λ·x + (1 − λ)·x.flip(0)`. Targets are
/// the label-smoothed one-hots mixed with the same λ, and the loss is timm's `SoftTargetCrossEntropy`.
///
/// The draws come from a generator seeded by (`seed`, epoch, batch), so a batch's mixing does not
/// depend on what ran before it: a resumed run mixes exactly as the uninterrupted one.
public struct MixConfig: Codable, Equatable, Sendable {
    /// MixUp's α (timm's `--mixup`); 0 turns MixUp off.
    public var mixupAlpha: Double
    /// CutMix's α (timm's `--cutmix`); 0 turns CutMix off.
    public var cutmixAlpha: Double
    /// The probability that a batch is mixed at all (timm's `--mixup-prob`, 1).
    public var probability: Double
    /// With both on, the probability of CutMix rather than MixUp (timm's `--mixup-switch-prob`, 0.5).
    public var switchProbability: Double
    /// Mixing stops from this epoch on (0-based; timm's `--mixup-off-epoch`); nil: never.
    public var offEpoch: Int?
    /// Seeds the draws.
    public var seed: UInt64

    /// timm's defaults for the probabilities.
    public init(mixupAlpha: Double, cutmixAlpha: Double, probability: Double = 1, switchProbability: Double = 0.5,
                offEpoch: Int? = nil, seed: UInt64 = 0) {
        self.mixupAlpha = mixupAlpha
        self.cutmixAlpha = cutmixAlpha
        self.probability = probability
        self.switchProbability = switchProbability
        self.offEpoch = offEpoch
        self.seed = seed
    }

    /// Whether epoch `epoch` (0-based) mixes its batches.
    public func isActive(epoch: Int) -> Bool {
        (mixupAlpha > 0 || cutmixAlpha > 0) && epoch < (offEpoch ?? Int.max)
    }

    /// Batch `batch` of epoch `epoch`'s λ and CutMix box for images of `height` × `width`; λ = 1
    /// (no box) when the batch is not mixed. timm's `_params_per_batch` order of draws.
    public func draw(epoch: Int, batch: Int, height: Int, width: Int) -> MixDraw {
        var random = SampleRandom(seed: SplitMix64.derive(seed, 0x4D49_5855_50, UInt64(epoch), UInt64(batch)))
        guard isActive(epoch: epoch), height >= 1, width >= 1, random.chance(probability) else {
            return MixDraw(lambda: 1, box: nil)  // (an empty image has nothing to mix; its box's draw trapped)
        }
        var cutmix = false
        let alpha: Double
        if mixupAlpha > 0 && cutmixAlpha > 0 {
            cutmix = random.chance(switchProbability)
            alpha = cutmix ? cutmixAlpha : mixupAlpha
        } else if mixupAlpha > 0 {
            alpha = mixupAlpha
        } else {
            cutmix = true
            alpha = cutmixAlpha
        }
        let lambda = Self.beta(alpha, alpha, random: &random)
        guard cutmix else { return MixDraw(lambda: lambda, box: nil) }
        let centreY = random.integer(in: 0..<height), centreX = random.integer(in: 0..<width)
        let (box, corrected) = CutMixBox.around(centreY: centreY, centreX: centreX, lambda: lambda,
                                                height: height, width: width)
        return MixDraw(lambda: corrected, box: box)
    }

    /// A Beta(a, b) sample as Gamma(a) / (Gamma(a) + Gamma(b)).
    static func beta(_ a: Double, _ b: Double, random: inout SampleRandom) -> Double {
        let x = gamma(a, random: &random), y = gamma(b, random: &random)
        return x + y > 0 ? x / (x + y) : 0.5
    }

    /// A Gamma(shape, 1) sample (Marsaglia and Tsang; shapes below 1 boosted by U^(1/shape)).
    static func gamma(_ shape: Double, random: inout SampleRandom) -> Double {
        if shape < 1 {
            let u = Swift.max(random.unit(), .leastNonzeroMagnitude)
            return gamma(shape + 1, random: &random) * Foundation.pow(u, 1 / shape)
        }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat {
                // Box–Muller normal.
                let u1 = Swift.max(random.unit(), .leastNonzeroMagnitude), u2 = random.unit()
                x = (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
                v = 1 + c * x
            } while v <= 0
            v = v * v * v
            let u = random.unit()
            if u < 1 - 0.0331 * x * x * x * x || Foundation.log(u) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) {
                return d * v
            }
        }
    }

    /// Throws unless the alphas are finite and at least 0, the probabilities in [0, 1] and the off
    /// epoch at least 0 (`Trainer` checks this; call it before `draw` when mixing by hand).
    public func validate() throws {
        guard mixupAlpha >= 0, cutmixAlpha >= 0, mixupAlpha.isFinite, cutmixAlpha.isFinite else {
            throw TrainingError.invalidConfiguration("MixUp and CutMix alphas must be ≥ 0")
        }
        guard (0...1).contains(probability), (0...1).contains(switchProbability) else {
            throw TrainingError.invalidConfiguration("mix probabilities must be in [0, 1]")
        }
        if let offEpoch, offEpoch < 0 { throw TrainingError.invalidConfiguration("the mix-off epoch must be ≥ 0") }
    }
}

/// One batch's mixing: λ, and the CutMix box (nil for MixUp, or λ = 1 for no mixing).
public struct MixDraw: Equatable, Sendable {
    /// The weight of the batch's own images and labels (after CutMix's area correction).
    public var lambda: Double
    /// The region pasted from the paired image (CutMix).
    public var box: CutMixBox?

    /// A draw with `lambda` and `box`.
    public init(lambda: Double, box: CutMixBox?) {
        self.lambda = lambda
        self.box = box
    }
}

/// A CutMix region: rows `top..<bottom`, columns `left..<right`.
public struct CutMixBox: Equatable, Sendable {
    /// First row.
    public var top: Int
    /// Row after the last.
    public var bottom: Int
    /// First column.
    public var left: Int
    /// Column after the last.
    public var right: Int

    /// The box of area ≈ (1 − λ) centred at (`centreY`, `centreX`), clipped to the image, and λ
    /// corrected to 1 − its real area (timm's `rand_bbox` + `cutmix_bbox_and_lam(correct_lam=True)`).
    /// λ is taken within [0, 1]; an empty image gets an empty box and λ = 1.
    public static func around(centreY: Int, centreX: Int, lambda: Double, height: Int, width: Int)
        -> (box: CutMixBox, lambda: Double) {
        guard height >= 1, width >= 1 else { return (CutMixBox(top: 0, bottom: 0, left: 0, right: 0), 1) }
        let ratio = (1 - Swift.min(Swift.max(lambda, 0), 1)).squareRoot()  // λ outside [0, 1] gave NaN sides
        let cutH = Int(Double(height) * ratio), cutW = Int(Double(width) * ratio)
        func clip(_ v: Int, _ limit: Int) -> Int { Swift.min(Swift.max(v, 0), limit) }
        let box = CutMixBox(top: clip(centreY - cutH / 2, height), bottom: clip(centreY + (cutH + 1) / 2, height),
                            left: clip(centreX - cutW / 2, width), right: clip(centreX + (cutW + 1) / 2, width))
        let area = Double((box.bottom - box.top) * (box.right - box.left))
        return (box, 1 - area / Double(height * width))
    }
}

/// The tensor side of MixUp/CutMix (timm's `Mixup._mix_batch` and `mixup_target`).
public enum BatchMixing {
    /// `images` [N, C, H, W] mixed with their reversal: `λ·x + (1 − λ)·x.flip(0)`, or the box pasted
    /// from `x.flip(0)`; `images` itself when λ = 1.
    public static func mix(_ images: Tensor, _ draw: MixDraw) throws -> Tensor {
        guard draw.lambda != 1 || draw.box != nil else { return images }
        return try withNoGrad {
            let flipped = try images.flip([0])
            guard let box = draw.box else { return try images * draw.lambda + flipped * (1 - draw.lambda) }
            let out = try images.clone()
            guard box.bottom > box.top, box.right > box.left else { return out }
            let region = try out.slice(dim: 2, start: box.top, end: box.bottom).slice(dim: 3, start: box.left, end: box.right)
            try region.copy_(flipped.slice(dim: 2, start: box.top, end: box.bottom)
                .slice(dim: 3, start: box.left, end: box.right))
            return out
        }
    }

    /// float32 [N, classes] targets: label-smoothed one-hots (`1 − s + s/C` and `s/C`) mixed as
    /// `λ·y + (1 − λ)·y.flip(0)`. A label outside `0..<classes` is an error, as cross-entropy's (its
    /// row was left without a one: training on such data completed without a word under MixUp/CutMix).
    public static func targets(_ labels: [Int], classes: Int, lambda: Double, smoothing: Double) throws -> Tensor {
        guard classes >= 1 else { throw TrainingError.invalidConfiguration("mixed targets need at least 1 class, got \(classes)") }
        if let bad = labels.first(where: { !(0..<classes).contains($0) }) {
            throw TrainingError.invalidConfiguration("label \(bad) is outside the model's \(classes) classes (0 to \(classes - 1))")
        }
        let off = smoothing / Double(classes), on = 1 - smoothing + off
        var values = [Float](repeating: Float(off), count: labels.count * classes)
        for (i, label) in labels.enumerated() { values[i * classes + label] = Float(on) }
        let y = try Tensor(values, shape: [labels.count, classes])
        return try y * lambda + y.flip([0]) * (1 - lambda)
    }

    /// timm's `SoftTargetCrossEntropy`: `mean(sum(−targets · log_softmax(logits), −1))`.
    public static func softTargetCrossEntropy(logits: Tensor, targets: Tensor) throws -> Tensor {
        try (-targets * Functional.logSoftmax(logits, dim: -1)).sum(dim: -1).mean()
    }
}
