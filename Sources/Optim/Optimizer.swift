import Foundation
import Torch

/// Named parameters optimized with one learning rate and weight decay (PyTorch's `param_groups` entry).
public struct ParameterGroup {
    /// The parameters with their `state_dict` names (e.g. `features.0.weight`); state is keyed by name.
    public var parameters: [(name: String, tensor: Tensor)]
    /// The group's learning rate; schedulers set it between steps. nil means the optimizer's default
    /// (an optimizer fills it in when it adopts the group).
    public var learningRate: Double?
    /// The group's weight decay; nil means the optimizer's default (filled in on adoption).
    public var weightDecay: Double?
    /// The group's momentum (SGD's and RMSprop's `momentum`, Adam's β1) where a schedule cycles it
    /// (`OneCycle`); nil means the optimizer's own. Ignored by an optimizer that runs without
    /// momentum (`Optimizer.momentumName` is nil).
    public var momentum: Double?

    /// A group of named parameters, e.g. `model.namedParameters()` or one layer group's; nil rates take
    /// the optimizer's defaults. Names must be unique across an optimizer's groups.
    public init(parameters: [(String, Tensor)], learningRate: Double? = nil, weightDecay: Double? = nil,
                momentum: Double? = nil) {
        self.parameters = parameters.map { (name: $0.0, tensor: $0.1) }
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.momentum = momentum
    }

    /// The names of the group's parameters, in order.
    public var parameterNames: [String] { parameters.map(\.name) }
}

/// Errors from constructing optimizers and loading their state.
public enum OptimizerError: Error, Equatable, CustomStringConvertible {
    /// A hyperparameter out of range or an invalid combination (e.g. Nesterov with dampening).
    case invalidHyperparameter(String)
    /// No parameters, or the same parameter name in two places.
    case invalidParameters(String)
    /// Saved state names a parameter this optimizer does not have.
    case unknownParameter(key: String, parameter: String)
    /// A saved state tensor's shape differs from its parameter's.
    case shapeMismatch(key: String, expected: [Int], found: [Int])
    /// Saved state from another optimizer, or with state names this configuration does not use or lacks.
    case incompatibleState(String)

    /// A one-line message naming the problem, for users and logs.
    public var description: String {
        switch self {
        case .invalidHyperparameter(let m): return "invalid optimizer hyperparameter: \(m)"
        case .invalidParameters(let m): return "invalid optimizer parameters: \(m)"
        case .unknownParameter(let key, let parameter):
            return "optimizer state '\(key)' is for parameter '\(parameter)', which this optimizer does not have"
        case .shapeMismatch(let key, let expected, let found):
            return "optimizer state '\(key)' has shape \(found) but its parameter has shape \(expected)"
        case .incompatibleState(let m): return "incompatible optimizer state: \(m)"
        }
    }
}

/// The hyperparameters of one parameter group, as saved in checkpoints (JSON).
public struct GroupHyperparameters: Codable, Equatable {
    /// The `state_dict` names of the group's parameters, in order.
    public var parameterNames: [String]
    /// The group's learning rate at the time of saving (already scheduled, if a schedule runs).
    public var learningRate: Double
    /// The group's weight decay (L2 penalty for SGD/Adam/RMSprop, decoupled decay for AdamW).
    public var weightDecay: Double
    /// The optimizer's other settings with PyTorch's names (`momentum`, `betas.0`, `eps`, …);
    /// booleans are 0 or 1. The momentum is the group's own where a schedule sets it (`OneCycle`).
    public var options: [String: Double]

    /// A group's saved hyperparameters.
    public init(parameterNames: [String], learningRate: Double, weightDecay: Double, options: [String: Double]) {
        self.parameterNames = parameterNames
        self.learningRate = learningRate
        self.weightDecay = weightDecay
        self.options = options
    }
}

/// The Codable part of an optimizer's state: which optimizer, and every group's hyperparameters.
public struct OptimizerHyperparameters: Codable, Equatable {
    /// `SGD`, `Adam`, `AdamW` or `RMSprop`.
    public var optimizer: String
    /// One entry per parameter group, in the optimizer's group order.
    public var groups: [GroupHyperparameters]

    /// The hyperparameters saved by the optimizer named `optimizer` (`SGD`, `Adam`, `AdamW`, `RMSprop`).
    public init(optimizer: String, groups: [GroupHyperparameters]) {
        self.optimizer = optimizer
        self.groups = groups
    }
}

