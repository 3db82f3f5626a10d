import Torch

/// Zeroes each element with probability `p` and scales the rest by `1 / (1 - p)` while
/// `usesTrainingBehaviour`; the identity in eval mode or when frozen. Like `torch.nn.Dropout`.
open class Dropout: Module {
    /// The probability of zeroing each element, in [0, 1] (`setProbability` changes it).
    public private(set) var p: Double

    /// Throws `NNError.invalidArgument` unless 0 ≤ `p` ≤ 1, as `torch.nn.Dropout` does.
    public init(p: Double = 0.5) throws {
        self.p = try Self.checked(p)
        super.init()
    }

    /// Sets `p` (e.g. 0 to turn off an architecture's dropout that a new head replaces). Throws
    /// `NNError.invalidArgument` unless 0 ≤ `p` ≤ 1.
    public func setProbability(_ p: Double) throws {
        self.p = try Self.checked(p)
    }

    /// `p` when 0 ≤ `p` ≤ 1; `NNError.invalidArgument` otherwise.
    private static func checked(_ p: Double) throws -> Double {
        guard p >= 0, p <= 1 else {
            throw NNError.invalidArgument("dropout probability has to be between 0 and 1, but got \(p)")
        }
        return p
    }

    /// "Dropout", as PyTorch prints it.
    open override var typeName: String { "Dropout" }

    /// Any shape; returns `x` itself (no copy) in inference, when frozen, or when `p` is 0.
    open override func forward(_ x: Tensor) throws -> Tensor {
        guard usesTrainingBehaviour, p > 0 else { return x }
        return try Functional.dropout(x, p: p, training: true)
    }

    /// `p=0.5, inplace=False`, as PyTorch's repr shows it.
    open var extraDescription: String { "p=\(pythonFloat(p)), inplace=False" }
}

extension Dropout: ModuleDescribing {}
