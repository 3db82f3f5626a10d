import Foundation

/// A restricted pickle virtual machine (protocols 0–5, the opcodes `torch.save` and `pickle` emit for
/// data) that never executes anything: globals must be on its `PickleAllowList` (`.torch` for `.pth`
/// checkpoints, `.cifar` for CIFAR batches), any other is refused with an error naming it, and
/// "calling" an allowed one only interprets its arguments into a `PickleValue`. Every read is
/// bounds-checked and every malformed construct throws a `PickleError`, so hostile input cannot crash
/// the process or run code.
///
/// One `Unpickler` reads one pickle starting at `start`; after `load()`, `position` is the offset just
/// past its STOP opcode (legacy `.pth` files hold several pickles back to back). Offsets are counted
/// from the beginning of `data`.
///
/// The values it returns form a tree at most `maxDepth` containers deep (shared subtrees allowed, no
/// cycles): a container nested in another is frozen, so self-referential pickles are refused. This
/// keeps hostile input from building structures whose deallocation would recurse without bound.
public final class Unpickler {
    /// The deepest container nesting accepted (state dicts need about 5).
    public static let maxDepth = 100

    /// How Python 2 `str` values (STRING, BINSTRING, SHORT_BINSTRING) are read, like the `encoding`
    /// argument of Python 3's `pickle.load`.
    public enum LegacyStrings: Sendable {
        /// As text: UTF-8, else Latin-1 (what `torch.load` does).
        case decoded
        /// As `bytes`, unchanged (`encoding="bytes"`): for binary data pickled by Python 2.
        case bytes
    }

    /// The bytes being read (the whole file or archive record); offsets are relative to its start.
    public let data: Data
    public private(set) var position: Int
    private let end: Int
    /// The globals this machine accepts.
    public let allowList: PickleAllowList
    /// How Python 2 strings are returned: text (the default) or bytes.
    public let legacyStrings: LegacyStrings
    /// Resolves BINPERSID / PERSID ids (torch uses them for storages). Without it they are refused.
    public var persistentLoad: ((PickleValue) throws -> PickleValue)?

    private var memo: [Int: PickleValue] = [:]

    /// A machine reading the pickle that starts at byte `start` of `data` and may not read past `end`
    /// (the end of `data` by default), accepting only `allowList`'s globals. Nothing is read until `load()`.
    public init(data: Data, start: Int = 0, end: Int? = nil, allowList: PickleAllowList = .torch,
                legacyStrings: LegacyStrings = .decoded) {
        self.data = data
        self.position = start
        self.end = end ?? data.count
        self.allowList = allowList
        self.legacyStrings = legacyStrings
    }

    private func makeTuple(_ items: [PickleValue]) throws -> PickleValue {
        let t = PickleTuple(items)
        try t.adopt(items)
        return .tuple(t)
    }

    private func makeList(_ items: [PickleValue] = []) throws -> PickleList {
        let l = PickleList(items)
        try l.adopt(items)
        return l
    }

    /// Runs the machine up to STOP and returns the pickled value.
    public func load() throws -> PickleValue {
        try data.withUnsafeBytes { raw in try run(raw) }
    }

    // MARK: - The machine

