import Foundation
import Torch

/// The settings Adam and AdamW share.
struct AdamSettings {
    var beta1: Double
    var beta2: Double
    var epsilon: Double
    var amsgrad: Bool
    var maximize: Bool

    init(betas: (Double, Double), epsilon: Double, amsgrad: Bool, maximize: Bool) throws {
        guard epsilon >= 0 else { throw OptimizerError.invalidHyperparameter("epsilon \(epsilon) < 0") }
        guard (0..<1).contains(betas.0) else { throw OptimizerError.invalidHyperparameter("beta1 \(betas.0) not in [0, 1)") }
        guard (0..<1).contains(betas.1) else { throw OptimizerError.invalidHyperparameter("beta2 \(betas.1) not in [0, 1)") }
        (beta1, beta2) = betas
        self.epsilon = epsilon
        self.amsgrad = amsgrad
        self.maximize = maximize
    }

    var options: [String: Double] {
        ["betas.0": beta1, "betas.1": beta2, "eps": epsilon, "amsgrad": amsgrad ? 1 : 0, "maximize": maximize ? 1 : 0]
    }
    var bufferNames: [String] { amsgrad ? ["exp_avg", "exp_avg_sq", "max_exp_avg_sq"] : ["exp_avg", "exp_avg_sq"] }

    /// PyTorch 1.13's `_single_tensor_adam` / `_single_tensor_adamw` (non-capturable path), with
    /// `beta1` the group's β1 (a schedule may cycle it; the bias correction uses it, as PyTorch's).
    func update(_ parameter: Tensor, gradient: Tensor, state: ParameterState, learningRate lr: Double,
                weightDecay: Double, beta1: Double, decoupled: Bool) throws {
        let expAvg = try state.buffer("exp_avg", like: parameter)
        let expAvgSq = try state.buffer("exp_avg_sq", like: parameter)
        state.step += 1
        let grad: Tensor
        if decoupled {
            grad = maximize ? try gradient.neg() : gradient
            if weightDecay != 0 { try parameter.mul_(1 - lr * weightDecay) }
        } else {
            grad = try effectiveGradient(gradient, parameter: parameter, maximize: maximize,
                                         weightDecay: weightDecay).tensor
        }
        try expAvg.mul_(beta1)
        try expAvg.add_(grad, alpha: 1 - beta1)
        try expAvgSq.mul_(beta2)
        try expAvgSq.addcmul_(grad, grad, value: 1 - beta2)

        let step = Double(state.step)
        let biasCorrection1 = 1 - pow(beta1, step)
        let biasCorrection2 = 1 - pow(beta2, step)
        let stepSize = lr / biasCorrection1
        let denom: Tensor
        if amsgrad {
            let maxExpAvgSq = try state.buffer("max_exp_avg_sq", like: parameter)
            try maxExpAvgSq.maximum_(expAvgSq)
            denom = try maxExpAvgSq.sqrt()
        } else {
            denom = try expAvgSq.sqrt()
        }
        try denom.div_(biasCorrection2.squareRoot())
        try denom.add_(epsilon)
        try parameter.addcdiv_(expAvg, denom, value: -stepSize)
    }
}

/// What Adam and AdamW share: settings, state and update. They differ in how weight decay applies
/// (`decoupled`) and in its default.
public class AdamBase: Optimizer {
    let settings: AdamSettings
    /// AdamW's `p *= 1 - lr * weightDecay` instead of Adam's L2 term in the gradient.
    let decoupled: Bool
    /// (β1, β2): decay rates of the first- and second-moment averages, each in [0, 1) (PyTorch's `betas`).
    public var betas: (Double, Double) { (settings.beta1, settings.beta2) }
    /// Added to the denominator for numerical stability (PyTorch's `eps`), 1e-8 by default.
    public var epsilon: Double { settings.epsilon }
    /// Whether the denominator uses the running maximum of the second moment (AMSGrad).
    public var amsgrad: Bool { settings.amsgrad }
    /// Whether to ascend the objective instead of descending it (PyTorch's `maximize`).
    public var maximize: Bool { settings.maximize }

