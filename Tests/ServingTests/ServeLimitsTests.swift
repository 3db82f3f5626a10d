import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Data
import TensorIO
import Torch
import XCTest

/// Bad input, limits, load and shutdown: the statuses of the issue's point 4, with a good request after
/// each; 200 requests 32 at a time; SIGTERM under load.
extension ServeTests {
    /// A PNG whose header says `width`×`height` (a decompression bomb when large), with a valid CRC.
    static func pngHeader(width: UInt32, height: UInt32) -> Foundation.Data {
        func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }
        func crc32(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                crc ^= UInt32(b)
                for _ in 0..<8 { crc = (crc >> 1) ^ (crc & 1 == 1 ? 0xEDB8_8320 : 0) }
            }
            return ~crc
        }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be32(UInt32(data.count)) + body + be32(crc32(body))
        }
        let ihdr = be32(width) + be32(height) + [8, 2, 0, 0, 0]
        let idat: [UInt8] = [0x78, 0x9C, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]
        return Foundation.Data([137, 80, 78, 71, 13, 10, 26, 10] + chunk("IHDR", ihdr) + chunk("IDAT", idat) + chunk("IEND", []))
    }

    /// A good request after `what` is answered right. A 504 is tried again (three tries in all): tests
    /// that give the server a short `--request-timeout-ms` (400 ms) saw a debug build on a busy
    /// two-core machine take longer than that for a good request; a server left unable to answer
    /// still fails every try.
    func assertGoodRequest(_ server: ServerProcess, after what: String, line: UInt = #line) throws {
        let photo = Self.photos[3]
        var answer = try predictOne(server, photo)
        for _ in 1..<3 where answer.status == 504 { answer = try predictOne(server, photo) }
        XCTAssertEqual(answer.status, 200, "after \(what): \(answer.text)", line: line)
        assertSameTopK((answer.json["predictions"] as? [[String: Any]])?.first?["top_k"], as: (photo as NSString).lastPathComponent, line: line)
    }

    func assertError(_ answer: ServerProcess.Answer, _ status: Int, mentions: String, line: UInt = #line) {
        XCTAssertEqual(answer.status, status, answer.text, line: line)
        let message = answer.json["error"] as? String ?? ""
        XCTAssertTrue(message.contains(mentions), "'\(message)' should mention '\(mentions)'", line: line)
        XCTAssertEqual(answer.headers["content-type"], "application/json", line: line)
    }

    func testBadInputsGetTheirStatusAndTheServerKeepsServing() throws {
        let server = try liveServer()
        let path = "/v1/models/tiny:predict"
        let jpeg = ["Content-Type": "image/jpeg"]
        let photo = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.photos[0]))

        assertError(try server.request("POST", path, body: photo.prefix(600), headers: jpeg), 400, mentions: "body")
        try assertGoodRequest(server, after: "a truncated JPEG")
        assertError(try server.request("POST", path, body: Foundation.Data("not an image".utf8), headers: jpeg), 400, mentions: "body")
        try assertGoodRequest(server, after: "text")
        // 10,000 × 10,000: over --max-pixels (40 M by default), refused from the header without decoding.
        assertError(try server.request("POST", path, body: Self.pngHeader(width: 10_000, height: 10_000), headers: ["Content-Type": "image/png"]),
                    400, mentions: "--max-pixels")
        try assertGoodRequest(server, after: "a decompression bomb")
        // 100,000 × 100,000: over the codec's own limit too, and named as over --max-pixels (probe W: it
        // was "cannot be decoded … the limit is 268435456 pixels"). 2,000,000 × 1 is within --max-pixels
        // but past libpng's side, which is named.
        assertError(try server.request("POST", path, body: Self.pngHeader(width: 100_000, height: 100_000), headers: ["Content-Type": "image/png"]),
                    400, mentions: "'body' is 100000×100000 pixels, over the --max-pixels limit of 40000000")
        assertError(try server.request("POST", path, body: Self.pngHeader(width: 2_000_000, height: 1), headers: ["Content-Type": "image/png"]),
                    400, mentions: "(2000000x1 pixels; PNG images are read up to 1000000 pixels a side)")
        try assertGoodRequest(server, after: "a larger decompression bomb")
        let (parts, type) = ServerProcess.multipart([("good.jpg", photo), ("broken.jpg", Foundation.Data("xx".utf8))])
        assertError(try server.request("POST", path, body: parts, headers: ["Content-Type": type]), 400, mentions: "broken.jpg")
        try assertGoodRequest(server, after: "a bad part")
        assertError(try server.request("POST", path, body: parts.prefix(parts.count - 30), headers: ["Content-Type": type]),
                    400, mentions: "malformed multipart")
        try assertGoodRequest(server, after: "a truncated multipart body")
        assertError(try server.request("POST", path, body: Foundation.Data("--finetune-test-boundary--\r\n".utf8), headers: ["Content-Type": type]),
                    400, mentions: "no parts")
        try assertGoodRequest(server, after: "a multipart body with no parts")
        assertError(try server.request("POST", path, body: photo, headers: ["Content-Type": "multipart/form-data"]),
                    400, mentions: "boundary")
        try assertGoodRequest(server, after: "a multipart type without boundary")
        assertError(try server.request("POST", path, body: Foundation.Data(), headers: jpeg), 400, mentions: "empty")
        try assertGoodRequest(server, after: "an empty body")
        // The server answers 413 once the body passes --max-body-bytes and closes the connection; a
        // client still sending may see the reset instead of the answer (seen once, on a loaded CI
        // machine). Either way the body was refused, and the next request is served.
        do {
            assertError(try server.request("POST", path, body: Foundation.Data(count: 25_000_000), headers: jpeg), 413,
                        mentions: "--max-body-bytes")
        } catch let error as NSError where error.domain == NSURLErrorDomain && error.code == NSURLErrorNetworkConnectionLost {}
        try assertGoodRequest(server, after: "a 25 MB body")
        assertError(try server.request("POST", "/v1/models/nope:predict", body: photo, headers: jpeg), 404, mentions: "nope")
        try assertGoodRequest(server, after: "an unknown model")
        assertError(try server.request("POST", path + "?top_k=0", body: photo, headers: jpeg), 400, mentions: "top_k")
        assertError(try server.request("GET", "/nowhere"), 404, mentions: "/nowhere")
        let metrics = try server.request("GET", "/metrics").text
        XCTAssertGreaterThanOrEqual(Self.metric(metrics, "finetune_decode_failures_total"), 4, metrics)
        XCTAssertGreaterThanOrEqual(Self.metric(metrics, #"finetune_requests_total{model="tiny",status="400"}"#), 6, metrics)
    }

    /// A server of the trained run whose queue holds 2 images and whose batches of `batchSize` wait
    /// `delayMilliseconds` to fill, longer than its 700 ms request timeout; its predict path and a photo.
    func serverWithSlowBatches(batchSize: Int, delayMilliseconds: Int) throws -> (ServerProcess, String, Foundation.Data) {
        _ = try liveServer()
        let server = try ServerProcess([Self.runDirectory, "--max-queue", "2", "--max-batch-size", "\(batchSize)",
                                        "--max-batch-delay-ms", "\(delayMilliseconds)", "--request-timeout-ms", "700"])
        return (server, "/v1/models/tiny:predict", try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.photos[3])))
    }

    /// A full queue (503 with Retry-After) and a request over its time (504), on a server whose batches
    /// wait long to fill; a good request after each.
    func testFullQueueAnd504() throws {
        let (server, path, photo) = try serverWithSlowBatches(batchSize: 2, delayMilliseconds: 1500)
        let first = expectation(description: "first request")
        final class Box: @unchecked Sendable { var answer: ServerProcess.Answer? }
        let box = Box()
        server.send("POST", path, body: photo, headers: ["Content-Type": "image/jpeg"]) { box.answer = try? $0.get(); first.fulfill() }
        Thread.sleep(forTimeInterval: 0.25)
        let (two, type) = ServerProcess.multipart([("a.jpg", photo), ("b.jpg", photo)])
        let full = try server.request("POST", path, body: two, headers: ["Content-Type": type])
        assertError(full, 503, mentions: "--max-queue")
        XCTAssertEqual(full.headers["retry-after"], "1")
        wait(for: [first], timeout: 10)
        assertError(try XCTUnwrap(box.answer), 504, mentions: "--request-timeout-ms")
        // The timed-out image leaves the queue unrun when the next request comes (its request has had
        // its 504; it was run with the next image); a request of two fills a batch at once.
        let good = try server.request("POST", path, body: two, headers: ["Content-Type": type])
        XCTAssertEqual(good.status, 200, good.text)
        XCTAssertEqual((good.json["predictions"] as? [[String: Any]])?.count, 2, good.text)
        // Parts past --max-queue are not parsed: a third part cut short is never looked at (it was, and
        // a body of millions of empty parts cost seconds and hundreds of MB before being refused).
        let (three, threeType) = ServerProcess.multipart([("a.jpg", photo), ("b.jpg", photo), ("c.jpg", photo)])
        let over = try server.request("POST", path, body: three.dropLast(60), headers: ["Content-Type": threeType])
        assertError(over, 413, mentions: "more than 2 images in one request, over --max-queue 2")
        let metrics = try server.request("GET", "/metrics").text
        XCTAssertEqual(Self.metric(metrics, "finetune_images_expired_total"), 1, metrics)
        XCTAssertEqual(Self.metric(metrics, #"finetune_batch_size_sum{model="tiny"}"#), 2, metrics)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// Images whose request has had its 504 leave the queue when the next request comes: they held its
    /// places until their batch was taken, and that request got 503 "the queue is full" (probe AH).
    func testImagesOfRequestsThatTimedOutDoNotFillTheQueue() throws {
        let (server, path, photo) = try serverWithSlowBatches(batchSize: 3, delayMilliseconds: 8000)
        let (two, type) = ServerProcess.multipart([("a.jpg", photo), ("b.jpg", photo)])
        assertError(try server.request("POST", path, body: two, headers: ["Content-Type": type]), 504, mentions: "--request-timeout-ms")
        // Both images still wait for a batch of 3 (8 s); their request has had its answer.
        let next = try server.request("POST", path, body: photo, headers: ["Content-Type": "image/jpeg"])
        assertError(next, 504, mentions: "--request-timeout-ms")
        let metrics = try server.request("GET", "/metrics").text
        XCTAssertGreaterThanOrEqual(Self.metric(metrics, "finetune_images_expired_total"), 2, metrics)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// `--request-timeout-ms` bounds the decoding too: with one decode worker and a request of large
    /// images that take longer to decode than its time, the images whose turn comes after the
    /// deadline are not decoded, and the 504 comes soon after the deadline. Every image was decoded
    /// before the 504, which came seconds late, and the worker was kept from other requests.
    func testImagesWhoseTurnToDecodeComesAfterTheTimeoutAreNotDecoded() throws {
        _ = try liveServer()
        let server = try ServerProcess([Self.runDirectory, "--decode-workers", "1", "--request-timeout-ms", "400"])
        let side = 6000  // 36 MP, under --max-pixels' 40 MP: a large decode, a small PNG
        let large = try Image(rgb: [UInt8](repeating: 90, count: side * side * 3), width: side, height: side).pngData()
        let count = 12
        let (body, type) = ServerProcess.multipart((0..<count).map { ("large\($0).png", large) })
        let started = Date()
        let answer = try server.request("POST", "/v1/models/tiny:predict", body: body, headers: ["Content-Type": type])
        let seconds = Date().timeIntervalSince(started)
        assertError(answer, 504, mentions: "--request-timeout-ms")
        // The 504 came at the deadline, while the first image was still being decoded (seconds in a
        // debug build): it used to wait for that decode (probe AH: 2 s for a 0.3 s timeout).
        var metrics = try server.request("GET", "/metrics").text
        XCTAssertEqual(Self.metric(metrics, "finetune_images_decoded_total"), 0, "\(seconds) s\n\(metrics)")
        // Then the decode in progress ends, and the images behind it are dropped as their turn comes.
        let until = Date().addingTimeInterval(60)
        var decoded = 0.0, expired = 0.0
        repeat {
            Thread.sleep(forTimeInterval: 0.2)
            metrics = try server.request("GET", "/metrics").text
            decoded = Self.metric(metrics, "finetune_images_decoded_total")
            expired = Self.metric(metrics, "finetune_images_expired_total")
        } while decoded + expired < Double(count) && Date() < until
        XCTAssertLessThan(decoded, Double(count), "\(seconds) s\n\(metrics)")
        XCTAssertGreaterThan(expired, 0, metrics)
        XCTAssertEqual(decoded + expired, Double(count), metrics)
        try assertGoodRequest(server, after: "a request that timed out while decoding")
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    func test200RequestsThirtyTwoAtATimeAllAnsweredOnceAndBatched() throws {
        let server = try liveServer()
        let before = try server.request("GET", "/metrics").text
        let photos = try Self.photos.map { try Foundation.Data(contentsOf: URL(fileURLWithPath: $0)) }
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var answers: [Int: [ServerProcess.Answer]] = [:]
            var errors: [String] = []
        }
        let results = Results()
        let slots = DispatchSemaphore(value: 32), group = DispatchGroup()
        for i in 0..<200 {
            slots.wait()
            group.enter()
            server.send("POST", "/v1/models/tiny:predict?top_k=3", body: photos[i % photos.count], headers: ["Content-Type": "image/jpeg"]) { result in
                results.lock.lock()
                switch result {
                case .success(let answer): results.answers[i, default: []].append(answer)
                case .failure(let error): results.errors.append("\(i): \(error)")
                }
                results.lock.unlock()
                slots.signal()
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(results.errors, [])
        XCTAssertEqual(results.answers.count, 200)
        for i in 0..<200 {
            let answers = results.answers[i] ?? []
            XCTAssertEqual(answers.count, 1, "request \(i)")
            guard let answer = answers.first else { continue }
            XCTAssertEqual(answer.status, 200, answer.text)
            let file = (Self.photos[i % photos.count] as NSString).lastPathComponent
            let got = (answer.json["predictions"] as? [[String: Any]])?.first?["top_k"] as? [[String: Any]] ?? []
            XCTAssertEqual(got.map { $0["class"] as? String }, Self.expected[file]?.prefix(3).map { $0["class"] as? String }, file)
        }
        let after = try server.request("GET", "/metrics").text
        let ok = #"finetune_requests_total{model="tiny",status="200"}"#
        XCTAssertEqual(Self.metric(after, ok) - Self.metric(before, ok), 200)
        let images = Self.metric(after, #"finetune_batch_size_sum{model="tiny"}"#) - Self.metric(before, #"finetune_batch_size_sum{model="tiny"}"#)
        let batches = Self.metric(after, #"finetune_batch_size_count{model="tiny"}"#) - Self.metric(before, #"finetune_batch_size_count{model="tiny"}"#)
        XCTAssertEqual(images, 200)
        XCTAssertLessThan(batches, 200, "no batch held more than one image")
        let singles = Self.metric(after, #"finetune_batch_size_bucket{model="tiny",le="1.0"}"#)
            - Self.metric(before, #"finetune_batch_size_bucket{model="tiny",le="1.0"}"#)
        XCTAssertLessThan(singles, batches, after)
    }

    /// SIGTERM while the models warm up (a pod stopped right after it started) ends the warm-up of the
    /// model at hand and exits 0: `run()` returned under the warm-up's forward pass, and the process
    /// exited while oneDNN ran it (SIGSEGV: 3 of 3 tries failed here).
    func testSIGTERMDuringTheWarmUpExitsZero() throws {
        for delay in [0.1, 0.5] {
            let server = try ServerProcess(["--arch", "mobilenet_v2", "--weights", "none", "--max-batch-size", "128"],
                                           waitUntilReady: false)
            Thread.sleep(forTimeInterval: delay)
            let ready = (try? server.request("GET", "/readyz"))?.status
            XCTAssertEqual(server.terminate(), 0, "SIGTERM \(delay) s after listening (readyz: \(ready ?? 0)): \(server.log)")
        }
    }

    /// A hang-up (the terminal closed) shuts the server down gracefully, as SIGTERM does, unless it is
    /// ignored (`nohup`), when it keeps serving. Until 2026-12-07 it ended the server at once (killed by
    /// the signal), dropping the requests in flight. A batch scheduler's warning (SIGUSR1, SIGUSR2, as
    /// Slurm's `--signal` sends) does the same: until stop 51 it killed the server, as it no longer
    /// kills `train`.
    func testAHangUpOrASchedulersWarningShutsDownGracefullyUnlessNohupIgnoresIt() throws {
        _ = try liveServer()
        for number in [SIGHUP, SIGUSR1, SIGUSR2] {
            let server = try ServerProcess([Self.runDirectory])
            kill(server.process.processIdentifier, number)
            server.process.waitUntilExit()
            XCTAssertEqual(server.process.terminationReason, .exit, "signal \(number): \(server.log)")
            XCTAssertEqual(server.process.terminationStatus, 0, "signal \(number): \(server.log)")
        }

        let kept = try ServerProcess([Self.runDirectory], ignoringHangUp: true)
        kill(kept.process.processIdentifier, SIGHUP)
        Thread.sleep(forTimeInterval: 0.5)
        XCTAssertEqual(try kept.request("GET", "/healthz").status, 200)
        XCTAssertEqual(kept.terminate(), 0, kept.log)
    }

    func testSIGTERMUnderLoadAnswersEveryAcceptedRequestAndExitsZero() throws {
        _ = try liveServer()
        let server = try ServerProcess([Self.runDirectory, "--max-batch-delay-ms", "20"], environment: ["FINETUNE_API_KEY": "sesame"])
        let unauthorized = try server.request("GET", "/v1/models")
        assertError(unauthorized, 401, mentions: "Bearer")
        XCTAssertEqual(try server.request("GET", "/healthz").status, 200)
        // The scheme is case-insensitive (RFC 9110); the key is not.
        XCTAssertEqual(try server.request("GET", "/v1/models", headers: ["Authorization": "bearer sesame"]).status, 200)
        XCTAssertEqual(try server.request("GET", "/v1/models", headers: ["Authorization": "Bearer Sesame"]).status, 401)
        XCTAssertEqual(try server.request("GET", "/v1/models", headers: ["Authorization": "Basic sesame"]).status, 401)
        let photo = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.photos[5]))
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var statuses: [Int] = []
            var errors: [URLError.Code] = []
            var descriptions: [String] = []
        }
        let results = Results(), group = DispatchGroup()
        for i in 0..<48 {
            group.enter()
            server.send("POST", "/v1/models/tiny:predict", body: photo,
                        headers: ["Content-Type": "image/jpeg", "Authorization": "Bearer sesame"]) { result in
                results.lock.lock()
                switch result {
                case .success(let answer): results.statuses.append(answer.status)
                case .failure(let error):
                    results.errors.append((error as? URLError)?.code ?? .unknown)
                    results.descriptions.append("\(error)")
                }
                results.lock.unlock()
                group.leave()
            }
            if i == 24 { Thread.sleep(forTimeInterval: 0.05); kill(server.process.processIdentifier, SIGTERM) }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        server.process.waitUntilExit()
        XCTAssertEqual(server.process.terminationStatus, 0, server.log)
        // Every request the server accepted got its answer; the rest could not connect, or connected
        // while the server was stopping and were closed unread: a connection still in the kernel's
        // accept queue when the listener closes is reset, and one accepted with no request read yet
        // is idle and closed (as nginx and Go's Shutdown do). Which happens depends on the load. A
        // connection closed unread while the client still sent the request's body fails the send:
        // libcurl's "Send failure: Broken pipe", which Foundation reports as `URLError.unknown` (stop 51
        // and 52 saw it, once each in about 20 full suites).
        XCTAssertGreaterThan(results.statuses.count, 0)
        XCTAssertEqual(Set(results.statuses), [200], "\(results.statuses)")
        for (code, description) in zip(results.errors, results.descriptions) {
            XCTAssertTrue([.cannotConnectToHost, .networkConnectionLost].contains(code)
                          || (code == .unknown && description.contains("Send failure")), "\(code) \(description)")
        }
        let logged = server.log.split(separator: "\n").filter { $0.hasPrefix("POST /v1/models/tiny:predict 200") }.count
        XCTAssertEqual(logged, results.statuses.count, server.log)
    }
}

extension ServeTests {
    /// A fresh copy of the trained run, named `name`, for a test that changes its files.
    func copyOfTheRun(_ name: String) throws -> String {
        _ = try liveServer()
        let copy = Self.root + "/" + name
        try? FileManager.default.removeItem(atPath: copy)
        try FileManager.default.copyItem(atPath: Self.runDirectory, toPath: copy)
        return copy
    }

    /// A reload under load: the run's weights change on disk (the classifier negated, so the ranking
    /// turns over), requests keep coming, none fails, and afterwards the answers are the new model's.
    func testReloadSwapsTheModelWithNoFailedRequests() throws {
        let copy = try copyOfTheRun("reloaded")
        let server = try ServerProcess([copy, "--name", "tiny"])
        let photo = Self.photos[7], file = (photo as NSString).lastPathComponent
        let before = try predictOne(server, photo)
        assertSameTopK((before.json["predictions"] as? [[String: Any]])?.first?["top_k"], as: file)

        var weights = try SafeTensors.loadCopy(copy + "/model.safetensors")
        weights["classifier.1.weight"] = try XCTUnwrap(weights["classifier.1.weight"]) * -1.0
        try SafeTensors.write(weights, to: copy + "/model.safetensors")

        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var statuses: [Int] = []
        }
        let results = Results(), group = DispatchGroup()
        let body = try Foundation.Data(contentsOf: URL(fileURLWithPath: photo))
        for _ in 0..<24 {
            group.enter()
            server.send("POST", "/v1/models/tiny:predict", body: body, headers: ["Content-Type": "image/jpeg"]) { result in
                results.lock.lock()
                results.statuses.append((try? result.get().status) ?? -1)
                results.lock.unlock()
                group.leave()
            }
        }
        let reload = try server.request("POST", "/v1/models/tiny:reload")
        XCTAssertEqual(reload.status, 200, reload.text)
        XCTAssertEqual(reload.json["version"] as? Int, 2, reload.text)
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(results.statuses, Array(repeating: 200, count: 24))

        let after = try predictOne(server, photo)
        XCTAssertEqual(after.json["version"] as? Int, 2)
        let old = Self.expected[file]?.first?["class"] as? String
        let new = ((after.json["predictions"] as? [[String: Any]])?.first?["top_k"] as? [[String: Any]])?.first?["class"] as? String
        XCTAssertNotEqual(new, old, after.text)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }
}

extension ServeTests {
    /// The queue-depth gauge counts the images waiting (it said 0 until a batch was taken); a model
    /// named outside ASCII is reachable (its percent-encoded name was 404); reloads asked for together
    /// run one after another (they shared version numbers, the served version could go back); a reload
    /// whose files cannot be loaded, or whose full batch the memory cannot hold (the warm-up of a larger
    /// model got the process killed), answers 422 saying why, and the current version keeps serving.
    func testReloadsAreOrderedAndCheckedAndTheQueueAndNonASCIINamesWork() throws {
        let copy = try copyOfTheRun("reload-checks")
        let server = try ServerProcess([copy, "--name", "t\u{EF}ny", "--max-batch-size", "64", "--max-batch-delay-ms", "4000"])
        let route = "/v1/models/t%C3%AFny"
        let photo = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.photos[3]))
        final class Statuses: @unchecked Sendable {
            let lock = NSLock()
            var values: [Int] = []
            func add(_ value: Int) { lock.lock(); values.append(value); lock.unlock() }
        }
        let predicted = Statuses(), group = DispatchGroup()
        for _ in 0..<5 {
            group.enter()
            server.send("POST", route + ":predict", body: photo, headers: ["Content-Type": "image/jpeg"]) { result in
                predicted.add((try? result.get().status) ?? -1)
                group.leave()
            }
        }
        // Decoded and queued while the batch waits 4 s to fill. (A fixed 1 s wait saw 3 of the 5 queued
        // once, in a full run on a loaded 2-core machine: the decoding had not finished.)
        let depth = "finetune_queue_depth{model=\"t\u{EF}ny\"}"
        var metrics = try server.request("GET", "/metrics")
        let deadline = Date().addingTimeInterval(3.5)
        while Self.metric(metrics.text, depth) < 5 && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.05)
            metrics = try server.request("GET", "/metrics")
        }
        XCTAssertEqual(Self.metric(metrics.text, depth), 5, metrics.text)
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success)
        XCTAssertEqual(predicted.values, [200, 200, 200, 200, 200])

        let reloaded = Statuses()
        final class Versions: @unchecked Sendable { let lock = NSLock(); var values: [Int] = [] }
        let versions = Versions()
        for _ in 0..<3 {
            group.enter()
            server.send("POST", route + ":reload") { result in
                let answer = try? result.get()
                reloaded.add(answer?.status ?? -1)
                versions.lock.lock()
                versions.values.append(answer?.json["version"] as? Int ?? -1)
                versions.lock.unlock()
                group.leave()
            }
        }
        XCTAssertEqual(group.wait(timeout: .now() + 120), .success)
        XCTAssertEqual(reloaded.values, [200, 200, 200])
        XCTAssertEqual(versions.values.sorted(), [2, 3, 4], "each reload installs the next version")
        func served() throws -> Int? {
            (try server.request("GET", "/v1/models").json["models"] as? [[String: Any]])?.first?["version"] as? Int
        }
        XCTAssertEqual(try served(), 4)

        let weights = copy + "/model.safetensors"
        let good = try Foundation.Data(contentsOf: URL(fileURLWithPath: weights))
        try Foundation.Data("not safetensors".utf8).write(to: URL(fileURLWithPath: weights))
        let damaged = try server.request("POST", route + ":reload")
        XCTAssertEqual(damaged.status, 422, damaged.text)
        XCTAssertTrue(damaged.text.contains("version 4 keeps serving") && damaged.text.contains(weights), damaged.text)
        try good.write(to: URL(fileURLWithPath: weights))

        let configPath = copy + "/config.json"
        var config = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: configPath)))
                                   as? [String: Any])
        var preprocessing = try XCTUnwrap(config["preprocessing"] as? [String: Any])
        preprocessing["cropSize"] = 4096
        preprocessing["resizeSize"] = 4600
        config["preprocessing"] = preprocessing
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        let huge = try server.request("POST", route + ":reload")
        XCTAssertEqual(huge.status, 422, huge.text)
        XCTAssertTrue(huge.text.contains("--max-batch-size 64"), huge.text)

        let after = try server.request("POST", route + ":predict", body: photo, headers: ["Content-Type": "image/jpeg"])
        XCTAssertEqual(after.status, 200, after.text)
        XCTAssertEqual(after.json["version"] as? Int, 4)
        XCTAssertTrue(server.log.contains("reloading t\u{EF}ny failed"), server.log)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }
}

