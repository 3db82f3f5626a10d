/// An ordered mapping from PyTorch `state_dict` keys (e.g. `features.0.0.weight`) to tensors.
/// Insertion order is kept, so files and reports list keys as the model defines them.
public struct StateDict: Sequence {
    /// The keys in insertion order.
    public private(set) var keys: [String] = []
    private var storage: [String: Tensor] = [:]

    /// An empty state dict.
    public init() {}

    /// The pairs in order; a repeated key keeps its first position and its last tensor.
    public init(_ pairs: [(String, Tensor)]) {
        for (key, tensor) in pairs { self[key] = tensor }
    }

    /// The number of entries.
    public var count: Int { keys.count }
    /// Whether there are no entries.
    public var isEmpty: Bool { keys.isEmpty }

    /// The tensor stored under `key`, or nil. Setting a new key appends it at the end; setting an
    /// existing key replaces its tensor in place (order kept); setting nil removes the entry.
    /// Tensors are stored by reference, not copied.
    public subscript(key: String) -> Tensor? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    /// Whether `key` has an entry.
    public func contains(_ key: String) -> Bool { storage[key] != nil }

    /// Iterates `(key, tensor)` pairs in insertion order.
    public func makeIterator() -> AnyIterator<(key: String, tensor: Tensor)> {
        var index = 0
        return AnyIterator {
            guard index < keys.count else { return nil }
            defer { index += 1 }
            let key = keys[index]
            return (key, storage[key]!)
        }
    }

    /// Keys renamed by `transform` (returning nil drops the entry), order kept.
    public func renamingKeys(_ transform: (String) -> String?) -> StateDict {
        var out = StateDict()
        for (key, tensor) in self { if let k = transform(key) { out[k] = tensor } }
        return out
    }
}
