import Foundation
import TestSupport
@testable import Torch
import XCTest

/// c10d through the shim: two processes on loopback (this test and a second copy of the test binary
/// running `testPeerRole` as rank 1), and the errors that must come in seconds rather than hang.
final class ProcessGroupTests: XCTestCase {
    static let portVariable = "FINETUNE_TEST_PG_PORT"

    override func setUpWithError() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
    }

    /// The collectives every rank runs; rank r contributes r + 1. Checks the results itself.
    static func exercise(_ group: ProcessGroup) throws {
        let r = Float(group.rank)
        let a = try Tensor([r + 1, 10 * (r + 1)])
        let b = try Tensor([Float](repeating: r + 1, count: 6), shape: [2, 3])
        try group.allReduceSum([a, b])  // two tensors: one flat buffer
        XCTAssertEqual(try a.toArray(Float.self), [3, 30])
        XCTAssertEqual(try b.toArray(Float.self), [Float](repeating: 3, count: 6))
        let single = try Tensor([Double(group.rank) * 2 + 1])
        try group.allReduceSum([single])
        XCTAssertEqual(try single.toArray(Double.self), [4])

        let c = try Tensor([r, r, r])
        try group.broadcast([c], from: 1)
        XCTAssertEqual(try c.toArray(Float.self), [1, 1, 1])

        let gathered = try group.allGather(try Tensor([Int64(group.rank) * 7, 5]))
        XCTAssertEqual(gathered.shape, [2, 2])
        XCTAssertEqual(try gathered.toArray(Int64.self), [0, 5, 7, 5])
        try group.barrier()
    }

    /// Rank 1 of `testCollectivesAcrossTwoProcesses`, run in a child process; a no-op otherwise.
    func testPeerRole() throws {
        guard let text = ProcessInfo.processInfo.environment[Self.portVariable], let port = Int(text) else { return }
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: false, timeout: 30)
        let group = try ProcessGroup(store: store, rank: 1, worldSize: 2, timeout: 30)
        try Self.exercise(group)
    }

    func testCollectivesAcrossTwoProcesses() throws {
        let port = try FreePort.make()
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 30)
        let peer = try PeerTest("TorchTests.ProcessGroupTests/testPeerRole", environment: [Self.portVariable: String(port)])
        let group = try ProcessGroup(store: store, rank: 0, worldSize: 2, timeout: 30)
        XCTAssertEqual(group.rank, 0)
        XCTAssertEqual(group.worldSize, 2)
        try Self.exercise(group)
        peer.assertPassed()
    }

    func testAPeerThatNeverComesIsAnErrorWithinTheTimeout() throws {
        let port = try FreePort.make()
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 2)
        let started = Date()
        XCTAssertThrowsError(try ProcessGroup(store: store, rank: 0, worldSize: 2, timeout: 2)) { error in
            XCTAssertFalse("\(error)".isEmpty)
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
    }

    /// Where the build has no NCCL (every CPU build), asking for it is an error that says so, not a crash.
    func testNCCLWithoutACUDABuildIsAnError() throws {
        try XCTSkipIf(ProcessGroup.isNCCLAvailable, "this build has NCCL")
        let store = try TCPStore(host: "127.0.0.1", port: try FreePort.make(), worldSize: 1, isServer: true, timeout: 5)
        XCTAssertThrowsError(try ProcessGroup(store: store, rank: 0, worldSize: 1, timeout: 5, backend: .nccl)) {
            XCTAssertTrue("\($0)".contains("NCCL process groups are not available in this build"), "\($0)")
        }
    }

    func testUnreachableMasterAndPortInUseAreErrors() throws {
        let port = try FreePort.make()
        let started = Date()
        XCTAssertThrowsError(try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: false, timeout: 1))
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        let first = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 5)
        XCTAssertThrowsError(try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 5)) {
            XCTAssertTrue("\($0)".lowercased().contains("address already in use"), "\($0)")
        }
        XCTAssertEqual(try first.add("k", 2), 2)
        XCTAssertEqual(try first.add("k", 0), 2)
    }
}
