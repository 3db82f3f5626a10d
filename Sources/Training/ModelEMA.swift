import Foundation
import NN
import Torch

/// The settings of an exponential moving average of a model's weights: timm's `ModelEmaV3` with
/// `exclude_buffers=True` (parameters averaged, buffers such as BatchNorm's running statistics
/// copied), updated after every optimizer step with that step's number, as timm's `train.py` does.
public struct EMAConfig: Codable, Equatable, Sendable {
    /// The decay `d` of `ema = d · ema + (1 − d) · weights` (timm's `--model-ema-decay`), in [0, 1).
    public var decay: Double
    /// timm's `use_warmup` (`--model-ema-warmup`): the decay grows as `1 − (1 + t / γ)^(−p)` up to `decay`.
    public var warmup: Bool
    /// The warmup's γ (timm's `warmup_gamma`, 1).
    public var warmupGamma: Double
    /// The warmup's power p (timm's `warmup_power`, 2/3).
    public var warmupPower: Double
    /// The smallest decay the warmup gives (timm's `min_decay`, 0).
    public var minDecay: Double

    /// timm's defaults besides `decay` and `warmup`.
    public init(decay: Double, warmup: Bool = false, warmupGamma: Double = 1, warmupPower: Double = 2.0 / 3.0,
                minDecay: Double = 0) {
        self.decay = decay
        self.warmup = warmup
        self.warmupGamma = warmupGamma
        self.warmupPower = warmupPower
        self.minDecay = minDecay
    }

    /// The decay of the update after optimizer step `step` (1 for the first): timm's
    /// `get_decay(step)` with `update_after_step = 0`. The first update's decay is 0, so the average
    /// starts as a copy of the weights after the first step; so is any step below 1.
    public func decay(atStep step: Int) -> Double {
        guard step > 1 else { return 0 }
        let t = step - 1
        guard warmup else { return decay }
        let warm = 1 - Foundation.pow(1 + Double(t) / warmupGamma, -warmupPower)
        return Swift.max(Swift.min(warm, decay), minDecay)
    }

    /// The share of the average that is still the weights after step 1 (its first update, a copy) once
    /// `steps` optimizer steps have been folded in: the product of the later updates' decays. An
    /// average of about `1 / (1 − decay)` steps that is given far fewer is mostly those first weights.
    public func shareOfFirstUpdate(afterSteps steps: Int) -> Double {
        guard steps > 1 else { return 1 }
        guard warmup else { return Foundation.pow(decay, Double(steps - 1)) }
        var share = 1.0
        for step in 2...steps {
            share *= self.decay(atStep: step)
            if share < 1e-9 { return 0 }
        }
        return share
    }

    /// Throws unless the decay and minimum decay are in [0, 1) and the warmup's gamma and power are
    /// finite and positive (`ModelEMA` checks it).
    public func validate() throws {
        guard decay >= 0, decay < 1 else {
            throw TrainingError.invalidConfiguration("the EMA decay must be in [0, 1), got \(decay)")
        }
        guard warmupGamma > 0, warmupGamma.isFinite, warmupPower > 0, warmupPower.isFinite,
              minDecay >= 0, minDecay < 1 else {
            throw TrainingError.invalidConfiguration("EMA warmup gamma and power must be positive, min decay in [0, 1)")
        }
    }
}

/// An exponential moving average of a model's weights (see `EMAConfig`): a copy of the model's
/// `state_dict` whose floating-point parameters are averaged after each optimizer step and whose
/// buffers are copied. `Trainer` evaluates it every epoch (`val_*_ema`) and saves it in checkpoints.
public final class ModelEMA {
    /// The settings.
    public let configuration: EMAConfig
    /// The averaged parameters and copied buffers, under the model's `state_dict` keys.
    public let state: StateDict
    private let parameterKeys: Set<String>

    /// An average that starts as a copy of `model`'s current weights (timm deep-copies the model).
    public convenience init(model: Module, configuration: EMAConfig) throws {
        var copy = StateDict()
        try withNoGrad {
            for (key, tensor) in model.stateDict() { copy[key] = try tensor.detach().clone() }
        }
        try self.init(model: model, configuration: configuration, state: copy)
    }

    /// An average restored from `state` (a checkpoint's), which must have `model`'s keys and shapes.
    public init(model: Module, configuration: EMAConfig, state: StateDict) throws {
        // A decay of 5 or NaN averaged the weights into garbage without a word; only Trainer checked.
        try configuration.validate()
        let own = model.stateDict()
        for (key, tensor) in own {
            guard let saved = state[key], saved.shape == tensor.shape, saved.dtype == tensor.dtype else {
                throw TrainingError.resumeMismatch("the EMA weights do not fit the model at '\(key)'")
            }
        }
        guard state.count == own.count else {
            throw TrainingError.resumeMismatch("the EMA weights have \(state.count) tensors, the model \(own.count)")
        }
        self.configuration = configuration
        self.state = state
        parameterKeys = Set(model.namedParameters().map(\.0))
    }

    /// Folds `model`'s weights after optimizer step `step` into the average: floating-point
    /// parameters `ema.lerp_(w, 1 − decay)`, every buffer copied.
    public func update(from model: Module, step: Int) throws {
        let weight = 1 - configuration.decay(atStep: step)
        try withNoGrad {
            for (key, tensor) in model.stateDict() {
                guard let average = state[key] else { throw TrainingError.resumeMismatch("no EMA tensor for '\(key)'") }
                if parameterKeys.contains(key) && tensor.dtype.isFloatingPoint {
                    try average.lerp_(tensor, weight: weight)
                } else {
                    try average.copy_(tensor)
                }
            }
        }
    }

    /// Runs `body` while `model` holds the averaged weights, then puts its own weights back (also
    /// when `body` throws). The model's tensors are overwritten in place, so optimizers stay valid.
    public func withAveragedWeights<T>(in model: Module, _ body: () throws -> T) throws -> T {
        let own = model.stateDict()
        var saved: [(Tensor, Tensor)] = []
        try withNoGrad {
            for (key, tensor) in own {
                saved.append((tensor, try tensor.detach().clone()))
                if let average = state[key] { try tensor.copy_(average) }
            }
        }
        let result: Result<T, Error> = Result { try body() }
        try withNoGrad {
            for (tensor, value) in saved { try tensor.copy_(value) }
        }
        return try result.get()
    }

    /// Replaces the average with `weights` (early stopping's best epoch), which must have its keys
    /// and shapes.
    public func load(_ weights: StateDict) throws {
        var pairs: [(average: Tensor, value: Tensor)] = []
        for (key, tensor) in state {
            guard let value = weights[key], value.shape == tensor.shape else {
                throw TrainingError.resumeMismatch("the EMA weights to load do not fit the average at '\(key)'")
            }
            pairs.append((tensor, value))
        }
        try withNoGrad {
            for (average, value) in pairs { try average.copy_(value) }
        }
    }

    /// Copies the averaged weights into `model` for good (the end of a run with `--ema`).
    public func copy(to model: Module) throws {
        try withNoGrad {
            for (key, tensor) in model.stateDict() {
                if let average = state[key] { try tensor.copy_(average) }
            }
        }
    }
}
