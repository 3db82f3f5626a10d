import Foundation
import Torch

/// A value produced by the restricted `Unpickler`: plain data only. Python objects that a normal
/// unpickler would construct by calling code are represented by what they describe (`.tensor`,
/// `.storage`, `.ndarray`, `.dtype`) or, for allow-listed names that are not called, by `.global`.
///
/// Lists, dicts, sets and tuples are reference types (`PickleList`, ...) because pickles mutate
/// containers after memoizing them (EMPTY_DICT, BINPUT, ... SETITEMS). The unpickler keeps the graph
/// acyclic and shallow (see `Unpickler.maxDepth`): a container, once nested in another, can no longer
/// be modified, and nesting deeper than the limit is refused, so values are freed without deep recursion.
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
    /// A numpy array (`numpy.core.multiarray._reconstruct` + BUILD, or `_frombuffer`).
    case ndarray(NumpyArray)
    /// A numpy dtype (`numpy.dtype`).
    case dtype(NumpyDType)

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
        case .ndarray: return "numpy.ndarray"
        case .dtype: return "numpy.dtype"
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
        case .ndarray(let a): return "numpy.ndarray \(a.shape) '\(a.dtype?.code ?? "?")'"
        case .dtype(let d): return "numpy.dtype '\(d.code)'"
        }
    }

    /// The container this value is, if any.
    public var container: PickleContainer? {
        switch self {
        case .tuple(let c): return c
        case .list(let c), .set(let c): return c
        case .dict(let c): return c
        default: return nil
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    /// The text of a `str`, or of `bytes` (a Python 2 `str` read as bytes) decoded as UTF-8, else Latin-1.
    public var text: String? {
        switch self {
        case .string(let s): return s
        case .bytes(let b): return String(bytes: b, encoding: .utf8) ?? String(bytes: b, encoding: .isoLatin1)
        default: return nil
        }
    }
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
    /// 1 + the height of the deepest container inside (1 for a container of scalars).
    public internal(set) var height = 1
    /// Set once the container is nested in another one; it is frozen from then on.
    var nested = false
}

extension PickleContainer {
    /// Records that `child` is placed inside this container: the child is frozen, and the height is
    /// checked against `Unpickler.maxDepth`. A container cannot be placed inside itself.
    func adopt(_ child: PickleValue) throws {
        guard let c = child.container else { return }
        guard c !== self else {
            throw PickleError.unsupported("a container is placed inside itself (recursive structures are not supported)")
        }
        c.nested = true
        if c.height >= height {
            height = c.height + 1
            guard height <= Unpickler.maxDepth else {
                throw PickleError.unsupported("containers are nested more than \(Unpickler.maxDepth) levels deep")
            }
        }
    }

    func adopt(_ children: [PickleValue]) throws { for c in children { try adopt(c) } }

    /// Refuses to modify a container that is already nested in another (only recursive structures do).
    func checkMutable(_ operation: @autoclosure () -> String) throws {
        guard !nested else {
            throw PickleError.unsupported("\(operation()) modifies a container after nesting it in another " +
                                          "(recursive structures are not supported)")
        }
    }
}

public final class PickleTuple: PickleContainer {
    public let items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
}

public final class PickleList: PickleContainer {
    public internal(set) var items: [PickleValue]
    init(_ items: [PickleValue] = []) { self.items = items }
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

    /// The value of the first entry whose key is the `str` or the `bytes` `key` (see `PickleValue.text`):
    /// Python 2 pickles read with `LegacyStrings.bytes` have bytes keys.
    public func value(forText key: String) -> PickleValue? {
        entries.first { $0.key.text == key }?.value
    }

}

/// An allow-listed global (see `PickleAllowList`).
public struct PickleGlobal: Equatable, Sendable {
    /// What the global means, by the allow-list that accepted it.
    public enum Role: Equatable, Sendable {
        case torch(TorchGlobal)
        case numpy(NumpyGlobal)
    }

    public let module: String
    public let name: String
    public let role: Role
    public var qualifiedName: String { "\(module).\(name)" }
    /// The role of a global from `PickleAllowList.torch`.
    public var torchRole: TorchGlobal? { if case .torch(let r) = role { return r }; return nil }
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
