import Foundation

/// A restricted, data-only pickle reader for the CIFAR "python version" batches (dicts of numpy
/// arrays, lists, ints and strings, pickled by Python 2's cPickle or by Python 3 at any protocol).
///
/// Nothing is ever executed or imported. The only globals accepted are the ones numpy uses to
/// pickle arrays — `numpy.core.multiarray._reconstruct` (and `numpy._core…`), `numpy.ndarray`,
/// `numpy.dtype`, `numpy.core.numeric._frombuffer`, and `_codecs.encode` (Python 3's way of
/// pickling bytes at protocol 2) — and "calling" them only interprets their arguments as data.
/// Any other global (`os.system`, `builtins.eval`, …) is refused as soon as it is named. Every
/// read is bounds-checked, containers nest at most `maxDepth` deep and cannot contain themselves,
/// so hostile files fail with a `DataError` instead of crashing.
///
/// Python 2 `str` values are kept as bytes (like Python 3's `pickle.load(f, encoding="bytes")`), so
/// array payloads survive intact; dictionary lookups accept `str` and `bytes` keys alike.
enum CIFARPickle {
    static let maxDepth = 32

    /// Reads the single pickle in `bytes`; `path` names the file in errors.
    static func load(_ bytes: [UInt8], path: String) throws -> PyValue {
        var machine = Machine(bytes: bytes, path: path)
        return try machine.run()
    }
}

/// A value read by `CIFARPickle`.
enum PyValue {
    case none
    case bool(Bool)
    case int(Int)
    case float(Double)
    case string(String)
    /// Python 3 bytes, or a Python 2 str.
    case bytes([UInt8])
    case container(PyContainer)
    case global(PyGlobal)
    case ndarray(NDArray)
    case dtype(NumpyDType)

    var typeName: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .container(let c): return c.kind.rawValue
        case .global(let g): return "global \(g)"
        case .ndarray: return "numpy.ndarray"
        case .dtype: return "numpy.dtype"
        }
    }

    /// Text of a `str`, or of bytes decoded as UTF-8 (Latin-1 when not UTF-8).
    var text: String? {
        switch self {
        case .string(let s): return s
        case .bytes(let b): return String(bytes: b, encoding: .utf8) ?? String(bytes: b, encoding: .isoLatin1)
        default: return nil
        }
    }

    var items: [PyValue]? {
        if case .container(let c) = self, c.kind != .dict { return c.items }
        return nil
    }

    /// `self[key]` for a dict with `str` or `bytes` keys.
    subscript(key: String) -> PyValue? {
        guard case .container(let c) = self, c.kind == .dict else { return nil }
        var i = 0
        while i + 1 < c.items.count {
            if c.items[i].text == key { return c.items[i + 1] }
            i += 2
        }
        return nil
    }

    /// Integers of a list/tuple of ints or of an integer numpy array.
    func integers(_ what: String, path: String) throws -> [Int] {
        switch self {
        case .ndarray(let a): return try a.integers(what, path: path)
        case .container(let c) where c.kind != .dict:
            return try c.items.map {
                switch $0 {
                case .int(let i): return i
                case .bool(let b): return b ? 1 : 0
                default: throw DataError.corrupt(path: path, reason: "\(what) contains a \($0.typeName), not an int")
                }
            }
        default:
            throw DataError.corrupt(path: path, reason: "\(what) is a \(typeName), not a list of ints")
        }
    }
}

/// A list, tuple or dict (dict items alternate key, value). Frozen once nested in another container.
final class PyContainer {
    enum Kind: String { case list, tuple, dict }
    let kind: Kind
    private(set) var items: [PyValue] = []
    private(set) var height = 1
    private(set) var frozen = false

    init(_ kind: Kind) { self.kind = kind }

    func add(_ values: [PyValue], path: String) throws {
        guard !frozen else {
            throw DataError.corrupt(path: path, reason: "pickle modifies a \(kind.rawValue) after nesting it " +
                                    "(recursive structures are not supported)")
        }
        for v in values {
            guard case .container(let child) = v else { continue }
            guard child !== self else {
                throw DataError.corrupt(path: path, reason: "pickle puts a \(kind.rawValue) inside itself")
            }
            child.frozen = true
            height = max(height, child.height + 1)
            guard height <= CIFARPickle.maxDepth else {
                throw DataError.corrupt(path: path, reason: "pickle nests containers more than " +
                                        "\(CIFARPickle.maxDepth) deep")
            }
        }
        items += values
    }
}