/// `--max-body-bytes` on the wire: a body over it gets 413 and is not read to the end. URLSession always
/// sends the whole body, so these tests speak HTTP over a plain socket, send the head and only the
/// start of the body, and then read.
extension ServeTests {
    /// A server that takes bodies of up to 100,000 bytes.
    func smallBodyServer() throws -> ServerProcess {
        _ = try liveServer()
        return try ServerProcess([Self.runDirectory, "--max-body-bytes", "100000"])
    }

    /// The head of a raw `POST /v1/models/tiny:predict` of JPEG bytes, its length given by `framing`
    /// (`Content-Length: N` or `Transfer-Encoding: chunked`).
    func predictHead(_ framing: String) -> String {
        "POST /v1/models/tiny:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n\(framing)\r\n\r\n"
    }

    func assertTooLargeAndClosed(_ connection: RawConnection, sentBytes: Int, line: UInt = #line) {
        // The answer comes although most of the body was never sent...
        guard let answer = connection.response(within: 5) else {
            return XCTFail("no response within 5 s after \(sentBytes) bytes of the body", line: line)
        }
        assertError(answer, 413, mentions: "--max-body-bytes", line: line)
        XCTAssertEqual(answer.headers["connection"], "close", line: line)
        // ...and the server does not wait for the rest: it closes the connection.
        XCTAssertTrue(connection.closes(within: 5),
                      "the connection is still open 5 s after the 413: the server waits to read the rest of the body", line: line)
    }

