import Foundation
import TestSupport
import XCTest

/// `finetune serve` as a client sees it: a tiny run (MobileNetV2 from ImageNet weights, fine-tuned one
/// epoch at 64 px on the 20 foolbox photos in 6 classes), served on a free port and asked over HTTP.
final class ServeTests: XCTestCase {
    static let classes = ["c0", "c1", "c2", "c3", "c4", "c5"]
    nonisolated(unsafe) static var root = ""
    nonisolated(unsafe) static var runDirectory = ""
    nonisolated(unsafe) static var photos: [String] = []
    /// `predict --json`'s top_k of each photo (by file name).
    nonisolated(unsafe) static var expected: [String: [[String: Any]]] = [:]
    nonisolated(unsafe) static var server: ServerProcess?
    nonisolated(unsafe) static var setupError: Error?

    override class func setUp() {
        super.setUp()
        do { try makeRunAndServer() } catch { setupError = error }
    }

    override class func tearDown() {
        if let server { _ = server.terminate() }
        server = nil
        if !root.isEmpty { try? FileManager.default.removeItem(atPath: root) }
        super.tearDown()
    }

    static func finetune(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = ServerProcess.binary
        process.arguments = arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        final class Box: @unchecked Sendable { var data = Foundation.Data() }
        let box = Box(), group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { box.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: box.data, as: UTF8.self))
    }

    static func makeRunAndServer() throws {
        guard let foolbox = RealAssets.foolboxData, RealAssets.mobileNetV2 != nil else {
            throw ServeFailed(message: "the foolbox photos and MobileNetV2 weights are needed (scripts/setup puts them in the cache)")
        }
        root = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)").path
        let names = try FileManager.default.contentsOfDirectory(atPath: foolbox).filter { $0.hasPrefix("imagenet_") }.sorted()
        photos = names.map { foolbox + "/" + $0 }
        for (i, name) in names.enumerated() {
            let folder = "\(root)/data/\(classes[i % classes.count])"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: foolbox + "/" + name, toPath: folder + "/" + name)
        }
        runDirectory = root + "/tiny"
        let train = try finetune(["train", root + "/data", "--out", runDirectory, "--arch", "mobilenet_v2", "--weights", "imagenet",
                                  "--input-size", "64", "--batch-size", "4", "--epochs", "1", "--workers", "0", "--threads", "2"])
        guard train.status == 0 else { throw ServeFailed(message: "train failed: \(train.stderr)") }
        let predict = try finetune(["predict", runDirectory, "--json", "--top-k", "5", "--threads", "2"] + photos)
        guard predict.status == 0 else { throw ServeFailed(message: "predict failed: \(predict.stderr)") }
        for line in predict.stdout.split(separator: "\n") {
            let object = try JSONSerialization.jsonObject(with: Foundation.Data(line.utf8)) as! [String: Any]
            expected[((object["file"] as! String) as NSString).lastPathComponent] = object["top_k"] as? [[String: Any]]
        }
        server = try ServerProcess([runDirectory])
    }

    func liveServer() throws -> ServerProcess {
        if let error = Self.setupError { throw error }
        return try XCTUnwrap(Self.server)
    }

    /// The answer's top_k equals predict --json's for `file`: same classes in order, probabilities to 1e-5.
    func assertSameTopK(_ topK: Any?, as file: String, line: UInt = #line) {
        guard let got = topK as? [[String: Any]], let want = Self.expected[file] else {
            return XCTFail("no top_k for \(file): \(String(describing: topK))", line: line)
        }
        XCTAssertEqual(got.count, want.count, file, line: line)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g["class"] as? String, w["class"] as? String, file, line: line)
            XCTAssertEqual(g["index"] as? Int, w["index"] as? Int, file, line: line)
            XCTAssertEqual(g["probability"] as? Double ?? -1, w["probability"] as? Double ?? 1, accuracy: 1e-5, file, line: line)
        }
    }

    /// The value of a Prometheus sample line `name{labels} value` (0 when absent).
    static func metric(_ text: String, _ prefix: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    func predictOne(_ server: ServerProcess, _ photo: String) throws -> ServerProcess.Answer {
        try server.request("POST", "/v1/models/tiny:predict", body: Foundation.Data(contentsOf: URL(fileURLWithPath: photo)),
                           headers: ["Content-Type": "image/jpeg"])
    }

    func testPredictionsEqualPredictJSONOneByOneAndAsMultipartAndRoutesAnswer() throws {
        let server = try liveServer()
        let before = try server.request("GET", "/metrics")
        let ok = #"finetune_requests_total{model="tiny",status="200"}"#
        let countBefore = Self.metric(before.text, ok)
        let decodedBefore = Self.metric(before.text, "finetune_images_decoded_total")

        for photo in Self.photos {
            let answer = try predictOne(server, photo)
            XCTAssertEqual(answer.status, 200, answer.text)
            let predictions = answer.json["predictions"] as? [[String: Any]] ?? []
            XCTAssertEqual(predictions.count, 1)
            assertSameTopK(predictions.first?["top_k"], as: (photo as NSString).lastPathComponent)
        }
        let files = try Self.photos.map { (($0 as NSString).lastPathComponent, try Foundation.Data(contentsOf: URL(fileURLWithPath: $0))) }
        let (body, type) = ServerProcess.multipart(files)
        let answer = try server.request("POST", "/v1/models/tiny:predict?top_k=5", body: body, headers: ["Content-Type": type])
        XCTAssertEqual(answer.status, 200, answer.text)
        let predictions = answer.json["predictions"] as? [[String: Any]] ?? []
        XCTAssertEqual(predictions.map { $0["part"] as? String ?? "" }, files.map(\.0))
        for prediction in predictions { assertSameTopK(prediction["top_k"], as: prediction["part"] as? String ?? "") }

        // top_k=2: two classes.
        let two = try server.request("POST", "/v1/models/tiny:predict?top_k=2", body: files[0].1, headers: ["Content-Type": "image/jpeg"])
        XCTAssertEqual(((two.json["predictions"] as? [[String: Any]])?.first?["top_k"] as? [Any])?.count, 2, two.text)

        let health = try server.request("GET", "/healthz")
        XCTAssertEqual(health.status, 200)
        XCTAssertEqual(health.json["status"] as? String, "ok")
        let ready = try server.request("GET", "/readyz")
        XCTAssertEqual(ready.status, 200)
        XCTAssertEqual(ready.json["status"] as? String, "ready")
        // HEAD answers as GET, without the body (uptime monitors check health with HEAD: it was 404).
        for path in ["/healthz", "/readyz", "/", "/v1/models", "/metrics"] {
            let head = try server.request("HEAD", path)
            XCTAssertEqual(head.status, 200, "HEAD \(path): \(head.text)")
            XCTAssertTrue(head.text.isEmpty, "HEAD \(path): \(head.text)")
        }
        XCTAssertEqual(try server.request("HEAD", "/nowhere").status, 404)
        // A known path with another method is 405 with `Allow` (RFC 9110 §15.5.6; it was 404 "no route").
        for (method, path, allow) in [("DELETE", "/healthz", "GET, HEAD"), ("POST", "/v1/models", "GET, HEAD"),
                                      ("GET", "/v1/models/tiny:predict", "POST"), ("PUT", "/v1/models/any:reload", "POST")] {
            let answer = try server.request(method, path)
            XCTAssertEqual(answer.status, 405, "\(method) \(path): \(answer.text)")
            XCTAssertEqual(answer.headers["allow"], allow, "\(method) \(path)")
            XCTAssertTrue((answer.json["error"] as? String)?.contains("\(method) is not allowed on \(path)") == true, answer.text)
        }
        XCTAssertEqual(try server.request("GET", "/v1/models/tiny:train").status, 404)
        XCTAssertEqual(try server.request("DELETE", "/v1/models/tiny/x").status, 404)
        let models = try server.request("GET", "/v1/models")
        XCTAssertEqual(models.status, 200)
        let model = try XCTUnwrap((models.json["models"] as? [[String: Any]])?.first, models.text)
        XCTAssertEqual(model["name"] as? String, "tiny")
        XCTAssertEqual(model["architecture"] as? String, "mobilenet_v2")
        XCTAssertEqual(model["classes"] as? [String], Self.classes)
        XCTAssertEqual((model["preprocessing"] as? [String: Any])?["crop_size"] as? Int, 64, models.text)
        XCTAssertNotNil(model["loaded_at"] as? String)
        XCTAssertEqual(model["ready"] as? Bool, true)
        // serve's default is auto: bf16 for MobileNetV2 on a CPU with native bf16.
        let native = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains("avx512_bf16")
        XCTAssertEqual(model["precision"] as? String, native ? "bf16" : "fp32", models.text)

        let metrics = try server.request("GET", "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertEqual(Self.metric(metrics.text, ok) - countBefore, 22, metrics.text)
        XCTAssertEqual(Self.metric(metrics.text, "finetune_images_decoded_total") - decodedBefore, 41)
        for name in ["finetune_request_duration_seconds_count{model=\"tiny\"}", "finetune_batch_size_count{model=\"tiny\"}"] {
            XCTAssertGreaterThan(Self.metric(metrics.text, name), 0, name)
        }
        XCTAssertTrue(metrics.text.contains("finetune_queue_depth{model=\"tiny\"}"), metrics.text)
        XCTAssertTrue(metrics.text.contains("finetune_decode_failures_total"), metrics.text)
        // Every family keeps its name and says what it counts.
        for family in ["finetune_requests_total", "finetune_request_duration_seconds", "finetune_batch_size",
                       "finetune_queue_depth", "finetune_images_decoded_total", "finetune_decode_failures_total"] {
            XCTAssertTrue(metrics.text.contains("# HELP \(family) "), family)
        }
        XCTAssertTrue(server.log.contains("POST /v1/models/tiny:predict 200 "), server.log)
        XCTAssertTrue(server.log.contains(" 20 images"), server.log)
    }

    /// `evaluate --per-sample` sees the pixels `predict` (and so `serve`) sees: its probabilities equal
    /// predict --json's to 1e-5. The photos are 512 px and the run resizes to 73 px, so the loader used
    /// to decode them at 1/4 scale (libjpeg's DCT scaling) while predict decoded them at full size, as
    /// PIL does for torchvision: the same run gave other probabilities in evaluate than in predict.
    /// `serve RUN --checkpoint best` serves the run's best checkpoint, and `/v1/models` names it: here
    /// the best checkpoint of a copy of the run whose final weights are gone (the one-epoch run's best
    /// checkpoint holds its final weights, so the answers are `predict`'s). Until 2026-12-07 serve had
    /// only the final weights.
    func testACheckpointIsServedAndNamedInTheModelList() throws {
        _ = try liveServer()
        let copy = Self.root + "/copy-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: Self.runDirectory, toPath: copy)
        try FileManager.default.removeItem(atPath: copy + "/model.safetensors")
        let server = try ServerProcess([copy, "--checkpoint", "best", "--name", "tiny"])
        defer { _ = server.terminate() }
        let models = try server.request("GET", "/v1/models")
        let model = try XCTUnwrap((models.json["models"] as? [[String: Any]])?.first, models.text)
        XCTAssertEqual(model["source"] as? String, copy + " (checkpoints/best, epoch 1)")
        for photo in Self.photos.prefix(3) {
            let answer = try predictOne(server, photo)
            XCTAssertEqual(answer.status, 200, answer.text)
            let predictions = answer.json["predictions"] as? [[String: Any]] ?? []
            assertSameTopK(predictions.first?["top_k"], as: (photo as NSString).lastPathComponent)
        }
    }

    func testEvaluatePerSampleProbabilitiesEqualPredicts() throws {
        _ = try liveServer()
        let run = try Self.finetune(["evaluate", Self.runDirectory, Self.root + "/data", "--per-sample", "--json",
                                     "--threads", "2", "--workers", "0"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Foundation.Data(run.stdout.utf8)) as? [String: Any])
        let samples = try XCTUnwrap(report["samples"] as? [[String: Any]], run.stdout)
        XCTAssertEqual(samples.count, Self.photos.count)
        for sample in samples {
            let file = ((sample["path"] as? String ?? "") as NSString).lastPathComponent
            let probabilities = try XCTUnwrap(sample["probabilities"] as? [Double], file)
            let want = try XCTUnwrap(Self.expected[file], file)
            XCTAssertEqual(want.count, 5, file)
            for entry in want {
                let index = try XCTUnwrap(entry["index"] as? Int)
                XCTAssertEqual(probabilities[index], entry["probability"] as? Double ?? -1, accuracy: 1e-5, "\(file) class \(index)")
            }
        }
    }
}

/// The inference thread reuses its memory from one batch to the next. glibc gives every thread but
/// the main one an arena of its own, whose heaps it caps at 64 MB, and maps anything larger afresh
/// on each allocation: MobileNetV2's 96-channel expansion of a 224-px batch of 16 is 77 MB, so every
/// forward pass on the server's inference thread page-faulted it in again (`bench/compare_serving`'s
/// load at concurrency 32: 630,000 faults for 300 images, a third of the server's CPU time in the
/// kernel) until `Runtime.retainFreedMemory` kept all threads in one arena.
final class ServeMemoryReuseTests: XCTestCase {
    /// Minor page faults of process `pid` so far (`/proc/PID/stat`, field 10).
    static func minorFaults(_ pid: Int32) throws -> Int {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which may hold spaces) start at field 3.
        let after = stat[stat.index(after: try XCTUnwrap(stat.lastIndex(of: ")")))...].split(separator: " ")
        return try XCTUnwrap(Int(after[10 - 3]))
    }

    func testBatchesOfSixteenAt224PixelsDoNotFaultTheirActivationsInAgain() throws {
        #if !os(Linux)
        throw XCTSkip("glibc arenas and /proc")
        #else
        guard let foolbox = RealAssets.foolboxData, RealAssets.mobileNetV2 != nil else {
            throw ServeFailed(message: "the foolbox photos and MobileNetV2 weights are needed (scripts/setup puts them in the cache)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: foolbox).filter { $0.hasPrefix("imagenet_") }.sorted()
        let files = try names.prefix(16).map { ($0, try Foundation.Data(contentsOf: URL(fileURLWithPath: foolbox + "/" + $0))) }
        XCTAssertEqual(files.count, 16)
        let server = try ServerProcess(["--arch", "mobilenet_v2", "--weights", "imagenet", "--name", "imagenet"])
        defer { _ = server.terminate() }
        let (body, type) = ServerProcess.multipart(files)
        var faults: [Int] = []
        for _ in 0..<4 {
            let before = try Self.minorFaults(server.process.processIdentifier)
            let answer = try server.request("POST", "/v1/models/imagenet:predict", body: body, headers: ["Content-Type": type])
            XCTAssertEqual(answer.status, 200, answer.text)
            XCTAssertEqual((answer.json["predictions"] as? [Any])?.count, 16, answer.text)
            faults.append(try Self.minorFaults(server.process.processIdentifier) - before)
        }
        // Mapped afresh, each batch faulted about 19,000 pages of 4 KB (18,915 and 18,967 in the
        // third and fourth rounds here); reused, the third and fourth rounds fault none.
        XCTAssertTrue(faults.suffix(2).allSatisfy { $0 < 5_000 }, "page faults per batch of 16: \(faults)")
        #endif
    }
}