/// A savable snapshot of an optimizer: state tensors (for safetensors) plus hyperparameters (for JSON).
public struct OptimizerState {
    /// Per-parameter state keyed `<parameterName>.<stateName>` with PyTorch's state names, e.g.
    /// `features.0.weight.exp_avg`, `features.0.weight.step` (a 0-dim float32 tensor, as in PyTorch).
    /// These are the optimizer's live tensors (as PyTorch's `state_dict()`): write or copy them
    /// before the next `step()`.
    public var tensors: StateDict
    /// Which optimizer and every group's hyperparameters, the part saved as JSON.
    public var hyperparameters: OptimizerHyperparameters

    /// A snapshot from its two parts; `Optimizer.load(_:)` checks them against the optimizer.
    public init(tensors: StateDict, hyperparameters: OptimizerHyperparameters) {
        self.tensors = tensors
        self.hyperparameters = hyperparameters
    }

    /// The hyperparameters as JSON (sorted keys), for a checkpoint's sidecar or safetensors metadata.
    public func hyperparametersJSON() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(hyperparameters)
    }

    /// Rebuilds a state from its tensors and the JSON written by `hyperparametersJSON()`.
    public init(tensors: StateDict, hyperparametersJSON: Data) throws {
        self.init(tensors: tensors,
                  hyperparameters: try JSONDecoder().decode(OptimizerHyperparameters.self, from: hyperparametersJSON))
    }
}

/// Per-parameter optimizer state: named buffers and a step counter.
final class ParameterState {
    var tensors: [String: Tensor] = [:]
    var step = 0

    /// The buffer `name`, created as zeros shaped (and laid out) like `parameter` on first use.
    func buffer(_ name: String, like parameter: Tensor) throws -> Tensor {
        if let t = tensors[name] { return t }
        let t = try parameter.clone()  // keeps the parameter's memory format, as `zeros_like`
        try t.zero_()
        tensors[name] = t
        return t
    }
}

/// The base of the optimizers: parameter groups, `step()`, `zeroGrad()` and savable state.
///
/// Updates follow PyTorch's single-tensor implementations and run in place under `withNoGrad`,
/// so modules holding the parameter tensors see the new values. Parameters whose `grad` is nil
/// are skipped (their state is not created or advanced), exactly as in PyTorch.
/// Per-parameter state is keyed by parameter name, so state saved while some layers were frozen
/// loads into an optimizer over more parameters.
public class Optimizer {
    /// The groups in order. Schedulers set `parameterGroups[i].learningRate` between steps.
    public var parameterGroups: [ParameterGroup]
    /// Used for groups whose `learningRate` is nil.
    public let defaultLearningRate: Double
    /// Used for groups whose `weightDecay` is nil.
    public let defaultWeightDecay: Double

    var state: [String: ParameterState] = [:]

    init(groups: [ParameterGroup], learningRate: Double, weightDecay: Double) throws {
        guard learningRate >= 0 else { throw OptimizerError.invalidHyperparameter("learning rate \(learningRate) < 0") }
        guard weightDecay >= 0 else { throw OptimizerError.invalidHyperparameter("weight decay \(weightDecay) < 0") }
        defaultLearningRate = learningRate
        defaultWeightDecay = weightDecay
        parameterGroups = []
        for group in groups { try addParameterGroup(group) }
        if parameterGroups.allSatisfy({ $0.parameters.isEmpty }) {
            throw OptimizerError.invalidParameters("the optimizer got an empty parameter list")
        }
    }

    /// Adds a group (PyTorch's `add_param_group`), filling in nil hyperparameters with the defaults.
    /// Throws when a parameter name is already in the optimizer or a value is negative.
    public func addParameterGroup(_ group: ParameterGroup) throws {
        var group = group
        group.learningRate = group.learningRate ?? defaultLearningRate
        group.weightDecay = group.weightDecay ?? defaultWeightDecay
        if let lr = group.learningRate, lr < 0 {
            throw OptimizerError.invalidHyperparameter("learning rate \(lr) < 0")
        }
        if let wd = group.weightDecay, wd < 0 {
            throw OptimizerError.invalidHyperparameter("weight decay \(wd) < 0")
        }
        if let m = group.momentum, !(0..<1).contains(m) {
            throw OptimizerError.invalidHyperparameter("momentum \(m) not in [0, 1)")
        }
        var seen = Set(parameterGroups.flatMap(\.parameterNames))
        for name in group.parameterNames where !seen.insert(name).inserted {
            throw OptimizerError.invalidParameters("parameter '\(name)' appears more than once")
        }
        parameterGroups.append(group)
    }

