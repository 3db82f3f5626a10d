import Foundation
import Torch

/// A layer's weights as inference runs them, made once and reused while their sources are unchanged.
///
/// Inference computes the same derived weights on every call: a convolution's weight with its
/// BatchNorm folded in, and under the bf16 policy that weight cast to bf16 (autocast caches its casts
/// only for weights that require grad, and never for a folded weight). For a model that is not
/// learning, those are a few hundred small operations and a pass over every weight per forward pass
/// (docs/benchmarks.md measures them). Like an inference engine's prepacked weights, the layer keeps
/// the last result.
///
/// A kept result is reused only while everything it came from is the same: the same source tensors
/// (by identity) at the same version counters (every in-place change bumps one: optimizer steps,
/// `Module.load`, `copy_`) and the same storage (`setData`, as a device or layout change uses, bumps
/// no version), the same `generation` (a BatchNorm's count of running-statistics updates), the same
/// dtype, and the same inference-mode state (a tensor made in inference mode cannot be saved for
/// backward outside it). Results are made without gradient recording, so callers use them only where
/// no gradient with respect to the sources is wanted. The cost is one more copy of the layer's
/// weights in memory while it is kept.
final class PreparedWeights: @unchecked Sendable {
    private struct Key {
        var sources: [Tensor]
        var versions: [Int64]
        var addresses: [UInt]
        var generation: Int
        var dtype: DType
        var inferenceMode: Bool

        func matches(_ other: Key) -> Bool {
            sources.count == other.sources.count && zip(sources, other.sources).allSatisfy { $0 === $1 }
                && versions == other.versions && addresses == other.addresses && generation == other.generation
                && dtype == other.dtype && inferenceMode == other.inferenceMode
        }
    }

    private let lock = NSLock()
    private var kept: (key: Key, weights: [Tensor?])?

    /// The weights `make` returns for `sources`, made under `withNoGrad`, or the kept ones when their
    /// key matches. When a source has no version counter (an inference tensor), nothing is kept and
    /// `make` runs every time.
    private func weights(from sources: [Tensor?], generation: Int, dtype: DType,
                         make: () throws -> [Tensor?]) throws -> [Tensor?] {
        let present = sources.compactMap { $0 }
        guard let states = try? present.map({ try $0.versionAndAddress() }) else { return try withNoGrad(make) }
        let key = Key(sources: present, versions: states.map(\.version), addresses: states.map(\.address),
                      generation: generation, dtype: dtype, inferenceMode: GradMode.isInferenceMode)
        lock.lock()
        defer { lock.unlock() }
        if let kept, kept.key.matches(key) { return kept.weights }
        let weights = try withNoGrad(make)
        kept = (key, weights)
        return weights
    }

    /// A BatchNorm folded into a layer's weight and bias: the tensors the result comes from besides the
    /// layer's own parameters, the BatchNorm's `statisticsGeneration`, and the folding itself.
    struct Folding {
        var sources: [Tensor?]
        var generation: Int
        var fold: () throws -> (weight: Tensor, bias: Tensor?)
    }

    /// The weight and bias a layer computes with: `weight` and `bias` themselves, or the ones this call
    /// derives from them, kept while their sources are unchanged. Derived are `folding`'s result, and
    /// the bf16 cast CPU autocast would make of fp32 CPU weights (autocast runs convolutions and
    /// `Linear` in bf16 whatever their input's dtype). Without folding, derived weights are made only
    /// when no gradient with respect to the parameters is wanted; otherwise the parameters go to
    /// autocast, whose cast carries the gradient. (Folding itself applies only without gradients.)
    func weights(_ weight: Tensor, _ bias: Tensor?, folding: Folding? = nil) throws -> (Tensor, Tensor?) {
        let castsToBF16 = Autocast.isEnabled && weight.dtype == .float32 && weight.device == .cpu
            && Autocast.dtype == .bfloat16
        guard folding != nil || castsToBF16 else { return (weight, bias) }
        if folding == nil && GradMode.isEnabled && (weight.requiresGrad || bias?.requiresGrad == true) {
            return (weight, bias)
        }
        let made = try weights(from: [weight, bias] + (folding?.sources ?? []), generation: folding?.generation ?? 0,
                               dtype: castsToBF16 ? .bfloat16 : weight.dtype) {
            var (weight, bias) = try folding?.fold() ?? (weight, bias)
            if castsToBF16 { (weight, bias) = (try weight.to(.bfloat16), try bias?.to(.bfloat16)) }
            return [weight, bias]
        }
        return (made[0] ?? weight, made[1])
    }

    /// Whether weights are kept (for tests).
    var isHoldingWeights: Bool {
        lock.lock()
        defer { lock.unlock() }
        return kept != nil
    }
}
