import Torch

// Element-wise activations with PyTorch's class names. They have no parameters or buffers.

/// `max(x, 0)`. With `inplace` (as torchvision's models build it), the result overwrites the input
/// whenever `Functional.mayOverwrite` allows.
open class ReLU: Module {
    public let inplace: Bool
    public init(inplace: Bool = false) {
        self.inplace = inplace
        super.init()
    }
    open override var typeName: String { "ReLU" }
    open override func forward(_ x: Tensor) throws -> Tensor { try Functional.relu(x, inplace: inplace) }
    open var extraDescription: String { inplace ? "inplace=True" : "" }
}

/// `min(max(x, 0), 6)`. With `inplace` (as torchvision's models build it), the result overwrites
/// the input whenever `Functional.mayOverwrite` allows.
open class ReLU6: Module {
    public let inplace: Bool
    public init(inplace: Bool = false) {
        self.inplace = inplace
        super.init()
    }
    open override var typeName: String { "ReLU6" }
    open override func forward(_ x: Tensor) throws -> Tensor { try Functional.relu6(x, inplace: inplace) }
    open var extraDescription: String { inplace ? "inplace=True" : "" }
}

extension Functional {
    /// Whether an in-place activation may write its result into `x`: not while autograd records
    /// `x` (gradient mode on and `x` requires grad, where the backward pass needs the input), not
    /// for a tensor made in inference mode once outside it, and not while a `ModelSummary` records
    /// each layer's output. In inference, and inside a frozen backbone, it may: that saves
    /// allocating (and page-faulting) one activation-sized tensor.
    public static func mayOverwrite(_ x: Tensor) -> Bool {
        guard ForwardRecorder.active == nil else { return false }
        return GradMode.isInferenceMode || (!(GradMode.isEnabled && x.requiresGrad) && !x.isInference)
    }

    /// `max(x, 0)`, written into `x` when `inplace` and `mayOverwrite(x)` (PyTorch's
    /// `F.relu(x, inplace=True)`).
    public static func relu(_ x: Tensor, inplace: Bool) throws -> Tensor {
        guard inplace, mayOverwrite(x) else { return try x.relu() }
        try x.clamp_(min: 0)
        return x
    }

    /// `min(max(x, 0), 6)`, written into `x` when `inplace` and `mayOverwrite(x)`.
    public static func relu6(_ x: Tensor, inplace: Bool) throws -> Tensor {
        guard inplace, mayOverwrite(x) else { return try x.relu6() }
        try x.clamp_(min: 0, max: 6)
        return x
    }
}

/// `x` for positive inputs, `negativeSlope * x` otherwise.
open class LeakyReLU: Module {
    public let negativeSlope: Double
    public init(negativeSlope: Double = 0.01) {
        self.negativeSlope = negativeSlope
        super.init()
    }
    open override var typeName: String { "LeakyReLU" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.leakyRelu(negativeSlope) }
    open var extraDescription: String { "negative_slope=\(pythonFloat(negativeSlope))" }
}

/// `x * sigmoid(x)` (a.k.a. swish).
open class SiLU: Module {
    public override init() { super.init() }
    open override var typeName: String { "SiLU" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.silu() }
    open var extraDescription: String { "" }
}

/// `1 / (1 + exp(-x))`.
open class Sigmoid: Module {
    public override init() { super.init() }
    open override var typeName: String { "Sigmoid" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.sigmoid() }
    open var extraDescription: String { "" }
}

/// Hyperbolic tangent.
open class Tanh: Module {
    public override init() { super.init() }
    open override var typeName: String { "Tanh" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.tanh() }
    open var extraDescription: String { "" }
}

/// Gaussian error linear unit; `approximateTanh` is PyTorch's `approximate="tanh"`.
open class GELU: Module {
    public let approximateTanh: Bool
    public init(approximateTanh: Bool = false) {
        self.approximateTanh = approximateTanh
        super.init()
    }
    open override var typeName: String { "GELU" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.gelu(approximateTanh: approximateTanh) }
    open var extraDescription: String { "approximate='\(approximateTanh ? "tanh" : "none")'" }
}

/// `x * relu6(x + 3) / 6` (MobileNetV3).
open class Hardswish: Module {
    public override init() { super.init() }
    open override var typeName: String { "Hardswish" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.hardswish() }
    open var extraDescription: String { "" }
}

/// `relu6(x + 3) / 6` (MobileNetV3's squeeze-excitation gate).
open class Hardsigmoid: Module {
    public override init() { super.init() }
    open override var typeName: String { "Hardsigmoid" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.hardsigmoid() }
    open var extraDescription: String { "" }
}

/// Softmax along `dim`.
open class Softmax: Module {
    public let dim: Int
    public init(dim: Int) {
        self.dim = dim
        super.init()
    }
    open override var typeName: String { "Softmax" }
    open override func forward(_ x: Tensor) throws -> Tensor { try Functional.softmax(x, dim: dim) }
    open var extraDescription: String { "dim=\(dim)" }
}

extension ReLU: ModuleDescribing {}
extension ReLU6: ModuleDescribing {}
extension LeakyReLU: ModuleDescribing {}
extension SiLU: ModuleDescribing {}
extension Sigmoid: ModuleDescribing {}
extension Tanh: ModuleDescribing {}
extension GELU: ModuleDescribing {}
extension Hardswish: ModuleDescribing {}
extension Hardsigmoid: ModuleDescribing {}
extension Softmax: ModuleDescribing {}
