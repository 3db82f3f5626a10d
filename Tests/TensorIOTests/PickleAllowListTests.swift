import Foundation
import TensorIO
import XCTest

/// The restricted unpickler's two allow-lists: `.torch` for `.pth` checkpoints and `.cifar` for CIFAR
/// batches. Each accepts its own globals and refuses every other one, naming it, before anything runs.
final class PickleAllowListTests: XCTestCase {
    static let torchOnly = ["collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter",
                            "torch._tensor._rebuild_from_type_v2", "torch.FloatStorage", "torch.cuda.HalfStorage",
                            "torch.nn.parameter.Parameter", "torch.UntypedStorage"]
    static let cifarOnly = ["numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray",
                            "numpy.dtype", "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
                            "_codecs.encode"]
    static let neither = ["os.system", "posix.system", "builtins.eval", "builtins.getattr", "builtins.set",
                          "subprocess.Popen", "pickle.loads", "torch.load", "torch.storage._load_from_bytes",
                          "numpy.load", "numpy.core.multiarray.scalar", "collections.defaultdict", "codecs.encode"]

    /// `module.name` pushed by GLOBAL (protocol 2) or by STACK_GLOBAL (protocol 4), then STOP.
    static func naming(_ dotted: String) -> [[UInt8]] {
        let dot = dotted.lastIndex(of: ".")!
        let module = String(dotted[..<dot]), name = String(dotted[dotted.index(after: dot)...])
        var p = PickleBytes()
        p.global(module, name); p.op(0x2E)
        var q = PickleBytes(protocol: 4)
        q.str(module); q.str(name); q.op(0x93); q.op(0x2E)
        return [p.bytes, q.bytes]
    }

    func testTheListsAreDisjointAndComplete() {
        XCTAssertEqual(Set(PickleAllowList.torch.globals.keys), Set(TorchGlobals.allowList.keys))
        XCTAssertEqual(Set(PickleAllowList.cifar.globals.keys), Set(NumpyGlobals.allowList.keys))
        XCTAssertTrue(Set(PickleAllowList.torch.globals.keys).isDisjoint(with: PickleAllowList.cifar.globals.keys))
        XCTAssertTrue(Set(Self.torchOnly).isSubset(of: PickleAllowList.torch.globals.keys))
        XCTAssertEqual(Set(Self.cifarOnly), Set(PickleAllowList.cifar.globals.keys))
    }

    func testEachListRefusesTheOtherListsGlobalsAndEverythingElse() throws {
        let cases: [(PickleAllowList, accepted: [String], refused: [String], reason: String)] = [
            (.torch, Self.torchOnly, Self.cifarOnly + Self.neither, "which is not a tensor or container (nothing was executed)"),
            (.cifar, Self.cifarOnly, Self.torchOnly + Self.neither, "which is not numpy array data; refused (nothing was executed)"),
        ]
        for (list, accepted, refused, reason) in cases {
            for dotted in accepted {
                for bytes in Self.naming(dotted) {
                    guard case .global(let g) = try Unpickler(data: Data(bytes), allowList: list).load() else {
                        return XCTFail("\(list.name): \(dotted) is not a global")
                    }
                    XCTAssertEqual(g.qualifiedName, dotted)
                    XCTAssertEqual(g.role, list.globals[dotted])
                }
            }
            for dotted in refused {
                for bytes in Self.naming(dotted) {
                    XCTAssertThrowsError(try Unpickler(data: Data(bytes), allowList: list).load(), dotted) { error in
                        XCTAssertEqual((error as? PickleError)?.kind, .refusedGlobal(dotted), "\(list.name): \(error)")
                        XCTAssertTrue("\(error)".contains("'\(dotted)'") && "\(error)".hasSuffix(reason), "\(error)")
                    }
                }
            }
        }
    }

    /// The refusal comes when the global is named: what follows (here a call, then bytes that are not a
    /// pickle) is never reached.
    func testRefusalComesBeforeAnyLaterOpcode() {
        var p = PickleBytes()
        p.global("os", "system"); p.str("touch /tmp/finetune-pwned"); p.op(0x85); p.op(0x52); p.op(0xFF); p.op(0x2E)
        for list in [PickleAllowList.torch, .cifar] {
            XCTAssertThrowsError(try Unpickler(data: Data(p.bytes), allowList: list).load()) { error in
                XCTAssertEqual((error as? PickleError)?.kind, .refusedGlobal("os.system"), "\(error)")
            }
        }
    }

    /// `numpy.core.numeric._frombuffer(b'\x00\x01\xff\xfe', dtype('i2') with byte order '>', (2,), 'C')`.
    func testCIFARListReadsNumpyArrays() throws {
        var p = PickleBytes()
        p.global("numpy.core.numeric", "_frombuffer")
        p.op(0x28)                                                          // MARK
        p.op(0x43, 4, 0x00, 0x01, 0xFF, 0xFE)                               // SHORT_BINBYTES
        p.global("numpy", "dtype"); p.str("i2"); p.op(0x89); p.op(0x88); p.op(0x87); p.op(0x52)
        p.op(0x28); p.int(3); p.str(">"); p.op(0x4E); p.op(0x4E); p.op(0x4E); p.int(-1); p.int(-1); p.int(0)
        p.op(0x74); p.op(0x62)                                              // BUILD the dtype's state
        p.op(0x4B, 2); p.op(0x85)                                           // (2,)
        p.str("C")
        p.op(0x74); p.op(0x52); p.op(0x2E)                                  // TUPLE, REDUCE, STOP
        guard case .ndarray(let array) = try Unpickler(data: Data(p.bytes), allowList: .cifar).load() else {
            return XCTFail("not an array")
        }
        XCTAssertTrue(array.isBuilt)
        XCTAssertEqual(array.shape, [2])
        XCTAssertEqual(array.dtype?.code, "i2")
        XCTAssertEqual(array.dtype?.isBigEndian, true)
        XCTAssertEqual(array.data, [0x00, 0x01, 0xFF, 0xFE])
        // The payload size must match the shape and dtype.
        var short = p
        short.bytes[short.bytes.firstIndex(of: 0x43)! + 1] = 3
        short.bytes.remove(at: short.bytes.firstIndex(of: 0x43)! + 5)
        XCTAssertThrowsError(try Unpickler(data: Data(short.bytes), allowList: .cifar).load()) { error in
            XCTAssertTrue("\(error)".contains("needs 4 bytes, the pickle holds 3"), "\(error)")
        }
    }

    /// Python 2 `str` values: decoded as text for `.pth` files (as torch.load does), kept as bytes for
    /// binary data (as `pickle.load(f, encoding="bytes")` does).
    func testLegacyStringsAsTextOrBytes() throws {
        var p = PickleBytes()
        p.op(0x55, 3, 0x61, 0xFF, 0x00)                                     // SHORT_BINSTRING b'a\xff\x00'
        p.op(0x2E)
        let decoded = try Unpickler(data: Data(p.bytes)).load()
        XCTAssertEqual(decoded.stringValue, "a\u{FF}\u{0}")
        guard case .bytes(let bytes) = try Unpickler(data: Data(p.bytes), allowList: .cifar,
                                                     legacyStrings: .bytes).load() else { return XCTFail("not bytes") }
        XCTAssertEqual(bytes, [0x61, 0xFF, 0x00])
    }
}
