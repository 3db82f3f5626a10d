/// What a global of the numpy allow-list means to the restricted unpickler (see `PickleAllowList.cifar`).
/// "Calling" one never runs code: it interprets the pickled arguments as array data.
public enum NumpyGlobal: Equatable, Sendable {
    /// `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`: an empty array that a later
    /// BUILD fills with its state (shape, dtype, Fortran flag, bytes).
    case reconstruct
    /// `numpy.ndarray`: only meaningful as `_reconstruct`'s first argument.
    case ndarrayType
    /// `numpy.dtype(code, align, copy)`: a dtype, whose byte order a later BUILD may set.
    case dtype
    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order)`: an array in one call (protocol 5).
    case frombuffer
    /// `_codecs.encode(text, 'latin1')`: how Python 3 pickles `bytes` at protocol 2.
    case codecsEncode
}

/// The globals numpy uses to pickle arrays, and their interpretation as data.
public enum NumpyGlobals {
    /// Dotted name → meaning. numpy 2 moved `numpy.core` to `numpy._core`; pickles use both spellings.
    public static let allowList: [String: NumpyGlobal] = [
        "numpy.core.multiarray._reconstruct": .reconstruct,
        "numpy._core.multiarray._reconstruct": .reconstruct,
        "numpy.ndarray": .ndarrayType,
        "numpy.dtype": .dtype,
        "numpy.core.numeric._frombuffer": .frombuffer,
        "numpy._core.numeric._frombuffer": .frombuffer,
        "_codecs.encode": .codecsEncode,
    ]

    static func refusalText(_ dotted: String) -> String {
        "the pickle references '\(dotted)', which is not numpy array data; refused (nothing was executed)"
    }

    /// Interprets `callable(*args)`.
    static func call(_ callable: PickleGlobal, _ role: NumpyGlobal, _ args: [PickleValue]) throws -> PickleValue {
        let name = callable.qualifiedName
        switch role {
        case .reconstruct:
            guard args.count == 3, case .global(let type) = args[0], type.role == .numpy(.ndarrayType) else {
                throw PickleError.malformed("unexpected arguments to \(name)")
            }
            return .ndarray(NumpyArray())
        case .dtype:
            guard let code = args.first?.text else { throw PickleError.malformed("numpy.dtype without a type code") }
            return .dtype(NumpyDType(code: code))
        case .codecsEncode:
            guard args.count == 2, case .string(let s) = args[0],
                  let encoding = args[1].text?.lowercased(), ["latin1", "latin-1", "iso-8859-1"].contains(encoding) else {
                throw PickleError.malformed("unexpected arguments to _codecs.encode")
            }
            var out: [UInt8] = []
            out.reserveCapacity(s.unicodeScalars.count)
            for u in s.unicodeScalars {
                guard u.value < 256 else { throw PickleError.malformed("_codecs.encode: character outside Latin-1") }
                out.append(UInt8(u.value))
            }
            return .bytes(out)
        case .frombuffer:
            guard args.count == 4, case .dtype(let dtype) = args[1] else {
                throw PickleError.malformed("unexpected arguments to \(name)")
            }
            let array = NumpyArray()
            let shape = try integers(args[2], "a numpy array's shape")
            try array.finish(shape: shape, dtype: dtype, fortran: args[3].text == "F", payload: args[0])
            return .ndarray(array)
        case .ndarrayType:
            throw PickleError.malformed("the pickle calls numpy.ndarray directly")
        }
    }

    /// Applies BUILD's `state` to an array or a dtype.
    static func build(_ target: PickleValue, state: PickleValue) throws {
        switch target {
        case .ndarray(let array):
            try array.setState(state)
        case .dtype(let dtype):
            // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
            guard let items = state.sequenceItems, items.count >= 2, let order = items[1].text else {
                throw PickleError.malformed("bad numpy.dtype state")
            }
            dtype.byteOrder = order
        default:
            throw PickleError.unsupported("BUILD on a \(target.typeName) is not supported")
        }
    }

    static func integers(_ value: PickleValue, _ what: String) throws -> [Int] {
        guard let items = value.sequenceItems else { throw PickleError.malformed("\(what) is a \(value.typeName)") }
        return try items.map {
            guard let i = $0.intValue else { throw PickleError.malformed("\(what) contains a \($0.typeName)") }
            return i
        }
    }
}

/// A numpy dtype as far as plain arrays need: kind, item size and byte order (e.g. "u1", "<i8").
public final class NumpyDType {
    /// The type code without its byte order: "u1", "i8", "f4"...
    public let code: String
    /// "<", ">", "|" or "=" (the default).
    public internal(set) var byteOrder: String = "="

    init(code: String) {
        var c = code
        if let first = c.first, "<>|=".contains(first) {
            byteOrder = String(first)
            c.removeFirst()
        }
        self.code = c
    }

    /// "u" (unsigned), "i" (signed), "b" (bool), "f" (float)...
    public var kind: Character? { code.first }
    /// Bytes per element, when the code states it.
    public var itemSize: Int? { Int(code.dropFirst()) }
    /// Whether the code's byte-order prefix is `>` (big-endian); `<`, `|`, `=` or none count as not.
    public var isBigEndian: Bool { byteOrder == ">" }
}

/// A numpy array read from a pickle: shape, dtype and the raw bytes in C order. Built in two steps
/// (`_reconstruct`, then BUILD) or in one (`_frombuffer`); `isBuilt` says whether it is complete.
public final class NumpyArray {
    public private(set) var isBuilt = false
    public private(set) var shape: [Int] = []
    public private(set) var dtype: NumpyDType?
    /// The elements' bytes, C order, `count × itemSize` of them.
    public private(set) var data: [UInt8] = []

    init() {}

    /// The number of elements, the product of `shape` (1 for a 0-d array).
    public var count: Int { shape.reduce(1, *) }

    /// numpy's `__setstate__`: (version, shape, dtype, is_fortran, data) or the older 4-tuple.
    func setState(_ state: PickleValue) throws {
        guard !isBuilt else { throw PickleError.malformed("the pickle sets a numpy array's state twice") }
        guard var items = state.sequenceItems else {
            throw PickleError.malformed("numpy array state is a \(state.typeName)")
        }
        if items.count == 5 { items.removeFirst() }
        guard items.count == 4 else { throw PickleError.malformed("numpy array state has \(items.count) items") }
        let shape = try NumpyGlobals.integers(items[0], "a numpy array's shape")
        guard case .dtype(let dtype) = items[1] else {
            throw PickleError.malformed("numpy array state has a \(items[1].typeName) as dtype")
        }
        guard let fortran = items[2].boolValue ?? items[2].intValue.map({ $0 != 0 }) else {
            throw PickleError.malformed("numpy array state has a bad is_fortran flag")
        }
        try finish(shape: shape, dtype: dtype, fortran: fortran, payload: items[3])
    }

    func finish(shape: [Int], dtype: NumpyDType, fortran: Bool, payload: PickleValue) throws {
        guard case .bytes(let bytes) = payload else {
            throw PickleError.unsupported("numpy array data is a \(payload.typeName) (object arrays are not supported)")
        }
        guard shape.allSatisfy({ $0 >= 0 }), let size = dtype.itemSize else {
            throw PickleError.malformed("numpy array has shape \(shape) and dtype '\(dtype.code)'")
        }
        var expected = size
        for d in shape { expected = try Checked.mul(expected, d, "numpy array shape \(shape)") }
        guard bytes.count == expected else {
            throw PickleError.malformed("numpy array of shape \(shape) and dtype '\(dtype.code)' needs \(expected) " +
                                        "bytes, the pickle holds \(bytes.count)")
        }
        guard !fortran || shape.filter({ $0 > 1 }).count <= 1 else {
            throw PickleError.unsupported("Fortran-ordered numpy arrays are not supported")
        }
        self.shape = shape
        self.dtype = dtype
        data = bytes
        isBuilt = true
    }
}