    /// Applies one update to every parameter that has a gradient.
    public func step() throws {
        try withNoGrad {
            for group in parameterGroups {
                let lr = group.learningRate ?? defaultLearningRate
                let wd = group.weightDecay ?? defaultWeightDecay
                for (name, parameter) in group.parameters {
                    guard let grad = parameter.grad else { continue }
                    let parameterState: ParameterState
                    if let existing = state[name] {
                        parameterState = existing
                    } else {
                        parameterState = ParameterState()
                        state[name] = parameterState
                    }
                    try update(parameter, gradient: grad, state: parameterState, learningRate: lr, weightDecay: wd,
                               momentum: momentumName == nil ? nil : group.momentum)
                }
            }
        }
    }

    /// Clears gradients: sets them to nil (the default, as PyTorch ≥ 2.0) or fills them with zeros.
    public func zeroGrad(setToNone: Bool = true) throws {
        for group in parameterGroups {
            for (_, parameter) in group.parameters {
                if setToNone {
                    try parameter.setGrad(nil)
                } else if let grad = parameter.grad {
                    try withNoGrad { try grad.zero_() }
                }
            }
        }
    }

    /// The learning rate each group uses now (nil values resolved to the default).
    public var learningRates: [Double] { parameterGroups.map { $0.learningRate ?? defaultLearningRate } }

    /// The name of the setting a group's `momentum` overrides, with PyTorch's name (`momentum` for SGD
    /// and RMSprop, `betas.0` for Adam and AdamW); nil when this optimizer runs without momentum (SGD
    /// or RMSprop constructed with momentum 0), so a schedule leaves it alone.
    public var momentumName: String? { nil }

    // MARK: - Subclass interface

    /// The optimizer's name in saved state.
    var kind: String { "Optimizer" }
    /// Optimizer-wide settings recorded with every group.
    var options: [String: Double] { [:] }
    /// Whether the per-parameter step counter is part of the state (saved as `<name>.step`).
    var countsSteps: Bool { false }
    /// The state buffers a parameter has once it has been updated, in saving order.
    var bufferNames: [String] { [] }

    /// Updates one parameter in place (called under `withNoGrad`); `momentum` is the group's override
    /// of the optimizer's own (nil: the optimizer's).
    func update(_ parameter: Tensor, gradient: Tensor, state: ParameterState, learningRate: Double,
                weightDecay: Double, momentum: Double?) throws {
        fatalError("\(type(of: self)) must override update")
    }

    // MARK: - Saving and loading

    /// The state tensors (live, not copies) and hyperparameters, for a checkpoint.
    public func stateDict() -> OptimizerState {
        var tensors = StateDict()
        for group in parameterGroups {
            for name in group.parameterNames {
                guard let s = state[name] else { continue }
                if countsSteps {
                    // float32 like PyTorch's `state['step']`; exact up to 2^24 steps.
                    // swiftlint:disable:next force_try
                    tensors["\(name).step"] = try! Tensor(scalar: Double(s.step), dtype: .float32)
                }
                for buffer in bufferNames { if let t = s.tensors[buffer] { tensors["\(name).\(buffer)"] = t } }
            }
        }
        let groups = parameterGroups.map { group in
            var groupOptions = options
            if let name = momentumName, let momentum = group.momentum { groupOptions[name] = momentum }
            return GroupHyperparameters(parameterNames: group.parameterNames,
                                        learningRate: group.learningRate ?? defaultLearningRate,
                                        weightDecay: group.weightDecay ?? defaultWeightDecay, options: groupOptions)
        }
        return OptimizerState(tensors: tensors, hyperparameters: OptimizerHyperparameters(optimizer: kind, groups: groups))
    }

    /// The state buffers that average squared gradients (PyTorch's names), never negative.
    static let squaredAverages: Set<String> = ["exp_avg_sq", "max_exp_avg_sq", "square_avg"]

