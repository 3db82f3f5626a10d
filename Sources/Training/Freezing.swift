import Foundation
import NN
import Optim
import Torch
import Vision

// Freezing specifications, the transfer-learning recipes built from them, and parameter groups for
// discriminative learning rates.

// MARK: - Layer groups

/// A model's layer groups (freezable scopes, input to output) and which of them form the head.
/// For a `ClassifierModel` these are its `layerGroups` / `backboneGroups`; for any other module,
/// its direct children, the last one being the head.
public struct ModelLayout: Equatable, Sendable {
    /// Every group, input to output (e.g. `conv1`, `bn1`, `layer1` … `layer4`, `fc`).
    public let layerGroups: [String]
    /// The groups that are not the head: what `FreezeSpec.freezeBackbone` freezes.
    public let backboneGroups: [String]
    /// The groups that form the head (usually one: `fc` or `classifier`).
    public var headGroups: [String] { layerGroups.filter { !backboneGroups.contains($0) } }

    /// A layout given explicitly.
    public init(layerGroups: [String], backboneGroups: [String]) {
        self.layerGroups = layerGroups
        self.backboneGroups = backboneGroups
    }

    /// The layout of `model`: its `ClassifierModel` groups, or its direct children (the last one the head).
    public init(_ model: Module) {
        if let classifier = model as? any ClassifierModel {
            layerGroups = classifier.layerGroups
            backboneGroups = classifier.backboneGroups
        } else {
            let children = model.namedChildren.map(\.0)
            layerGroups = children
            backboneGroups = Array(children.dropLast())
        }
    }

    /// The layer group containing `path` (a module path or parameter key), if any.
    public func group(containing path: String) -> String? {
        layerGroups.first { path == $0 || path.hasPrefix($0 + ".") }
    }
}

// MARK: - Scope patterns

/// A dotted scope with `*` / `?` wildcards inside components, e.g. `features.1*` (features.1,
/// features.10 … and everything below them) or `layer4.*.conv2`. A pattern covers a path when each
/// of its components matches the path's component at the same position (the path may be longer:
/// everything below a matched module is covered). The empty pattern covers everything.
public struct ScopePattern: Equatable, Sendable, CustomStringConvertible {
    /// The pattern as written.
    public let text: String
    let components: [String]

    /// Parses `text` into dot-separated components (nothing is matched yet; "" covers everything).
    public init(_ text: String) {
        self.text = text
        components = text.isEmpty ? [] : text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
    }

    /// The pattern as written.
    public var description: String { text }

    /// True when `path` is matched by the pattern or lies below a matched module.
    public func covers(_ path: String) -> Bool {
        if components.isEmpty { return true }
        let parts = path.isEmpty ? [] : path.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count >= components.count else { return false }
        for (pattern, part) in zip(components, parts) where !Self.glob(pattern, String(part)) { return false }
        return true
    }

    /// Shell-style matching of one component: `*` any run of characters, `?` one character.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        if !pattern.contains("*") && !pattern.contains("?") { return pattern == text }
        let p = Array(pattern), t = Array(text)
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
                pi += 1; ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

// MARK: - Freeze specification

/// What to freeze. The options combine (the union of what each freezes):
/// * `trainableScopes`: everything *not* covered by one of these patterns is frozen;
/// * `freezeUntil`: every layer group up to and including this one is frozen (freeze shallow,
///   train deep);
/// * `freezeBackbone`: every backbone group is frozen (head-only training).
///
/// Frozen modules get no gradients and run in inference behaviour (BatchNorm keeps its running
/// statistics, Dropout is off); with `trainBatchNorm`, frozen BatchNorm layers keep training
/// behaviour (their running statistics update; their affine parameters stay frozen). With
/// `freezeBatchNormStatistics`, every BatchNorm layer in front of the head, frozen or not, keeps
/// inference behaviour.
public struct FreezeSpec: Codable, Equatable, Sendable {
    /// Scope patterns that stay trainable; everything else is frozen (nil: not used).
    public var trainableScopes: [String]?
    /// A layer group: it and every group before it are frozen (nil: not used).
    public var freezeUntil: String?
    /// Freeze every backbone group, training only the head (Keras' `base_model.trainable = False`).
    public var freezeBackbone: Bool
    /// Keep frozen BatchNorm layers in training behaviour (updating running statistics); their
    /// weights stay frozen either way.
    public var trainBatchNorm: Bool
    /// Keep every BatchNorm layer in front of the head, frozen or not, in inference behaviour
    /// (`Module.freezeBatchNormStatistics`): Keras' advice for fine-tuning. Contradicts `trainBatchNorm`.
    public var freezeBatchNormStatistics: Bool

