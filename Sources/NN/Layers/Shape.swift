import Torch

/// Flattens dimensions `startDim...endDim` into one, like `torch.nn.Flatten` (default: all but the batch).
open class Flatten: Module {
    public let startDim: Int
    public let endDim: Int

    public init(startDim: Int = 1, endDim: Int = -1) {
        self.startDim = startDim
        self.endDim = endDim
        super.init()
    }

    open override var typeName: String { "Flatten" }
    open override func forward(_ x: Tensor) throws -> Tensor { try x.flatten(from: startDim, to: endDim) }
    open var extraDescription: String { "start_dim=\(startDim), end_dim=\(endDim)" }
}

/// Returns its input unchanged, like `torch.nn.Identity` (e.g. to remove a classifier head).
open class Identity: Module {
    public override init() { super.init() }
    open override var typeName: String { "Identity" }
    open override func forward(_ x: Tensor) throws -> Tensor { x }
    open var extraDescription: String { "" }
}

extension Flatten: ModuleDescribing {}
extension Identity: ModuleDescribing {}