    /// Content-Length over the limit: 413 at once, from the head, after the first 16 KB of 25 MB.
    func testOverLimitContentLengthGets413WithoutTheRestOfTheBody() throws {
        let server = try smallBodyServer()
        let port = try XCTUnwrap(URL(string: server.base)?.port)
        let connection = try RawConnection(port: port)
        connection.send(predictHead("Content-Length: 25000000"))
        connection.send([UInt8](repeating: 0xFF, count: 16_384))
        assertTooLargeAndClosed(connection, sentBytes: 16_384)
        try assertGoodRequest(server, after: "a 25 MB Content-Length sent in part")
        // The raw connection itself sees answers as they are: a body within the limit, sent the same way, gets its 200.
        let photo = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Self.photos[3])))
        let good = try RawConnection(port: port)
        good.send(predictHead("Content-Length: \(photo.count)"))
        good.send(photo)
        let answer = try XCTUnwrap(good.response(within: 30))
        XCTAssertEqual(answer.status, 200, answer.text)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// A client that sends the whole of an over-limit body before it reads (Python's `http.client`,
    /// `urllib` and `requests` do) got "connection reset by peer" instead of the 413: the server closed the connection
    /// with the rest of the body unread, and the kernel answered what kept coming with a reset. The rest
    /// is read and dropped now (nginx's lingering close): the whole body goes out, the 413 comes back,
    /// and the connection closes once the body has ended.
    func testAClientThatSendsTheWholeOverLimitBodyBeforeReadingGetsThe413() throws {
        let server = try smallBodyServer()
        let port = try XCTUnwrap(URL(string: server.base)?.port)
        // "close": a request that says `Connection: close`, as urllib's do; Hummingbird stopped reading its
        // connection after the answer, so the first version of the fix still reset it.
        for framing in ["length", "chunked", "close"] {
            let connection = try RawConnection(port: port)
            let body = [UInt8](repeating: 0xFF, count: 20_000_000)
            if framing != "chunked" {
                connection.send(predictHead("Content-Length: \(body.count)" + (framing == "close" ? "\r\nConnection: close" : "")))
                XCTAssertTrue(connection.send(body), "the server reset the connection while the \(framing) body was being sent")
            } else {
                connection.send(predictHead("Transfer-Encoding: chunked"))
                let chunk = Array(body.prefix(1 << 20))
                for _ in 0..<20 {
                    XCTAssertTrue(connection.send(Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + [13, 10]),
                                  "the server reset the connection while the chunks were being sent")
                }
                connection.send("0\r\n\r\n")
            }
            let answer = try XCTUnwrap(connection.response(within: 10), "no 413 after the whole \(framing) body was sent")
            assertError(answer, 413, mentions: "--max-body-bytes")
            XCTAssertTrue(connection.closes(within: 5), "the connection stays open after the body has ended")
        }
        try assertGoodRequest(server, after: "whole bodies over the limit")
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// A chunked body (no Content-Length): 413 as soon as the chunks cross the limit, with the body
    /// never finished.
    func testOverLimitChunkedBodyGets413AsSoonAsItCrossesTheLimit() throws {
        let server = try smallBodyServer()
        let port = try XCTUnwrap(URL(string: server.base)?.port)
        let connection = try RawConnection(port: port)
        connection.send(predictHead("Transfer-Encoding: chunked"))
        let chunk = [UInt8](repeating: 0xFF, count: 16_384)
        var sent = 0
        while sent <= 100_000 + chunk.count {  // a little over the limit, and no last chunk
            guard connection.send(Array("\(String(chunk.count, radix: 16))\r\n".utf8) + chunk + [13, 10]) else { break }
            sent += chunk.count
        }
        assertTooLargeAndClosed(connection, sentBytes: sent)
        try assertGoodRequest(server, after: "a chunked body over the limit")
        XCTAssertEqual(server.terminate(), 0, server.log)
    }
}
