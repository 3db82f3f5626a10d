import Torch

// A convolution followed by a BatchNorm that uses its running statistics is one affine map of the
// convolution's input: conv(x; w·s, (b − μ)·s + β) with s = γ / √(σ² + ε). Folding the two into one
// convolution is the same function with one pass over the activations instead of two. On CPU the
// BatchNorm pass is memory-bound: in MobileNetV2's inference it took as long as the convolutions
// (38 % of the time, torch profiler, batch 32, channels-last bf16).

extension Conv2d {
    /// `batchNorm(self(x))`, computed as one convolution with the normalisation folded into its
    /// weight and bias whenever that is the same function and nothing needs the two layers apart:
    ///
    /// - the BatchNorm uses its running statistics (eval mode or frozen) and has them;
    /// - no gradient is wanted for either layer's parameters (gradient mode is off, or none of them
    ///   requires grad; gradients with respect to `x` stay exact either way);
    /// - both layers are the library's own `Conv2d` and `BatchNorm2d` (a subclass may change
    ///   `forward`), and no `ModelSummary` is recording each layer's output.
    ///
    /// Otherwise the two layers run one after the other. The folded weight (cast to bf16 when the
    /// convolution runs in bf16) is made once and kept while the parameters, the running statistics and
    /// their versions are unchanged (`PreparedWeights`), so it always follows the current values.
    public func forward(_ x: Tensor, thenBatchNorm batchNorm: BatchNorm2d) throws -> Tensor {
        if canFold(batchNorm, input: x) {
            return try convolve(x, foldingIn: batchNorm)
        }
        return try batchNorm(self(x))
    }

    /// Whether folding applies to this call (see `forward(_:thenBatchNorm:)`).
    func canFold(_ batchNorm: BatchNorm2d, input x: Tensor) -> Bool {
        guard type(of: self) == Conv2d.self, type(of: batchNorm) == BatchNorm2d.self,
              !batchNorm.usesTrainingBehaviour,
              batchNorm.runningMean != nil, batchNorm.runningVar != nil,
              batchNorm.numFeatures == outChannels, x.rank == 4,
              ForwardRecorder.active == nil
        else { return false }
        if GradMode.isEnabled {
            let parameters = [weight, bias, batchNorm.weight, batchNorm.bias].compactMap { $0 }
            if parameters.contains(where: \.requiresGrad) { return false }
        }
        return true
    }

    /// The weight and bias of the one convolution that computes `batchNorm(self(x))` with the
    /// BatchNorm's running statistics: what inference runs and what an exported graph holds (the
    /// exporter calls this under `withNoGrad`). Throws `NNError.invalidArgument` when the BatchNorm has
    /// no running statistics or does not match the convolution's output channels.
    public func foldedParameters(_ batchNorm: BatchNorm2d) throws -> (weight: Tensor, bias: Tensor) {
        guard let mean = batchNorm.runningMean, let variance = batchNorm.runningVar else {
            throw NNError.invalidArgument("BatchNorm2d without running statistics cannot be folded into a convolution")
        }
        guard batchNorm.numFeatures == outChannels else {
            throw NNError.invalidArgument("BatchNorm2d(\(batchNorm.numFeatures)) cannot follow a Conv2d with "
                                          + "\(outChannels) output channels")
        }
        return try fold(batchNorm, mean: mean, variance: variance)
    }

    /// conv(x; w·s, (b − μ)·s + β) with s = γ / √(σ² + ε).
    private func fold(_ batchNorm: BatchNorm2d, mean: Tensor, variance: Tensor) throws -> (weight: Tensor, bias: Tensor) {
        var scale = try (variance + batchNorm.eps).rsqrt()
        if let gamma = batchNorm.weight { scale = try scale * gamma }
        let foldedWeight = try weight * scale.view([outChannels, 1, 1, 1])
        var foldedBias = try (bias.map { try $0 - mean } ?? mean.neg()) * scale
        if let beta = batchNorm.bias { foldedBias = try foldedBias + beta }
        return (foldedWeight, foldedBias)
    }
}