    /// The defaults freeze nothing.
    public init(trainableScopes: [String]? = nil, freezeUntil: String? = nil, freezeBackbone: Bool = false,
                trainBatchNorm: Bool = false, freezeBatchNormStatistics: Bool = false) {
        self.trainableScopes = trainableScopes
        self.freezeUntil = freezeUntil
        self.freezeBackbone = freezeBackbone
        self.trainBatchNorm = trainBatchNorm
        self.freezeBatchNormStatistics = freezeBatchNormStatistics
    }

    /// Decodes a spec; `freezeBatchNormStatistics` is false in configurations written before it existed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        trainableScopes = try c.decodeIfPresent([String].self, forKey: .trainableScopes)
        freezeUntil = try c.decodeIfPresent(String.self, forKey: .freezeUntil)
        freezeBackbone = try c.decode(Bool.self, forKey: .freezeBackbone)
        trainBatchNorm = try c.decode(Bool.self, forKey: .trainBatchNorm)
        freezeBatchNormStatistics = try c.decodeIfPresent(Bool.self, forKey: .freezeBatchNormStatistics) ?? false
    }

    /// Freeze the backbone, train the head.
    public static let backbone = FreezeSpec(freezeBackbone: true)
    /// Freeze every layer group up to and including `scope`.
    public static func until(_ scope: String) -> FreezeSpec { FreezeSpec(freezeUntil: scope) }
    /// Train only what `scopes` (patterns such as `layer4` or `features.1*`) cover; freeze the rest.
    public static func trainable(_ scopes: [String]) -> FreezeSpec { FreezeSpec(trainableScopes: scopes) }

    /// The minimal list of module paths / parameter keys to pass to `Module.freeze`.
    /// Throws `TrainingError.unknownScope` for a scope that matches nothing.
    public func frozenScopes(for model: Module, layout: ModelLayout? = nil) throws -> [String] {
        let layout = layout ?? ModelLayout(model)
        var frozen: [String] = []
        if freezeBackbone { frozen += layout.backboneGroups }
        if let until = freezeUntil {
            guard let index = layout.layerGroups.firstIndex(of: until) else {
                throw TrainingError.unknownScope(scope: until, validGroups: layout.layerGroups)
            }
            frozen += layout.layerGroups[...index]
        }
        if let trainable = trainableScopes {
            frozen += try Self.complement(of: trainable.map(ScopePattern.init), in: model, layout: layout)
        }
        return Self.minimal(frozen)
    }

    /// Paths that freeze everything not covered by `patterns`, as coarse as possible.
    static func complement(of patterns: [ScopePattern], in model: Module, layout: ModelLayout) throws -> [String] {
        let modules = model.namedModules()
        let parameterKeys = model.namedParameters().map(\.0)
        let allPaths = modules.map(\.0) + parameterKeys
        for pattern in patterns where !allPaths.contains(where: { !$0.isEmpty && pattern.covers($0) }) {
            throw TrainingError.unknownScope(scope: pattern.text, validGroups: layout.layerGroups)
        }
        let coveredPaths = allPaths.filter { path in patterns.contains { $0.covers(path) } }
        var result: [String] = []
        func visit(_ path: String, _ module: Module) {
            if !path.isEmpty && patterns.contains(where: { $0.covers(path) }) { return }
            let prefix = path.isEmpty ? "" : path + "."
            let hasCoveredDescendant = coveredPaths.contains { path.isEmpty ? !$0.isEmpty : $0.hasPrefix(prefix) }
            if !hasCoveredDescendant {
                result.append(path)
                return
            }
            for (name, _) in module.namedLocalParameters {
                let key = prefix + name
                if !patterns.contains(where: { $0.covers(key) }) { result.append(key) }
            }
            for (name, child) in module.namedChildren { visit(prefix + name, child) }
        }
        visit("", model)
        return result
    }

