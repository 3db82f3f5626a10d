import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Serving
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

        let process = Process()
        process.executableURL = ServerProcess.binary
        process.arguments = ["serve", "--arch", "mobilenet_v2", "--port", "\(port)", "--threads", "1"]
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 1, text)
        XCTAssertTrue(text.contains("--port \(port): 127.0.0.1:\(port) is already in use"), text)
    }
}