    private func run(_ raw: UnsafeRawBufferPointer) throws -> PickleValue {
        var r = try ByteReader(raw, from: position, to: end, what: "the pickle")
        var stack: [PickleValue] = []
        var metastack: [[PickleValue]] = []
        var opOffset = r.position
        var opcode: UInt8 = 0

        func opName() -> String { "\(Opcode.name(opcode)) at byte \(opOffset)" }
        func pop() throws -> PickleValue {
            guard let v = stack.popLast() else {
                throw PickleError.malformed("stack underflow in \(opName())")
            }
            return v
        }
        func popMark() throws -> [PickleValue] {
            guard let previous = metastack.popLast() else {
                throw PickleError.malformed("\(opName()) without a MARK")
            }
            let items = stack
            stack = previous
            return items
        }
        func top() throws -> PickleValue {
            guard let v = stack.last else { throw PickleError.malformed("stack underflow in \(opName())") }
            return v
        }
        func text(_ bytes: [UInt8], _ what: String) throws -> String {
            guard let s = String(bytes: bytes, encoding: .utf8) else {
                throw PickleError.malformed("\(what) in \(opName()) is not valid UTF-8")
            }
            return s
        }
        func memoGet(_ index: Int) throws -> PickleValue {
            guard let v = memo[index] else {
                throw PickleError.malformed("\(opName()) reads memo entry \(index), which was never stored " +
                                            "(\(memo.count) entries)")
            }
            return v
        }
        /// The `kind` of container on top of the stack (`match` picks it out), which this opcode adds
        /// `items` to (`verb` says how, for the error): it must not be nested in another container yet,
        /// and the items are adopted (frozen, nesting depth checked).
        func mutableTop<C: PickleContainer>(_ kind: String, _ match: (PickleValue) -> C?, _ verb: String,
                                             adding items: [PickleValue]) throws -> C {
            let target = try top()
            guard let container = match(target) else {
                throw PickleError.unsupported("\(opName()) \(verb) a \(target.typeName), not a \(kind)")
            }
            try container.checkMutable(opName())
            try container.adopt(items)
            return container
        }
        func memoPut(_ index: Int) throws {
            memo[index] = try top()
        }
        func string(count: Int) throws -> PickleValue {
            let bytes = try r.bytes(count, "a string")
            return .string(try text(bytes, "a string"))
        }
        /// Python 2 `str`: torch.load decodes them as UTF-8, anything else as Latin-1; or kept as bytes.
        func legacyString(_ bytes: [UInt8]) -> PickleValue {
            switch legacyStrings {
            case .bytes: return .bytes(bytes)
            case .decoded:
                return .string(String(bytes: bytes, encoding: .utf8) ?? String(bytes: bytes, encoding: .isoLatin1) ?? "")
            }
        }
        func legacyString(count: Int) throws -> PickleValue {
            legacyString(try r.bytes(count, "a string"))
        }
        func call(_ callable: PickleValue, _ args: [PickleValue]) throws -> PickleValue {
            guard case .global(let g) = callable else {
                throw PickleError.malformed("\(opName()) calls a \(callable.typeName), not a global")
            }
            return try PickleGlobals.call(g, args)
        }
        func persistent(_ pid: PickleValue) throws -> PickleValue {
            guard let persistentLoad else {
                throw PickleError.unsupported("\(opName()): persistent ids are not expected here")
            }
            return try persistentLoad(pid)
        }
        func global(module: String, name: String) throws -> PickleValue {
            .global(try allowList.resolve(module: module, name: name))
        }

        while true {
            opOffset = r.position
            guard !r.isAtEnd else {
                throw PickleError.truncated("the pickle ends early at byte \(opOffset) (no STOP opcode)")
            }
            opcode = try r.u8()
            switch opcode {
            case Opcode.PROTO:
                let version = try r.u8("the protocol version")
                guard version <= 5 else { throw PickleError.unsupported("pickle protocol \(version) is not supported") }
            case Opcode.FRAME:
                let length = try r.length64("a frame length")
                guard length <= r.remaining else {
                    throw PickleError.truncated("the pickle ends early: a frame of \(length) bytes at byte " +
                                                "\(opOffset) has only \(r.remaining) bytes left")
                }
            case Opcode.STOP:
                let value = try pop()
                position = r.position
                return value

            // Stack manipulation
            case Opcode.MARK:
                metastack.append(stack)
                stack = []
            case Opcode.POP:
                if stack.isEmpty { _ = try popMark() } else { _ = try pop() }
            case Opcode.POP_MARK:
                _ = try popMark()
            case Opcode.DUP:
                stack.append(try top())

            // Constants and numbers
            case Opcode.NONE: stack.append(.none)
            case Opcode.NEWTRUE: stack.append(.bool(true))
            case Opcode.NEWFALSE: stack.append(.bool(false))
            case Opcode.BININT: stack.append(.int(Int(try r.i32("a BININT"))))
            case Opcode.BININT1: stack.append(.int(Int(try r.u8("a BININT1"))))
            case Opcode.BININT2: stack.append(.int(Int(try r.u16("a BININT2"))))
            case Opcode.LONG1:
                let n = Int(try r.u8("a LONG1 length"))
                stack.append(Self.integer(try r.bytes(n, "a LONG1")))
            case Opcode.LONG4:
                let n = Int(try r.i32("a LONG4 length"))
                guard n >= 0 else { throw PickleError.malformed("negative LONG4 length at byte \(opOffset)") }
                stack.append(Self.integer(try r.bytes(n, "a LONG4")))
            case Opcode.INT:
                let s = try text(try r.line("an INT"), "an INT")
                if s == "00" { stack.append(.bool(false)) }
                else if s == "01" { stack.append(.bool(true)) }
                else if let i = Int(s) { stack.append(.int(i)) }
                else { throw PickleError.malformed("bad INT literal '\(s)' at byte \(opOffset)") }
            case Opcode.LONG:
                var s = try text(try r.line("a LONG"), "a LONG")
                if s.hasSuffix("L") { s.removeLast() }
                guard let i = Int(s) else {
                    throw PickleError.unsupported("LONG literal '\(s.prefix(40))' at byte \(opOffset) is not a 64-bit integer")
                }
                stack.append(.int(i))
            case Opcode.BINFLOAT:
                let bits = try r.u64("a BINFLOAT")
                stack.append(.float(Double(bitPattern: bits.byteSwapped)))  // big-endian in the pickle
            case Opcode.FLOAT:
                let s = try text(try r.line("a FLOAT"), "a FLOAT")
                guard let f = Double(s) else { throw PickleError.malformed("bad FLOAT literal '\(s)' at byte \(opOffset)") }
                stack.append(.float(f))

            // Strings and bytes
            case Opcode.SHORT_BINUNICODE: stack.append(try string(count: Int(try r.u8("a string length"))))
            case Opcode.BINUNICODE: stack.append(try string(count: Int(try r.u32("a string length"))))
            case Opcode.BINUNICODE8: stack.append(try string(count: try r.length64("a string length")))
            case Opcode.UNICODE:
                let bytes = try r.line("a UNICODE string")
                guard !bytes.contains(UInt8(ascii: "\\")) else {
                    throw PickleError.unsupported("escaped UNICODE strings (protocol 0) are not supported")
                }
                stack.append(.string(try text(bytes, "a UNICODE string")))
            case Opcode.SHORT_BINSTRING: stack.append(try legacyString(count: Int(try r.u8("a string length"))))
            case Opcode.BINSTRING:
                let n = Int(try r.i32("a string length"))
                guard n >= 0 else { throw PickleError.malformed("negative BINSTRING length at byte \(opOffset)") }
                stack.append(try legacyString(count: n))
            case Opcode.STRING:
                let bytes = try r.line("a STRING")
                guard bytes.count >= 2, let q = bytes.first, q == bytes.last,
                      q == UInt8(ascii: "'") || q == UInt8(ascii: "\""),
                      !bytes.contains(UInt8(ascii: "\\")) else {
                    throw PickleError.unsupported("quoted STRING (protocol 0) at byte \(opOffset) is not supported")
                }
                let inner = Array(bytes.dropFirst().dropLast())
                stack.append(legacyStrings == .bytes ? .bytes(inner) : .string(try text(inner, "a STRING")))
            case Opcode.SHORT_BINBYTES: stack.append(.bytes(try r.bytes(Int(try r.u8("a length")), "bytes")))
            case Opcode.BINBYTES: stack.append(.bytes(try r.bytes(Int(try r.u32("a length")), "bytes")))
            case Opcode.BINBYTES8, Opcode.BYTEARRAY8:
                stack.append(.bytes(try r.bytes(try r.length64("a length"), "bytes")))

            // Tuples
            case Opcode.EMPTY_TUPLE: stack.append(try makeTuple([]))
            case Opcode.TUPLE: stack.append(try makeTuple(try popMark()))
            case Opcode.TUPLE1:
                let a = try pop()
                stack.append(try makeTuple([a]))
            case Opcode.TUPLE2:
                let b = try pop(), a = try pop()
                stack.append(try makeTuple([a, b]))
            case Opcode.TUPLE3:
                let c = try pop(), b = try pop(), a = try pop()
                stack.append(try makeTuple([a, b, c]))

            // Lists
            case Opcode.EMPTY_LIST: stack.append(.list(try makeList()))
            case Opcode.LIST: stack.append(.list(try makeList(try popMark())))
            case Opcode.APPEND:
                let value = try pop()
                try mutableTop("list", \.listValue, "appends to", adding: [value]).items.append(value)
            case Opcode.APPENDS:
                let items = try popMark()
                try mutableTop("list", \.listValue, "extends", adding: items).items.append(contentsOf: items)

            // Dicts
            case Opcode.EMPTY_DICT: stack.append(.dict(PickleDict(ordered: false)))
            case Opcode.DICT:
                let items = try popMark()
                guard items.count % 2 == 0 else { throw PickleError.malformed("\(opName()) has an odd number of items") }
                let dict = PickleDict(ordered: false)
                try dict.adopt(items)
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }
                stack.append(.dict(dict))
            case Opcode.SETITEM:
                let value = try pop(), key = try pop()
                try mutableTop("dict", \.dictValue, "sets an item on", adding: [key, value]).set(key, value)
            case Opcode.SETITEMS:
                let items = try popMark()
                guard items.count % 2 == 0 else { throw PickleError.malformed("\(opName()) has an odd number of items") }
                let dict = try mutableTop("dict", \.dictValue, "sets items on", adding: items)
                for i in stride(from: 0, to: items.count, by: 2) { dict.set(items[i], items[i + 1]) }

            // Sets
            case Opcode.EMPTY_SET: stack.append(.set(try makeList()))
            case Opcode.ADDITEMS:
                let items = try popMark()
                try mutableTop("set", \.setValue, "adds to", adding: items).items.append(contentsOf: items)
            case Opcode.FROZENSET: stack.append(.set(try makeList(try popMark())))

            // Memo
            case Opcode.BINPUT: try memoPut(Int(try r.u8("a memo index")))
            case Opcode.LONG_BINPUT: try memoPut(Int(try r.u32("a memo index")))
            case Opcode.MEMOIZE: try memoPut(memo.count)
            case Opcode.PUT:
                let s = try text(try r.line("a PUT index"), "a PUT index")
                guard let i = Int(s), i >= 0 else { throw PickleError.malformed("bad PUT index '\(s)' at byte \(opOffset)") }
                try memoPut(i)
            case Opcode.BINGET: stack.append(try memoGet(Int(try r.u8("a memo index"))))
            case Opcode.LONG_BINGET: stack.append(try memoGet(Int(try r.u32("a memo index"))))
            case Opcode.GET:
                let s = try text(try r.line("a GET index"), "a GET index")
                guard let i = Int(s) else { throw PickleError.malformed("bad GET index '\(s)' at byte \(opOffset)") }
                stack.append(try memoGet(i))

            // Globals and (restricted) object construction
            case Opcode.GLOBAL:
                let module = try text(try r.line("a GLOBAL module"), "a GLOBAL module")
                let name = try text(try r.line("a GLOBAL name"), "a GLOBAL name")
                stack.append(try global(module: module, name: name))
            case Opcode.STACK_GLOBAL:
                let nameValue = try pop(), moduleValue = try pop()
                guard let name = nameValue.stringValue, let module = moduleValue.stringValue else {
                    throw PickleError.malformed("\(opName()) with a \(moduleValue.typeName) and a \(nameValue.typeName) " +
                                                "instead of strings")
                }
                stack.append(try global(module: module, name: name))
            case Opcode.REDUCE:
                let argsValue = try pop(), callable = try pop()
                guard case .tuple(let args) = argsValue else {
                    throw PickleError.malformed("\(opName()): the arguments are a \(argsValue.typeName), not a tuple")
                }
                stack.append(try call(callable, args.items))
            case Opcode.NEWOBJ:
                _ = try pop()  // args: OrderedDict.__new__ ignores them
                let cls = try pop()
                guard case .global(let g) = cls else { throw PickleError.malformed("\(opName()) on a \(cls.typeName)") }
                stack.append(try PickleGlobals.instantiate(g))
            case Opcode.NEWOBJ_EX:
                _ = try pop(); _ = try pop()
                let cls = try pop()
                guard case .global(let g) = cls else { throw PickleError.malformed("\(opName()) on a \(cls.typeName)") }
                stack.append(try PickleGlobals.instantiate(g))
            case Opcode.INST:
                let module = try text(try r.line("an INST module"), "an INST module")
                let name = try text(try r.line("an INST name"), "an INST name")
                let callable = try global(module: module, name: name)
                stack.append(try call(callable, try popMark()))
            case Opcode.OBJ:
                var items = try popMark()
                guard !items.isEmpty else { throw PickleError.malformed("\(opName()) without a class") }
                let cls = items.removeFirst()
                stack.append(try call(cls, items))
            case Opcode.BUILD:
                let state = try pop()
                try PickleGlobals.build(try top(), state: state)

            // Persistent ids
            case Opcode.BINPERSID:
                stack.append(try persistent(try pop()))
            case Opcode.PERSID:
                let s = try text(try r.line("a PERSID"), "a PERSID")
                stack.append(try persistent(.string(s)))

            case Opcode.EXT1, Opcode.EXT2, Opcode.EXT4, Opcode.NEXT_BUFFER, Opcode.READONLY_BUFFER:
                throw PickleError.unsupported("unsupported pickle opcode \(Opcode.name(opcode)) at byte \(opOffset)")
            default:
                throw PickleError.malformed("unknown pickle opcode 0x\(String(opcode, radix: 16)) at byte \(opOffset): " +
                                            "not a pickle, or corrupt")
            }
        }
    }

    /// LONG1/LONG4 payload: little-endian two's complement.
    static func integer(_ bytes: [UInt8]) -> PickleValue {
        guard let last = bytes.last else { return .int(0) }
        let negative = last & 0x80 != 0
        let fill: UInt8 = negative ? 0xFF : 0x00
        // Drop redundant sign bytes, keeping the sign bit.
        var count = bytes.count
        while count > 1, bytes[count - 1] == fill, (bytes[count - 2] & 0x80 != 0) == negative { count -= 1 }
        guard count <= 8 else { return .bigInt(Array(bytes[0..<count])) }
        var value: UInt64 = negative ? ~0 : 0
        for i in 0..<count {
            value &= ~(UInt64(0xFF) << (8 * UInt64(i)))
            value |= UInt64(bytes[i]) << (8 * UInt64(i))
        }
        return .int(Int(Int64(bitPattern: value)))
    }
}