    /// Drops duplicates and scopes lying inside another scope of the list; keeps first-seen order.
    static func minimal(_ scopes: [String]) -> [String] {
        var out: [String] = []
        for s in scopes where !out.contains(s) { out.append(s) }
        return out.filter { s in !out.contains { $0 != s && ($0.isEmpty || s.hasPrefix($0 + ".")) } }
    }

    /// Unfreezes everything, then freezes what this spec names. Returns the resulting state.
    @discardableResult
    public func apply(to model: Module, layout: ModelLayout? = nil, phase: Int = 1) throws -> FreezeState {
        let scopes = try frozenScopes(for: model, layout: layout)
        let state = FreezeState(frozenScopes: scopes, trainBatchNorm: trainBatchNorm,
                                freezeBatchNormStatistics: freezeBatchNormStatistics, phase: phase)
        try state.apply(to: model)
        return state.capturingResult(of: model)
    }
}

/// The freeze state of a model as stored in checkpoints: the scopes passed to `Module.freeze`,
/// the BatchNorm flag, the recipe phase, and (for verification) the resulting trainable
/// parameters and frozen modules. Applying it reproduces the state exactly.
public struct FreezeState: Codable, Equatable, Sendable {
    /// The module paths and parameter keys passed to `Module.freeze`.
    public var frozenScopes: [String]
    /// Whether frozen BatchNorm layers keep training behaviour.
    public var trainBatchNorm: Bool
    /// Whether every BatchNorm layer in front of the head keeps inference behaviour (`Module.freezeBatchNormStatistics`).
    public var freezeBatchNormStatistics: Bool
    /// The recipe phase the state belongs to (1, or 2 in a two-phase run).
    public var phase: Int
    /// Parameters that require gradients once applied.
    public var trainableParameters: [String]
    /// Modules whose `isFrozen` is set once applied (inference behaviour).
    public var frozenModules: [String]

    /// A state to apply; with empty `trainableParameters`/`frozenModules` the result is not verified.
    public init(frozenScopes: [String], trainBatchNorm: Bool, freezeBatchNormStatistics: Bool = false, phase: Int = 1,
                trainableParameters: [String] = [], frozenModules: [String] = []) {
        self.frozenScopes = frozenScopes
        self.trainBatchNorm = trainBatchNorm
        self.freezeBatchNormStatistics = freezeBatchNormStatistics
        self.phase = phase
        self.trainableParameters = trainableParameters
        self.frozenModules = frozenModules
    }

    /// The model's current state, whatever produced it (e.g. the caller froze modules by hand):
    /// fully frozen subtrees plus the keys of other parameters without gradients.
    public static func capture(_ model: Module, phase: Int = 1) -> FreezeState {
        let modules = model.frozenScopes()
        let loose = model.namedParameters().filter { key, tensor in
            !tensor.requiresGrad && !modules.contains { $0.isEmpty || key == $0 || key.hasPrefix($0 + ".") }
        }.map(\.0)
        return FreezeState(frozenScopes: modules + loose, trainBatchNorm: false,
                           freezeBatchNormStatistics: model.batchNormStatisticsFrozen, phase: phase)
            .capturingResult(of: model)
    }

