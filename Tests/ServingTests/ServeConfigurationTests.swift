import Foundation
#if canImport(Glibc)
import Glibc
#endif
@testable import Serving
import TestSupport
import Torch
import Training
import XCTest

/// `ServeConfiguration.validate` names the flag of every value it refuses. A huge request timeout or
/// batch delay passed it (only NaN and infinity were refused) and then crashed the server at its
/// first request: the timer's nanoseconds overflowed `UInt64` (above about 1.8e13 ms) and
/// `NSCondition.wait(until:)` trapped on a date far in the future.
final class ServeConfigurationTests: XCTestCase {
    func problem(_ change: (inout ServeConfiguration) -> Void) -> String? {
        var configuration = ServeConfiguration(models: [.init(name: "m", source: .zoo(architecture: "mobilenet_v2", weights: nil))])
        change(&configuration)
        do { try configuration.validate(); return nil } catch { return "\(error)" }
    }

    func testTimeoutsAndDelaysBeyondTheirBoundsAreRefusedNamingTheFlag() {
        XCTAssertNil(problem { _ in })
        XCTAssertNil(problem { $0.requestTimeoutMilliseconds = ServeConfiguration.longestRequestTimeoutMilliseconds })
        XCTAssertNil(problem { $0.maxBatchDelayMilliseconds = ServeConfiguration.longestBatchDelayMilliseconds })
        XCTAssertNil(problem { $0.maxBatchDelayMilliseconds = 0 })
        for timeout in [1e14, 86_400_001, .infinity, .nan, 0, -1] {
            let message = problem { $0.requestTimeoutMilliseconds = timeout }
            XCTAssertTrue(message?.contains("--request-timeout-ms") == true, "\(timeout): \(message ?? "accepted")")
        }
        for delay in [1e300, 60_001, .infinity, .nan, -1] {
            let message = problem { $0.maxBatchDelayMilliseconds = delay }
            XCTAssertTrue(message?.contains("--max-batch-delay-ms") == true, "\(delay): \(message ?? "accepted")")
        }
    }

    /// A batch size beyond the bound, or one whose warm-up batch the memory cannot hold, is refused
    /// naming `--max-batch-size`: 2⁶³ − 1 crashed the server at its warm-up, 2³² failed to allocate
    /// 34 GB, 10⁸ ran for minutes.
    func testABatchSizeTheMemoryCannotHoldIsRefusedNamingTheFlag() throws {
        for size in [Int.max, 4_294_967_296, ServeConfiguration.largestBatchSize + 1, 0] {
            let message = problem { $0.maxBatchSize = size }
            XCTAssertTrue(message?.contains("--max-batch-size") == true, "\(size): \(message ?? "accepted")")
        }
        var configuration = ServeConfiguration(models: [.init(name: "m", source: .zoo(architecture: "mobilenet_v2", weights: nil))])
        configuration.maxBatchSize = ServeConfiguration.largestBatchSize  // 65,536 images of 224 px: about 160 GB
        XCTAssertThrowsError(try PredictionServer(configuration: configuration, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("--max-batch-size 65536"), "\(error)")
        }
        // 2,048 images of 224 px fit the input pipeline on most machines, and their forward pass
        // (MobileNetV2's largest output, 96 × 112 × 112, three times over: about 30 GB) on none of
        // these: the warm-up asked LibTorch for it.
        configuration.maxBatchSize = 2048
        XCTAssertThrowsError(try PredictionServer(configuration: configuration, log: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("--max-batch-size 2048"), "\(error)")
        }
        configuration.maxBatchSize = 32
        XCTAssertNoThrow(try PredictionServer(configuration: configuration, log: { _ in }))
    }

