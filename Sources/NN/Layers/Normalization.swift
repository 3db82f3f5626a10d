import Torch

/// Batch normalisation over dimension 1 (channels or features), PyTorch's `_BatchNorm`: parameters
/// `weight`, `bias`; buffers `running_mean`, `running_var`, `num_batches_tracked` (int64 scalar).
/// Use `BatchNorm2d` (NCHW) or `BatchNorm1d` ([N, C] or [N, C, L]).
///
/// Batch statistics are used (and the running statistics updated) only when `usesTrainingBehaviour`,
/// i.e. in training mode and not frozen; otherwise the running statistics are used and left untouched.
open class BatchNorm: Module, BatchNormLayer {
    /// C, the size of dimension 1 the layer normalises (`num_features`); inputs must match it.
    public let numFeatures: Int
    /// Added to the variance before the square root, for numerical stability (1e-5 by default, as in
    /// PyTorch; some torchvision models, e.g. GoogLeNet, use 1e-3).
    public let eps: Double
    /// Exponential-average factor for the running statistics; nil means a cumulative average
    /// (factor 1 / num_batches_tracked), as PyTorch's `momentum=None`.
    public var momentum: Double?
    /// Whether the layer has the learnable `weight` and `bias` (PyTorch's `affine`).
    public let affine: Bool
    /// Whether the layer keeps running statistics (PyTorch's `track_running_stats`); without them it
    /// always normalises with the batch's own statistics, even in eval mode.
    public let trackRunningStats: Bool
    /// Scale `[numFeatures]` (ones), or nil without `affine`.
    public let weight: Tensor?
    /// Shift `[numFeatures]` (zeros), or nil without `affine`.
    public let bias: Tensor?
    /// `[numFeatures]` (zeros), or nil without `trackRunningStats`.
    public let runningMean: Tensor?
    /// `[numFeatures]` (ones), or nil without `trackRunningStats`.
    public let runningVar: Tensor?
    /// Int64 scalar counting training-mode forward passes, or nil without `trackRunningStats`.
    public let numBatchesTracked: Tensor?
    /// When set, training-behaviour statistics are those of every rank's batch together, as PyTorch's
    /// `SyncBatchNorm` computes them (see `Module.synchronizeBatchNorm(over:)`); nil: this process's
    /// batch alone. Eval behaviour and frozen layers never communicate.
    public var processGroup: ProcessGroup?
    /// How many times `forward` has updated the running statistics. Weights prepared from this layer's
    /// statistics (a convolution's folded weight, see `Conv2d.forward(_:thenBatchNorm:)`) are reused
    /// only while it and every tensor's version counter are unchanged; LibTorch 1.x's batch norm updates
    /// the statistics in place without bumping their version counters.
    public private(set) var statisticsGeneration = 0

    /// A batch norm over `numFeatures` channels with PyTorch's defaults and initialisation (weight 1,
    /// bias 0, running mean 0, running variance 1). Throws `NNError.invalidArgument` unless `numFeatures` > 0.
    public init(_ numFeatures: Int, eps: Double = 1e-5, momentum: Double? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true, dtype: DType = .float32, device: Device = .cpu) throws {
        guard numFeatures > 0 else { throw NNError.invalidArgument("batch norm: num_features must be positive") }
        self.numFeatures = numFeatures
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.trackRunningStats = trackRunningStats
        if affine {
            weight = try Initialization.constantParameter([numFeatures], 1, dtype: dtype, device: device)
            bias = try Initialization.constantParameter([numFeatures], 0, dtype: dtype, device: device)
        } else {
            weight = nil
            bias = nil
        }
        if trackRunningStats {
            runningMean = try Tensor.zeros([numFeatures], dtype: dtype, device: device)
            runningVar = try Tensor.ones([numFeatures], dtype: dtype, device: device)
            numBatchesTracked = try Tensor(scalar: 0, dtype: .int64, device: device)
        } else {
            runningMean = nil
            runningVar = nil
            numBatchesTracked = nil
        }
        super.init()
    }

    /// The input ranks the layer accepts (4 for `BatchNorm2d`).
    open var acceptedRanks: [Int] { [2, 3, 4] }

    /// `weight` and `bias` when `affine`, else none.
    open override var namedLocalParameters: [(String, Tensor)] {
        guard let weight, let bias else { return [] }
        return [("weight", weight), ("bias", bias)]
    }

    /// `running_mean`, `running_var` and `num_batches_tracked` when `trackRunningStats`, else none.
    open override var namedLocalBuffers: [(String, Tensor)] {
        guard let runningMean, let runningVar, let numBatchesTracked else { return [] }
        return [("running_mean", runningMean), ("running_var", runningVar),
                ("num_batches_tracked", numBatchesTracked)]
    }

