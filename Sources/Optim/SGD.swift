import Torch

/// Stochastic gradient descent with optional momentum, dampening, Nesterov momentum and L2 weight
/// decay: PyTorch's `torch.optim.SGD`. Per parameter, with `g` the gradient (negated when
/// `maximize`) plus `weightDecay * p`:
///
///     buf = g on the first step, else buf * momentum + (1 - dampening) * g   (when momentum ≠ 0)
///     g   = g + momentum * buf  (Nesterov)  or  buf
///     p  -= lr * g
///
/// State: `momentum_buffer` (only when momentum ≠ 0).
public final class SGD: Optimizer {
    /// The momentum factor (PyTorch's `momentum`); 0 is plain SGD without a momentum buffer.
    public let momentum: Double
    /// How much of each new gradient is left out of the momentum buffer (PyTorch's `dampening`), usually 0.
    public let dampening: Double
    /// Whether to use Nesterov momentum (needs momentum > 0 and dampening 0).
    public let nesterov: Bool
    /// Whether to ascend the objective instead of descending it (PyTorch's `maximize`).
    public let maximize: Bool

    /// Throws for negative values, and when `nesterov` is set without momentum or with dampening.
    public init(_ groups: [ParameterGroup], learningRate: Double, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false, maximize: Bool = false) throws {
        guard momentum >= 0 else { throw OptimizerError.invalidHyperparameter("momentum \(momentum) < 0") }
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw OptimizerError.invalidHyperparameter(
                "Nesterov momentum requires a momentum and zero dampening (momentum \(momentum), dampening \(dampening))")
        }
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.maximize = maximize
        try super.init(groups: groups, learningRate: learningRate, weightDecay: weightDecay)
    }

    /// One group of named parameters (e.g. `model.trainableParameters()`).
    public convenience init(_ parameters: [(String, Tensor)], learningRate: Double, momentum: Double = 0,
                            dampening: Double = 0, weightDecay: Double = 0, nesterov: Bool = false,
                            maximize: Bool = false) throws {
        try self.init([ParameterGroup(parameters: parameters)], learningRate: learningRate, momentum: momentum,
                      dampening: dampening, weightDecay: weightDecay, nesterov: nesterov, maximize: maximize)
    }

    override var kind: String { "SGD" }
    override var options: [String: Double] {
        ["momentum": momentum, "dampening": dampening, "nesterov": nesterov ? 1 : 0, "maximize": maximize ? 1 : 0]
    }
    override var bufferNames: [String] { momentum != 0 ? ["momentum_buffer"] : [] }
    override public var momentumName: String? { momentum != 0 ? "momentum" : nil }

    override func update(_ parameter: Tensor, gradient: Tensor, state: ParameterState, learningRate: Double,
                         weightDecay: Double, momentum groupMomentum: Double?) throws {
        var (g, owned) = try effectiveGradient(gradient, parameter: parameter, maximize: maximize,
                                               weightDecay: weightDecay)
        let momentum = groupMomentum ?? self.momentum
        if momentum != 0 {
            let buffer: Tensor
            if let existing = state.tensors["momentum_buffer"] {
                buffer = existing
                try buffer.mul_(momentum)
                try buffer.add_(g, alpha: 1 - dampening)
            } else {
                buffer = try g.clone()
                state.tensors["momentum_buffer"] = buffer
            }
            if nesterov {
                if owned { try g.add_(buffer, alpha: momentum) } else { g = try g.add(buffer, alpha: momentum) }
                owned = true
            } else {
                g = buffer
            }
        }
        try parameter.add_(g, alpha: -learningRate)
    }
}