    /// `--decode-workers` is bounded as `--workers` and `--threads` are, and an input pipeline its
    /// workers' images do not fit names it too: 10⁶ passed the check and was refused at load as a
    /// problem of `--max-batch-size`, which the user had not given.
    func testDecodeWorkersAreBoundedAndNamedWhenTheirImagesDoNotFit() throws {
        for workers in [0, -1, 1_000_000, Int.max] {
            let message = problem { $0.decodeWorkers = workers }
            XCTAssertTrue(message?.contains("--decode-workers") == true, "\(workers): \(message ?? "accepted")")
        }
        XCTAssertNil(problem { $0.decodeWorkers = Runtime.maxThreads })
        // Each worker keeps a resized image (3 bytes and 3 floats a pixel: about 1 MB at 256 px); in
        // 64 MB of memory, 8 workers and a batch of one fit, 64 workers do not.
        let predictor = try Predictor(architecture: "mobilenet_v2", weights: nil)
        XCTAssertNoThrow(try ServedModel.checkMemory(predictor, name: "m", batchSize: 1, workers: 8, memory: 64_000_000))
        XCTAssertThrowsError(try ServedModel.checkMemory(predictor, name: "m", batchSize: 1, workers: 64, memory: 64_000_000)) { error in
            XCTAssertTrue("\(error)".contains("--max-batch-size 1 with --decode-workers 64"), "\(error)")
        }
    }