    /// Resets the running statistics to mean 0, variance 1 and the batch count to 0.
    public func resetRunningStats() throws {
        try withNoGrad {
            try runningMean?.zero_()
            try runningVar?.fill_(1)
            try numBatchesTracked?.zero_()
        }
    }

    /// Normalises `x` per channel (dimension 1), as `torch.nn.functional.batch_norm`. In training
    /// behaviour it uses the batch's statistics and updates the running ones in place (and counts the
    /// batch); otherwise it uses the running statistics. Throws `NNError.invalidArgument` for a rank
    /// outside `acceptedRanks`, a channel count other than `numFeatures`, or a training batch with a
    /// single value per channel.
    open override func forward(_ x: Tensor) throws -> Tensor {
        let shape = x.shape
        guard acceptedRanks.contains(shape.count) else {
            let ranks = acceptedRanks.map { "\($0)D" }.joined(separator: " or ")
            throw NNError.invalidArgument("\(typeName): expected \(ranks) input (got \(shape.count)D input)")
        }
        guard shape[1] == numFeatures else {
            throw NNError.invalidArgument(
                "\(typeName)(\(numFeatures)): input has \(shape[1]) channels (shape \(shape))")
        }
        let training = usesTrainingBehaviour
        // LibTorch 1.x updates the running statistics in place without bumping their version
        // counters, so the layer counts the updates itself (see `statisticsGeneration`).
        if training && runningMean != nil { statisticsGeneration &+= 1 }
        var factor = momentum ?? 0
        if training, let numBatchesTracked {
            try withNoGrad { try numBatchesTracked.add_(1) }
            if momentum == nil { factor = 1 / Double(try numBatchesTracked.itemInt()) }
        }
        // As PyTorch: batch statistics when training, or when there are no running statistics at all.
        let useBatchStats = training || runningMean == nil
        // Synchronised, the statistics are every rank's: the collective checks the total count.
        let synchronized = training && (processGroup?.worldSize ?? 1) > 1
        if useBatchStats && !synchronized && shape.reduce(1, *) / shape[1] <= 1 {
            throw NNError.invalidArgument(
                "\(typeName): expected more than 1 value per channel when training, got input size \(shape): "
                + "a batch of \(shape[0]) image\(shape[0] == 1 ? "" : "s") gives it one value per channel; "
                + "train with a larger batch or input size, or keep BatchNorm frozen")
        }
        if training, let processGroup, processGroup.worldSize > 1 {
            return try PrecisionPolicy.run(.batchNorm, x, parameters: [weight, bias]) { x in
                try processGroup.syncBatchNorm(x, runningMean: runningMean, runningVar: runningVar, weight: weight,
                                               bias: bias, momentum: factor, eps: eps)
            }
        }
        return try PrecisionPolicy.run(.batchNorm, x, parameters: [weight, bias]) { x in
            try Functional.batchNorm(x, runningMean: runningMean, runningVar: runningVar, weight: weight,
                                     bias: bias, training: useBatchStats, momentum: factor, eps: eps)
        }
    }

    /// PyTorch's repr arguments, e.g. `32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True`.
    open var extraDescription: String {
        "\(numFeatures), eps=\(pythonFloat(eps)), momentum=\(momentum.map(pythonFloat) ?? "None"), "
            + "affine=\(pythonBool(affine)), track_running_stats=\(pythonBool(trackRunningStats))"
    }
}

extension BatchNorm: ModuleDescribing {}

/// Batch normalisation over the channels of NCHW input, like `torch.nn.BatchNorm2d`.
open class BatchNorm2d: BatchNorm {
    /// "BatchNorm2d", as PyTorch prints it.
    open override var typeName: String { "BatchNorm2d" }
    /// NCHW input only.
    open override var acceptedRanks: [Int] { [4] }
}

/// Batch normalisation of [N, C] features (or [N, C, L] sequences), like `torch.nn.BatchNorm1d`:
/// e.g. the BatchNorm of a Keras-style classification head.
open class BatchNorm1d: BatchNorm {
    /// "BatchNorm1d", as PyTorch prints it.
    open override var typeName: String { "BatchNorm1d" }
    /// [N, C] or [N, C, L] input.
    open override var acceptedRanks: [Int] { [2, 3] }
}

extension Module {
    /// Makes every `BatchNorm` of this module compute its training statistics over all ranks of
    /// `group` (PyTorch's `SyncBatchNorm.convert_sync_batchnorm`), or only over this process's batch
    /// again with nil. Returns how many layers it set. Parameters, buffers and keys are unchanged.
    @discardableResult
    public func synchronizeBatchNorm(over group: ProcessGroup?) -> Int {
        var count = 0
        for (_, module) in namedModules() {
            guard let norm = module as? BatchNorm else { continue }
            norm.processGroup = group
            count += 1
        }
        return count
    }
}
