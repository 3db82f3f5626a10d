import Foundation
import TestSupport
import Torch
import XCTest

@testable import Training

/// How a process reads its place in a data-parallel run from the launchers' variables, and joins it.
final class DistributedLaunchTests: XCTestCase {
    func testReadsTheLaunchersVariables() throws {
        XCTAssertNil(try DistributedLaunch.from(environment: [:]))
        XCTAssertNil(try DistributedLaunch.from(environment: ["RANK": "0", "WORLD_SIZE": "1"]))
        let ranked = try XCTUnwrap(DistributedLaunch.from(environment: [
            "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.7"]))
        XCTAssertEqual(ranked, DistributedLaunch(rank: 1, worldSize: 2, localRank: 1, masterAddress: "10.0.0.7",
                                                 masterPort: DistributedLaunch.defaultPort))
        let slurm = try XCTUnwrap(DistributedLaunch.from(
            environment: ["SLURM_PROCID": "3", "SLURM_NTASKS": "4", "SLURM_LOCALID": "1"], masterAddress: "node1",
            masterPort: 1234))
        XCTAssertEqual(slurm, DistributedLaunch(rank: 3, worldSize: 4, localRank: 1, masterAddress: "node1", masterPort: 1234))
        XCTAssertThrowsError(try DistributedLaunch.from(environment: ["WORLD_SIZE": "2"])) {
            XCTAssertTrue("\($0)".contains("RANK is not"), "\($0)")
        }
        XCTAssertThrowsError(try DistributedLaunch.from(environment: ["RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h"]))
    }

    /// torchrun's agent listens on MASTER_PORT itself and says so with TORCHELASTIC_USE_AGENT_STORE=True.
    func testTorchrunsAgentStoreIsJoinedByEveryRank() throws {
        let variables = ["RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29400"]
        XCTAssertFalse(try XCTUnwrap(DistributedLaunch.from(environment: variables)).launcherHostsStore)
        XCTAssertFalse(try XCTUnwrap(DistributedLaunch.from(
            environment: variables.merging(["TORCHELASTIC_USE_AGENT_STORE": "False"]) { $1 })).launcherHostsStore)
        XCTAssertTrue(try XCTUnwrap(DistributedLaunch.from(
            environment: variables.merging(["TORCHELASTIC_USE_AGENT_STORE": "True"]) { $1 })).launcherHostsStore)
        // --master-port moves the rendezvous away from the agent's store: rank 0 listens there itself.
        XCTAssertFalse(try XCTUnwrap(DistributedLaunch.from(
            environment: variables.merging(["TORCHELASTIC_USE_AGENT_STORE": "True"]) { $1 }, masterPort: 29401))
            .launcherHostsStore)
    }

    /// With the launcher's store already listening, rank 0 joins it instead of failing to listen on a
    /// port in use, and both ranks all-reduce through it.
    func testRanksMeetThroughALauncherHostedStore() throws {
        guard ProcessGroup.isGlooAvailable else { throw XCTSkip("this LibTorch build has no c10d Gloo") }
        let port = try FreePort.make()
        let agent = try TCPStore(host: "127.0.0.1", port: port, worldSize: 3, isServer: true, timeout: 30)
        final class Box: @unchecked Sendable { var sums: [Int: Result<[Double], Error>] = [:]; let lock = NSLock() }
        let box = Box()
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let result = Result { () throws -> [Double] in
                let launch = DistributedLaunch(rank: rank, worldSize: 2, localRank: rank, masterAddress: "127.0.0.1",
                                               masterPort: port, launcherHostsStore: true)
                return try launch.connect(timeout: 30).sum([Double(rank + 1), 10])
            }
            box.lock.withLock { box.sums[rank] = result }
        }
        for rank in 0..<2 { XCTAssertEqual(try box.sums[rank]?.get(), [3, 20], "rank \(rank)") }
        withExtendedLifetime(agent) {}
    }
}
