import Torch

/// RMSprop as PyTorch's `torch.optim.RMSprop`, with g the gradient (negated when `maximize`) plus
/// `weightDecay * p`:
///
///     v = α v + (1-α) g²;   centered: ḡ = α ḡ + (1-α) g,  v' = v - ḡ²  (else v' = v)
///     denom = sqrt(v') + eps            (PyTorch; `epsilonInsideSqrt`: sqrt(v' + eps))
///     momentum > 0: buf = momentum * buf + g / denom;  p -= lr * buf
///     else:         p -= lr * g / denom
///
/// `epsilonInsideSqrt` is TensorFlow's placement (`tf.train.RMSPropOptimizer`, `tf.keras` RMSprop),
/// which TF-slim recipes tune for (e.g. decay 0.9, momentum 0.9, epsilon 1.0): with a large epsilon
/// the two placements differ a lot. Other TF differences are not emulated: TF 1 starts `v` at ones
/// rather than zeros, and its `decay` is this `alpha`.
///
/// State per parameter: `step`, `square_avg` (+ `momentum_buffer` with momentum, `grad_avg` when centered).
public final class RMSprop: Optimizer {
    /// The smoothing constant of the squared-gradient average (PyTorch's `alpha`, TF's `decay`), 0.99 by default.
    public let alpha: Double
    /// Added to the denominator for numerical stability (PyTorch's `eps`); see `epsilonInsideSqrt`.
    public let epsilon: Double
    /// The momentum factor; 0 applies `g / denom` directly without a momentum buffer.
    public let momentum: Double
    /// Whether to normalise by the estimated variance (subtracting the squared mean gradient) rather
    /// than the uncentered second moment (PyTorch's `centered`).
    public let centered: Bool
    /// Whether `epsilon` is added under the square root, as TensorFlow does, instead of after it as PyTorch does.
    public let epsilonInsideSqrt: Bool
    /// Whether to ascend the objective instead of descending it (PyTorch's `maximize`).
    public let maximize: Bool

    /// RMSprop over `groups` with PyTorch's defaults (lr 1e-2, alpha 0.99, eps 1e-8). Throws
    /// `OptimizerError.invalidHyperparameter` for a negative learning rate, alpha, epsilon, momentum or weight decay.
    public init(_ groups: [ParameterGroup], learningRate: Double = 1e-2, alpha: Double = 0.99,
                epsilon: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0, centered: Bool = false,
                epsilonInsideSqrt: Bool = false, maximize: Bool = false) throws {
        guard epsilon >= 0 else { throw OptimizerError.invalidHyperparameter("epsilon \(epsilon) < 0") }
        guard momentum >= 0 else { throw OptimizerError.invalidHyperparameter("momentum \(momentum) < 0") }
        guard alpha >= 0 else { throw OptimizerError.invalidHyperparameter("alpha \(alpha) < 0") }
        self.alpha = alpha
        self.epsilon = epsilon
        self.momentum = momentum
        self.centered = centered
        self.epsilonInsideSqrt = epsilonInsideSqrt
        self.maximize = maximize
        try super.init(groups: groups, learningRate: learningRate, weightDecay: weightDecay)
    }

    /// One group of named parameters (e.g. `model.trainableParameters()`).
    public convenience init(_ parameters: [(String, Tensor)], learningRate: Double = 1e-2, alpha: Double = 0.99,
                            epsilon: Double = 1e-8, weightDecay: Double = 0, momentum: Double = 0,
                            centered: Bool = false, epsilonInsideSqrt: Bool = false, maximize: Bool = false) throws {
        try self.init([ParameterGroup(parameters: parameters)], learningRate: learningRate, alpha: alpha,
                      epsilon: epsilon, weightDecay: weightDecay, momentum: momentum, centered: centered,
                      epsilonInsideSqrt: epsilonInsideSqrt, maximize: maximize)
    }

    override var kind: String { "RMSprop" }
    override var options: [String: Double] {
        ["alpha": alpha, "eps": epsilon, "momentum": momentum, "centered": centered ? 1 : 0,
         "epsilon_inside_sqrt": epsilonInsideSqrt ? 1 : 0, "maximize": maximize ? 1 : 0]
    }
    override var countsSteps: Bool { true }
    override var bufferNames: [String] {
        ["square_avg"] + (momentum > 0 ? ["momentum_buffer"] : []) + (centered ? ["grad_avg"] : [])
    }

    override public var momentumName: String? { momentum > 0 ? "momentum" : nil }

    override func update(_ parameter: Tensor, gradient: Tensor, state: ParameterState, learningRate: Double,
                         weightDecay: Double, momentum groupMomentum: Double?) throws {
        let momentum = groupMomentum ?? self.momentum
        let squareAvg = try state.buffer("square_avg", like: parameter)
        // The buffer exists whenever the optimizer has momentum (as PyTorch creates it on the first
        // step); a step whose cycled momentum is 0 leaves it untouched.
        let kept = self.momentum > 0 ? try state.buffer("momentum_buffer", like: parameter) : nil
        let buffer = momentum > 0 ? kept : nil
        let gradAvg = centered ? try state.buffer("grad_avg", like: parameter) : nil
        state.step += 1
        let grad = try effectiveGradient(gradient, parameter: parameter, maximize: maximize,
                                         weightDecay: weightDecay).tensor
        try squareAvg.mul_(alpha)
        try squareAvg.addcmul_(grad, grad, value: 1 - alpha)

        let avg: Tensor
        if let gradAvg {
            try gradAvg.mul_(alpha)
            try gradAvg.add_(grad, alpha: 1 - alpha)
            avg = try squareAvg.clone()
            try avg.addcmul_(gradAvg, gradAvg, value: -1)
            if epsilonInsideSqrt { try avg.add_(epsilon) }
            try avg.sqrt_()
        } else if epsilonInsideSqrt {
            avg = try squareAvg + epsilon
            try avg.sqrt_()
        } else {
            avg = try squareAvg.sqrt()
        }
        if !epsilonInsideSqrt { try avg.add_(epsilon) }

        if let buffer {
            try buffer.mul_(momentum)
            try buffer.addcdiv_(grad, avg)
            try parameter.add_(buffer, alpha: -learningRate)
        } else {
            try parameter.addcdiv_(grad, avg, value: -learningRate)
        }
    }
}