/// Pickle opcodes (see CPython's Lib/pickle.py).
enum Opcode {
    static let MARK: UInt8 = 0x28, STOP: UInt8 = 0x2E, POP: UInt8 = 0x30, POP_MARK: UInt8 = 0x31
    static let DUP: UInt8 = 0x32, FLOAT: UInt8 = 0x46, INT: UInt8 = 0x49, BININT: UInt8 = 0x4A
    static let BININT1: UInt8 = 0x4B, LONG: UInt8 = 0x4C, BININT2: UInt8 = 0x4D, NONE: UInt8 = 0x4E
    static let PERSID: UInt8 = 0x50, BINPERSID: UInt8 = 0x51, REDUCE: UInt8 = 0x52, STRING: UInt8 = 0x53
    static let BINSTRING: UInt8 = 0x54, SHORT_BINSTRING: UInt8 = 0x55, UNICODE: UInt8 = 0x56
    static let BINUNICODE: UInt8 = 0x58, APPEND: UInt8 = 0x61, BUILD: UInt8 = 0x62, GLOBAL: UInt8 = 0x63
    static let DICT: UInt8 = 0x64, EMPTY_DICT: UInt8 = 0x7D, APPENDS: UInt8 = 0x65, GET: UInt8 = 0x67
    static let BINGET: UInt8 = 0x68, INST: UInt8 = 0x69, LONG_BINGET: UInt8 = 0x6A, LIST: UInt8 = 0x6C
    static let EMPTY_LIST: UInt8 = 0x5D, OBJ: UInt8 = 0x6F, PUT: UInt8 = 0x70, BINPUT: UInt8 = 0x71
    static let LONG_BINPUT: UInt8 = 0x72, SETITEM: UInt8 = 0x73, TUPLE: UInt8 = 0x74, EMPTY_TUPLE: UInt8 = 0x29
    static let SETITEMS: UInt8 = 0x75, BINFLOAT: UInt8 = 0x47
    // Protocol 2
    static let PROTO: UInt8 = 0x80, NEWOBJ: UInt8 = 0x81, EXT1: UInt8 = 0x82, EXT2: UInt8 = 0x83
    static let EXT4: UInt8 = 0x84, TUPLE1: UInt8 = 0x85, TUPLE2: UInt8 = 0x86, TUPLE3: UInt8 = 0x87
    static let NEWTRUE: UInt8 = 0x88, NEWFALSE: UInt8 = 0x89, LONG1: UInt8 = 0x8A, LONG4: UInt8 = 0x8B
    // Protocol 3
    static let BINBYTES: UInt8 = 0x42, SHORT_BINBYTES: UInt8 = 0x43
    // Protocol 4
    static let SHORT_BINUNICODE: UInt8 = 0x8C, BINUNICODE8: UInt8 = 0x8D, BINBYTES8: UInt8 = 0x8E
    static let EMPTY_SET: UInt8 = 0x8F, ADDITEMS: UInt8 = 0x90, FROZENSET: UInt8 = 0x91, NEWOBJ_EX: UInt8 = 0x92
    static let STACK_GLOBAL: UInt8 = 0x93, MEMOIZE: UInt8 = 0x94, FRAME: UInt8 = 0x95
    // Protocol 5
    static let BYTEARRAY8: UInt8 = 0x96, NEXT_BUFFER: UInt8 = 0x97, READONLY_BUFFER: UInt8 = 0x98