/// The accepted globals.
enum PyGlobal: String, CustomStringConvertible {
    case reconstruct = "numpy.core.multiarray._reconstruct"
    case ndarrayType = "numpy.ndarray"
    case dtype = "numpy.dtype"
    case frombuffer = "numpy.core.numeric._frombuffer"
    case codecsEncode = "_codecs.encode"

    init?(module: String, name: String) {
        // numpy 2 moved numpy.core to numpy._core; both spellings appear in pickles.
        let m = module.replacingOccurrences(of: "numpy._core.", with: "numpy.core.")
        self.init(rawValue: m + "." + name)
    }

    var description: String { rawValue }
}

/// A numpy dtype as far as CIFAR needs: kind + item size + byte order (e.g. "u1", "<i8").
final class NumpyDType {
    var code: String
    var byteOrder: String = "="

    init(code: String) {
        var c = code
        if let first = c.first, "<>|=".contains(first) {
            byteOrder = String(first)
            c.removeFirst()
        }
        self.code = c
    }

    var kind: Character? { code.first }
    var itemSize: Int? { Int(code.dropFirst()) }
}

/// A numpy array: shape, dtype and raw C-order bytes.
final class NDArray {
    var built = false
    var shape: [Int] = []
    var dtype: NumpyDType?
    var data: [UInt8] = []

    var count: Int { shape.reduce(1, *) }

    func checked(_ what: String, path: String) throws -> (NumpyDType, Int) {
        guard built, let dtype, let size = dtype.itemSize, let kind = dtype.kind else {
            throw DataError.corrupt(path: path, reason: "\(what) is an incomplete numpy array")
        }
        guard "iub".contains(kind), [1, 2, 4, 8].contains(size) else {
            throw DataError.unsupported("\(path): \(what) has numpy dtype '\(dtype.code)', expected an integer type")
        }
        return (dtype, size)
    }

    /// The payload of a uint8 array.
    func uint8(_ what: String, path: String) throws -> [UInt8] {
        let (dtype, size) = try checked(what, path: path)
        guard size == 1 else {
            throw DataError.unsupported("\(path): \(what) has numpy dtype '\(dtype.code)', expected uint8")
        }
        return data
    }

    func integers(_ what: String, path: String) throws -> [Int] {
        let (dtype, size) = try checked(what, path: path)
        let signed = dtype.kind == "i"
        let bigEndian = dtype.byteOrder == ">"
        var out = [Int](repeating: 0, count: count)
        for i in 0..<count {
            var v: UInt64 = 0
            for b in 0..<size {
                let byte = UInt64(data[i * size + (bigEndian ? b : size - 1 - b)])
                v = v << 8 | byte
            }
            if signed && size < 8 && v & (1 << (UInt64(size) * 8 - 1)) != 0 { v |= ~0 << (UInt64(size) * 8) }
            out[i] = Int(Int64(bitPattern: v))
        }
        return out
    }

    /// numpy's `__setstate__`: (version, shape, dtype, is_fortran, data) or the older 4-tuple.
    func setState(_ state: PyValue, path: String) throws {
        guard !built else { throw DataError.corrupt(path: path, reason: "pickle sets a numpy array's state twice") }
        guard var items = state.items else {
            throw DataError.corrupt(path: path, reason: "numpy array state is a \(state.typeName)")
        }
        if items.count == 5 { items.removeFirst() }
        guard items.count == 4 else {
            throw DataError.corrupt(path: path, reason: "numpy array state has \(items.count) items")
        }
        let shape = try items[0].integers("a numpy array's shape", path: path)
        guard case .dtype(let dtype) = items[1] else {
            throw DataError.corrupt(path: path, reason: "numpy array state has a \(items[1].typeName) as dtype")
        }
        let fortran: Bool
        switch items[2] {
        case .bool(let b): fortran = b
        case .int(let i): fortran = i != 0
        default: throw DataError.corrupt(path: path, reason: "numpy array state has a bad is_fortran flag")
        }
        try finish(shape: shape, dtype: dtype, fortran: fortran, payload: items[3], path: path)
    }

