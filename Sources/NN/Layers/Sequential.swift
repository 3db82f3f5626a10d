import Torch

/// Runs its children in order, like `torch.nn.Sequential`. Children are keyed "0", "1", … (or by the
/// names given to `init(named:)`), so `state_dict` keys read `features.3.weight` as in PyTorch.
open class Sequential: Module {
    /// The children with their keys, in order.
    public private(set) var entries: [(name: String, module: Module)]

    /// Children keyed "0", "1", ….
    public init(_ modules: [Module]) {
        entries = modules.enumerated().map { (String($0.offset), $0.element) }
        super.init()
    }

    /// Children keyed "0", "1", ….
    public convenience init(_ modules: Module...) { self.init(modules) }

    /// Children under explicit keys (PyTorch's `Sequential(OrderedDict(...))`). Keys must be unique,
    /// non-empty and free of dots.
    public init(named: [(String, Module)]) throws {
        var seen = Set<String>()
        for (name, _) in named {
            guard !name.isEmpty, !name.contains("."), seen.insert(name).inserted else {
                throw NNError.invalidArgument("Sequential: invalid or duplicate child name '\(name)'")
            }
        }
        entries = named.map { (name: $0.0, module: $0.1) }
        super.init()
    }

    /// "Sequential", as PyTorch prints it.
    open override var typeName: String { "Sequential" }

    /// The children under their keys, in order, so state-dict keys are `<key>.<parameter>`.
    open override var namedChildren: [(String, Module)] { entries.map { ($0.name, $0.module) } }

    /// The children, in order.
    public var modules: [Module] { entries.map(\.module) }

    /// The number of children (`len(seq)`).
    public var count: Int { entries.count }

    /// The child at position `index` (0-based, like `seq[i]` in PyTorch for non-negative `i`).
    public subscript(index: Int) -> Module {
        get { entries[index].module }
        set { entries[index].module = newValue }
    }

    /// Appends `module` under the key `String(count)`.
    public func append(_ module: Module) {
        entries.append((String(entries.count), module))
    }

    /// Replaces the child keyed `name` (e.g. "3").
    open override func setChild(_ name: String, to module: Module) throws {
        guard let index = entries.firstIndex(where: { $0.name == name }) else {
            throw NNError.cannotReplace("Sequential has no child '\(name)' (it has \(entries.map(\.name)))")
        }
        entries[index].module = module
    }

    /// Runs the children in order. A `Conv2d` directly followed by a `BatchNorm2d` runs as
    /// `Conv2d.forward(_:thenBatchNorm:)`, which folds the two into one convolution in inference.
    open override func forward(_ x: Tensor) throws -> Tensor {
        var y = x
        var index = 0
        while index < entries.count {
            let module = entries[index].module
            if index + 1 < entries.count, let conv = module as? Conv2d,
               let batchNorm = entries[index + 1].module as? BatchNorm2d {
                y = try conv.forward(y, thenBatchNorm: batchNorm)
                index += 2
            } else {
                y = try module(y)
                index += 1
            }
        }
        return y
    }

    /// Empty: PyTorch's repr of a Sequential lists only its children.
    open var extraDescription: String { "" }
}

extension Sequential: ModuleDescribing {}

// MARK: - Printing

/// A layer that prints like PyTorch's `repr`: `typeName(extraDescription)`, with children listed below.
public protocol ModuleDescribing: Module, CustomStringConvertible {
    /// The constructor arguments PyTorch shows, e.g. `3, 32, kernel_size=(3, 3), stride=(2, 2)`.
    var extraDescription: String { get }
}

extension ModuleDescribing {
    /// The PyTorch-style repr, `treeDescription`.
    public var description: String { treeDescription }
}

extension Module {
    /// A PyTorch-style `repr` of this module and its descendants, e.g.
    /// ```
    /// Sequential(
    ///   (0): Conv2d(3, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
    ///   (1): ReLU()
    /// )
    /// ```
    public var treeDescription: String {
        let extra = (self as? any ModuleDescribing)?.extraDescription ?? ""
        let children = namedChildren
        if children.isEmpty { return "\(typeName)(\(extra))" }
        var lines: [String] = extra.isEmpty ? [] : [extra]
        for (name, child) in children {
            let body = child.treeDescription.split(separator: "\n", omittingEmptySubsequences: false)
                .joined(separator: "\n  ")
            lines.append("(\(name)): \(body)")
        }
        return "\(typeName)(\n  " + lines.joined(separator: "\n  ") + "\n)"
    }
}
