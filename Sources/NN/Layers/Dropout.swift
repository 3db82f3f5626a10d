import Torch

/// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)` while
/// `usesTrainingBehaviour`; the identity in eval mode or when frozen. Like `torch.nn.Dropout`.
open class Dropout: Module {
    public let p: Double

    public init(p: Double = 0.5) throws {
        guard p >= 0, p <= 1 else {
            throw NNError.invalidArgument("dropout probability has to be between 0 and 1, but got \(p)")
        }
        self.p = p
        super.init()
    }

    open override var typeName: String { "Dropout" }

    open override func forward(_ x: Tensor) throws -> Tensor {
        guard usesTrainingBehaviour, p > 0 else { return x }
        return try Functional.dropout(x, p: p, training: true)
    }

    open var extraDescription: String { "p=\(pythonFloat(p)), inplace=False" }
}

extension Dropout: ModuleDescribing {}
