import Foundation
import TestSupport
import Torch
@testable import Training
import XCTest

/// `DataParallel.allSucceed` across two processes: a step that throws on one rank throws on every rank,
/// the failed one with its own error and the other naming it, and the group goes on working after.
final class DistributedOutcomeTests: XCTestCase {
    static let portVariable = "FINETUNE_TEST_OUTCOME_PORT"

    struct Refused: Error, CustomStringConvertible {
        var description: String { "refused by rank 1" }
    }

    /// One rank's part: a step that succeeds everywhere, one that fails on rank 1, then a sum.
    static func run(rank: Int, port: Int) throws {
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: rank == 0, timeout: 30)
        let parallel = DataParallel(group: try ProcessGroup(store: store, rank: rank, worldSize: 2, timeout: 30))
        XCTAssertEqual(try parallel.allSucceed("the first step") { rank * 10 }, rank * 10)
        XCTAssertThrowsError(try parallel.allSucceed("the second step") { () -> Int in
            if rank == 1 { throw Refused() }
            return 1
        }) { error in
            if rank == 1 {
                XCTAssertTrue(error is Refused, "\(error)")
            } else {
                XCTAssertEqual(error as? DistributedError, .rankFailed("the second step failed on rank 1 (its own message says "
                                                                         + "why); rank 0 stops too"))
            }
        }
        XCTAssertEqual(try parallel.sum([1.0]), [2.0], "the group still works")
    }

    /// Rank 1, run in a child process; a no-op otherwise.
    func testPeerRole() throws {
        guard let text = ProcessInfo.processInfo.environment[Self.portVariable], let port = Int(text) else { return }
        try Self.run(rank: 1, port: port)
    }

    func testAStepThatFailsOnOneRankFailsOnEveryRankNamingIt() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let port = try FreePort.make()
        let peer = try PeerTest("TrainingTests.DistributedOutcomeTests/testPeerRole", environment: [Self.portVariable: String(port)])
        try Self.run(rank: 0, port: port)
        peer.assertPassed()
    }
}