    func finish(shape: [Int], dtype: NumpyDType, fortran: Bool, payload: PyValue, path: String) throws {
        guard case .bytes(let bytes) = payload else {
            throw DataError.unsupported("\(path): numpy array data is a \(payload.typeName) (object arrays are " +
                                        "not supported)")
        }
        guard shape.allSatisfy({ $0 >= 0 }), let size = dtype.itemSize else {
            throw DataError.corrupt(path: path, reason: "numpy array has shape \(shape) and dtype '\(dtype.code)'")
        }
        var expected = size
        for d in shape {
            let (p, overflow) = expected.multipliedReportingOverflow(by: d)
            guard !overflow else { throw DataError.corrupt(path: path, reason: "numpy array shape \(shape) overflows") }
            expected = p
        }
        guard bytes.count == expected else {
            throw DataError.corrupt(path: path, reason: "numpy array of shape \(shape) and dtype '\(dtype.code)' " +
                                    "needs \(expected) bytes, the pickle holds \(bytes.count)")
        }
        guard !fortran || shape.filter({ $0 > 1 }).count <= 1 else {
            throw DataError.unsupported("\(path): Fortran-ordered numpy arrays are not supported")
        }
        self.shape = shape
        self.dtype = dtype
        data = bytes
        built = true
    }
}

extension CIFARPickle {
    struct Machine {
        let bytes: [UInt8]
        let path: String
        var position = 0
        var stack: [PyValue] = []
        var marks: [Int] = []
        var memo: [Int: PyValue] = [:]

        init(bytes: [UInt8], path: String) {
            self.bytes = bytes
            self.path = path
        }

        func fail(_ reason: String) -> DataError { .corrupt(path: path, reason: "pickle: " + reason) }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count - position else {
                throw fail("ends early (needs \(n) bytes at offset \(position), \(bytes.count - position) left)")
            }
            defer { position += n }
            return bytes[position..<position + n]
        }

        mutating func u8() throws -> Int { Int(try take(1).first!) }

        mutating func unsignedLE(_ n: Int) throws -> UInt64 {
            var v: UInt64 = 0
            for (i, b) in try take(n).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
            return v
        }

        mutating func length(_ n: Int) throws -> Int {
            let v = try unsignedLE(n)
            guard v <= UInt64(bytes.count) else { throw fail("length \(v) exceeds the file") }
            return Int(v)
        }

