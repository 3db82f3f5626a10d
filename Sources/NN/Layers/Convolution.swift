import Foundation
import Torch

/// How `Conv2d` pads its input.
public enum Conv2dPadding: Equatable, ExpressibleByIntegerLiteral, Sendable {
    /// Zero padding of (height, width) pixels on both sides, as PyTorch's `padding=(h, w)`.
    case explicit(Int, Int)
    /// TensorFlow's "SAME": the output has `ceil(input / stride)` pixels; the total padding is computed
    /// from each input's size and, when odd, the extra pixel goes to the bottom/right. For stride 1 this
    /// equals PyTorch's `padding="same"`.
    case same

    /// `padding: 1` means `.explicit(1, 1)`.
    public init(integerLiteral value: Int) { self = .explicit(value, value) }
}

/// 2-D convolution with PyTorch's `torch.nn.Conv2d` parameters (`weight`, `bias`), initialisation and
/// semantics, plus TF-style `.same` padding.
open class Conv2d: Module {
    /// C_in, the input's channel count (dimension 1 of NCHW) (PyTorch's `in_channels`).
    public let inChannels: Int
    /// C_out, the output's channel count (PyTorch's `out_channels`).
    public let outChannels: Int
    /// (height, width) of the kernel in pixels.
    public let kernelSize: (Int, Int)
    /// (vertical, horizontal) step between kernel positions; 2 halves the spatial size.
    public let stride: (Int, Int)
    /// Zero padding: explicit (height, width) pixels per side, or TF's `.same`.
    public let padding: Conv2dPadding
    /// (vertical, horizontal) spacing between kernel taps; 1 is an ordinary convolution.
    public let dilation: (Int, Int)
    /// Channel groups convolved independently (PyTorch's `groups`): 1 is a full convolution,
    /// `inChannels` a depthwise one (MobileNet, EfficientNet).
    public let groups: Int
    /// `[outChannels, inChannels / groups, kh, kw]`.
    public let weight: Tensor
    /// `[outChannels]`, or nil when built with `bias: false`.
    public let bias: Tensor?
    /// The weight and bias as inference last ran them (folded, cast to bf16), while their sources are
    /// unchanged.
    let preparedWeights = PreparedWeights()

