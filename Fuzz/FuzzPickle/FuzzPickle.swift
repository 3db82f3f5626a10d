// libFuzzer target: TensorIO's restricted unpickler (Pickle/Unpickler.swift and the allow-lists).
//
// Input: one mode byte, then pickle bytes. Mode bit 0 picks the allow-list (0: .torch, 1: .cifar),
// bit 1 how Python 2 strings are read (0: decoded, 1: bytes). Up to three pickles are read back to
// back, as legacy .pth files hold them; persistent ids resolve to a small float storage, as a .pth
// archive's would.
import Foundation
import FuzzSupport
@testable import TensorIO

/// Visits every value once (values may share subtrees: a DAG walked naively is exponential).
private func visit(_ value: PickleValue, _ seen: inout Set<ObjectIdentifier>) {
    _ = value.description
    _ = value.typeName
    _ = value.text
    _ = value.boolValue
    switch value {
    case .tuple(let t):
        guard seen.insert(ObjectIdentifier(t)).inserted else { return }
        for item in t.items { visit(item, &seen) }
    case .list(let l), .set(let l):
        guard seen.insert(ObjectIdentifier(l)).inserted else { return }
        for item in l.items { visit(item, &seen) }
    case .dict(let d):
        guard seen.insert(ObjectIdentifier(d)).inserted else { return }
        for (key, item) in d.entries {
            visit(key, &seen)
            visit(item, &seen)
        }
        for (_, item) in d.attributes { visit(item, &seen) }
        _ = d["data"]
        _ = d.value(forText: "labels")
    case .tensor(let t):
        _ = t.isContiguous
    case .ndarray(let a):
        _ = a.dtype?.itemSize
        _ = a.dtype?.kind
        if a.isBuilt { _ = a.data.count }
    default:
        break
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPickle(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let mode = input.byte()
    let bytes = Foundation.Data(buffer: input.rest)
    let allowList: PickleAllowList = mode & 1 == 0 ? .torch : .cifar
    let strings: Unpickler.LegacyStrings = mode & 2 == 0 ? .decoded : .bytes
    var start = 0
    for _ in 0..<3 where start < bytes.count {
        let machine = Unpickler(data: bytes, start: start, allowList: allowList, legacyStrings: strings)
        machine.persistentLoad = { _ in
            .storage(PickleStorage(key: "0", dtype: .float32, location: "cpu", numel: 4, view: nil))
        }
        do {
            let value = try machine.load()
            var seen = Set<ObjectIdentifier>()
            visit(value, &seen)
            guard machine.position > start, machine.position <= bytes.count else {
                fatalError("Unpickler.position \(machine.position) after a pickle starting at \(start)")
            }
            start = machine.position
        } catch is PickleError {
            break
        } catch {
            fatalError("Unpickler threw a \(type(of: error)), not a PickleError: \(error)")
        }
    }
    return 0
}
