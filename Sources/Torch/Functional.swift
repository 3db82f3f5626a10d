import CTorch

/// Neural-network functions with PyTorch's `torch.nn.functional` semantics.
public enum Functional {
    /// How a loss combines its per-element values (PyTorch's `reduction=`): `none` returns them unreduced
    /// (one per sample), `mean` averages (weighted by class weights when given), `sum` adds them up.
    public enum Reduction: Int32, Sendable { case none = 0, mean = 1, sum = 2 }

    /// 2-D convolution over NCHW (or channels-last) input.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                              padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                              groups: Int = 1) throws -> Tensor {
        let s = [Int64(stride.0), Int64(stride.1)], p = [Int64(padding.0), Int64(padding.1)]
        let d = [Int64(dilation.0), Int64(dilation.1)]
        return try Tensor.make { ct_conv2d(x.handle, weight.handle, bias.orNull, s, p, d, Int64(groups), $0) }
    }

    /// `x · weightᵀ + bias` (`torch.nn.functional.linear`): `x` is [..., in], `weight` [out, in], `bias` [out];
    /// the result is [..., out].
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws -> Tensor {
        try Tensor.make { ct_linear(x.handle, weight.handle, bias.orNull, $0) }
    }

    /// Max pooling over NCHW (or channels-last) input (`torch.nn.functional.max_pool2d`). `stride` defaults
    /// to `kernelSize`; `padding` pads with -inf; `ceilMode` rounds the output size up instead of down.
    public static func maxPool2d(_ x: Tensor, kernelSize: (Int, Int), stride: (Int, Int)? = nil,
                                 padding: (Int, Int) = (0, 0), dilation: (Int, Int) = (1, 1),
                                 ceilMode: Bool = false) throws -> Tensor {
        let k = [Int64(kernelSize.0), Int64(kernelSize.1)]
        let st = stride ?? kernelSize
        let s = [Int64(st.0), Int64(st.1)], p = [Int64(padding.0), Int64(padding.1)]
        let d = [Int64(dilation.0), Int64(dilation.1)]
        return try Tensor.make { ct_max_pool2d(x.handle, k, s, p, d, ceilMode, $0) }
    }

    /// Average pooling over NCHW input (`torch.nn.functional.avg_pool2d`). `stride` defaults to `kernelSize`;
    /// `countIncludePad` counts the zero padding in each window's divisor, as PyTorch does by default.
    public static func avgPool2d(_ x: Tensor, kernelSize: (Int, Int), stride: (Int, Int)? = nil,
                                 padding: (Int, Int) = (0, 0), ceilMode: Bool = false,
                                 countIncludePad: Bool = true) throws -> Tensor {
        let k = [Int64(kernelSize.0), Int64(kernelSize.1)]
        let st = stride ?? kernelSize
        let s = [Int64(st.0), Int64(st.1)], p = [Int64(padding.0), Int64(padding.1)]
        return try Tensor.make { ct_avg_pool2d(x.handle, k, s, p, ceilMode, countIncludePad, $0) }
    }

    /// Average pooling to a fixed (height, width) whatever the input size (`torch.nn.functional.adaptive_avg_pool2d`);
    /// `(1, 1)` is global average pooling, [N, C, H, W] → [N, C, 1, 1].
    public static func adaptiveAvgPool2d(_ x: Tensor, outputSize: (Int, Int)) throws -> Tensor {
        let o = [Int64(outputSize.0), Int64(outputSize.1)]
        return try Tensor.make { ct_adaptive_avg_pool2d(x.handle, o, $0) }
    }

    /// Max pooling to a fixed (height, width) (`torch.nn.functional.adaptive_max_pool2d`), values only;
    /// `(1, 1)` is global max pooling.
    public static func adaptiveMaxPool2d(_ x: Tensor, outputSize: (Int, Int)) throws -> Tensor {
        let o = [Int64(outputSize.0), Int64(outputSize.1)]
        return try Tensor.make { ct_adaptive_max_pool2d(x.handle, o, $0) }
    }

    /// Batch normalisation. In training mode the running statistics (if given) are updated in place
    /// with `momentum`, exactly as `torch.nn.functional.batch_norm` does.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor? = nil,
                                 bias: Tensor? = nil, training: Bool, momentum: Double = 0.1,
                                 eps: Double = 1e-5) throws -> Tensor {
        try Tensor.make {
            ct_batch_norm(x.handle, weight.orNull, bias.orNull, runningMean.orNull, runningVar.orNull, training,
                          momentum, eps, $0)
        }
    }

    /// Zeroes each element with probability `p` and scales the rest by 1/(1-p) when `training`; the
    /// identity otherwise (`torch.nn.functional.dropout`). Uses LibTorch's generator.
    public static func dropout(_ x: Tensor, p: Double = 0.5, training: Bool) throws -> Tensor {
        try Tensor.make { ct_dropout(x.handle, p, training, $0) }
    }

    /// `exp(x) / sum(exp(x))` along `dim` (`torch.softmax`); class probabilities from [N, classes] logits with `dim: 1`.
    public static func softmax(_ x: Tensor, dim: Int) throws -> Tensor {
        try Tensor.make { ct_softmax(x.handle, Int64(dim), $0) }
    }

    /// `log(softmax(x))` along `dim`, computed stably (`torch.log_softmax`).
    public static func logSoftmax(_ x: Tensor, dim: Int) throws -> Tensor {
        try Tensor.make { ct_log_softmax(x.handle, Int64(dim), $0) }
    }

    /// Cross entropy from logits; `target` holds class indices (int64) or class probabilities.
    public static func crossEntropy(_ logits: Tensor, target: Tensor, weight: Tensor? = nil,
                                    reduction: Reduction = .mean, ignoreIndex: Int = -100,
                                    labelSmoothing: Double = 0) throws -> Tensor {
        try Tensor.make {
            ct_cross_entropy(logits.handle, target.handle, weight.orNull, reduction.rawValue, Int64(ignoreIndex),
                             labelSmoothing, $0)
        }
    }

    /// Binary cross entropy on logits (numerically stable sigmoid + BCE).
    public static func binaryCrossEntropyWithLogits(_ logits: Tensor, target: Tensor, weight: Tensor? = nil,
                                                    posWeight: Tensor? = nil,
                                                    reduction: Reduction = .mean) throws -> Tensor {
        try Tensor.make {
            ct_bce_with_logits(logits.handle, target.handle, weight.orNull, posWeight.orNull, reduction.rawValue, $0)
        }
    }

    /// Mean squared error `(a - b)²`, reduced by `reduction` (`torch.nn.functional.mse_loss`).
    public static func mseLoss(_ a: Tensor, _ b: Tensor, reduction: Reduction = .mean) throws -> Tensor {
        try Tensor.make { ct_mse_loss(a.handle, b.handle, reduction.rawValue, $0) }
    }

    /// The resampling filter of `interpolate` (`mode=` of `torch.nn.functional.interpolate`).
    public enum InterpolationMode: Int32, Sendable { case nearest = 0, bilinear = 1, bicubic = 2 }

    /// Resizes NCHW input to `size` (height, width). `antialias` matches torchvision's antialiased
    /// resize for bilinear/bicubic downsampling.
    public static func interpolate(_ x: Tensor, size: (Int, Int), mode: InterpolationMode = .bilinear,
                                   alignCorners: Bool = false, antialias: Bool = false) throws -> Tensor {
        let s = [Int64(size.0), Int64(size.1)]
        return try Tensor.make { ct_interpolate(x.handle, s, mode.rawValue, alignCorners, antialias, $0) }
    }
}

extension Optional where Wrapped == Tensor {
    /// The handle, or a NULL handle meaning "not given".
    var orNull: ct_tensor { self?.handle ?? ct_tensor(ptr: nil) }
}
