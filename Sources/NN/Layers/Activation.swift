import Torch

// Activations with PyTorch's class names. They have no parameters or buffers.

/// Base of the activations: a function of the input under PyTorch's class name (`typeName`), printed
/// with the constructor arguments PyTorch's repr shows (`extraDescription`).
open class Activation: Module {
    private let name: String
    private let arguments: String
    private let function: (Tensor) throws -> Tensor

    /// An activation printed as `name(arguments)` that applies `function` to its input (any shape).
    public init(_ name: String, arguments: String = "", _ function: @escaping (Tensor) throws -> Tensor) {
        self.name = name
        self.arguments = arguments
        self.function = function
        super.init()
    }

    /// PyTorch's class name, e.g. "ReLU".
    open override var typeName: String { name }
    /// Applies the activation elementwise (Softmax: along `dim`); the output has the input's shape.
    /// Under a `PrecisionPolicy`, in the dtype of `precisionKind`.
    open override func forward(_ x: Tensor) throws -> Tensor { try PrecisionPolicy.run(precisionKind, x, function) }
    /// The layer type a `PrecisionPolicy` gives a dtype: `.activation` unless a subclass has its own kind.
    open var precisionKind: PrecisionLayerKind { .activation }
    /// The repr arguments, e.g. `inplace=True` or `negative_slope=0.01`.
    open var extraDescription: String { arguments }
}

extension Activation: ModuleDescribing {}

/// `max(x, 0)`. With `inplace` (as torchvision's models build it), the result overwrites the input
/// whenever `Functional.mayOverwrite` allows.
open class ReLU: Activation {
    /// Whether the layer may overwrite its input (PyTorch's `inplace`; see `Functional.mayOverwrite`).
    public let inplace: Bool
    /// A ReLU; torchvision builds its models with `inplace: true`.
    public init(inplace: Bool = false) {
        self.inplace = inplace
        super.init("ReLU", arguments: inplace ? "inplace=True" : "") { try Functional.relu($0, inplace: inplace) }
    }
    /// `.relu`.
    open override var precisionKind: PrecisionLayerKind { .relu }
}

/// `min(max(x, 0), 6)`. With `inplace` (as torchvision's models build it), the result overwrites
/// the input whenever `Functional.mayOverwrite` allows.
open class ReLU6: Activation {
    /// Whether the layer may overwrite its input (PyTorch's `inplace`; see `Functional.mayOverwrite`).
    public let inplace: Bool
    /// A ReLU6 (MobileNetV2's activation); torchvision builds it with `inplace: true`.
    public init(inplace: Bool = false) {
        self.inplace = inplace
        super.init("ReLU6", arguments: inplace ? "inplace=True" : "") { try Functional.relu6($0, inplace: inplace) }
    }
    /// `.relu6`.
    open override var precisionKind: PrecisionLayerKind { .relu6 }
}

extension Functional {
    /// `x * sigmoid(x)`. A bf16 input on LibTorch 1.x is computed as those two operations: 1.13's fused
    /// bf16 SiLU kernel is 2.5× slower than fp32's, its bf16 sigmoid and multiply are not
    /// (`bench --precision-probe`, the `silu` row).
    public static func silu(_ x: Tensor) throws -> Tensor {
        guard x.dtype == .bfloat16, composedBF16SiLU else { return try x.silu() }
        return try x * x.sigmoid()
    }
    static let composedBF16SiLU = Runtime.libTorchMajorVersion == 1

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
open class LeakyReLU: Activation {
    /// The slope for negative inputs (PyTorch's `negative_slope`), 0.01 by default.
    public let negativeSlope: Double
    /// A leaky ReLU as `torch.nn.LeakyReLU(negative_slope)`.
    public init(negativeSlope: Double = 0.01) {
        self.negativeSlope = negativeSlope
        super.init("LeakyReLU", arguments: "negative_slope=\(pythonFloat(negativeSlope))") { try $0.leakyRelu(negativeSlope) }
    }
}

/// `x * sigmoid(x)` (a.k.a. swish).
open class SiLU: Activation {
    public init() { super.init("SiLU") { try Functional.silu($0) } }
    /// `.silu`.
    open override var precisionKind: PrecisionLayerKind { .silu }
}

/// `1 / (1 + exp(-x))`.
open class Sigmoid: Activation { public init() { super.init("Sigmoid") { try $0.sigmoid() } } }

/// Hyperbolic tangent.
open class Tanh: Activation { public init() { super.init("Tanh") { try $0.tanh() } } }

/// Gaussian error linear unit; `approximateTanh` is PyTorch's `approximate="tanh"`.
open class GELU: Activation {
    /// Whether to use the tanh approximation instead of the exact erf form.
    public let approximateTanh: Bool
    /// A GELU as `torch.nn.GELU(approximate=)`.
    public init(approximateTanh: Bool = false) {
        self.approximateTanh = approximateTanh
        super.init("GELU", arguments: "approximate='\(approximateTanh ? "tanh" : "none")'") {
            try $0.gelu(approximateTanh: approximateTanh)
        }
    }
}

/// `x * relu6(x + 3) / 6` (MobileNetV3).
open class Hardswish: Activation { public init() { super.init("Hardswish") { try $0.hardswish() } } }

/// `relu6(x + 3) / 6` (MobileNetV3's squeeze-excitation gate).
open class Hardsigmoid: Activation { public init() { super.init("Hardsigmoid") { try $0.hardsigmoid() } } }

/// Softmax along `dim`.
open class Softmax: Activation {
    /// The dimension whose entries sum to 1 (1 for [N, classes] logits).
    public let dim: Int
    /// A softmax along `dim`, as `torch.nn.Softmax(dim)`.
    public init(dim: Int) {
        self.dim = dim
        super.init("Softmax", arguments: "dim=\(dim)") { try Functional.softmax($0, dim: dim) }
    }
}
