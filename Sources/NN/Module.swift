import Torch

/// Base class of every layer and model.
///
/// Traversal is explicit: a subclass lists its own parameters, buffers and children by their
/// PyTorch names by overriding `namedLocalParameters`, `namedLocalBuffers` and `namedChildren`.
/// Those lists are computed from stored properties, so replacing a property (a new head, say)
/// is immediately reflected in `stateDict()`, `parameters()` and freezing.
open class Module {
    /// Set by `train()` / `eval()`.
    public private(set) var isTraining = true
    /// Set by `freeze(_:)`: a frozen module runs in inference mode (BatchNorm uses and keeps its
    /// running statistics, Dropout is off) even while the model as a whole is training.
    public internal(set) var isFrozen = false
    /// Set by `freezeBatchNormStatistics(_:except:)` on BatchNorm layers: inference behaviour (running
    /// statistics used, never updated) even while training and unfrozen; gradients are untouched.
    public internal(set) var keepsInferenceBehaviour = false

    /// A module in training mode, not frozen. Subclasses create their parameters in their own initializers.
    public init() {}

    /// The mode this module's own forward pass should use: training unless `eval()`ed, frozen, or
    /// kept in inference behaviour by `freezeBatchNormStatistics(_:except:)`.
    public var usesTrainingBehaviour: Bool { isTraining && usesTrainingBehaviourWhenTraining }

    /// The mode this module's forward pass uses once the model is put in training mode: training
    /// unless frozen or kept in inference behaviour.
    public var usesTrainingBehaviourWhenTraining: Bool { !isFrozen && !keepsInferenceBehaviour }

    // MARK: - Structure (override these)

    /// Parameters owned directly by this module, e.g. `[("weight", weight), ("bias", bias)]`.
    open var namedLocalParameters: [(String, Tensor)] { [] }
    /// Buffers owned directly by this module, e.g. BatchNorm's running statistics.
    open var namedLocalBuffers: [(String, Tensor)] { [] }
    /// Direct sub-modules, in definition order, under their PyTorch attribute names.
    open var namedChildren: [(String, Module)] { [] }

    /// Replaces the direct child `name`. Containers and models with swappable parts override this.
    open func setChild(_ name: String, to module: Module) throws {
        throw NNError.cannotReplace("\(typeName) has no replaceable child '\(name)'")
    }

    /// The forward pass.
    open func forward(_ x: Tensor) throws -> Tensor {
        throw NNError.notImplemented("\(typeName).forward")
    }