    static let names: [UInt8: String] = [
        MARK: "MARK", STOP: "STOP", POP: "POP", POP_MARK: "POP_MARK", DUP: "DUP", FLOAT: "FLOAT", INT: "INT",
        BININT: "BININT", BININT1: "BININT1", LONG: "LONG", BININT2: "BININT2", NONE: "NONE", PERSID: "PERSID",
        BINPERSID: "BINPERSID", REDUCE: "REDUCE", STRING: "STRING", BINSTRING: "BINSTRING",
        SHORT_BINSTRING: "SHORT_BINSTRING", UNICODE: "UNICODE", BINUNICODE: "BINUNICODE", APPEND: "APPEND",
        BUILD: "BUILD", GLOBAL: "GLOBAL", DICT: "DICT", EMPTY_DICT: "EMPTY_DICT", APPENDS: "APPENDS", GET: "GET",
        BINGET: "BINGET", INST: "INST", LONG_BINGET: "LONG_BINGET", LIST: "LIST", EMPTY_LIST: "EMPTY_LIST",
        OBJ: "OBJ", PUT: "PUT", BINPUT: "BINPUT", LONG_BINPUT: "LONG_BINPUT", SETITEM: "SETITEM", TUPLE: "TUPLE",
        EMPTY_TUPLE: "EMPTY_TUPLE", SETITEMS: "SETITEMS", BINFLOAT: "BINFLOAT", PROTO: "PROTO", NEWOBJ: "NEWOBJ",
        EXT1: "EXT1", EXT2: "EXT2", EXT4: "EXT4", TUPLE1: "TUPLE1", TUPLE2: "TUPLE2", TUPLE3: "TUPLE3",
        NEWTRUE: "NEWTRUE", NEWFALSE: "NEWFALSE", LONG1: "LONG1", LONG4: "LONG4", BINBYTES: "BINBYTES",
        SHORT_BINBYTES: "SHORT_BINBYTES", SHORT_BINUNICODE: "SHORT_BINUNICODE", BINUNICODE8: "BINUNICODE8",
        BINBYTES8: "BINBYTES8", EMPTY_SET: "EMPTY_SET", ADDITEMS: "ADDITEMS", FROZENSET: "FROZENSET",
        NEWOBJ_EX: "NEWOBJ_EX", STACK_GLOBAL: "STACK_GLOBAL", MEMOIZE: "MEMOIZE", FRAME: "FRAME",
        BYTEARRAY8: "BYTEARRAY8", NEXT_BUFFER: "NEXT_BUFFER", READONLY_BUFFER: "READONLY_BUFFER",
    ]

    static func name(_ op: UInt8) -> String { names[op] ?? "0x\(String(op, radix: 16))" }
}
