import Torch

// Element-wise activations with PyTorch's class names. They have no parameters or buffers.

/// `max(x, 0)`.
open class ReLU: Module {
    public override init() { super.init() }
    open override var typeName: String { "ReLU" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.relu() }
    open var extraDescription: String { "" }
}

/// `min(max(x, 0), 6)`.
open class ReLU6: Module {
    public override init() { super.init() }
    open override var typeName: String { "ReLU6" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.relu6() }
    open var extraDescription: String { "" }
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