    /// Runs `forward(x)` — `module(x)`, as in PyTorch. Call modules this way rather than `forward`
    /// directly, so that an active `ModelSummary` sees each layer's output.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let y = try forward(x)
        if let recorder = ForwardRecorder.active { recorder.record(self, output: y) }
        return y
    }

    /// A short type name used in summaries and messages (`Conv2d`, `BatchNorm2d`, …).
    open var typeName: String { String(describing: type(of: self)) }

    // MARK: - Traversal

    /// Every module in the tree, depth first, with its dotted path ("" for self).
    public func namedModules(prefix: String = "") -> [(String, Module)] {
        var result: [(String, Module)] = [(prefix, self)]
        for (name, child) in namedChildren {
            result += child.namedModules(prefix: join(prefix, name))
        }
        return result
    }

    /// All parameters with their `state_dict` keys.
    public func namedParameters() -> [(String, Tensor)] {
        namedModules().flatMap { path, module in module.namedLocalParameters.map { (join(path, $0.0), $0.1) } }
    }

    /// All parameter tensors, in `namedParameters()` order (`module.parameters()`); the tensors
    /// themselves, not copies, so an optimizer updating them updates the module.
    public func parameters() -> [Tensor] { namedParameters().map(\.1) }

    /// Parameters that currently require gradients.
    public func trainableParameters() -> [(String, Tensor)] { namedParameters().filter { $0.1.requiresGrad } }

    /// All buffers (non-trainable state such as BatchNorm's `running_mean`, `running_var`,
    /// `num_batches_tracked`) with their `state_dict` keys (`module.named_buffers()`).
    public func namedBuffers() -> [(String, Tensor)] {
        namedModules().flatMap { path, module in module.namedLocalBuffers.map { (join(path, $0.0), $0.1) } }
    }

    /// The sub-module at a dotted path such as `features.3` or `layer4.1.conv2`.
    public func module(at path: String) -> Module? {
        if path.isEmpty { return self }
        var current: Module = self
        for component in path.split(separator: ".") {
            guard let next = current.namedChildren.first(where: { $0.0 == component })?.1 else { return nil }
            current = next
        }
        return current
    }

    /// Replaces the module at a dotted path (e.g. `classifier.1`).
    public func replaceModule(at path: String, with module: Module) throws {
        let parts = path.split(separator: ".").map(String.init)
        guard let last = parts.last else { throw NNError.cannotReplace("cannot replace the root module") }
        let parentPath = parts.dropLast().joined(separator: ".")
        guard let parent = self.module(at: parentPath) else {
            throw NNError.unknownKey("no module at '\(parentPath)'")
        }
        try parent.setChild(last, to: module)
    }

    /// The total number of parameter elements, frozen or not (`sum(p.numel() for p in m.parameters())`).
    public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }

    // MARK: - Modes

    /// Puts this module and its descendants in training (`true`) or inference (`false`) mode.
    @discardableResult
    public func train(_ mode: Bool = true) -> Self {
        for (_, m) in namedModules() { m.isTraining = mode }
        return self
    }

    /// Puts this module and its descendants in inference mode (`module.eval()`): BatchNorm uses its
    /// running statistics, Dropout does nothing. Same as `train(false)`.
    @discardableResult
    public func eval() -> Self { train(false) }

    // MARK: - Devices and layouts

    /// Moves (or converts) every parameter and buffer in place, keeping tensor identity so
    /// optimizers that hold them stay valid. Integer buffers keep their dtype.
    public func to(device: Device? = nil, dtype: DType? = nil) throws {
        for (_, t) in namedParameters() + namedBuffers() {
            let targetType = (dtype != nil && t.dtype.isFloatingPoint) ? dtype! : t.dtype
            let targetDevice = device ?? t.device
            if targetType != t.dtype || targetDevice != t.device {
                try withNoGrad { try t.setData(t.to(dtype: targetType, device: targetDevice)) }
            }
        }
    }

    /// Re-lays out 4-D parameters (convolution kernels) in `format`, e.g. channels-last.
    public func to(memoryFormat format: MemoryFormat) throws {
        for (_, t) in namedParameters() where t.rank == 4 {
            try withNoGrad { try t.setData(t.contiguous(format)) }
        }
    }

    // MARK: - Freezing

    /// Freezes the modules or parameters named by `scopes`: dotted module paths (`features.0`,
    /// `layer4`) or parameter keys, matched as whole path components. `""` means everything.
    ///
    /// Frozen means no gradients *and* inference behaviour (BatchNorm uses and keeps its running
    /// statistics, Dropout is off) unless `keepBatchNormTraining` is set. Unknown scopes throw in
    /// strict mode.
    public func freeze(_ scopes: [String] = [""], strict: Bool = true, keepBatchNormTraining: Bool = false) throws {
        try setFrozen(true, scopes: scopes, strict: strict, keepBatchNormTraining: keepBatchNormTraining)
    }

    /// Undoes `freeze` for `scopes` (`""`: everything).
    public func unfreeze(_ scopes: [String] = [""], strict: Bool = true) throws {
        try setFrozen(false, scopes: scopes, strict: strict, keepBatchNormTraining: false)
    }

    private func setFrozen(_ frozen: Bool, scopes: [String], strict: Bool, keepBatchNormTraining: Bool) throws {
        let modules = namedModules()
        let parameters = namedParameters()
        for scope in scopes {
            let matchedModules = modules.filter { isWithin($0.0, scope: scope) }
            let matchedParameters = parameters.filter { isWithin($0.0, scope: scope) }
            if strict && matchedModules.isEmpty && matchedParameters.isEmpty {
                throw NNError.unknownKey("no module or parameter matches scope '\(scope)'")
            }
            for (_, p) in matchedParameters { try p.setRequiresGrad(!frozen) }
            for (_, m) in matchedModules {
                m.isFrozen = frozen && !(keepBatchNormTraining && m is BatchNormLayer)
            }
        }
    }

    /// Keeps every BatchNorm layer outside the `except` scopes (module paths, as in `freeze`) in
    /// inference behaviour (`on`), frozen or not: it normalises with its running statistics and never
    /// updates them, while its weight and bias still get gradients where they are not frozen. This is
    /// Keras' advice for fine-tuning (`base_model(x, training=False)`, which leaves a new head's layers
    /// alone): on a small dataset, batch statistics and updated running statistics can undo what the
    /// pretrained layers learned. `false` gives every BatchNorm layer back to `train()`/`eval()` and
    /// `freeze`.
    public func freezeBatchNormStatistics(_ on: Bool = true, except excluded: [String] = []) {
        for (path, m) in namedModules() where m is BatchNormLayer {
            m.keepsInferenceBehaviour = on && !excluded.contains { isWithin(path, scope: $0) }
        }
    }

    /// Whether `freezeBatchNormStatistics` is in effect on any BatchNorm layer.
    public var batchNormStatisticsFrozen: Bool {
        namedModules().contains { $0.1 is BatchNormLayer && $0.1.keepsInferenceBehaviour }
    }

    /// Dotted paths of the modules currently frozen (topmost only), for checkpoints and reports.
    public func frozenScopes() -> [String] {
        var result: [String] = []
        func visit(_ path: String, _ module: Module) {
            if module.isFrozen && module.namedModules().allSatisfy({ $0.1.isFrozen }) {
                result.append(path)
                return
            }
            for (name, child) in module.namedChildren { visit(join(path, name), child) }
        }
        visit("", self)
        return result
    }

    // MARK: - State

    /// Parameters and buffers under their PyTorch `state_dict` keys, in definition order.
    public func stateDict() -> StateDict {
        var dict = StateDict()
        for (path, module) in namedModules() {
            for (name, t) in module.namedLocalParameters { dict[join(path, name)] = t }
            for (name, t) in module.namedLocalBuffers { dict[join(path, name)] = t }
        }
        return dict
    }

    /// Copies matching tensors from `stateDict` into this module in place (dtype converted).
    ///
    /// Nothing is modified unless the load is acceptable: in strict mode any missing, unexpected or
    /// shape-mismatched key throws `NNError.loadFailed` with the full report. In non-strict mode the
    /// matching keys are loaded and the report says what was skipped. `rename` maps incoming keys
    /// (return nil to drop one) before matching.
    @discardableResult
    public func load(_ stateDict: StateDict, strict: Bool = true,
                     rename: ((String) -> String?)? = nil) throws -> LoadReport {
        let incoming = rename.map { stateDict.renamingKeys($0) } ?? stateDict
        let own = self.stateDict()
        var report = LoadReport()
        var toCopy: [(Tensor, Tensor)] = []
        for (key, target) in own {
            guard let source = incoming[key] else { report.missing.append(key); continue }
            if source.shape != target.shape {
                report.shapeMismatched.append(.init(key: key, expected: target.shape, found: source.shape))
            } else if source.dtype.isFloatingPoint != target.dtype.isFloatingPoint {
                // A float weight stored as integers (or the reverse) is a damaged or foreign file.
                report.dtypeMismatched.append(.init(key: key, expected: target.dtype.description,
                                                    found: source.dtype.description))
            } else if source.dtype.isFloatingPoint, try !source.allFinite() {
                report.nonFinite.append(key)
            } else if key == "running_var" || key.hasSuffix(".running_var"), source.count > 0,
                      try source.min().item() < 0 {
                // A variance below 0 makes BatchNorm's 1/√(var + ε) NaN for every input.
                report.negativeVariance.append(key)
            } else {
                toCopy.append((target, source))
            }
        }
        report.unexpected = incoming.keys.filter { !own.contains($0) }
        report.matched = toCopy.count
        if strict && !report.isClean { throw NNError.loadFailed(report) }
        try withNoGrad {
            for (target, source) in toCopy { try target.copy_(source) }
        }
        report.loaded = toCopy.count
        return report
    }
}

