import Torch

/// Flattens dimensions `startDim...endDim` into one, like `torch.nn.Flatten` (default: all but the batch).
open class Flatten: Module {
    /// The first dimension merged (1 by default, keeping the batch dimension); negative counts from the end.
    public let startDim: Int
    /// The last dimension merged, inclusive (-1, the last, by default).
    public let endDim: Int

    /// A flatten of `startDim...endDim`; the defaults turn [N, C, H, W] into [N, C·H·W].
    public init(startDim: Int = 1, endDim: Int = -1) {
        self.startDim = startDim
        self.endDim = endDim
        super.init()
    }

    /// "Flatten", as PyTorch prints it.
    open override var typeName: String { "Flatten" }
    /// `x.flatten(from: startDim, to: endDim)`, a view when the layout allows.
    open override func forward(_ x: Tensor) throws -> Tensor { try x.flatten(from: startDim, to: endDim) }
    /// `start_dim=1, end_dim=-1`, as PyTorch's repr shows it.
    open var extraDescription: String { "start_dim=\(startDim), end_dim=\(endDim)" }
}

/// Returns its input unchanged, like `torch.nn.Identity` (e.g. to remove a classifier head).
open class Identity: Module {
    /// An identity layer; it has no parameters.
    public override init() { super.init() }
    /// "Identity", as PyTorch prints it.
    open override var typeName: String { "Identity" }
    /// Returns `x` itself, not a copy.
    open override func forward(_ x: Tensor) throws -> Tensor { x }
    /// Empty: `Identity()`.
    open var extraDescription: String { "" }
}

extension Flatten: ModuleDescribing {}
extension Identity: ModuleDescribing {}