        mutating func line() throws -> String {
            guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw fail("unterminated text line") }
            defer { position = end + 1 }
            guard let s = String(bytes: bytes[position..<end], encoding: .utf8) else { throw fail("text is not UTF-8") }
            return s
        }

        mutating func pop() throws -> PyValue {
            guard let v = stack.popLast(), stack.count >= (marks.last ?? 0) else { throw fail("stack underflow") }
            return v
        }

        mutating func popMark() throws -> [PyValue] {
            guard let m = marks.popLast(), m <= stack.count else { throw fail("no MARK") }
            defer { stack.removeSubrange(m...) }
            return Array(stack[m...])
        }

        func top() throws -> PyValue {
            guard let v = stack.last, stack.count > (marks.last ?? 0) else { throw fail("stack underflow") }
            return v
        }

        func newContainer(_ kind: PyContainer.Kind, _ items: [PyValue]) throws -> PyValue {
            let c = PyContainer(kind)
            try c.add(items, path: path)
            return .container(c)
        }

        mutating func addTo(_ kind: PyContainer.Kind, _ items: [PyValue]) throws {
            guard case .container(let c) = try top(), c.kind == kind else {
                throw fail("adds items to a \(try top().typeName), expected a \(kind.rawValue)")
            }
            if kind == .dict && items.count % 2 != 0 { throw fail("odd number of dict items") }
            try c.add(items, path: path)
        }

        func global(_ module: String, _ name: String) throws -> PyValue {
            guard let g = PyGlobal(module: module, name: name) else {
                throw DataError.unsupported("\(path): the pickle references '\(module).\(name)', which is not " +
                                            "numpy array data; refused (nothing was executed)")
            }
            return .global(g)
        }

        func call(_ callable: PyValue, _ args: [PyValue]) throws -> PyValue {
            guard case .global(let g) = callable else { throw fail("calls a \(callable.typeName)") }
            switch g {
            case .reconstruct:
                guard args.count == 3, case .global(.ndarrayType) = args[0] else {
                    throw fail("unexpected arguments to \(g)")
                }
                return .ndarray(NDArray())
            case .dtype:
                guard let code = args.first?.text else { throw fail("numpy.dtype without a type code") }
                return .dtype(NumpyDType(code: code))
            case .codecsEncode:
                guard args.count == 2, case .string(let s) = args[0],
                      let encoding = args[1].text?.lowercased(), ["latin1", "latin-1", "iso-8859-1"].contains(encoding) else {
                    throw fail("unexpected arguments to _codecs.encode")
                }
                var out: [UInt8] = []
                out.reserveCapacity(s.unicodeScalars.count)
                for u in s.unicodeScalars {
                    guard u.value < 256 else { throw fail("_codecs.encode: character outside Latin-1") }
                    out.append(UInt8(u.value))
                }
                return .bytes(out)
            case .frombuffer:
                guard args.count == 4, case .dtype(let dtype) = args[1] else { throw fail("unexpected arguments to \(g)") }
                let array = NDArray()
                let shape = try args[2].integers("a numpy array's shape", path: path)
                try array.finish(shape: shape, dtype: dtype, fortran: args[3].text == "F", payload: args[0], path: path)
                return .ndarray(array)
            case .ndarrayType:
                throw fail("calls numpy.ndarray directly")
            }
        }

        func build(_ target: PyValue, _ state: PyValue) throws {
            switch target {
            case .ndarray(let a): try a.setState(state, path: path)
            case .dtype(let d):
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                guard let items = state.items, items.count >= 2, let order = items[1].text else {
                    throw fail("bad numpy.dtype state")
                }
                d.byteOrder = order
            default:
                throw fail("BUILD on a \(target.typeName) is not supported")
            }
        }

        mutating func run() throws -> PyValue {
            while true {
                let op = UInt8(try u8())
                switch op {
                case 0x80: _ = try u8()                                       // PROTO
                case 0x95: _ = try unsignedLE(8)                             // FRAME
                case 0x2E:                                                    // STOP
                    guard stack.count == 1, marks.isEmpty else { throw fail("STOP with \(stack.count) values") }
                    return stack[0]
                case 0x28: marks.append(stack.count)                          // MARK
                case 0x30: _ = try pop()                                      // POP
                case 0x31: _ = try popMark()                                  // POP_MARK
                case 0x32: stack.append(try top())                            // DUP
                case 0x4E: stack.append(.none)                                // NONE
                case 0x88: stack.append(.bool(true))                          // NEWTRUE
                case 0x89: stack.append(.bool(false))                         // NEWFALSE
                case 0x4A: stack.append(.int(Int(Int32(bitPattern: UInt32(try unsignedLE(4))))))  // BININT
                case 0x4B: stack.append(.int(try u8()))                       // BININT1
                case 0x4D: stack.append(.int(Int(try unsignedLE(2))))         // BININT2
                case 0x8A, 0x8B:                                              // LONG1, LONG4
                    let n = op == 0x8A ? try u8() : try length(4)
                    let b = Array(try take(n))
                    guard n <= 8 else { throw fail("integer wider than 64 bits") }
                    var v: UInt64 = (b.last ?? 0) & 0x80 != 0 ? ~0 : 0
                    for (i, byte) in b.enumerated() {
                        v &= ~(UInt64(0xFF) << (8 * UInt64(i)))
                        v |= UInt64(byte) << (8 * UInt64(i))
                    }
                    stack.append(.int(Int(Int64(bitPattern: v))))
                case 0x49, 0x4C:                                              // INT, LONG
                    var s = try line()
                    if s.hasSuffix("L") { s.removeLast() }
                    if s == "00" || s == "01" { stack.append(.bool(s == "01")) }
                    else if let i = Int(s) { stack.append(.int(i)) }
                    else { throw fail("bad integer literal") }
                case 0x47:                                                    // BINFLOAT
                    let bits = try take(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                    stack.append(.float(Double(bitPattern: bits)))
                case 0x46:                                                    // FLOAT
                    guard let f = Double(try line()) else { throw fail("bad float literal") }
                    stack.append(.float(f))
                case 0x55, 0x54:                                              // SHORT_BINSTRING, BINSTRING
                    let n = op == 0x55 ? try u8() : try length(4)
                    stack.append(.bytes(Array(try take(n))))
                case 0x43, 0x42, 0x8E, 0x96:                                  // SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
                    let n = op == 0x43 ? try u8() : try length(op == 0x42 ? 4 : 8)
                    stack.append(.bytes(Array(try take(n))))
                case 0x8C, 0x58, 0x8D:                                        // SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                    let n = op == 0x8C ? try u8() : try length(op == 0x58 ? 4 : 8)
                    guard let s = String(bytes: try take(n), encoding: .utf8) else { throw fail("string is not UTF-8") }
                    stack.append(.string(s))
                case 0x56:                                                    // UNICODE (raw-unicode-escape)
                    let s = try line()
                    guard !s.contains("\\") else { throw fail("escaped UNICODE strings are not supported") }
                    stack.append(.string(s))
                case 0x53:                                                    // STRING (quoted)
                    let s = try line()
                    guard s.count >= 2, let q = s.first, q == s.last, q == "'" || q == "\"", !s.contains("\\") else {
                        throw fail("quoted STRING with escapes is not supported")
                    }
                    stack.append(.bytes(Array(s.dropFirst().dropLast().utf8)))
                case 0x29: stack.append(try newContainer(.tuple, []))         // EMPTY_TUPLE
                case 0x74: stack.append(try newContainer(.tuple, try popMark()))  // TUPLE
                case 0x85, 0x86, 0x87:                                        // TUPLE1-3
                    var items: [PyValue] = []
                    for _ in 0..<Int(op - 0x84) { items.insert(try pop(), at: 0) }
                    stack.append(try newContainer(.tuple, items))
                case 0x5D: stack.append(try newContainer(.list, []))          // EMPTY_LIST
                case 0x6C: stack.append(try newContainer(.list, try popMark()))   // LIST
                case 0x61:                                                    // APPEND
                    let v = try pop()
                    try addTo(.list, [v])
                case 0x65: try addTo(.list, try popMark())                    // APPENDS
                case 0x7D: stack.append(try newContainer(.dict, []))          // EMPTY_DICT
                case 0x64:                                                    // DICT
                    let items = try popMark()
                    guard items.count % 2 == 0 else { throw fail("odd number of dict items") }
                    stack.append(try newContainer(.dict, items))
                case 0x73:                                                    // SETITEM
                    let v = try pop(), k = try pop()
                    try addTo(.dict, [k, v])
                case 0x75: try addTo(.dict, try popMark())                    // SETITEMS
                case 0x71: memo[try u8()] = try top()                         // BINPUT
                case 0x72: memo[Int(try unsignedLE(4))] = try top()           // LONG_BINPUT
                case 0x94: memo[memo.count] = try top()                       // MEMOIZE
                case 0x70:                                                    // PUT
                    guard let i = Int(try line()) else { throw fail("bad PUT index") }
                    memo[i] = try top()
                case 0x68, 0x6A, 0x67:                                        // BINGET, LONG_BINGET, GET
                    let i: Int
                    if op == 0x68 { i = try u8() } else if op == 0x6A { i = Int(try unsignedLE(4)) } else {
                        guard let n = Int(try line()) else { throw fail("bad GET index") }
                        i = n
                    }
                    guard let v = memo[i] else { throw fail("memo entry \(i) was never stored") }
                    stack.append(v)
                case 0x63:                                                    // GLOBAL
                    let module = try line(), name = try line()
                    stack.append(try global(module, name))
                case 0x93:                                                    // STACK_GLOBAL
                    let name = try pop(), module = try pop()
                    guard case .string(let n) = name, case .string(let m) = module else {
                        throw fail("STACK_GLOBAL without strings")
                    }
                    stack.append(try global(m, n))
                case 0x52:                                                    // REDUCE
                    let args = try pop(), callable = try pop()
                    guard case .container(let t) = args, t.kind == .tuple else { throw fail("REDUCE without a tuple") }
                    stack.append(try call(callable, t.items))
                case 0x62:                                                    // BUILD
                    let state = try pop()
                    try build(try top(), state)
                default:
                    throw fail("unsupported opcode 0x\(String(op, radix: 16)) at offset \(position - 1) " +
                               "(not a CIFAR batch, or corrupt)")
                }
            }
        }
    }
}