/// What `Module.load` matched, skipped and why.
public struct LoadReport: CustomStringConvertible, Equatable {
    /// A key whose tensor shape differs between the model and the incoming state dict.
    public struct Mismatch: Equatable {
        /// The `state_dict` key, e.g. `fc.weight`.
        public let key: String
        /// The shape the model's tensor has.
        public let expected: [Int]
        /// The shape in the incoming state dict (e.g. [1000, 2048] for an ImageNet head loaded into a 10-class model).
        public let found: [Int]
    }
    /// The number of tensors copied into the model (0 when a strict load failed, since nothing is copied then).
    public var loaded = 0
    /// The number of tensors that fit the model in name, shape and dtype, loaded or not.
    public var matched = 0
    /// Keys the model has but the incoming state dict lacks; those tensors keep their current values.
    public var missing: [String] = []
    /// Keys in the incoming state dict (after renaming) that the model does not have; ignored.
    public var unexpected: [String] = []
    /// Keys present on both sides with different shapes; never loaded.
    public var shapeMismatched: [Mismatch] = []
    /// A floating-point tensor stored with an integer dtype, or the reverse.
    public struct DTypeMismatch: Equatable {
        /// The `state_dict` key, e.g. `fc.weight`.
        public let key: String
        /// The model's dtype, e.g. "float32".
        public let expected: String
        /// The incoming tensor's dtype, e.g. "int64".
        public let found: String
    }
    /// Keys whose floating-point-ness differs between the model and the file; never loaded.
    public var dtypeMismatched: [DTypeMismatch] = []
    /// Floating-point tensors holding NaN or infinity (never loaded).
    public var nonFinite: [String] = []
    /// BatchNorm `running_var` tensors holding a negative value, which makes every output NaN (never loaded).
    public var negativeVariance: [String] = []