    /// Creates a convolution initialised like PyTorch (kaiming-uniform weight with `a = sqrt(5)`,
    /// bias uniform in ±1/sqrt(fan_in)).
    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: Conv2dPadding = 0, dilation: (Int, Int) = (1, 1), groups: Int = 1,
                bias: Bool = true, dtype: DType = .float32, device: Device = .cpu) throws {
        guard inChannels > 0, outChannels > 0, groups > 0 else {
            throw NNError.invalidArgument("Conv2d: channels and groups must be positive")
        }
        guard inChannels % groups == 0, outChannels % groups == 0 else {
            throw NNError.invalidArgument(
                "Conv2d: in_channels (\(inChannels)) and out_channels (\(outChannels)) must be divisible by groups (\(groups))")
        }
        guard kernelSize.0 > 0, kernelSize.1 > 0, stride.0 > 0, stride.1 > 0, dilation.0 > 0, dilation.1 > 0 else {
            throw NNError.invalidArgument("Conv2d: kernel size, stride and dilation must be positive")
        }
        if case .explicit(let ph, let pw) = padding, ph < 0 || pw < 0 {
            throw NNError.invalidArgument("Conv2d: padding must be non-negative")
        }
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernelSize = kernelSize
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.groups = groups
        let (kernelArea, o1) = kernelSize.0.multipliedReportingOverflow(by: kernelSize.1)
        let (fanIn, o2) = (inChannels / groups).multipliedReportingOverflow(by: kernelArea)
        guard !o1, !o2 else { throw NNError.invalidArgument("Conv2d: kernel size \(kernelSize) is too large") }
        weight = try Initialization.kaimingUniformParameter(
            [outChannels, inChannels / groups, kernelSize.0, kernelSize.1], fanIn: fanIn, dtype: dtype, device: device)
        self.bias = bias ? try Initialization.biasParameter([outChannels], fanIn: fanIn, dtype: dtype, device: device) : nil
        super.init()
    }

    /// Square kernel, stride and dilation given as single numbers.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1,
                            padding: Conv2dPadding = 0, dilation: Int = 1, groups: Int = 1, bias: Bool = true,
                            dtype: DType = .float32, device: Device = .cpu) throws {
        try self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                      padding: padding, dilation: (dilation, dilation), groups: groups, bias: bias,
                      dtype: dtype, device: device)
    }

    /// "Conv2d", as PyTorch prints it.
    open override var typeName: String { "Conv2d" }

    /// `weight`, then `bias` when present.
    open override var namedLocalParameters: [(String, Tensor)] { weightAndBias(weight, bias) }

    /// Convolves NCHW (or channels-last, or unbatched CHW) input: [N, inChannels, H, W] →
    /// [N, outChannels, H', W'] (`torch.nn.functional.conv2d`). Throws when the channel count does not match.
    open override func forward(_ x: Tensor) throws -> Tensor {
        try convolve(x, foldingIn: nil)
    }

    /// This layer's convolution (stride, padding, dilation, groups), with `batchNorm` folded into the
    /// weight and bias when given (the caller has checked that folding applies). Under a
    /// `PrecisionPolicy` it runs in the dtype of its kind (dense, depthwise, strided or large depthwise:
    /// `PrecisionLayerKind.convolution`).
    func convolve(_ x: Tensor, foldingIn batchNorm: BatchNorm2d?) throws -> Tensor {
        let kind = PrecisionLayerKind.convolution(inChannels: inChannels, groups: groups, kernelSize: kernelSize, stride: stride)
        return try PrecisionPolicy.run(kind, x, parameters: [weight, bias]) { x in
            let folding = batchNorm.map { batchNorm in
                PreparedWeights.Folding(
                    sources: [batchNorm.weight, batchNorm.bias, batchNorm.runningMean, batchNorm.runningVar],
                    generation: batchNorm.statisticsGeneration) { try self.foldedParameters(batchNorm) }
            }
            let (weight, bias) = try preparedWeights.weights(weight, bias, folding: folding)
            return try convolveInPlaceDType(x, weight: weight, bias: bias)
        }
    }

    private func convolveInPlaceDType(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
        switch padding {
        case .explicit(let ph, let pw):
            return try Functional.conv2d(x, weight: weight, bias: bias, stride: stride, padding: (ph, pw),
                                         dilation: dilation, groups: groups)
        case .same:
            let shape = x.shape
            guard shape.count >= 2 else {
                throw NNError.invalidArgument("Conv2d: expected a 3-D or 4-D input, got shape \(shape)")
            }
            let (top, bottom) = Conv2d.samePadding(input: shape[shape.count - 2], kernel: kernelSize.0,
                                                   stride: stride.0, dilation: dilation.0)
            let (left, right) = Conv2d.samePadding(input: shape[shape.count - 1], kernel: kernelSize.1,
                                                   stride: stride.1, dilation: dilation.1)
            if top == bottom && left == right {
                return try Functional.conv2d(x, weight: weight, bias: bias, stride: stride, padding: (top, left),
                                             dilation: dilation, groups: groups)
            }
            let padded = try x.pad([left, right, top, bottom])
            return try Functional.conv2d(padded, weight: weight, bias: bias, stride: stride, padding: (0, 0),
                                         dilation: dilation, groups: groups)
        }
    }

    /// TF "SAME" padding along one dimension: (before, after), the odd pixel after.
    public static func samePadding(input: Int, kernel: Int, stride: Int, dilation: Int) -> (Int, Int) {
        let output = (input + stride - 1) / stride
        let total = Swift.max((output - 1) * stride + (kernel - 1) * dilation + 1 - input, 0)
        return (total / 2, total - total / 2)
    }

    /// PyTorch's repr arguments, e.g. `3, 32, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False`.
    open var extraDescription: String {
        var s = "\(inChannels), \(outChannels), kernel_size=\(describePair(kernelSize)), stride=\(describePair(stride))"
        switch padding {
        case .explicit(let ph, let pw): if ph != 0 || pw != 0 { s += ", padding=\(describePair((ph, pw)))" }
        case .same: s += ", padding=same"
        }
        if dilation != (1, 1) { s += ", dilation=\(describePair(dilation))" }
        if groups != 1 { s += ", groups=\(groups)" }
        if bias == nil { s += ", bias=False" }
        return s
    }
}