    /// Decodes a state; `freezeBatchNormStatistics` is false in checkpoints written before it existed.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        frozenScopes = try c.decode([String].self, forKey: .frozenScopes)
        trainBatchNorm = try c.decode(Bool.self, forKey: .trainBatchNorm)
        freezeBatchNormStatistics = try c.decodeIfPresent(Bool.self, forKey: .freezeBatchNormStatistics) ?? false
        phase = try c.decode(Int.self, forKey: .phase)
        trainableParameters = try c.decode([String].self, forKey: .trainableParameters)
        frozenModules = try c.decode([String].self, forKey: .frozenModules)
    }

    /// Unfreezes everything, then freezes `frozenScopes` and sets `freezeBatchNormStatistics`. When the
    /// state records its result (`trainableParameters`/`frozenModules` non-empty), the model must end up exactly so.
    public func apply(to model: Module) throws {
        try model.unfreeze([""])
        model.freezeBatchNormStatistics(freezeBatchNormStatistics, except: (model as? any ClassifierModel)?.classifierScopes ?? [])
        if !frozenScopes.isEmpty {
            do {
                try model.freeze(frozenScopes, keepBatchNormTraining: trainBatchNorm)
            } catch let error as NNError {
                throw TrainingError.resumeMismatch("the freeze state does not fit the model: \(error)")
            }
        }
        if !trainableParameters.isEmpty || !frozenModules.isEmpty {
            let result = capturingResult(of: model)
            guard result.trainableParameters == trainableParameters, result.frozenModules == frozenModules else {
                throw TrainingError.resumeMismatch(
                    "the freeze state does not reproduce on this model (trainable parameters "
                        + "\(result.trainableParameters.count) instead of \(trainableParameters.count))")
            }
        }
    }

    func capturingResult(of model: Module) -> FreezeState {
        var copy = self
        copy.trainableParameters = model.trainableParameters().map(\.0)
        copy.frozenModules = model.namedModules().filter { $0.1.isFrozen }.map(\.0)
        return copy
    }
}

// MARK: - Recipes

/// Transfer-learning recipes. Each sets knobs of `TrainingConfiguration` that can also be set alone
/// (`freeze`, `learningRates`, `phaseTwo`).
public enum Recipe: Codable, Equatable {
    /// Train every layer (no freezing).
    case fullFineTune
    /// Freeze the backbone; train only the head (feature extraction).
    case headOnly(trainBatchNorm: Bool)
    /// Keras' guide: train the head on a frozen backbone, then (after `trigger`) unfreeze
    /// (`unfreeze`) and continue with a new, low learning rate (default SGD 1e-4, momentum 0.9).
    case twoPhase(PhaseTwo)
    /// Everything trainable with per-layer-group learning rates.
    case discriminative(LearningRatePolicy)
    /// Freeze shallow layers (every group up to and including `scope`), train the deep ones.
    case freezeUntil(String)

    /// Two-phase with Keras' defaults after `epochs` head-only epochs.
    public static func twoPhase(phaseOneEpochs epochs: Int, unfreeze: PhaseTwo.Unfreeze = .all,
                                optimizer: OptimizerConfig = .fineTuneDefault) -> Recipe {
        .twoPhase(PhaseTwo(trigger: .afterEpochs(epochs), unfreeze: unfreeze, optimizer: optimizer))
    }

    /// The CLI's name of the recipe: "full", "head-only", "two-phase", "discriminative", "freeze-until"
    /// (stored as `TrainingConfiguration.recipe`).
    public var name: String {
        switch self {
        case .fullFineTune: return "full"
        case .headOnly: return "head-only"
        case .twoPhase: return "two-phase"
        case .discriminative: return "discriminative"
        case .freezeUntil: return "freeze-until"
        }
    }

