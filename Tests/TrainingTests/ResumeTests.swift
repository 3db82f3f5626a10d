import Data
import Foundation
import NN
import Optim
import Torch
import Training
import XCTest

/// Exact resume: a run interrupted (at an epoch boundary, mid-epoch, by Ctrl-C, or by a simulated
/// SIGKILL) and resumed from its checkpoint on a freshly built model ends with model and optimizer
/// state bit-identical to an uninterrupted run. The configuration exercises the parts that carry
/// state across steps: Adam (step counts, moments), a cosine schedule over the whole run, dropout
/// (LibTorch's generator), BatchNorm buffers, clipping, label smoothing and a shuffled loader.
final class ResumeTests: XCTestCase {
    static let epochs = 3
    static let seed: UInt64 = 42

    var optimizer = OptimizerConfig.adam(learningRate: 1e-2)
    var schedule = ScheduleConfig.cosine(etaMin: 0, periodSteps: nil)

    var configuration: TrainingConfiguration {
        TrainingConfiguration(optimizer: optimizer, schedule: schedule, labelSmoothing: 0.1, gradientClipNorm: 2)
    }

    lazy var data: LabeledDataset = try! TRData.dataset()

    func freshModel() throws -> TRTinyNet {
        Runtime.manualSeed(Self.seed)
        return try TRTinyNet()
    }