extension Conv2d: ModuleDescribing {}

// MARK: - Initialisation shared by the layers

/// PyTorch's default parameter initialisers (`torch.nn.init`).
public enum Initialization {
    /// `kaiming_uniform_(w, a=sqrt(5))` as `reset_parameters` of Conv/Linear does:
    /// bound = sqrt(3) * gain / sqrt(fan_in) with gain = sqrt(2 / (1 + a²)), i.e. 1/sqrt(fan_in).
    public static func kaimingUniformBound(fanIn: Int, a: Double = 5.0.squareRoot()) -> Double {
        guard fanIn > 0 else { return 0 }
        let gain = (2.0 / (1 + a * a)).squareRoot()
        let std = gain / Double(fanIn).squareRoot()
        return 3.0.squareRoot() * std
    }

    /// A new parameter (requires grad) of `shape`, uniform in ±`bound`.
    public static func uniformParameter(_ shape: [Int], bound: Double, dtype: DType = .float32,
                                        device: Device = .cpu) throws -> Tensor {
        let t = try Tensor.empty(shape, dtype: dtype, device: device)
        try withNoGrad { try t.uniform_(-bound, bound) }
        return try t.setRequiresGrad(true)
    }

    /// A weight initialised with `kaiming_uniform_(a=sqrt(5))`.
    public static func kaimingUniformParameter(_ shape: [Int], fanIn: Int, dtype: DType = .float32,
                                               device: Device = .cpu) throws -> Tensor {
        try uniformParameter(shape, bound: kaimingUniformBound(fanIn: fanIn), dtype: dtype, device: device)
    }

    /// A bias initialised uniform in ±1/sqrt(fan_in) (0 when fan_in is 0).
    public static func biasParameter(_ shape: [Int], fanIn: Int, dtype: DType = .float32,
                                     device: Device = .cpu) throws -> Tensor {
        let bound = fanIn > 0 ? 1 / Double(fanIn).squareRoot() : 0
        return try uniformParameter(shape, bound: bound, dtype: dtype, device: device)
    }

    /// A parameter (requires grad) filled with `value`.
    public static func constantParameter(_ shape: [Int], _ value: Double, dtype: DType = .float32,
                                         device: Device = .cpu) throws -> Tensor {
        try Tensor.full(shape, value, dtype: dtype, device: device).setRequiresGrad(true)
    }
}

/// `weight`, then `bias` when there is one: the parameters of `Conv2d` and `Linear`, in PyTorch's order.
func weightAndBias(_ weight: Tensor, _ bias: Tensor?) -> [(String, Tensor)] {
    [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
}

/// `(3, 3)`, as Python prints a pair.
func describePair(_ p: (Int, Int)) -> String { "(\(p.0), \(p.1))" }

/// `3` for a square pair, else `(3, 2)`, as PyTorch prints pooling arguments given as ints.
func describeSquare(_ p: (Int, Int)) -> String { p.0 == p.1 ? "\(p.0)" : describePair(p) }

/// Python's spelling of a bool.
func pythonBool(_ b: Bool) -> String { b ? "True" : "False" }

/// Python-like spelling of a float (`0.1`, `1e-05`, `1.0`).
func pythonFloat(_ v: Double) -> String { "\(v)" }
