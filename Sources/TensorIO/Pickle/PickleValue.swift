import Torch

/// A value produced by the restricted `Unpickler`: plain data only. Python objects that a normal
/// unpickler would construct by calling code are represented by what they describe (`.tensor`,
/// `.storage`) or, for allow-listed names that are not called, by `.global`.
///
/// Lists, dicts, sets and tuples are reference types (`PickleList`, ...) because pickles mutate
/// containers after memoizing them (EMPTY_DICT, BINPUT, ... SETITEMS). They stay valid while the
/// `Unpickler` that made them is alive; `Unpickler.releaseObjects()` (or its deinit) empties them
/// so that reference cycles and deep nesting built by a hostile pickle are freed without recursion.
public enum PickleValue: CustomStringConvertible {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer too wide for `Int`: its little-endian two's-complement bytes as pickled.
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple(PickleTuple)
    case list(PickleList)
    case dict(PickleDict)
    case set(PickleList)
    /// An allow-listed global that has not been called (a storage class, a rebuild function...).
    case global(PickleGlobal)
    /// A storage reference returned by the persistent-id handler.
    case storage(PickleStorage)
    /// A tensor described by `torch._utils._rebuild_tensor_v2` and friends (not yet materialized).
    case tensor(PickleTensor)

    /// A Python-like type name for messages and reports.
    public var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict(let d): return d.isOrderedDict ? "OrderedDict" : "dict"
        case .set: return "set"
        case .global(let g): return "global \(g.qualifiedName)"
        case .storage: return "storage"
        case .tensor: return "tensor"
        }
    }

    /// A short, non-recursive rendering.
    public var description: String {
        switch self {
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .bigInt(let bytes): return "int(\(bytes.count) bytes)"
        case .float(let f): return String(f)
        case .string(let s): return "'\(s)'"
        case .bytes(let b): return "bytes(\(b.count))"
        case .tuple(let t): return "tuple(\(t.items.count) items)"
        case .list(let l): return "list(\(l.items.count) items)"
        case .dict(let d): return "\(typeName)(\(d.count) items)"
        case .set(let s): return "set(\(s.items.count) items)"
        case .global(let g): return g.qualifiedName
        case .storage(let s): return "storage '\(s.key)' (\(s.dtype))"
        case .tensor(let t): return "tensor \(t.shape) \(t.storage.dtype)"
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    public var boolValue: Bool? {
        switch self {
        case .bool(let b): return b
        case .int(let i) where i == 0 || i == 1: return i == 1
        default: return nil
        }
    }
    /// The items of a tuple or a list.
    public var sequenceItems: [PickleValue]? {
        switch self {
        case .tuple(let t): return t.items
        case .list(let l): return l.items
        default: return nil
        }
    }
}

/// Containers made by an `Unpickler` (reference types; see `PickleValue`).
public class PickleContainer {
    func release() {}
}

public final class PickleTuple: PickleContainer {
    public private(set) var items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
    override func release() { items = [] }
}

public final class PickleList: PickleContainer {
    public internal(set) var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
    override func release() { items = [] }
}

/// An insertion-ordered dictionary. Keys that are strings, ints or bools replace earlier equal keys
/// (as Python would); other keys (tuples, floats...) are kept as separate entries.
public final class PickleDict: PickleContainer {
    public private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    /// Attributes set by BUILD on an OrderedDict instance (e.g. `_metadata` of a state dict).
    public internal(set) var attributes: [(name: String, value: PickleValue)] = []
    public let isOrderedDict: Bool
    private var index: [HashKey: Int] = [:]

    private enum HashKey: Hashable {
        case string(String)
        case int(Int)
    }

    init(ordered: Bool = false) { self.isOrderedDict = ordered }

    public var count: Int { entries.count }

    private static func hashKey(_ key: PickleValue) -> HashKey? {
        switch key {
        case .string(let s): return .string(s)
        case .int(let i): return .int(i)
        case .bool(let b): return .int(b ? 1 : 0)  // Python: True == 1
        default: return nil
        }
    }

    func set(_ key: PickleValue, _ value: PickleValue) {
        if let h = PickleDict.hashKey(key) {
            if let i = index[h] {
                entries[i].value = value
                return
            }
            index[h] = entries.count
        }
        entries.append((key, value))
    }

    public subscript(key: String) -> PickleValue? {
        guard let i = index[.string(key)] else { return nil }
        return entries[i].value
    }

    override func release() {
        entries = []
        attributes = []
        index = [:]
    }
}

/// An allow-listed global (see `TorchGlobals`).
public struct PickleGlobal: Equatable, Sendable {
    public let module: String
    public let name: String
    public let role: TorchGlobal
    public var qualifiedName: String { "\(module).\(name)" }
}

/// A storage referenced by a persistent id (`('storage', FloatStorage, key, location, numel)`).
public struct PickleStorage: Equatable, Sendable {
    /// The root storage's key: `data/<key>` in a zip archive, a record in a legacy file.
    public let key: String
    public let dtype: DType
    public let location: String
    /// Elements of `dtype` in the root storage, as the pickle states it.
    public let numel: Int
    /// For legacy storage views: the element range of the root storage this storage covers.
    public let view: Range<Int>?
}

/// A tensor to be built by viewing `storage` with `shape`/`strides` from `offset` (all in elements).
public struct PickleTensor: Equatable, Sendable {
    public let storage: PickleStorage
    public let offset: Int
    public let shape: [Int]
    public let strides: [Int]
    public let requiresGrad: Bool
    /// Pickled as a `torch.nn.Parameter`.
    public let isParameter: Bool

    /// Whether the strides are those of a row-major (C-contiguous) layout, ignoring size-1 dims.
    public var isContiguous: Bool {
        if shape.contains(0) { return true }
        var expected = 1
        for (size, stride) in zip(shape, strides).reversed() where size != 1 {
            if stride != expected { return false }
            expected = expected &* size
        }
        return true
    }
}
