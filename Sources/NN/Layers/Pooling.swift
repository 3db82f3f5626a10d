import Torch

/// What `MaxPool2d` and `AvgPool2d` share: the window (kernel, stride defaulting to the kernel size,
/// padding) and `ceilMode`.
open class Pool2d: Module {
    /// (height, width) of the pooling window in pixels.
    public let kernelSize: (Int, Int)
    /// (vertical, horizontal) step between windows; the kernel size unless given.
    public let stride: (Int, Int)
    /// Pixels added on each side (height, width): -inf for max pooling, zeros for average pooling.
    public let padding: (Int, Int)
    /// Whether the output size is rounded up (a last, partial window) instead of down (PyTorch's `ceil_mode`).
    public let ceilMode: Bool

    init(kernelSize: (Int, Int), stride: (Int, Int)?, padding: (Int, Int), ceilMode: Bool) {
        self.kernelSize = kernelSize
        self.stride = stride ?? kernelSize
        self.padding = padding
        self.ceilMode = ceilMode
        super.init()
    }

    /// `kernel_size=3, stride=2, padding=0`, as PyTorch's repr starts.
    var windowDescription: String {
        "kernel_size=\(describeSquare(kernelSize)), stride=\(describeSquare(stride)), padding=\(describeSquare(padding))"
    }
}

/// 2-D max pooling, like `torch.nn.MaxPool2d` (stride defaults to the kernel size).
open class MaxPool2d: Pool2d {
    /// Spacing between the window's taps (PyTorch's `dilation`); 1 is a dense window.
    public let dilation: (Int, Int)

    /// A max pool as `torch.nn.MaxPool2d(kernel_size, stride, padding, dilation, ceil_mode)`.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                dilation: (Int, Int) = (1, 1), ceilMode: Bool = false) {
        self.dilation = dilation
        super.init(kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
    }

    /// Square window: `MaxPool2d(kernelSize: 3, stride: 2, padding: 1)`.
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, dilation: Int = 1,
                            ceilMode: Bool = false) {
        self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                  dilation: (dilation, dilation), ceilMode: ceilMode)
    }

    /// "MaxPool2d", as PyTorch prints it.
    open override var typeName: String { "MaxPool2d" }

    /// [N, C, H, W] → [N, C, H', W'], the maximum of each window (`torch.nn.functional.max_pool2d`).
    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                                 ceilMode: ceilMode)
    }

    /// `kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False`, as PyTorch's repr shows it.
    open var extraDescription: String {
        windowDescription + ", dilation=\(describeSquare(dilation)), ceil_mode=\(pythonBool(ceilMode))"
    }
}

/// 2-D average pooling, like `torch.nn.AvgPool2d` (stride defaults to the kernel size).
open class AvgPool2d: Pool2d {
    /// Whether padded zeros count in each window's divisor (PyTorch's `count_include_pad`, true by default).
    public let countIncludePad: Bool

    /// An average pool as `torch.nn.AvgPool2d(kernel_size, stride, padding, ceil_mode, count_include_pad)`.
    public init(kernelSize: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0),
                ceilMode: Bool = false, countIncludePad: Bool = true) {
        self.countIncludePad = countIncludePad
        super.init(kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode)
    }

    /// Square window: `AvgPool2d(kernelSize: 3, stride: 2, padding: 1)`.
    public convenience init(kernelSize: Int, stride: Int? = nil, padding: Int = 0, ceilMode: Bool = false,
                            countIncludePad: Bool = true) {
        self.init(kernelSize: (kernelSize, kernelSize), stride: stride.map { ($0, $0) }, padding: (padding, padding),
                  ceilMode: ceilMode, countIncludePad: countIncludePad)
    }

    /// "AvgPool2d", as PyTorch prints it.
    open override var typeName: String { "AvgPool2d" }

    /// [N, C, H, W] → [N, C, H', W'], the mean of each window (`torch.nn.functional.avg_pool2d`).
    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.avgPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode,
                                 countIncludePad: countIncludePad)
    }

    /// The window, plus `ceil_mode` and `count_include_pad` only when not at their defaults, as PyTorch prints it.
    open var extraDescription: String {
        var s = windowDescription
        if ceilMode { s += ", ceil_mode=True" }
        if !countIncludePad { s += ", count_include_pad=False" }
        return s
    }
}

/// What `AdaptiveAvgPool2d` and `AdaptiveMaxPool2d` share: the fixed output size.
open class AdaptivePool2d: Module {
    /// The (height, width) every input is pooled to, whatever its own size.
    public let outputSize: (Int, Int)

    /// A pool to `outputSize`.
    public init(outputSize: (Int, Int)) {
        self.outputSize = outputSize
        super.init()
    }

    /// Square output: `AdaptiveAvgPool2d(outputSize: 1)` (global pooling).
    public convenience init(outputSize: Int) { self.init(outputSize: (outputSize, outputSize)) }

    /// `output_size=(1, 1)`, as PyTorch's repr shows it.
    open var extraDescription: String { "output_size=\(describePair(outputSize))" }
}

/// Average pooling to a fixed output size, like `torch.nn.AdaptiveAvgPool2d`.
open class AdaptiveAvgPool2d: AdaptivePool2d {
    /// "AdaptiveAvgPool2d", as PyTorch prints it.
    open override var typeName: String { "AdaptiveAvgPool2d" }

    /// [N, C, H, W] → [N, C, outputSize.0, outputSize.1] (`torch.nn.functional.adaptive_avg_pool2d`).
    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.adaptiveAvgPool2d(x, outputSize: outputSize)
    }
}

/// Max pooling to a fixed output size, like `torch.nn.AdaptiveMaxPool2d`.
open class AdaptiveMaxPool2d: AdaptivePool2d {
    /// "AdaptiveMaxPool2d", as PyTorch prints it.
    open override var typeName: String { "AdaptiveMaxPool2d" }

    /// [N, C, H, W] → [N, C, outputSize.0, outputSize.1] (`torch.nn.functional.adaptive_max_pool2d`).
    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.adaptiveMaxPool2d(x, outputSize: outputSize)
    }
}

extension MaxPool2d: ModuleDescribing {}
extension AvgPool2d: ModuleDescribing {}
extension AdaptivePool2d: ModuleDescribing {}