    /// `--request-timeout-ms` covers the upload: a body that stalls gets 408 at the timeout and the
    /// connection closes (it waited for the client, however long). A client that hangs up before its
    /// body arrived is counted as 499, not as a server error (it was a 500). The server keeps serving.
    func testAStalledUploadGets408AndAnAbortedOneIsNotA500() throws {
        let server = try ServerProcess(["--arch", "mobilenet_v2", "--weights", "none", "--request-timeout-ms", "1000"])
        let port = try XCTUnwrap(URL(string: server.base)?.port)
        let head = "POST /v1/models/mobilenet_v2:predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            + "Content-Length: 1000\r\n\r\n0123456789"
        let stalled = try RawConnection(port: port)
        stalled.send(head)
        let started = Date()
        let answer = try XCTUnwrap(stalled.response(within: 10), server.log)
        XCTAssertEqual(answer.status, 408, answer.text)
        XCTAssertTrue(answer.text.contains("--request-timeout-ms"), answer.text)
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(stalled.read(within: 5), .closed)

        do {
            let aborted = try RawConnection(port: port)
            aborted.send(head)
            Thread.sleep(forTimeInterval: 0.2)
        }  // closed here
        Thread.sleep(forTimeInterval: 0.5)
        let photo = try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/rgb.png")))
        XCTAssertEqual(try server.request("POST", "/v1/models/mobilenet_v2:predict", body: photo).status, 200, server.log)
        let metrics = try server.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains(#"finetune_requests_total{model="mobilenet_v2",status="408"} 1"#), metrics)
        XCTAssertTrue(metrics.contains(#"finetune_requests_total{model="mobilenet_v2",status="499"} 1"#), metrics)
        XCTAssertFalse(metrics.contains(#"status="500""#), metrics)

        // A connection that sends nothing, or half a request line, or stays open after its answer, is
        // closed after the timeout: they were kept open for good, and a client holding enough of them
        // used up the server's descriptors (it then answered nothing).
        let idle = try RawConnection(port: port), partial = try RawConnection(port: port)
        partial.send("GET /healthz HT")
        let kept = try RawConnection(port: port)
        kept.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(try XCTUnwrap(kept.response(within: 5)).status, 200)
        for connection in [idle, partial, kept] { XCTAssertEqual(connection.read(within: 5), .closed) }
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// A request for a model that is not served is counted under `model="(unknown)"`: it was
    /// `"unknown"`, and a model served under that name had another model's failures in its counts.
    func testRequestsForAModelNotServedHaveALabelNoModelCanHave() throws {
        let server = try ServerProcess(["--arch", "mobilenet_v2", "--weights", "none", "--name", "unknown"])
        let photo = try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/rgb.png")))
        let missing = try server.request("POST", "/v1/models/resnet50:predict", body: photo,
                                         headers: ["Content-Type": "image/png"])
        XCTAssertEqual(missing.status, 404, missing.text)
        let served = try server.request("POST", "/v1/models/unknown:predict", body: photo, headers: ["Content-Type": "image/png"])
        XCTAssertEqual(served.status, 200, served.text)
        let metrics = try server.request("GET", "/metrics").text
        XCTAssertTrue(metrics.contains(#"finetune_requests_total{model="(unknown)",status="404"} 1"#), metrics)
        XCTAssertTrue(metrics.contains(#"finetune_requests_total{model="unknown",status="200"} 1"#), metrics)
        XCTAssertFalse(metrics.contains(#"finetune_requests_total{model="unknown",status="404"}"#), metrics)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// Probe W: a client that sends `Expect: 100-continue` (curl, for any body over 1 MB) waits for
    /// `100 Continue` before it sends the body; it got none, and curl waited a second per upload. It
    /// comes at once now, then the answer; a body over `--max-body-bytes` gets its 413 instead.
    func testExpectContinueIsAnsweredBeforeTheBodyIsSent() throws {
        let server = try ServerProcess(["--arch", "mobilenet_v2", "--weights", "none", "--max-body-bytes", "100000"])
        let port = try XCTUnwrap(URL(string: server.base)?.port)
        let photo = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("images/rgb.png"))))
        let connection = try RawConnection(port: port)
        connection.send("POST /v1/models/mobilenet_v2:predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            + "Content-Length: \(photo.count)\r\nExpect: 100-continue\r\n\r\n")
        let interim = try XCTUnwrap(connection.response(within: 5), "no 100 Continue: the server waits for the body\n" + server.log)
        XCTAssertEqual(interim.status, 100)
        connection.send(photo)
        let answer = try XCTUnwrap(connection.response(within: 30), server.log)
        XCTAssertEqual(answer.status, 200, answer.text)
        XCTAssertTrue(answer.text.contains("predictions"), answer.text)

        let large = try RawConnection(port: port)
        large.send("POST /v1/models/mobilenet_v2:predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            + "Content-Length: 200000\r\nExpect: 100-continue\r\n\r\n")
        XCTAssertEqual(try XCTUnwrap(large.response(within: 5), server.log).status, 413)
        XCTAssertEqual(server.terminate(), 0, server.log)
    }

    /// A port another process listens on is an error naming `--port` and the address (it was NIO's
    /// "bind(descriptor:ptr:bytes:): Address already in use) (errno: 98)").
    func testAPortInUseIsAnErrorNamingThePort() throws {
        #if os(Linux)
        let stream = Int32(SOCK_STREAM.rawValue)
        #else
        let stream = SOCK_STREAM
        #endif
        let listener = socket(AF_INET, stream, 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(listener, generic, length) == 0 && listen(listener, 1) == 0 && getsockname(listener, generic, &length) == 0
            }
        }
        XCTAssertTrue(bound)
        let port = Int(UInt16(bigEndian: address.sin_port))

        let (status, text) = try Self.serveUntilItStops(["--arch", "mobilenet_v2", "--port", "\(port)"])
        XCTAssertEqual(status, 1, text)
        XCTAssertTrue(text.contains("--port \(port): 127.0.0.1:\(port) is already in use"), text)
    }

    /// `finetune serve arguments` (one thread) run until it exits: its exit status and standard error.
    static func serveUntilItStops(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = ServerProcess.binary
        process.arguments = ["serve"] + arguments + ["--threads", "1"]
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, text)
    }

    /// A host name that does not resolve names `--host` (probe AG: NIO's "SocketAddressError.UnknownHost:
    /// Name or service not known (error -2) …"). `.invalid` never resolves (RFC 6761).
    func testAHostNameThatDoesNotResolveIsAnErrorNamingTheFlag() throws {
        let (status, text) = try Self.serveUntilItStops(["--arch", "mobilenet_v2", "--weights", "none",
                                                         "--host", "no-such-host.invalid", "--port", "0"])
        XCTAssertEqual(status, 1, text)
        XCTAssertTrue(text.contains("Error: --host no-such-host.invalid: no address of that name"), text)
    }

    /// A default top_k of 0 or less is refused (probe AC): every request without `?top_k` got a 500.
    func testADefaultTopKBelowOneIsRefused() {
        XCTAssertEqual(problem { $0.defaultTopK = 0 }, "the default top_k must be at least 1, got 0")
        XCTAssertNotNil(problem { $0.defaultTopK = -3 })
        XCTAssertNil(problem { $0.defaultTopK = 1 })
    }
}
