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
    /// Python's `None`.
    case none
    /// `True` / `False`.
    case bool(Bool)
    /// An integer that fits in 64 bits.
    case int(Int)
    /// An integer too wide for `Int`: its little-endian two's-complement bytes as pickled.
    case bigInt([UInt8])
    /// A Python float (64-bit).
    case float(Double)
    /// A `str` (or a Python 2 string read with `LegacyStrings.decoded`).
    case string(String)
    /// A `bytes` object (or a Python 2 string read with `LegacyStrings.bytes`).
    case bytes([UInt8])
    /// A tuple; immutable once built.
    case tuple(PickleTuple)
    /// A list.
    case list(PickleList)
    /// A `dict` or `collections.OrderedDict` (see `PickleDict.isOrderedDict`), in insertion order.
    case dict(PickleDict)
    /// A `set` (or `frozenset`), its items in pickle order; duplicates are not removed.
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

    /// The list this value is; nil for anything else.
    var listValue: PickleList? { if case .list(let l) = self { return l }; return nil }
    /// The dict (or OrderedDict) this value is; nil for anything else.
    var dictValue: PickleDict? { if case .dict(let d) = self { return d }; return nil }
    /// The set this value is; nil for anything else.
    var setValue: PickleList? { if case .set(let s) = self { return s }; return nil }

    /// The text of a `str`; nil for anything else (bytes included: see `text`).
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    /// The text of a `str`, or of `bytes` (a Python 2 `str` read as bytes) decoded as UTF-8, else Latin-1.
    public var text: String? {
        switch self {
        case .string(let s): return s
        case .bytes(let b): return String(bytes: b, encoding: .utf8) ?? String(bytes: b, encoding: .isoLatin1)
        default: return nil
        }
    }
    /// The value of an `int` that fits in 64 bits, or of a `bool` as 0/1 (Python's `True == 1`); nil otherwise.
    public var intValue: Int? {
        switch self {
        case .int(let i): return i
        case .bool(let b): return b ? 1 : 0
        default: return nil
        }
    }
    /// The value of a `bool`, or of the ints 0 and 1; nil otherwise.
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

/// A pickled tuple.
public final class PickleTuple: PickleContainer {
    /// The elements, in order.
    public let items: [PickleValue]
    init(_ items: [PickleValue]) { self.items = items }
}

/// A pickled list (also used for sets); it can be appended to only until it is nested in another container.
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
    /// Whether the pickle built a `collections.OrderedDict` (as `state_dict()` returns) rather than a plain `dict`.
    public let isOrderedDict: Bool
    private var index: [HashKey: Int] = [:]

    private enum HashKey: Hashable {
        case string(String)
        case int(Int)
    }

    init(ordered: Bool = false) { self.isOrderedDict = ordered }

    /// The number of entries.
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

    /// The value under the `str` key `key`, or nil (bytes keys are not matched: see `value(forText:)`).
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
        /// A global from `PickleAllowList.torch` (OrderedDict, a tensor rebuild function, a storage class…).
        case torch(TorchGlobal)
        /// A global from `PickleAllowList.cifar` (numpy's array and dtype reconstructors, `_codecs.encode`).
        case numpy(NumpyGlobal)
    }

    /// The Python module, e.g. `torch._utils`.
    public let module: String
    /// The qualified name inside the module, e.g. `_rebuild_tensor_v2`.
    public let name: String
    /// What the accepting allow-list says this global means.
    public let role: Role
    /// `module.name`, e.g. `torch._utils._rebuild_tensor_v2`, as messages show it.
    public var qualifiedName: String { "\(module).\(name)" }
    /// The role of a global from `PickleAllowList.torch`.
    public var torchRole: TorchGlobal? { if case .torch(let r) = role { return r }; return nil }
}

/// A storage referenced by a persistent id (`('storage', FloatStorage, key, location, numel)`).
public struct PickleStorage: Equatable, Sendable {
    /// The root storage's key: `data/<key>` in a zip archive, a record in a legacy file.
    public let key: String
    /// The element type, from the storage class (`FloatStorage` → float32, `HalfStorage` → float16, …).
    public let dtype: DType
    /// Where the tensor was saved from, e.g. "cpu" or "cuda:0"; imports always build CPU tensors.
    public let location: String
    /// Elements of `dtype` in the root storage, as the pickle states it.
    public let numel: Int
    /// For legacy storage views: the element range of the root storage this storage covers.
    public let view: Range<Int>?
}

/// A tensor to be built by viewing `storage` with `shape`/`strides` from `offset` (all in elements).
public struct PickleTensor: Equatable, Sendable {
    /// The storage the tensor views.
    public let storage: PickleStorage
    /// The index of the tensor's first element in the storage, in elements (`storage_offset()`).
    public let offset: Int
    /// The tensor's size per dimension.
    public let shape: [Int]
    /// The storage step per dimension, in elements (`stride()`); non-row-major for permuted or channels-last tensors.
    public let strides: [Int]
    /// The pickled `requires_grad` flag (imported tensors never require gradients regardless).
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