    /// Sets `configuration`'s `recipe`, `freeze`, and `phaseTwo` or `learningRates` as the recipe
    /// prescribes (other settings are kept).
    public func apply(to configuration: inout TrainingConfiguration) {
        configuration.recipe = name
        switch self {
        case .fullFineTune:
            configuration.freeze = nil
            configuration.phaseTwo = nil
        case .headOnly(let trainBatchNorm):
            configuration.freeze = FreezeSpec(freezeBackbone: true, trainBatchNorm: trainBatchNorm)
            configuration.phaseTwo = nil
        case .twoPhase(let phaseTwo):
            configuration.freeze = FreezeSpec(freezeBackbone: true, trainBatchNorm: configuration.freeze?.trainBatchNorm ?? false,
                                              freezeBatchNormStatistics: configuration.freeze?.freezeBatchNormStatistics ?? false)
            configuration.phaseTwo = phaseTwo
        case .discriminative(let policy):
            configuration.freeze = nil
            configuration.learningRates = policy
        case .freezeUntil(let scope):
            configuration.freeze = FreezeSpec(freezeUntil: scope, trainBatchNorm: configuration.freeze?.trainBatchNorm ?? false,
                                              freezeBatchNormStatistics: configuration.freeze?.freezeBatchNormStatistics ?? false)
        }
    }
}

// MARK: - Parameter groups

/// Splits a model's trainable parameters into optimizer groups.
public enum ParameterGrouping {
    /// The groups for `policy` with the head at `headLearningRate`: one group (`"all"`) for
    /// `.uniform`, else one per layer group that has trainable parameters (named after it, input to
    /// output), plus `"other"` (at the head's rate) for trainable parameters outside every group.
    public static func groups(for model: Module, layout: ModelLayout, policy: LearningRatePolicy,
                              headLearningRate: Double) throws -> [(name: String, group: ParameterGroup)] {
        let trainable = model.trainableParameters()
        guard !trainable.isEmpty else {
            throw TrainingError.nothingToTrain("every parameter of the model is frozen")
        }
        if case .uniform = policy {
            return [("all", ParameterGroup(parameters: trainable, learningRate: headLearningRate))]
        }
        var byGroup: [String: [(String, Tensor)]] = [:]
        var other: [(String, Tensor)] = []
        for (key, tensor) in trainable {
            if let g = layout.group(containing: key) { byGroup[g, default: []].append((key, tensor)) } else {
                other.append((key, tensor))
            }
        }
        let backbone = layout.backboneGroups
        var result: [(name: String, group: ParameterGroup)] = []
        for group in layout.layerGroups {
            guard let parameters = byGroup[group], !parameters.isEmpty else { continue }
            let lr = backbone.firstIndex(of: group).map { policy.backboneRate(head: headLearningRate, distance: backbone.count - $0) }
                ?? headLearningRate
            result.append((group, ParameterGroup(parameters: parameters, learningRate: lr)))
        }
        if !other.isEmpty { result.append(("other", ParameterGroup(parameters: other, learningRate: headLearningRate))) }
        return result
    }

    /// "No bias decay": each group's parameters of at most one dimension (biases, BatchNorm weights
    /// and biases; timm's `param.ndim <= 1 or name.endswith(".bias")`) move to a group of their own,
    /// `<name>/no_decay`, at the same learning rate with weight decay 0, right after it. A group left
    /// empty is dropped.
    public static func separatingNoDecay(_ groups: [(name: String, group: ParameterGroup)])
        -> [(name: String, group: ParameterGroup)] {
        var result: [(name: String, group: ParameterGroup)] = []
        func exempt(_ parameter: (name: String, tensor: Tensor)) -> Bool { parameter.tensor.rank <= 1 || parameter.name.hasSuffix(".bias") }
        for (name, group) in groups {
            let free = group.parameters.filter(exempt)
            let decayed = group.parameters.filter { !exempt($0) }
            if !decayed.isEmpty {
                result.append((name, ParameterGroup(parameters: decayed.map { ($0.name, $0.tensor) }, learningRate: group.learningRate,
                                                    weightDecay: group.weightDecay, momentum: group.momentum)))
            }
            if !free.isEmpty {
                result.append((name + "/no_decay", ParameterGroup(parameters: free.map { ($0.name, $0.tensor) },
                                                                  learningRate: group.learningRate, weightDecay: 0,
                                                                  momentum: group.momentum)))
            }
        }
        return result
    }
}