    init(groups: [ParameterGroup], learningRate: Double, betas: (Double, Double), epsilon: Double,
         weightDecay: Double, amsgrad: Bool, maximize: Bool, decoupled: Bool) throws {
        settings = try AdamSettings(betas: betas, epsilon: epsilon, amsgrad: amsgrad, maximize: maximize)
        self.decoupled = decoupled
        try super.init(groups: groups, learningRate: learningRate, weightDecay: weightDecay)
    }

    override var options: [String: Double] { settings.options }
    override var countsSteps: Bool { true }
    override var bufferNames: [String] { settings.bufferNames }
    override public var momentumName: String? { "betas.0" }

    override func update(_ parameter: Tensor, gradient: Tensor, state: ParameterState, learningRate: Double,
                         weightDecay: Double, momentum: Double?) throws {
        try settings.update(parameter, gradient: gradient, state: state, learningRate: learningRate,
                            weightDecay: weightDecay, beta1: momentum ?? settings.beta1, decoupled: decoupled)
    }
}

/// Adam with L2 weight decay added to the gradient (PyTorch's `torch.optim.Adam`), bias-corrected
/// as PyTorch's single-tensor implementation, with t the parameter's own step count:
///
///     g = grad + weightDecay * p;   m = β1 m + (1-β1) g;   v = β2 v + (1-β2) g²
///     p -= lr / (1 - β1^t) * m / (sqrt(v) / sqrt(1 - β2^t) + eps)
///
/// With AMSGrad, `v` in the denominator is replaced by its running maximum. The moment updates use
/// `mul_` + `add_` as PyTorch 1.13 (2.x uses `lerp_`, equal up to float32 rounding).
///
/// State per parameter: `step`, `exp_avg`, `exp_avg_sq` (+ `max_exp_avg_sq` with AMSGrad).
public final class Adam: AdamBase {
    /// Adam over `groups` with PyTorch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no weight decay).
    /// Throws `OptimizerError.invalidHyperparameter` for a beta outside [0, 1) or a negative value.
    public init(_ groups: [ParameterGroup], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 0, amsgrad: Bool = false, maximize: Bool = false) throws {
        try super.init(groups: groups, learningRate: learningRate, betas: betas, epsilon: epsilon,
                       weightDecay: weightDecay, amsgrad: amsgrad, maximize: maximize, decoupled: false)
    }

    /// One group of named parameters (e.g. `model.trainableParameters()`).
    public convenience init(_ parameters: [(String, Tensor)], learningRate: Double = 1e-3,
                            betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8, weightDecay: Double = 0,
                            amsgrad: Bool = false, maximize: Bool = false) throws {
        try self.init([ParameterGroup(parameters: parameters)], learningRate: learningRate, betas: betas,
                      epsilon: epsilon, weightDecay: weightDecay, amsgrad: amsgrad, maximize: maximize)
    }

    override var kind: String { "Adam" }
}

/// Adam with decoupled weight decay (PyTorch's `torch.optim.AdamW`): before the Adam update,
/// `p *= 1 - lr * weightDecay`; the gradient itself is not decayed. Default weight decay 1e-2.
/// State as `Adam`.
public final class AdamW: AdamBase {
    /// AdamW over `groups` with PyTorch's defaults (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2).
    /// Throws `OptimizerError.invalidHyperparameter` for a beta outside [0, 1) or a negative value.
    public init(_ groups: [ParameterGroup], learningRate: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999),
                epsilon: Double = 1e-8, weightDecay: Double = 1e-2, amsgrad: Bool = false,
                maximize: Bool = false) throws {
        try super.init(groups: groups, learningRate: learningRate, betas: betas, epsilon: epsilon,
                       weightDecay: weightDecay, amsgrad: amsgrad, maximize: maximize, decoupled: true)
    }

    /// One group of named parameters (e.g. `model.trainableParameters()`).
    public convenience init(_ parameters: [(String, Tensor)], learningRate: Double = 1e-3,
                            betas: (Double, Double) = (0.9, 0.999), epsilon: Double = 1e-8,
                            weightDecay: Double = 1e-2, amsgrad: Bool = false, maximize: Bool = false) throws {
        try self.init([ParameterGroup(parameters: parameters)], learningRate: learningRate, betas: betas,
                      epsilon: epsilon, weightDecay: weightDecay, amsgrad: amsgrad, maximize: maximize)
    }

    override var kind: String { "AdamW" }
}