    /// Restores state saved by `stateDict()` (possibly from an optimizer over fewer parameters).
    ///
    /// Every state tensor must name a parameter of this optimizer, have its shape and be a state this
    /// configuration uses, stored as floating point with finite values (averages of squares never
    /// negative); each saved parameter must have all of its state. Tensors are copied into
    /// the parameter's dtype, device and layout. Parameters without saved state start fresh. Each group
    /// takes the saved learning rate and weight decay of the saved group that held its first parameter
    /// found in the state (as PyTorch restores `param_groups`); other settings stay as constructed
    /// (a cycled momentum too: its schedule sets it again before each step).
    /// Nothing changes when an error is thrown.
    public func load(_ saved: OptimizerState) throws {
        guard saved.hyperparameters.optimizer == kind else {
            throw OptimizerError.incompatibleState(
                "the state is from \(saved.hyperparameters.optimizer), this optimizer is \(kind)")
        }
        var parameters: [String: Tensor] = [:]
        for group in parameterGroups { for (name, tensor) in group.parameters { parameters[name] = tensor } }
        let stateNames = Set(bufferNames + (countsSteps ? ["step"] : []))

        // Validate everything first.
        var entries: [String: [String: Tensor]] = [:]
        var order: [String] = []  // parameters in the order the state lists them, for stable errors
        for (key, tensor) in saved.tensors {
            guard let dot = key.lastIndex(of: ".") else {
                throw OptimizerError.incompatibleState("key '\(key)' is not <parameter>.<state>")
            }
            let name = String(key[..<dot]), stateName = String(key[key.index(after: dot)...])
            guard let parameter = parameters[name] else {
                throw OptimizerError.unknownParameter(key: key, parameter: name)
            }
            guard stateNames.contains(stateName) else {
                throw OptimizerError.incompatibleState("'\(key)': \(kind) with these settings keeps no '\(stateName)' "
                    + "(it keeps \(stateNames.sorted().joined(separator: ", ")))")
            }
            if stateName == "step" {
                guard tensor.count == 1 else {
                    throw OptimizerError.shapeMismatch(key: key, expected: [], found: tensor.shape)
                }
                let value = try tensor.item()
                guard value >= 0, value < 1e15, value.rounded() == value else {
                    throw OptimizerError.incompatibleState("'\(key)' is \(value), not a step count")
                }
            } else if tensor.shape != parameter.shape {
                throw OptimizerError.shapeMismatch(key: key, expected: parameter.shape, found: tensor.shape)
            } else if !tensor.dtype.isFloatingPoint {
                throw OptimizerError.incompatibleState("'\(key)' is stored as \(tensor.dtype), not as floating point")
            } else if try !tensor.allFinite() {
                throw OptimizerError.incompatibleState("'\(key)' holds NaN or infinite values")
            } else if Self.squaredAverages.contains(stateName), tensor.count > 0, try tensor.min().item() < 0 {
                throw OptimizerError.incompatibleState("'\(key)' holds negative values, which an average of squares cannot")
            }
            if entries[name] == nil { order.append(name) }
            entries[name, default: [:]][stateName] = tensor
        }
        for name in order {
            let missing = stateNames.subtracting(entries[name]!.keys)
            if !missing.isEmpty {
                throw OptimizerError.incompatibleState(
                    "parameter '\(name)' lacks \(missing.sorted().map { "'\(name).\($0)'" }.joined(separator: ", "))")
            }
        }

        // Build the new state, then commit.
        var newState: [String: ParameterState] = [:]
        try withNoGrad {
            for (name, names) in entries {
                let s = ParameterState()
                for (stateName, tensor) in names {
                    if stateName == "step" {
                        s.step = Int(try tensor.item())
                    } else {
                        let copy = try parameters[name]!.clone()
                        try copy.copy_(tensor)
                        s.tensors[stateName] = copy
                    }
                }
                newState[name] = s
            }
        }
        var groupOf: [String: GroupHyperparameters] = [:]
        for group in saved.hyperparameters.groups { for name in group.parameterNames { groupOf[name] = group } }
        for i in parameterGroups.indices {
            guard let match = parameterGroups[i].parameterNames.lazy.compactMap({ groupOf[$0] }).first else { continue }
            parameterGroups[i].learningRate = match.learningRate
            parameterGroups[i].weightDecay = match.weightDecay
        }
        state = newState
    }
}

/// The gradient with maximize and L2 weight decay applied, allocating only when either applies.
/// Matches PyTorch: `g = -grad if maximize; g = g.add(param, alpha=weight_decay)`.
func effectiveGradient(_ gradient: Tensor, parameter: Tensor, maximize: Bool, weightDecay: Double) throws
    -> (tensor: Tensor, owned: Bool) {
    var g = gradient, owned = false
    if maximize { g = try gradient.neg(); owned = true }
    if weightDecay != 0 {
        if owned { try g.add_(parameter, alpha: weightDecay) } else { g = try g.add(parameter, alpha: weightDecay) }
        owned = true
    }
    return (g, owned)
}
