import Foundation
import TensorIO
import TestSupport
import Torch
import XCTest

final class SafeTensorsTests: XCTestCase {
    var dir: String!

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "safetensors-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: dir)
    }

    static let dtypes: [String: DType] = [
        "F64": .float64, "F32": .float32, "F16": .float16, "BF16": .bfloat16, "I64": .int64,
        "I32": .int32, "I16": .int16, "I8": .int8, "U8": .uint8, "BOOL": .bool,
    ]

    /// Float tensors as float64 bit patterns (so -0.0 and denormals compare exactly), others as int64.
    func exact(_ t: Tensor) throws -> [UInt64] {
        t.dtype.isFloatingPoint ? try t.to(.float64).toArray(Double.self).map(\.bitPattern)
            : try t.to(.int64).toArray(Int64.self).map { UInt64(bitPattern: $0) }
    }

    // MARK: - Interop with Python's writer

    struct Sidecar: Decodable {
        struct Entry: Decodable {
            let name: String, dtype: String, shape: [Int]
            let floats: [Double]?, ints: [Int64]?
        }
        let metadata: [String: String]
        let tensors: [Entry]
    }

    func testReadsPythonFixtureExactly() throws {
        let path = Fixtures.path("safetensors_interop.safetensors")
        let sidecar = try JSONDecoder().decode(
            Sidecar.self, from: Data(contentsOf: URL(fileURLWithPath: Fixtures.path("safetensors_interop.json"))))
        XCTAssertEqual(sidecar.tensors.count, 12)
        for copy in [false, true] {
            let file = try SafeTensors.read(path, copy: copy)
            XCTAssertEqual(file.metadata, sidecar.metadata)
            XCTAssertEqual(file.metadata, ["format": "pt", "note": "made by make_safetensors.py"])
            XCTAssertEqual(file.tensors.keys, sidecar.tensors.map(\.name), "file order")
            for entry in sidecar.tensors {
                let t = try Fixtures.tensor(file.tensors, entry.name)
                XCTAssertEqual(t.dtype, Self.dtypes[entry.dtype], entry.name)
                XCTAssertEqual(t.shape, entry.shape, entry.name)
                let expected = entry.floats?.map(\.bitPattern) ?? entry.ints!.map { UInt64(bitPattern: $0) }
                XCTAssertEqual(try exact(t), expected, entry.name)
            }
        }
        XCTAssertEqual(try SafeTensors.load(path).keys, sidecar.tensors.map(\.name))
    }

    // MARK: - Round trip

    func sampleDict() throws -> StateDict {
        StateDict([
            // Three bytes first, so every later tensor is misaligned in the file (the copying path).
            ("z.u8", try Tensor([UInt8(0), 200, 255])),
            ("a.f32", try Tensor((0..<24).map { Float($0) * 0.25 - 2 }, shape: [2, 3, 4])),
            ("m.f64", try Tensor([Double.pi, -1e-300, 1e300])),
            ("f16", try Tensor([Float(1), -0.5, 65504, 0.099975586], shape: [2, 2]).to(.float16)),
            ("bf16", try Tensor([Float(1), -2.5, 3.140625]).to(.bfloat16)),
            ("i64", try Tensor([Int64.min, 0, Int64.max])),
            ("i32", try Tensor([Int32.min, -1, Int32.max])),
            ("i16", try Tensor([Int16.min, 3, Int16.max])),
            ("i8", try Tensor([Int8.min, 3, Int8.max])),
            ("bool", try Tensor([true, false, true])),
            ("scalar", try Tensor(scalar: -7.5, dtype: .float64)),
            ("empty", try Tensor.zeros([2, 0, 3], dtype: .int32)),
            ("name with \"quotes\"\n/ünï", try Tensor([Float(42)])),
        ])
    }

    func assertSame(_ actual: StateDict, _ expected: StateDict, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(actual.keys, expected.keys, "order", file: file, line: line)
        for (key, e) in expected {
            guard let a = actual[key] else { XCTFail("missing \(key)", file: file, line: line); continue }
            XCTAssertEqual(a.dtype, e.dtype, key, file: file, line: line)
            XCTAssertEqual(a.shape, e.shape, key, file: file, line: line)
            XCTAssertEqual(try exact(a), try exact(e), key, file: file, line: line)
        }
    }

    func testWriteReadRoundTrip() throws {
        let dict = try sampleDict()
        let metadata = ["format": "pt", "epoch": "3", "odd \"key\"": "line\nbreak"]
        let path = dir + "/round.safetensors"
        try SafeTensors.write(dict, metadata: metadata, to: path)
        for copy in [false, true] {
            let file = try SafeTensors.read(path, copy: copy)
            try assertSame(file.tensors, dict)
            XCTAssertEqual(file.metadata, metadata)
        }
        // An aligned layout (8-byte tensor first) exercises the zero-copy path for every tensor.
        var aligned = StateDict()
        for (k, t) in dict where k != "z.u8" { aligned[k] = t }
        try SafeTensors.write(aligned, to: path)
        let file = try SafeTensors.read(path)
        try assertSame(file.tensors, aligned)
        XCTAssertEqual(file.metadata, [:])
        if let keep = ProcessInfo.processInfo.environment["SAFETENSORS_KEEP"] {  // for check_safetensors_interop.py
            try SafeTensors.write(dict, metadata: metadata, to: keep)
        }
    }

    func testHeaderIsAlignedAndParses() throws {
        for metadata in [[:], ["format": "pt"]] {
            let bytes = try SafeTensors.encode(try sampleDict(), metadata: metadata)
            let n = bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            XCTAssertEqual((8 + n) % 8, 0)
            XCTAssertEqual(bytes[8 + n - 1] == 0x20 || bytes[8 + n - 1] == UInt8(ascii: "}"), true)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(bytes[8 ..< 8 + n])) as? [String: Any])
            XCTAssertEqual(json["__metadata__"] as? [String: String], metadata.isEmpty ? nil : metadata)
            XCTAssertEqual(json.count, 13 + (metadata.isEmpty ? 0 : 1))
            let f32 = try XCTUnwrap(json["a.f32"] as? [String: Any])
            XCTAssertEqual(f32["dtype"] as? String, "F32")
            XCTAssertEqual(f32["shape"] as? [Int], [2, 3, 4])
            XCTAssertEqual(f32["data_offsets"] as? [Int], [3, 99])
            let scalar = try XCTUnwrap(json["scalar"] as? [String: Any])
            XCTAssertEqual(scalar["shape"] as? [Int], [])
            // Offsets tile the data buffer exactly.
            let ends = json.values.compactMap { ($0 as? [String: Any])?["data_offsets"] as? [Int] }.map { $0[1] }
            XCTAssertEqual(ends.max(), bytes.count - 8 - n)
        }
    }

    func testNonContiguousTensorIsWrittenInLogicalOrder() throws {
        let base = try Tensor((0..<6).map(Float.init), shape: [2, 3])
        let transposed = try base.transpose(0, 1)
        XCTAssertFalse(transposed.isContiguous())
        let path = dir + "/t.safetensors"
        try SafeTensors.write(StateDict([("t", transposed)]), to: path)
        let t = try XCTUnwrap(SafeTensors.load(path)["t"])
        XCTAssertEqual(t.shape, [3, 2])
        XCTAssertEqual(try t.floats(), [0, 3, 1, 4, 2, 5])
    }

    func testMappedTensorOutlivesFileAndDictionary() throws {
        let path = dir + "/life.safetensors"
        try SafeTensors.write(StateDict([("w", try Tensor((0..<1000).map(Float.init)))]), to: path)
        var tensor: Tensor? = nil
        do {
            let file = try SafeTensors.read(path)
            tensor = try XCTUnwrap(file.tensors["w"]).view([10, 100])
        }
        // Replace and then delete the file: the mapping keeps the old inode's bytes.
        try SafeTensors.write(StateDict([("w", try Tensor([Float(-1)]))]), to: path)
        try FileManager.default.removeItem(atPath: path)
        let values = try XCTUnwrap(tensor).floats()
        XCTAssertEqual(values, (0..<1000).map(Float.init))
        // Reading from it (as model loading does with copy_) works.
        let target = try Tensor.zeros([10, 100])
        try target.copy_(try XCTUnwrap(tensor))
        XCTAssertEqual(try target.floats()[999], 999)
        tensor = nil
    }

    func testInPlaceWritesOnMappedTensorsAreSafeAndNeverReachTheFile() throws {
        let path = dir + "/cow.safetensors"
        try SafeTensors.write(StateDict([("w", try Tensor([1, 2, 3, 4] as [Float]))]), to: path)
        let before = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        let mapped = try XCTUnwrap(SafeTensors.load(path)["w"])
        try mapped.add_(10)
        try mapped.mul_(2)
        XCTAssertEqual(try mapped.floats(), [22, 24, 26, 28])
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try XCTUnwrap(SafeTensors.load(path)["w"]).floats(), [1, 2, 3, 4])
    }

    func testReadIsZeroCopyForAlignedTensors() throws {
        let path = dir + "/two.safetensors"
        try SafeTensors.write(StateDict([("a", try Tensor([Float](repeating: 1, count: 4))),
                                         ("b", try Tensor([Float(2)]))]), to: path)
        let tensors = try SafeTensors.load(path)
        let a = try XCTUnwrap(tensors["a"]).dataPointer(), b = try XCTUnwrap(tensors["b"]).dataPointer()
        XCTAssertEqual(a.distance(to: b), 16, "both tensors should point into one mapping, 16 bytes apart")
        XCTAssertEqual(try SafeTensors.loadCopy(path)["b"]?.floats(), [2])
    }

    // MARK: - Corrupt input

    func header(_ json: String, data: Int = 0, declared: UInt64? = nil) -> [UInt8] {
        let h = Array(json.utf8)
        return withUnsafeBytes(of: (declared ?? UInt64(h.count)).littleEndian, Array.init) + h
            + [UInt8](repeating: 0, count: data)
    }

    func testCorruptInputsThrowErrorsNamingTheFile() throws {
        let cases: [(String, [UInt8], String)] = [
            ("zero-byte", [], "empty"),
            ("four-byte", [1, 2, 3, 4], "fewer than"),
            ("long-header", header("{}", declared: 1000), "runs past"),
            ("huge-header", header("{}", declared: .max), "runs past"),
            ("bad-json", header("{\"a\": {"), "invalid JSON"),
            ("not-object", header("[1,2]"), "invalid JSON"),
            ("bad-utf8", [2, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe], "invalid JSON"),
            ("missing-field", header(#"{"a":{"dtype":"F32","shape":[1]}}"#, data: 4), "data_offsets"),
            ("unknown-dtype", header(#"{"a":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}}"#, data: 1),
             "unknown dtype 'F8_E4M3'"),
            ("out-of-range", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, data: 4),
             "outside the data buffer"),
            ("negative", header(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}}"#, data: 4),
             "outside the data buffer"),
            ("reversed", header(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#, data: 4),
             "outside the data buffer"),
            ("size-mismatch", header(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, data: 8),
             "needs 8 bytes"),
            ("overlap", header(#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                               + #""b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#, data: 8), "overlap"),
            ("overflow", header(#"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
                                data: 8), "impossibly large"),
            // Numbers an Int cannot hold name the tensor and the number (Foundation said "not valid JSON").
            ("huge-number", header(#"{"a":{"dtype":"U8","shape":[1e30],"data_offsets":[0,1]}}"#, data: 1),
             "invalid JSON header: tensor 'a' has shape value 1e+30, which is not a whole number"),
            ("float-offset", header(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0.5,1]}}"#, data: 1),
             "invalid JSON header: tensor 'a' has data_offsets value 0.5, which is not a whole number"),
            ("2^64-offset", header(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}"#, data: 1),
             "invalid JSON header: tensor 'a' has data_offsets value 18446744073709551616, which is not a whole number"),
            ("negative-dim", header(#"{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}"#), "negative"),
            // Probe Z: whole numbers written as 1.0 or 1e0 were read as 1; the reference reader refuses them.
            ("float-integer", header(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1.0]}}"#, data: 1),
             "the number 1.0 is not written as a whole number"),
            ("exponent-integer", header(#"{"a":{"dtype":"U8","shape":[1E0],"data_offsets":[0,1]}}"#, data: 1),
             "the number 1E0 is not written as a whole number"),
            ("bad-metadata", header(#"{"__metadata__":{"k":1}}"#), "invalid JSON"),
        ]
        for (name, bytes, expected) in cases {
            let path = dir + "/\(name).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            for copy in [false, true] {
                XCTAssertThrowsError(try SafeTensors.read(path, copy: copy), name) { error in
                    let text = "\(error)"
                    XCTAssertTrue(error is SafeTensorsError, "\(name): \(text)")
                    XCTAssertTrue(text.contains(path), "\(name): \(text)")
                    XCTAssertTrue(text.contains(expected), "\(name): expected '\(expected)' in: \(text)")
                }
            }
        }
        for (path, expected) in [(dir + "/missing.safetensors", "No such file"), (dir!, "not a regular file")] {
            XCTAssertThrowsError(try SafeTensors.read(path)) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(expected), "\(error)")
            }
        }
    }

    /// What the reference reader (the Rust crate behind Python's safetensors) refuses is refused:
    /// a name defined twice (Foundation kept the first definition, the crate keeps the last, so one
    /// file was two models), bytes that belong to no tensor, a header that does not begin with '{'
    /// (a byte-order mark) and one over 100 MB. All were read without a word.
    func testFilesTheReferenceReaderRefusesAreRefused() throws {
        let a = #""a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#
        let aLater = #""a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}"#
        let b = #""b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}"#
        let cases: [(String, [UInt8], String)] = [
            ("duplicate", header("{\(a),\(aLater)}", data: 4), "tensor 'a' is defined twice"),
            ("duplicate-escaped", header("{\(a),\(aLater.replacingOccurrences(of: "\"a\"", with: #""\u0061""#))}", data: 4),
             "tensor 'a' is defined twice"),
            ("gap", header("{\(b)}", data: 4), "2 bytes before tensor 'b' belong to no tensor"),
            ("trailing", header("{\(a)}", data: 3), "1 bytes after the last tensor belong to no tensor"),
            ("bom", header("\u{FEFF}{\(a)}", data: 2), "does not begin with '{'"),
            ("leading-space", header(" {\(a)}", data: 2), "does not begin with '{'"),
        ]
        for (name, bytes, expected) in cases {
            let path = dir + "/\(name).safetensors"
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try SafeTensors.read(path), name) { error in
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(expected), "\(name): \(error)")
            }
        }
        // Two tensors filling the buffer, metadata and padding after the JSON still read.
        let good = dir + "/good.safetensors"
        try Data(header(#"{"__metadata__":{"k":"v"},"# + "\(a),\(b)}   ", data: 4)).write(to: URL(fileURLWithPath: good))
        XCTAssertEqual(try SafeTensors.read(good).tensors.keys.sorted(), ["a", "b"])

        // A header declared longer than 100 MB, in a (sparse) file long enough to hold it.
        let huge = dir + "/huge-header.safetensors"
        try Data(header("{}", declared: SafeTensors.maximumHeaderLength + 1)).write(to: URL(fileURLWithPath: huge))
        XCTAssertEqual(truncate(huge, off_t(SafeTensors.maximumHeaderLength) + 64), 0)
        XCTAssertThrowsError(try SafeTensors.read(huge)) { error in
            XCTAssertTrue("\(error)".contains("over the format's limit"), "\(error)")
        }
    }

    /// A FIFO where a weights file is expected is refused at once; open(2) waited for a writer, so
    /// `evaluate`, `predict`, `export` and `serve` hung on a run whose model.safetensors was a FIFO.
    func testAFIFOIsRefusedWithoutWaitingForAWriter() throws {
        let fifo = dir + "/model.safetensors"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let done = expectation(description: "the read returns")
        final class Failure: @unchecked Sendable { var value: String? }  // written before `done`, read after
        let failure = Failure()
        let reader = Thread {
            do { _ = try SafeTensors.read(fifo) } catch { failure.value = "\(error)" }
            done.fulfill()
        }
        reader.start()
        wait(for: [done], timeout: 10)
        XCTAssertTrue(failure.value?.contains("not a regular file (a FIFO)") == true, "\(String(describing: failure.value))")
    }

    // MARK: - Atomic write

    func testAtomicWriteLeavesNoTemporaryFileAndKeepsDestinationOnFailure() throws {
        let path = dir + "/model.safetensors"
        try SafeTensors.write(StateDict([("a", try Tensor([Float(1)]))]), to: path)
        try SafeTensors.write(StateDict([("b", try Tensor([Float(2)]))]), to: path)  // replaces
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
        XCTAssertEqual(try SafeTensors.load(path).keys, ["b"])
        let before = try Data(contentsOf: URL(fileURLWithPath: path))

        // Encoding fails (reserved key): nothing on disk changes.
        let bad = StateDict([("ok", try Tensor([Float(3)])), ("__metadata__", try Tensor([Float(4)]))])
        XCTAssertThrowsError(try SafeTensors.write(bad, to: path)) { error in
            XCTAssertTrue("\(error)".contains(path) && "\(error)".contains("reserved"), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])

        // A destination folder that does not exist: a clear error naming the file.
        let nowhere = dir + "/no/such/dir/model.safetensors"
        XCTAssertThrowsError(try SafeTensors.write(StateDict([("a", try Tensor([Float(1)]))]), to: nowhere)) { error in
            XCTAssertTrue(error is SafeTensorsError)
            XCTAssertTrue("\(error)".contains(nowhere) && "\(error)".contains("No such file"), "\(error)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["model.safetensors"])
    }
}

extension SafeTensorsTests {
    /// `write(streaming:)` produces the bytes `write` does for the same tensors, appended piece by
    /// piece, and refuses (leaving no file) when the pieces do not add up to the declared layout.
    func testStreamingWriteEqualsWholeWriteAndChecksTheByteCount() throws {
        let features = try Tensor.randn([3, 5])
        let flags = try Tensor([UInt8(1), 0, 1], shape: [3])
        let whole = dir + "/whole.safetensors", streamed = dir + "/streamed.safetensors"
        try SafeTensors.write(StateDict([("features", features), ("valid", flags)]), metadata: ["k": "v"], to: whole)
        let rows = try features.floats()
        try SafeTensors.write(streaming: [("features", .float32, [3, 5]), ("valid", .uint8, [3])], metadata: ["k": "v"],
                              to: streamed) { append in
            for r in 0..<3 { try rows[r * 5..<(r + 1) * 5].withUnsafeBytes(append) }
            try [UInt8(1), 0, 1].withUnsafeBytes(append)
        }
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: streamed))
        XCTAssertEqual(bytes, try Foundation.Data(contentsOf: URL(fileURLWithPath: whole)))
        // The mapping names where each tensor's bytes lie, and lends them.
        let mapping = try XCTUnwrap(try SafeTensors.read(streamed).mapping)
        let valid = try XCTUnwrap(mapping.byteRanges["valid"]), featureBytes = try XCTUnwrap(mapping.byteRanges["features"])
        XCTAssertEqual(valid, (bytes.count - 3)..<bytes.count)
        XCTAssertEqual(featureBytes.upperBound, valid.lowerBound)
        XCTAssertEqual(try mapping.withUnsafeBytes(in: valid) { Array($0) }, [1, 0, 1])
        XCTAssertEqual(try mapping.withUnsafeBytes(in: featureBytes) { Array($0.bindMemory(to: Float.self)) }, rows)
        XCTAssertThrowsError(try mapping.withUnsafeBytes(in: 0..<(bytes.count + 1)) { _ in })
        let short = dir + "/short.safetensors"
        XCTAssertThrowsError(try SafeTensors.write(streaming: [("x", .float32, [4])], to: short) { append in
            try [Float(1), 2].withUnsafeBytes(append)
        }) { XCTAssertTrue("\($0)".contains(" 8 bytes of tensor data written, the declared tensors hold 16"), "\($0)") }
        XCTAssertThrowsError(try SafeTensors.write(streaming: [("x", .float32, [1])], to: short) { append in
            try [Float(1), 2].withUnsafeBytes(append)
        }) { XCTAssertTrue("\($0)".contains("more data"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: short))
    }
}
