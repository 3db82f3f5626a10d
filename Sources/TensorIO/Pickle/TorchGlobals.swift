import Torch

/// What an allow-listed global means to the restricted unpickler. "Calling" one never runs code: it
/// interprets the pickled arguments into data (`PickleValue`).
public enum TorchGlobal: Equatable, Sendable {
    /// `collections.OrderedDict`: called or instantiated, it makes an empty (or pre-filled) dict.
    case orderedDict
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`
    case rebuildTensorV2
    /// `torch._utils._rebuild_tensor(storage, offset, size, stride)`
    case rebuildTensor
    /// `torch._utils._rebuild_parameter(data, requires_grad, hooks)`
    case rebuildParameter
    /// `torch._utils._rebuild_parameter_with_state(data, requires_grad, hooks, state)` (state ignored)
    case rebuildParameterWithState
    /// `torch._tensor._rebuild_from_type_v2(func, type, args, state)`: accepted only when `func` is one
    /// of the tensor rebuild functions above and `type` is `torch.Tensor` or `torch.nn.Parameter`.
    case rebuildFromTypeV2
    /// A storage class such as `torch.FloatStorage`: only meaningful inside a persistent id.
    case storageClass(DType)
    /// `torch.Tensor` / `torch.nn.Parameter`: only meaningful as `_rebuild_from_type_v2`'s type.
    case tensorClass

    var buildsTensor: Bool {
        switch self {
        case .rebuildTensorV2, .rebuildTensor, .rebuildParameter, .rebuildParameterWithState: return true
        default: return false
        }
    }
}

/// The `.pth` allow-list of the restricted unpickler (`PickleAllowList.torch`) and the interpretation
/// of its entries.
///
/// Everything else, including builtins such as `builtins.getattr`, `builtins.set`, `builtins.eval`,
/// `torch.storage._load_from_bytes` (which would unpickle nested bytes) and numpy's globals, is refused
/// as soon as the GLOBAL / STACK_GLOBAL / INST opcode names it, before any later opcode runs.
public enum TorchGlobals {
    static let storageClasses: [(String, DType)] = [
        ("FloatStorage", .float32), ("DoubleStorage", .float64), ("HalfStorage", .float16),
        ("BFloat16Storage", .bfloat16), ("LongStorage", .int64), ("IntStorage", .int32),
        ("ShortStorage", .int16), ("CharStorage", .int8), ("ByteStorage", .uint8), ("BoolStorage", .bool),
    ]

    /// Dotted name → meaning. `torch.cuda.*Storage` appear in files saved from a GPU (they load to the
    /// CPU like `map_location="cpu"`); `torch.UntypedStorage` holds bytes (newer zip files).
    public static let allowList: [String: TorchGlobal] = {
        var list: [String: TorchGlobal] = [
            "collections.OrderedDict": .orderedDict,
            "torch._utils._rebuild_tensor_v2": .rebuildTensorV2,
            "torch._utils._rebuild_tensor": .rebuildTensor,
            "torch._utils._rebuild_parameter": .rebuildParameter,
            "torch._utils._rebuild_parameter_with_state": .rebuildParameterWithState,
            "torch._tensor._rebuild_from_type_v2": .rebuildFromTypeV2,
            "torch.tensor._rebuild_from_type_v2": .rebuildFromTypeV2,  // torch.load maps torch.tensor → torch._tensor
            "torch.Tensor": .tensorClass,
            "torch._tensor.Tensor": .tensorClass,
            "torch.tensor.Tensor": .tensorClass,
            "torch.nn.parameter.Parameter": .tensorClass,
            "torch.nn.Parameter": .tensorClass,
            "torch.UntypedStorage": .storageClass(.uint8),
        ]
        for (name, dtype) in storageClasses {
            list["torch.\(name)"] = .storageClass(dtype)
            list["torch.cuda.\(name)"] = .storageClass(dtype)
        }
        return list
    }()

    static func refusalText(_ dotted: String) -> String {
        "it references the global '\(dotted)', which is not a tensor or container (nothing was executed)"
    }

    // MARK: - REDUCE / NEWOBJ / BUILD

    /// Interprets `callable(*args)` for an allow-listed callable (`role` is its role).
    static func call(_ callable: PickleGlobal, _ role: TorchGlobal, _ args: [PickleValue]) throws -> PickleValue {
        let name = callable.qualifiedName
        func arity(_ allowed: ClosedRange<Int>) throws {
            guard allowed.contains(args.count) else {
                throw PickleError.malformed("\(name) called with \(args.count) arguments, expected " +
                                            (allowed.count == 1 ? "\(allowed.lowerBound)" :
                                                "\(allowed.lowerBound)-\(allowed.upperBound)"))
            }
        }
        switch role {
        case .orderedDict:
            try arity(0...1)
            let dict = PickleDict(ordered: true)
            if let source = args.first {
                let pairs: [PickleValue]
                switch source {
                case .dict(let d):
                    for (k, v) in d.entries {
                        try dict.adopt([k, v])
                        dict.set(k, v)
                    }
                    return .dict(dict)
                default:
                    guard let items = source.sequenceItems else {
                        throw PickleError.malformed("OrderedDict() called with a \(source.typeName)")
                    }
                    pairs = items
                }
                for pair in pairs {
                    guard let kv = pair.sequenceItems, kv.count == 2 else {
                        throw PickleError.malformed("OrderedDict() item is a \(pair.typeName), not a (key, value) pair")
                    }
                    try dict.adopt(kv)
                    dict.set(kv[0], kv[1])
                }
            }
            return .dict(dict)

        case .rebuildTensorV2, .rebuildTensor:
            try arity(role == .rebuildTensor ? 4...4 : 6...7)
            guard case .storage(let storage) = args[0] else {
                throw PickleError.malformed("\(name): the first argument is a \(args[0].typeName), not a storage")
            }
            guard let offset = args[1].intValue else {
                throw PickleError.malformed("\(name): the storage offset is a \(args[1].typeName)")
            }
            let shape = try intTuple(args[2], "\(name): the size")
            let strides = try intTuple(args[3], "\(name): the stride")
            guard shape.count == strides.count else {
                throw PickleError.malformed("\(name): size has \(shape.count) dims but stride has \(strides.count)")
            }
            let requiresGrad = args.count > 4 ? (args[4].boolValue ?? false) : false
            return .tensor(PickleTensor(storage: storage, offset: offset, shape: shape, strides: strides,
                                        requiresGrad: requiresGrad, isParameter: false))

        case .rebuildParameter, .rebuildParameterWithState:
            try arity(role == .rebuildParameter ? 3...3 : 4...4)
            guard case .tensor(let data) = args[0] else {
                throw PickleError.malformed("\(name): the data is a \(args[0].typeName), not a tensor")
            }
            return .tensor(PickleTensor(storage: data.storage, offset: data.offset, shape: data.shape,
                                        strides: data.strides, requiresGrad: args[1].boolValue ?? true,
                                        isParameter: true))

        case .rebuildFromTypeV2:
            try arity(4...4)
            guard case .global(let function) = args[0], let functionRole = function.torchRole,
                  functionRole.buildsTensor else {
                throw PickleError.malformed("\(name): the rebuild function \(args[0]) is not a tensor rebuild " +
                                            "function on the allow-list")
            }
            guard case .global(let type) = args[1], type.torchRole == .tensorClass else {
                throw PickleError.malformed("\(name): the type \(args[1]) is not torch.Tensor or torch.nn.Parameter")
            }
            guard let inner = args[2].sequenceItems else {
                throw PickleError.malformed("\(name): the arguments are a \(args[2].typeName), not a tuple")
            }
            let result = try call(function, functionRole, inner)
            guard case .tensor = result else { throw PickleError.malformed("\(name) did not produce a tensor") }
            return result

        case .storageClass, .tensorClass:
            throw PickleError.unsupported("the pickle calls \(name), which only names a type here; " +
                                          "building storages or tensors that way is not supported")
        }
    }

    /// Applies BUILD's `state` to `target`.
    static func build(_ target: PickleValue, state: PickleValue) throws {
        switch (target, state) {
        case (_, .none):
            return
        case (.dict(let dict), .dict(let attributes)):
            try setAttributes(dict, attributes)
        case (.dict(let dict), .tuple(let pair)) where pair.items.count == 2:
            // (instance dict, slots dict), either may be None.
            for part in pair.items {
                if case .dict(let attributes) = part { try setAttributes(dict, attributes) }
            }
        case (.tensor, _):
            // A tensor's Python-level attributes carry no data; nothing to keep.
            return
        default:
            throw PickleError.unsupported("BUILD on a \(target.typeName) with a \(state.typeName) state is not supported")
        }
    }

    private static func setAttributes(_ dict: PickleDict, _ attributes: PickleDict) throws {
        try dict.checkMutable("BUILD")
        for (key, value) in attributes.entries {
            guard let name = key.stringValue else {
                throw PickleError.malformed("BUILD attribute name is a \(key.typeName)")
            }
            try dict.adopt(value)
            dict.attributes.append((name, value))
        }
    }

    private static func intTuple(_ value: PickleValue, _ what: String) throws -> [Int] {
        guard let items = value.sequenceItems else { throw PickleError.malformed("\(what) is a \(value.typeName)") }
        return try items.map {
            guard let i = $0.intValue else { throw PickleError.malformed("\(what) contains a \($0.typeName)") }
            return i
        }
    }
}
