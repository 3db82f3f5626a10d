import Torch

/// Fully connected layer `y = x Wᵀ + b`, like `torch.nn.Linear`: parameters `weight`
/// `[outFeatures, inFeatures]` and `bias` `[outFeatures]`, initialised as PyTorch does.
open class Linear: Module {
    /// The size of the input's last dimension (PyTorch's `in_features`).
    public let inFeatures: Int
    /// The size of the output's last dimension (PyTorch's `out_features`), e.g. the number of classes.
    public let outFeatures: Int
    /// `[outFeatures, inFeatures]` weights, as `torch.nn.Linear.weight` (state-dict key `weight`).
    public let weight: Tensor
    /// nil when built with `bias: false`.
    public let bias: Tensor?
    /// The weight and bias cast to bf16 as inference last ran them, while the parameters are unchanged.
    let preparedWeights = PreparedWeights()

    /// Kaiming-uniform weight (`a = sqrt(5)`, i.e. ±1/sqrt(in)) and bias uniform in ±1/sqrt(in).
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, dtype: DType = .float32,
                device: Device = .cpu) throws {
        guard inFeatures >= 0, outFeatures >= 0 else {
            throw NNError.invalidArgument("Linear: feature counts must be non-negative")
        }
        self.inFeatures = inFeatures
        self.outFeatures = outFeatures
        weight = try Initialization.kaimingUniformParameter([outFeatures, inFeatures], fanIn: inFeatures,
                                                            dtype: dtype, device: device)
        self.bias = bias
            ? try Initialization.biasParameter([outFeatures], fanIn: inFeatures, dtype: dtype, device: device) : nil
        super.init()
    }

    /// "Linear", as PyTorch prints it.
    open override var typeName: String { "Linear" }

    /// `weight`, then `bias` when present.
    open override var namedLocalParameters: [(String, Tensor)] { weightAndBias(weight, bias) }

    /// `[..., inFeatures]` → `[..., outFeatures]` (`torch.nn.functional.linear`); throws when the last
    /// dimension is not `inFeatures`.
    open override func forward(_ x: Tensor) throws -> Tensor {
        try PrecisionPolicy.run(.linear, x, parameters: [weight, bias]) { x in
            let (weight, bias) = try preparedWeights.weights(weight, bias)
            return try Functional.linear(x, weight: weight, bias: bias)
        }
    }

    /// `in_features=1280, out_features=10, bias=True`.
    open var extraDescription: String {
        "in_features=\(inFeatures), out_features=\(outFeatures), bias=\(pythonBool(bias != nil))"
    }
}

extension Linear: ModuleDescribing {}
