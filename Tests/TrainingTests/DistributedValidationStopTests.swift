import Data
import Foundation
import TestSupport
import Torch
@testable import Training
import XCTest

/// Ctrl-C on one rank of a data-parallel run during an epoch's validation stops every rank's validation
/// after its batch (`AgreedStopBatches`), and the run as after the epoch's last batch, as in one process.
/// Until 2026-12-07 the ranks validated to the end first (minutes for a large validation split).
final class DistributedValidationStopTests: XCTestCase {
    static let portVariable = "FINETUNE_TEST_VALIDATION_STOP_PORT"
    static let directoryVariable = "FINETUNE_TEST_VALIDATION_STOP_DIRECTORY"

    /// An evaluation transform that triggers `stop` as it prepares its `at`-th image (1-based).
    final class StopAtImage: SampleTransform, @unchecked Sendable {
        let stop: SignalStop
        let at: Int?
        private var seen = 0
        private let lock = NSLock()
        init(stop: SignalStop, at: Int?) {
            self.stop = stop
            self.at = at
        }
        var decodeMinSide: Int { 0 }
        func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
            let count = lock.withLock { seen += 1; return seen }
            if count == at { stop.trigger(signal: SIGINT) }
            return try TRData.transform.tensor(from: image, random: &random)
        }
    }

    /// One rank's run: 3 epochs of 48 training images (3 batches of 8 per rank), validating 41 images
    /// in batches of 4 (shards of 21 and 20: 6 and 5 batches). Rank 1 gets the Ctrl-C as it prepares its
    /// 26th validation image, the 6th of epoch 2's validation (its second batch).
    static func run(rank: Int, port: Int, directory: String) throws -> (Trainer, FitResult, TREventRecorder) {
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: rank == 0, timeout: 30)
        let group = try ProcessGroup(store: store, rank: rank, worldSize: 2, timeout: 30)
        Runtime.manualSeed(42)
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        configuration.checkpointDirectory = directory + "/rank\(rank)"
        let events = TREventRecorder()
        let trainer = try Trainer(model: TRTinyNet(), configuration: configuration, callbacks: [events])
        trainer.distributed = DataParallel(group: group)
        let stop = SignalStop(signals: [])
        trainer.signalStop = stop
        let validation = try DataLoader(TRData.dataset(count: 41, seed: 9), batchSize: 4, shuffle: false,
                                        transform: StopAtImage(stop: stop, at: rank == 1 ? 26 : nil), workers: 0)
        let result = try trainer.fit(train: TRData.loader(TRData.dataset()), validation: validation, epochs: 3)
        return (trainer, result, events)
    }

    /// Both ranks stop in epoch 2's validation: rank 0 without a signal of its own. Epoch 1's validation,
    /// whose shards end a batch apart, counts all 41 images on both.
    static func check(_ trainer: Trainer, _ result: FitResult, _ events: TREventRecorder, directory: String) {
        XCTAssertEqual(result.status, .interrupted(checkpoint: directory + "/last"))
        XCTAssertEqual(events.names.filter { $0 == "validation_end" }.count, 1, "epoch 2's validation was cut short")
        XCTAssertEqual(trainer.state.history.count, 1, "epoch 2 has no row: it is not finished")
        XCTAssertEqual(trainer.lastValidationReport?.sampleCount, 41)
        XCTAssertEqual(trainer.state.epoch, 1)
        XCTAssertEqual(trainer.state.batchInEpoch, 3, "after the epoch's last batch")
    }

    /// Rank 1 of `testCtrlCOnOneRankDuringValidationStopsEveryRanksValidation`, run in a child process;
    /// a no-op otherwise.
    func testPeerRole() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let text = environment[Self.portVariable], let port = Int(text),
              let directory = environment[Self.directoryVariable] else { return }
        let (trainer, result, events) = try Self.run(rank: 1, port: port, directory: directory)
        Self.check(trainer, result, events, directory: directory + "/rank1")
    }

    func testCtrlCOnOneRankDuringValidationStopsEveryRanksValidation() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let directory = try TRData.temporaryDirectory(self)
        let port = try FreePort.make()
        let peer = try PeerTest("TrainingTests.DistributedValidationStopTests/testPeerRole",
                                environment: [Self.portVariable: String(port), Self.directoryVariable: directory])
        let (trainer, result, events) = try Self.run(rank: 0, port: port, directory: directory)
        Self.check(trainer, result, events, directory: directory + "/rank0")
        let manifest = try Checkpoint.readManifest(directory + "/rank0/last")
        XCTAssertEqual(manifest.state.status, "interrupted")
        XCTAssertEqual(manifest.state.epoch, 1)
        XCTAssertEqual(manifest.state.batchInEpoch, 3)
        peer.assertPassed()
    }
}
