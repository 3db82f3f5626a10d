import Foundation
import XCTest

/// A second copy of this test binary running one test (`Target.Class/testName`) in a child process,
/// with extra environment variables: rank 1 of a two-process collective test, whose rank 0 is the
/// calling test.
public final class PeerTest {
    private let process = Process()
    private let output = Pipe()

    /// Starts `test` (e.g. "TorchTests.ProcessGroupTests/testPeerRole") with `environment` added.
    public init(_ test: String, environment: [String: String]) throws {
        process.executableURL = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0])
        process.arguments = [test]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    /// Waits for the peer and fails the calling test unless its one test ran and passed.
    public func assertPassed(file: StaticString = #filePath, line: UInt = #line) {
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "rank 1 failed:\n\(log)", file: file, line: line)
        XCTAssertTrue(log.contains("Executed 1 test"), log, file: file, line: line)
    }
}
