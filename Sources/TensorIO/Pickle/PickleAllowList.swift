/// One allow-list of the restricted `Unpickler`: the globals a kind of file may name, and the reason
/// given when a pickle names any other. Each kind of file gets its own list, so a global that one
/// format needs is refused in the other:
///
/// - `torch`: `.pth` checkpoints — `collections.OrderedDict`, the tensor rebuild functions, storage
///   and tensor classes (`TorchGlobals.allowList`);
/// - `cifar`: CIFAR "python version" batches — the globals numpy uses to pickle arrays and
///   `_codecs.encode` (`NumpyGlobals.allowList`).
///
/// A global outside the list fails with `PickleError.Kind.refusedGlobal(dottedName)` as soon as the
/// GLOBAL / STACK_GLOBAL / INST opcode names it, before any later opcode runs. Nothing is ever
/// imported or executed: "calling" an allowed global only interprets its arguments as data.
public struct PickleAllowList: Sendable {
    /// What the list is for, for messages and documentation.
    public let name: String
    /// Dotted name (`module.qualname`) → meaning.
    public let globals: [String: PickleGlobal.Role]
    private let refusal: @Sendable (String) -> String

    /// A list named `name` accepting `globals`; `refusal` turns a refused dotted name into the error text.
    public init(name: String, globals: [String: PickleGlobal.Role], refusal: @escaping @Sendable (String) -> String) {
        self.name = name
        self.globals = globals
        self.refusal = refusal
    }

    /// PyTorch `.pth` checkpoints (`torch.save` output).
    public static let torch = PickleAllowList(name: "PyTorch checkpoint",
                                              globals: TorchGlobals.allowList.mapValues { .torch($0) },
                                              refusal: { TorchGlobals.refusalText($0) })

    /// CIFAR-10/100 "python version" batches: dicts of numpy arrays, lists, ints and strings.
    public static let cifar = PickleAllowList(name: "CIFAR batch",
                                              globals: NumpyGlobals.allowList.mapValues { .numpy($0) },
                                              refusal: { NumpyGlobals.refusalText($0) })

    /// The global `module.name`, or a `refusedGlobal` error naming it.
    func resolve(module: String, name: String) throws -> PickleGlobal {
        let dotted = "\(module).\(name)"
        guard let role = globals[dotted] else { throw PickleError(.refusedGlobal(dotted), refusal(dotted)) }
        return PickleGlobal(module: module, name: name, role: role)
    }
}

/// The interpretation of allow-listed globals: REDUCE / INST / OBJ ("calls"), NEWOBJ (instances)
/// and BUILD (state), dispatched on each global's role.
enum PickleGlobals {
    static func call(_ callable: PickleGlobal, _ args: [PickleValue]) throws -> PickleValue {
        switch callable.role {
        case .torch(let role): return try TorchGlobals.call(callable, role, args)
        case .numpy(let role): return try NumpyGlobals.call(callable, role, args)
        }
    }

    /// `cls.__new__(cls, *args)`: only OrderedDict.
    static func instantiate(_ cls: PickleGlobal) throws -> PickleValue {
        guard cls.role == .torch(.orderedDict) else {
            throw PickleError.unsupported("the pickle instantiates \(cls.qualifiedName), which is not supported")
        }
        return .dict(PickleDict(ordered: true))
    }

    static func build(_ target: PickleValue, state: PickleValue) throws {
        switch target {
        case .ndarray, .dtype: try NumpyGlobals.build(target, state: state)
        default: try TorchGlobals.build(target, state: state)
        }
    }
}
