import Torch

/// What `MaxPool2d` and `AvgPool2d` share: the window (kernel, stride defaulting to the kernel size,
/// padding) and `ceilMode`.
open class Pool2d: Module {
    public let kernelSize: (Int, Int)
    public let stride: (Int, Int)
    public let padding: (Int, Int)
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
    public let dilation: (Int, Int)

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

    open override var typeName: String { "MaxPool2d" }

    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.maxPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding, dilation: dilation,
                                 ceilMode: ceilMode)
    }

    open var extraDescription: String {
        windowDescription + ", dilation=\(describeSquare(dilation)), ceil_mode=\(pythonBool(ceilMode))"
    }
}

/// 2-D average pooling, like `torch.nn.AvgPool2d` (stride defaults to the kernel size).
open class AvgPool2d: Pool2d {
    public let countIncludePad: Bool

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

    open override var typeName: String { "AvgPool2d" }

    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.avgPool2d(x, kernelSize: kernelSize, stride: stride, padding: padding, ceilMode: ceilMode,
                                 countIncludePad: countIncludePad)
    }

    open var extraDescription: String {
        var s = windowDescription
        if ceilMode { s += ", ceil_mode=True" }
        if !countIncludePad { s += ", count_include_pad=False" }
        return s
    }
}

/// What `AdaptiveAvgPool2d` and `AdaptiveMaxPool2d` share: the fixed output size.
open class AdaptivePool2d: Module {
    public let outputSize: (Int, Int)

    public init(outputSize: (Int, Int)) {
        self.outputSize = outputSize
        super.init()
    }

    /// Square output: `AdaptiveAvgPool2d(outputSize: 1)` (global pooling).
    public convenience init(outputSize: Int) { self.init(outputSize: (outputSize, outputSize)) }

    open var extraDescription: String { "output_size=\(describePair(outputSize))" }
}

/// Average pooling to a fixed output size, like `torch.nn.AdaptiveAvgPool2d`.
open class AdaptiveAvgPool2d: AdaptivePool2d {
    open override var typeName: String { "AdaptiveAvgPool2d" }

    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.adaptiveAvgPool2d(x, outputSize: outputSize)
    }
}

/// Max pooling to a fixed output size, like `torch.nn.AdaptiveMaxPool2d`.
open class AdaptiveMaxPool2d: AdaptivePool2d {
    open override var typeName: String { "AdaptiveMaxPool2d" }

    open override func forward(_ x: Tensor) throws -> Tensor {
        try Functional.adaptiveMaxPool2d(x, outputSize: outputSize)
    }
}

extension MaxPool2d: ModuleDescribing {}
extension AvgPool2d: ModuleDescribing {}
extension AdaptivePool2d: ModuleDescribing {}
