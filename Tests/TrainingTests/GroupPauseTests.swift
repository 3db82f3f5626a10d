import Foundation
@testable import Training
import XCTest

/// `GroupPause`: the byte a `--nproc-per-node` launcher shares with its workers (Ctrl-Z).
final class GroupPauseTests: XCTestCase {
    func testTheSharedByteIsReadAndOnlyTheLaunchersFileIsTaken() throws {
        let pause = try XCTUnwrap(GroupPause.makeShared())
        defer { close(pause.descriptor) }
        XCTAssertFalse(pause.isRequested)
        XCTAssertTrue(GroupPause.set(pause.descriptor, paused: true))
        XCTAssertTrue(pause.isRequested)
        let worker = try XCTUnwrap(GroupPause(environment: [GroupPause.descriptorVariable: String(pause.descriptor)]))
        XCTAssertTrue(worker.isRequested, "a worker reads the launcher's byte through the same file")
        let stop = SignalStop(signals: [])
        stop.trigger()
        worker.waitWhileRequested(unless: stop)  // returns: a stop ends the wait
        GroupPause.set(pause.descriptor, paused: false)
        XCTAssertFalse(worker.isRequested)

        // A stray FINETUNE_PAUSE_FD naming another open file (one with a name, or of another size) is no pause.
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("pause-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: path, contents: Foundation.Data([1]))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let named = open(path, O_RDONLY)
        defer { close(named) }
        XCTAssertNil(GroupPause(descriptor: named))
        XCTAssertNil(GroupPause(environment: [GroupPause.descriptorVariable: "not a number"]))
        XCTAssertNil(GroupPause(descriptor: 987))
    }
}