    /// The uninterrupted run.
    func reference() throws -> Trainer {
        let trainer = try Trainer(model: freshModel(), configuration: configuration)
        let result = try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                     epochs: Self.epochs)
        XCTAssertEqual(result.status, .completed)
        return trainer
    }

    /// Resumes from `directory` on a fresh model (with different random weights) and finishes the run.
    /// `workers` > 0 checks that skipping the first batches of an epoch also works with the threaded
    /// loader (whose batches are the same for any worker count).
    func resumeAndFinish(_ directory: String, callbacks: [TrainingCallback] = [], workers: Int = 0) throws -> Trainer {
        Runtime.manualSeed(999)  // the generator state must come from the checkpoint
        let trainer = try Trainer.resume(from: directory, model: TRTinyNet(), callbacks: callbacks)
        let result = try trainer.fit(train: TRData.loader(data, workers: workers),
                                     validation: TRData.loader(data, shuffle: false), epochs: Self.epochs)
        XCTAssertEqual(result.status, .completed)
        return trainer
    }

    func assertSameRun(_ a: Trainer, _ b: Trainer, file: StaticString = #filePath, line: UInt = #line) throws {
        try TRData.assertIdentical(a.model.stateDict(), b.model.stateDict(), "model", file: file, line: line)
        try TRData.assertIdentical(a.optimizer.stateDict().tensors, b.optimizer.stateDict().tensors, "optimizer",
                                   file: file, line: line)
        XCTAssertEqual(a.optimizer.stateDict().hyperparameters, b.optimizer.stateDict().hyperparameters,
                       file: file, line: line)
        XCTAssertEqual(a.state.globalStep, b.state.globalStep, file: file, line: line)
        XCTAssertEqual(a.state.history.map(\.metrics), b.state.history.map(\.metrics), "history", file: file, line: line)
        XCTAssertEqual(a.state.best, b.state.best, file: file, line: line)
    }

    func testResumeFromEpochBoundaryIsBitIdentical() throws {
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [ModelCheckpoint(directory: directory), TRStopper(afterEpoch: 0)])
        let stopped = try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                    epochs: Self.epochs)
        XCTAssertEqual(stopped.status, .stopped(reason: TrainingControl.stop.reason))
        XCTAssertEqual(stopped.epochs, 1)
        let manifest = try Checkpoint.readManifest(directory + "/last")
        XCTAssertEqual(manifest.state.epoch, 1)
        XCTAssertEqual(manifest.state.batchInEpoch, 0)
        XCTAssertEqual(manifest.state.globalStep, 6)
        XCTAssertEqual(manifest.state.loader?.seed, 7)
        XCTAssertTrue(manifest.hasRNGState)
        for file in ["model.safetensors", "optimizer.safetensors", "optimizer.json", "trainer.json", "rng.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/last/" + file), file)
        }
        try assertSameRun(reference, resumeAndFinish(directory + "/last"))
    }

    func testResumeFromMidEpochIsBitIdentical() throws {
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [ModelCheckpoint(directory: directory, everySteps: 4), TRStopper(step: 8)])
        let stopped = try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                    epochs: Self.epochs)
        XCTAssertEqual(stopped.status, .stopped(reason: "test stop at step 8"))
        let manifest = try Checkpoint.readManifest(directory + "/last")
        XCTAssertEqual(manifest.state.epoch, 1)
        XCTAssertEqual(manifest.state.batchInEpoch, 2, "two batches of epoch 2 done")
        XCTAssertEqual(manifest.state.globalStep, 8)
        XCTAssertEqual(manifest.state.accumulator.batches, 2)
        // Control: the comparison does see a difference (the stopped run is 10 steps behind).
        XCTAssertNotEqual(try TRData.snapshot(first.model.stateDict()), try TRData.snapshot(reference.model.stateDict()))
        try assertSameRun(reference, resumeAndFinish(directory + "/last", workers: 2))
    }

    /// Probe V: the checkpointer's best epoch was saved under its absolute folder, so a run resumed
    /// from another path (moved, copied, through a link) forgot it: its first epoch became "best",
    /// replacing `best/` with a worse one, and early stopping kept the last weights. It is restored
    /// wherever the run lies now.
    func testTheCheckpointersBestEpochSurvivesTheRunMoving() throws {
        let root = try TRData.temporaryDirectory(self)
        let checkpointer = ModelCheckpoint(directory: root + "/a/checkpoints")
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [checkpointer, TRStopper(afterEpoch: 1)])
        _ = try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: Self.epochs)
        let saved = try XCTUnwrap(checkpointer.tracker)
        XCTAssertNotNil(saved.best)
        try FileManager.default.moveItem(atPath: root + "/a", toPath: root + "/b")
        let moved = ModelCheckpoint(directory: root + "/b/checkpoints")
        var atStart: MetricTracker?
        let recorder = TREventRecorder { event, _ in if case .fitStart = event { atStart = moved.tracker } }
        let resumed = try Trainer.resume(from: root + "/b/checkpoints/last", model: TRTinyNet(), callbacks: [moved, recorder])
        _ = try resumed.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: Self.epochs)
        XCTAssertEqual(atStart, saved)
    }

    /// A one-cycle schedule also cycles the momentum (SGD's, Adam's β1) from the step count: a run
    /// resumed mid-cycle, mid-epoch, goes on with the momentum it would have had.
    func testResumeMidCycleWithCycledMomentumIsBitIdentical() throws {
        schedule = try ScheduleConfig(parsing: "onecycle:pct_start=0.5")
        for optimizer in [OptimizerConfig.sgd(learningRate: 0.05, momentum: 0.9), .adam(learningRate: 1e-2)] {
            self.optimizer = optimizer
            let reference = try reference()
            XCTAssertEqual(reference.optimizer.parameterGroups[0].momentum ?? 0, 0.95, accuracy: 1e-12,
                           "the last step is back at max_momentum")
            let directory = try TRData.temporaryDirectory(self)
            let first = try Trainer(model: freshModel(), configuration: configuration,
                                    callbacks: [ModelCheckpoint(directory: directory, everySteps: 4), TRStopper(step: 8)])
            _ = try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                              epochs: Self.epochs)
            XCTAssertEqual(first.optimizer.parameterGroups[0].momentum ?? 0, 0.85, accuracy: 0.01,
                           "step 8 of 18 is near the trough")
            try assertSameRun(reference, resumeAndFinish(directory + "/last"))
        }
    }

    /// What SIGKILL leaves behind is exactly the last checkpoint that was completely written (each
    /// save is an atomic directory swap): the test trains with periodic checkpoints, then abandons the
    /// trainer mid-epoch through an error (no clean-up, no final save — as if the process had been
    /// killed), and resumes from what is on disk. The history CSV written by the killed run is
    /// truncated back to the checkpoint on resume.
    func testResumeAfterSimulatedKillUsesLastCompleteCheckpoint() throws {
        struct Killed: Error {}
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let csv = directory + "/history.csv"
        let killer = TREventRecorder { event, _ in
            if case .batchEnd(let r) = event, r.step == 10 { throw Killed() }
        }
        let doomed = try Trainer(model: freshModel(), configuration: configuration,
                                 callbacks: [CSVLoggerCallback(path: csv),
                                             ModelCheckpoint(directory: directory + "/ckpt", saveBestOnly: true,
                                                             everySteps: 4),
                                             killer])
        XCTAssertThrowsError(try doomed.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                            epochs: Self.epochs)) { XCTAssertTrue($0 is Killed) }
        // The killed run logged epoch 0 (step 6); the checkpoint on disk is the periodic one at step 8.
        XCTAssertEqual(try CSVLogger(path: csv, resume: true).read().count, 1)
        let manifest = try Checkpoint.readManifest(directory + "/ckpt/last")
        XCTAssertEqual(manifest.state.globalStep, 8)
        let resumed = try resumeAndFinish(directory + "/ckpt/last", callbacks: [CSVLoggerCallback(path: csv)])
        try assertSameRun(reference, resumed)
        let rows = try CSVLogger(path: csv, resume: true).read()
        XCTAssertEqual(rows.map(\.epoch), [0, 1, 2])
        XCTAssertEqual(rows.map(\.step), [6, 12, 18])
    }

    /// Resuming from an earlier checkpoint (here `best/`, saved after epoch 0) drops what the logs
    /// recorded after it, so they read as one run.
    func testResumeFromEarlierCheckpointTruncatesLogs() throws {
        let directory = try TRData.temporaryDirectory(self)
        let csv = directory + "/history.csv", jsonl = directory + "/events.jsonl"
        let checkpoints = ModelCheckpoint(directory: directory + "/ckpt", monitor: "val_loss")
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [CSVLoggerCallback(path: csv), JSONLinesLoggerCallback(path: jsonl, everySteps: 2),
                                            checkpoints])
        let injected = [0.5, 0.9]
        first.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
        try first.fit(train: TRData.loader(data), epochs: 2)
        XCTAssertEqual(checkpoints.saves.filter { $0.kind == .best }.map(\.step), [6])
        XCTAssertEqual(try CSVLogger(path: csv, resume: true).read().map(\.step), [6, 12])

        Runtime.manualSeed(1)
        let resumed = try Trainer.resume(from: directory + "/ckpt/best", model: TRTinyNet(),
                                         callbacks: [CSVLoggerCallback(path: csv),
                                                     JSONLinesLoggerCallback(path: jsonl, everySteps: 2)])
        XCTAssertEqual(resumed.state.globalStep, 6)
        try resumed.fit(train: TRData.loader(data), epochs: 2)
        XCTAssertEqual(try CSVLogger(path: csv, resume: true).read().map(\.step), [6, 12])
        let events = try JSONLinesLogger(path: jsonl, resume: true).read()
        let trainSteps = events.filter { ($0["event"] as? String) == "train" }.compactMap { $0["step"] as? Int }
        XCTAssertEqual(trainSteps, [2, 4, 6, 8, 10, 12])
        XCTAssertEqual(events.filter { ($0["event"] as? String) == "epoch" }.count, 2)
    }

    func testHalfWrittenCheckpointIsIgnored() throws {
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [ModelCheckpoint(directory: directory), TRStopper(afterEpoch: 0)])
        try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: Self.epochs)
        let last = directory + "/last"
        let fm = FileManager.default

        // A crash while writing the next checkpoint: a temporary directory with partial files.
        let partial = last + ".tmp-" + UUID().uuidString  // the token finetune writes
        try fm.createDirectory(atPath: partial, withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: partial + "/model.safetensors"))
        XCTAssertFalse(Checkpoint.isComplete(partial))
        XCTAssertEqual(Checkpoint.locate(last), URL(fileURLWithPath: last).standardizedFileURL.path)

        // A crash between the two renames: the previous checkpoint moved aside, the new one not yet
        // in place. Reading recovers the previous one.
        let aside = last + ".old-" + UUID().uuidString
        XCTAssertEqual(rename(last, aside), 0)
        XCTAssertFalse(fm.fileExists(atPath: last))
        XCTAssertEqual(Checkpoint.locate(last), URL(fileURLWithPath: aside).standardizedFileURL.path)
        let checkpoint = try Checkpoint.read(from: last)
        XCTAssertEqual(checkpoint.manifest.state.epoch, 1)
        let resumed = try resumeAndFinish(last)
        try assertSameRun(reference, resumed)

        // The next save publishes normally and removes the leftovers.
        try resumed.saveCheckpoint(to: last)
        XCTAssertTrue(Checkpoint.isComplete(last))
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: directory).sorted(), ["best", "last"])
        XCTAssertThrowsError(try Checkpoint.read(from: directory + "/missing"))

        // What finetune did not write survives a save: a note and a folder in the replaced checkpoint
        // move into its successor; a user's `best.old-paper` and a leftover-shaped folder holding a
        // user's file are kept (all were deleted with the replaced checkpoint or as leftovers).
        try "why this one".write(toFile: last + "/NOTES.txt", atomically: true, encoding: .utf8)
        try fm.createDirectory(atPath: last + "/mine", withIntermediateDirectories: false)
        try "x".write(toFile: last + "/mine/f", atomically: true, encoding: .utf8)
        try fm.copyItem(atPath: last, toPath: last + ".old-paper-fig3")
        let shaped = last + ".old-" + UUID().uuidString
        try fm.createDirectory(atPath: shaped, withIntermediateDirectories: false)
        try "mine".write(toFile: shaped + "/draft.txt", atomically: true, encoding: .utf8)
        try resumed.saveCheckpoint(to: last)
        XCTAssertTrue(Checkpoint.isComplete(last))
        XCTAssertEqual(try String(contentsOfFile: last + "/NOTES.txt", encoding: .utf8), "why this one")
        XCTAssertEqual(try String(contentsOfFile: last + "/mine/f", encoding: .utf8), "x")
        XCTAssertTrue(fm.fileExists(atPath: last + ".old-paper-fig3/NOTES.txt"))
        XCTAssertTrue(fm.fileExists(atPath: shaped + "/draft.txt"))
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: directory).count, 4)
    }

    /// The run on a fresh model, its checkpoints in `directory`, stopped as by Ctrl-C at the first event
    /// `stopsAt` accepts: the trainer, its result, its stop flag and the events it dispatched.
    func runStopped(into directory: String, at stopsAt: @escaping (TrainingEvent) -> Bool) throws
        -> (trainer: Trainer, result: FitResult, signal: SignalStop, events: TREventRecorder) {
        var config = configuration
        config.checkpointDirectory = directory
        let signal = SignalStop(signals: [])
        let events = TREventRecorder { event, _ in if stopsAt(event) { signal.trigger(signal: SIGINT) } }
        let trainer = try Trainer(model: freshModel(), configuration: config, callbacks: [events])
        trainer.signalStop = signal
        let result = try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                     epochs: Self.epochs)
        return (trainer, result, signal, events)
    }

    func testInterruptWritesResumableCheckpoint() throws {
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let (_, result, signal, _) = try runStopped(into: directory) {
            if case .batchEnd(let r) = $0 { return r.step == 5 }
            return false
        }
        XCTAssertEqual(result.status, .interrupted(checkpoint: directory + "/last"))
        XCTAssertEqual(result.globalStep, 5)
        XCTAssertFalse(signal.isTriggered, "the trainer consumed the flag")
        let manifest = try Checkpoint.readManifest(directory + "/last")
        XCTAssertEqual(manifest.state.status, "interrupted")
        XCTAssertEqual(manifest.state.batchInEpoch, 5)
        try assertSameRun(reference, resumeAndFinish(directory + "/last"))
    }

    /// Ctrl-C during an epoch's validation stops it after its batch, and the run as after the epoch's last
    /// batch; resumed, the run validates that epoch again and ends bit-identical to the uninterrupted run.
    /// Until 2026-12-07 the validation ran to its end first (minutes for a large validation split).
    func testCtrlCDuringValidationStopsItAndResumesExactly() throws {
        let reference = try reference()
        let directory = try TRData.temporaryDirectory(self)
        let (first, result, _, events) = try runStopped(into: directory) {
            if case .validationStart(let epoch) = $0 { return epoch == 1 }
            return false
        }
        XCTAssertEqual(result.status, .interrupted(checkpoint: directory + "/last"))
        XCTAssertEqual(events.names.filter { $0 == "validation_end" }.count, 1, "epoch 2's validation was cut short")
        XCTAssertEqual(first.state.history.count, 1, "epoch 2 has no row: it is not finished")
        let manifest = try Checkpoint.readManifest(directory + "/last")
        XCTAssertEqual(manifest.state.epoch, 1)
        XCTAssertEqual(manifest.state.batchInEpoch, try TRData.loader(data).batchesPerEpoch, "after the epoch's last batch")
        try assertSameRun(reference, resumeAndFinish(directory + "/last"))
    }

    func testMidEpochResumeWithDifferentLoaderIsRefused() throws {
        let directory = try TRData.temporaryDirectory(self)
        let first = try Trainer(model: freshModel(), configuration: configuration,
                                callbacks: [ModelCheckpoint(directory: directory, everySteps: 3), TRStopper(step: 3)])
        try first.fit(train: TRData.loader(data), epochs: 2)
        let resumed = try Trainer.resume(from: directory + "/last", model: TRTinyNet())
        XCTAssertThrowsError(try resumed.fit(train: TRData.loader(data, seed: 8), epochs: 2)) { error in
            guard case TrainingError.resumeMismatch = error else { return XCTFail("\(error)") }
        }
        // A model of another shape is refused with the load report.
        XCTAssertThrowsError(try Trainer.resume(from: directory + "/last", model: TRTinyNet(classes: 4)))
    }
}