    /// True when every key matched in name, shape and dtype class and every value was finite (and
    /// every running variance non-negative): the condition a strict `load` requires.
    public var isClean: Bool {
        missing.isEmpty && unexpected.isEmpty && shapeMismatched.isEmpty && dtypeMismatched.isEmpty && nonFinite.isEmpty
            && negativeVariance.isEmpty
    }

    /// A multi-line, human-readable report in PyTorch's wording ("missing keys: …", "size mismatch for …").
    public var description: String {
        // A refused strict load copied nothing: "loaded 0 tensors" read as if no key matched.
        var lines = [loaded == 0 && matched > 0 ? "\(matched) tensors fit, but nothing was loaded (a strict load takes all or none)"
                                                : "loaded \(loaded) tensors"]
        if !missing.isEmpty { lines.append("missing keys: " + missing.joined(separator: ", ")) }
        if !unexpected.isEmpty { lines.append("unexpected keys: " + unexpected.joined(separator: ", ")) }
        for m in shapeMismatched {
            lines.append("size mismatch for \(m.key): the model has \(m.expected), the file has \(m.found)")
        }
        for m in dtypeMismatched {
            lines.append("dtype mismatch for \(m.key): the model has \(m.expected), the file has \(m.found)")
        }
        if !nonFinite.isEmpty {
            lines.append("NaN or infinite values in: " + nonFinite.joined(separator: ", "))
        }
        if !negativeVariance.isEmpty {
            lines.append("negative BatchNorm running variance in: " + negativeVariance.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}

/// Errors from module construction, structure changes and state loading.
public enum NNError: Error, CustomStringConvertible, Equatable {
    /// A strict `Module.load` refused the state dict; the report lists every problem.
    case loadFailed(LoadReport)
    /// A dotted path or freeze scope names no module or parameter.
    case unknownKey(String)
    /// `setChild` / `replaceModule` was asked to replace something that is not replaceable (or the root).
    case cannotReplace(String)
    /// A `Module` subclass did not override `forward`; the message names it.
    case notImplemented(String)
    /// A layer or model was configured with impossible settings (e.g. channels not divisible by
    /// groups), or a layer was given an input of the wrong rank.
    case invalidArgument(String)

    /// The message, with the full load report for `loadFailed`.
    public var description: String {
        switch self {
        case .loadFailed(let report): return "state_dict does not fit the model:\n\(report)"
        case .unknownKey(let m), .cannotReplace(let m), .invalidArgument(let m): return m
        case .notImplemented(let what): return "\(what) is not implemented"
        }
    }
}

/// Marker for normalisation layers whose training behaviour `freeze(keepBatchNormTraining:)` can keep.
public protocol BatchNormLayer: AnyObject {}

/// `a.b` joining that leaves an empty prefix out.
@inline(__always)
func join(_ prefix: String, _ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

/// True when `path` equals `scope` or lies below it as whole dotted components.
func isWithin(_ path: String, scope: String) -> Bool {
    scope.isEmpty || path == scope || path.hasPrefix(scope + ".")
}
