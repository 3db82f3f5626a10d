import Data
import Foundation
import NN
import TensorIO
import Torch
import Training
import Vision
import XCTest

/// A whole run through the library, without the binary: create, interrupt, resume, evaluate.
final class TrainingRunTests: XCTestCase {
    /// root/train/<class>/*.png (6 each) and root/test/<class>/*.png (2 each), 24×24 colour images.
    func makeData() throws -> String {
        let root = try TRData.temporaryDirectory(self) + "/data"
        var state: UInt32 = 7
        for (split, count) in [("train", 6), ("test", 2)] {
            for (c, name) in ["blue", "green", "red"].enumerated() {
                let folder = "\(root)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    var rgb: [UInt8] = []
                    for _ in 0..<(24 * 24) {
                        for channel in 0..<3 {
                            state = state &* 1_664_525 &+ 1_013_904_223
                            rgb.append((channel == 2 - c ? 180 : 0) &+ UInt8(state >> 27))
                        }
                    }
                    try Image(rgb: rgb, width: 24, height: 24).pngData().write(to: URL(fileURLWithPath: "\(folder)/\(i).png"))
                }
            }
        }
        return root
    }

    /// 3 epochs of SGD (cosine) on `data` into `out`, or `epochs` with early stopping after `patience`.
    func specification(data: String, out: String, epochs: Int = 3, patience: Int? = nil) -> TrainingRun.Specification {
        var spec = TrainingRun.Specification(data: data, architecture: "mobilenet_v2", weights: nil, runDirectory: out)
        spec.recipe.optimizer = .sgd
        spec.recipe.learningRate = 0.01
        spec.recipe.schedule = .cosine(etaMin: 0, periodSteps: nil)
        spec.options = TrainOptions(epochs: epochs, batchSize: 4, augment: .standard, valSplit: 0.25, seed: 3, workers: 0,
                                    earlyStoppingPatience: patience, inputSize: 32)
        return spec
    }

    /// Resumes the run at `path` to the end of its 3 epochs and checks that its weights equal those of
    /// the uninterrupted run at `reference`, bit for bit.
    @discardableResult
    func resumeToTheEnd(_ path: String, equalling reference: String,
                        notify: @escaping (TrainingRun.Notice) -> Void = { _ in }) throws -> TrainingRunSummary {
        let resumed = try TrainingRun.resume(path, notify: notify)
        resumed.signalStop = SignalStop(signals: [])
        let summary = try resumed.run()
        XCTAssertEqual(summary.status, "completed")
        XCTAssertEqual(summary.epochs, 3)
        try TRData.assertIdentical(try SafeTensors.load(reference + "/model.safetensors"),
                                   try SafeTensors.load(path + "/model.safetensors"), "resumed run")
        return summary
    }

    /// Creates the run of `spec` and trains it to the end, without interruption (the reference a
    /// resumed run is compared with).
    func trainStraight(_ spec: TrainingRun.Specification, file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try TrainingRun.create(spec, notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try run.run().status, "completed", file: file, line: line)
    }

    /// A fresh run folder trained to the end of its one epoch.
    func completedOneEpochRun() throws -> String {
        let out = try TRData.temporaryDirectory(self) + "/run"
        var spec = specification(data: try makeData(), out: out)
        spec.options.epochs = 1
        try trainStraight(spec)
        return out
    }

    /// A fresh folder holding run `a`, trained to the end, and run `b`, the same run interrupted after
    /// `step` optimizer steps (its lock released).
    func straightAndInterruptedRuns(afterStep step: Int) throws -> String {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        try trainStraight(specification(data: data, out: runs + "/a"))
        let first = try TrainingRun.create(specification(data: data, out: runs + "/b"), notify: { _ in })
        XCTAssertEqual(try runInterrupted(first, afterStep: step).status, "interrupted")
        first.release()
        return runs
    }

    /// Interrupts (as Ctrl-C would) after `step` optimizer steps.
    final class Interrupter: TrainingCallback {
        let step: Int
        let stop: SignalStop
        init(step: Int, stop: SignalStop) { self.step = step; self.stop = stop }
        func handle(_ event: TrainingEvent, trainer: Trainer) throws {
            if case .batchEnd(let r) = event, r.step == step { stop.trigger() }
        }
    }

    /// Runs `run` until `step` optimizer steps are done, then interrupts it as Ctrl-C would.
    func runInterrupted(_ run: TrainingRun, afterStep step: Int) throws -> TrainingRunSummary {
        let stop = SignalStop(signals: [])
        run.signalStop = stop
        run.extraCallbacks = [Interrupter(step: step, stop: stop)]
        return try run.run()
    }

    func testARunInterruptedAndResumedThroughTheLibraryEqualsAnUninterruptedOne() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var notices: [String] = []
        let quiet: (TrainingRun.Notice) -> Void = { if case .info(let t) = $0 { notices.append(t) } }

        let straight = try TrainingRun.create(specification(data: data, out: runs + "/a"), notify: quiet)
        straight.signalStop = SignalStop(signals: [])
        let a = try straight.run()
        XCTAssertEqual(a.status, "completed")
        XCTAssertEqual(a.epochs, 3)
        XCTAssertEqual(a.trainSamples, 12)
        XCTAssertEqual(a.validationSamples, 6)
        XCTAssertEqual(a.testSamples, 6)
        XCTAssertNotNil(a.testReport)

        let first = try TrainingRun.create(specification(data: data, out: runs + "/b"), notify: quiet)
        let interrupted = try runInterrupted(first, afterStep: 5)  // mid-epoch 2 (3 steps per epoch)
        XCTAssertEqual(interrupted.status, "interrupted")
        XCTAssertTrue(interrupted.interruptionNotice()?.hasSuffix("`finetune train --resume \(runs)/b`") == true)
        // A data-parallel run's hint names its process count (resuming with one process is refused).
        XCTAssertTrue(interrupted.interruptionNotice(processes: 2)?.hasSuffix("--resume \(runs)/b --nproc-per-node 2`") == true)
        XCTAssertEqual(try RunDirectory(runs + "/b").readConfig().status, "interrupted")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs + "/b/model.safetensors"))

        let b = try resumeToTheEnd(runs + "/b", equalling: runs + "/a", notify: quiet)
        XCTAssertEqual(a.testReport?.accuracy, b.testReport?.accuracy)

        // The run directory evaluates through the library too.
        let directory = RunDirectory(runs + "/b")
        let config = try directory.readConfig()
        XCTAssertEqual(config.status, "completed")
        let model = try directory.loadModel(config)
        let test = try ImageFolderDataset(root: data + "/test", classNames: config.classNames)
        let evaluation = try Trainer(model: model, configuration: TrainingConfiguration())
            .evaluate(try DataLoader(test, batchSize: 4, transform: EvaluationTransform(config.preprocessing), workers: 0))
        XCTAssertEqual(evaluation.accuracy, b.testReport?.accuracy)
        XCTAssertTrue(notices.contains { $0.hasPrefix("Resuming \(directory.path)") }, "\(notices)")

        // The summary's JSON keeps the command line's keys.
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: JSONEncoder().encode(b)) as? [String: Any])
        for key in ["run_dir", "architecture", "weights", "classes", "status", "stop_reason", "epochs", "global_step",
                    "train_samples", "validation_samples", "test_samples", "final_metrics", "monitor", "best_value",
                    "best_epoch", "model_weights", "model_epoch", "test_accuracy", "test_loss", "validation_accuracy",
                    "seconds"] {
            XCTAssertNotNil(json[key], "missing \(key)")
        }
    }

    /// A run directory written before this version (no `threads`, `onBadImage` or `exif` options,
    /// no lock file) still resumes, evaluates and loads.
    /// Runs created and trained on other threads at once (a Swift task group sweeping settings) each
    /// end with the weights of the same run trained alone: the process trains one at a time. Until
    /// 2026-12-07 they shared LibTorch's generator as they went, and three runs of one specification
    /// ended with three different training losses, none of them that of the run alone.
    func testRunsOnOtherThreadsTrainOneAtATimeAsEachWouldAlone() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func spec(_ name: String) -> TrainingRun.Specification {
            var spec = specification(data: data, out: runs + "/" + name)
            spec.options.epochs = 1
            spec.options.workers = 1
            return spec
        }
        try trainStraight(spec("alone"))
        final class Notices: @unchecked Sendable {
            let lock = NSLock()
            var texts: [String] = []
            var errors: [String] = []
        }
        let notices = Notices()
        let group = DispatchGroup()
        for index in 0..<3 {
            let threadSpec = spec("thread\(index)")
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let run = try TrainingRun.create(threadSpec, notify: { notice in
                        if case .info(let text) = notice { notices.lock.withLock { notices.texts.append(text) } }
                    })
                    run.signalStop = SignalStop(signals: [])
                    _ = try run.run()
                } catch {
                    notices.lock.withLock { notices.errors.append("\(error)") }
                }
            }
        }
        group.wait()
        XCTAssertEqual(notices.errors, [])
        let alone = try SafeTensors.load(runs + "/alone/model.safetensors")
        for index in 0..<3 {
            try TRData.assertIdentical(alone, try SafeTensors.load(runs + "/thread\(index)/model.safetensors"), "thread \(index)")
        }
        XCTAssertTrue(notices.texts.contains { $0.hasPrefix("waiting for another run in this process") }, "\(notices.texts)")
    }

    /// Asking an interrupted run for its model says that the run has not finished and how to finish it.
    /// Until 2026-12-07 it said the folder "is not a finetune run directory", also of a run that another
    /// process was training.
    func testAnUnfinishedRunSaysSoWhenItsModelIsAskedFor() throws {
        let out = try TRData.temporaryDirectory(self) + "/run"
        let run = try TrainingRun.create(specification(data: try makeData(), out: out), notify: { _ in })
        XCTAssertEqual(try runInterrupted(run, afterStep: 2).status, "interrupted")
        let directory = RunDirectory(out)
        XCTAssertThrowsError(try directory.loadModel(try directory.readConfig())) { error in
            let message = "\(error)"
            XCTAssertFalse(message.contains("is not a finetune run directory"), message)
            XCTAssertTrue(message.hasPrefix("\(out) is a run that has not finished training (status interrupted)"), message)
            XCTAssertTrue(message.contains("resume it with `finetune train --resume \(out)` (`--epochs N` ends it sooner"), message)
            XCTAssertTrue(message.hasSuffix(", or use its checkpoints/last, epoch 1, batch 2 (`--checkpoint last`)"), message)
        }
    }

    /// A run's checkpoints serve as its weights (`RunWeights`, `--checkpoint best|last`): while it trains,
    /// after Ctrl-C, or to compare its best epoch with its final weights. Until 2026-12-07 only the final
    /// weights could be evaluated, predicted with or exported, so a run stopped early had none. A run
    /// that keeps an EMA uses its checkpoints' EMA weights, as its final weights are the EMA's.
    func testACheckpointsWeightsServeAsTheRunsModel() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        let run = try TrainingRun.create(specification(data: data, out: runs + "/stopped"), notify: { _ in })
        XCTAssertEqual(try runInterrupted(run, afterStep: 5).status, "interrupted")  // in epoch 2 (3 steps each)
        let stopped = RunDirectory(runs + "/stopped")
        let config = try stopped.readConfig()
        for (which, expected) in [(RunWeights.best, "checkpoints/best, epoch 1"), (.last, "checkpoints/last, epoch 2, batch 2")] {
            let (file, description) = try stopped.weightsFile(which)
            XCTAssertEqual(description, expected)
            XCTAssertEqual(file, stopped.checkpoints + "/\(which.rawValue)/model.safetensors")
            try TRData.assertIdentical(try stopped.loadModel(config, from: which).model.stateDict(), try SafeTensors.load(file),
                                       which.rawValue)
        }
        XCTAssertNotEqual(try SafeTensors.load(stopped.weightsFile(.best).file)["classifier.1.weight"]?.toArray(Float.self),
                          try SafeTensors.load(stopped.weightsFile(.last).file)["classifier.1.weight"]?.toArray(Float.self))
        XCTAssertThrowsError(try stopped.loadModel(config, from: .final)) { error in
            XCTAssertTrue("\(error)".hasSuffix(", or use its checkpoints/best, epoch 1 (`--checkpoint best`)"), "\(error)")
        }

        var spec = specification(data: data, out: runs + "/averaged")
        spec.options.epochs = 1
        spec.recipe.emaDecay = 0.9
        let averaged = try TrainingRun.create(spec, notify: { _ in })
        averaged.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try averaged.run().status, "completed")
        let directory = RunDirectory(runs + "/averaged")
        let (file, description) = try directory.weightsFile(.last)
        XCTAssertEqual(description, "checkpoints/last, epoch 1, EMA weights")
        XCTAssertEqual(file, directory.checkpoints + "/last/ema.safetensors")
        // The final weights are the EMA's: the last checkpoint's EMA weights are the same.
        try TRData.assertIdentical(try directory.loadModel(directory.readConfig(), from: .last).model.stateDict(),
                                   try SafeTensors.load(directory.model), "EMA")

        try FileManager.default.removeItem(atPath: directory.checkpoints + "/best")
        XCTAssertThrowsError(try directory.weightsFile(.best)) { error in
            XCTAssertEqual(error as? RunError, .missingCheckpoint(path: directory.path, name: "checkpoints/best",
                                                                  reason: "it does not exist"))
        }
    }

    func testARunDirectoryInTheEarlierFormatResumesAndLoads() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/old"
        var spec = specification(data: data, out: out)
        spec.options.epochs = 2
        XCTAssertEqual(try runInterrupted(TrainingRun.create(spec, notify: { _ in }), afterStep: 2).status, "interrupted")
        // Rewrite config.json as the earlier version wrote it.
        let path = out + "/config.json"
        var object = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            as? [String: Any])
        var options = try XCTUnwrap(object["options"] as? [String: Any])
        XCTAssertNotNil(options.removeValue(forKey: "threads"))
        options["onBadImage"] = nil
        options["exif"] = nil
        object["options"] = options
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        try FileManager.default.removeItem(atPath: out + "/" + RunLock.fileName)

        let resumed = try TrainingRun.resume(out, notify: { _ in })
        resumed.signalStop = SignalStop(signals: [])
        let summary = try resumed.run()
        XCTAssertEqual(summary.status, "completed")
        let config = try RunDirectory(out).readConfig()
        XCTAssertNoThrow(try RunDirectory(out).loadModel(config))
    }

    func testAFailedRunSaysSoInItsConfig() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/run"
        var spec = specification(data: data, out: out)
        spec.options.epochs = 1
        let run = try TrainingRun.create(spec, notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        final class Fail: TrainingCallback {
            func handle(_ event: TrainingEvent, trainer: Trainer) throws {
                if case .batchEnd = event { throw TrainingError.invalidConfiguration("simulated failure") }
            }
        }
        run.extraCallbacks = [Fail()]
        XCTAssertThrowsError(try run.run())
        XCTAssertEqual(try RunDirectory(out).readConfig().status, "failed")
        // The lock is released: the run can be replaced.
        spec.overwrite = true
        XCTAssertNoThrow(try TrainingRun.create(spec, notify: { _ in }).release())

        // When config.json cannot be written either (a full disk; here a folder stands in its way), the
        // run says so: config.json said "running" without a word (probe AK).
        var warnings: [String] = []
        let blocked = try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } })
        blocked.signalStop = SignalStop(signals: [])
        final class BlockConfig: TrainingCallback {
            let config: String
            init(_ config: String) { self.config = config }
            func handle(_ event: TrainingEvent, trainer: Trainer) throws {
                guard case .batchEnd = event else { return }
                try FileManager.default.removeItem(atPath: config)
                try FileManager.default.createDirectory(atPath: config + "/in-the-way", withIntermediateDirectories: true)
                throw TrainingError.invalidConfiguration("simulated failure")
            }
        }
        blocked.extraCallbacks = [BlockConfig(out + "/config.json")]
        XCTAssertThrowsError(try blocked.run())
        XCTAssertTrue(warnings.contains { $0.hasPrefix("could not record the failure in \(out)/config.json") }, "\(warnings)")
    }

    /// Early stopping across a resume: a run interrupted after its best epoch ends with the best
    /// weights, bit for bit those of the uninterrupted run (they were in memory only, so the resumed
    /// run kept its last epoch's); the checkpoint written at an epoch's end holds the patience count
    /// after that epoch (it held the count before, so a run resumed from it trained an extra epoch);
    /// and a run that early stopping ended is finished: `resume` refuses it (it trained past the stop
    /// and replaced the best weights).
    func testEarlyStoppingKeepsTheBestWeightsAcrossAResumeAndAStoppedRunIsFinished() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var spec = specification(data: data, out: runs + "/a", epochs: 6, patience: 2)
        // Best at epoch 2 (1-based); epochs 3 and 4 do not improve: stop after epoch 4.
        let injected = [1.0, 0.5, 0.6, 0.55, 0.1, 0.1]
        func inject(_ run: TrainingRun) {
            run.signalStop = run.signalStop ?? SignalStop(signals: [])
            run.trainer.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
        }
        let straight = try TrainingRun.create(spec, notify: { _ in })
        inject(straight)
        let a = try straight.run()
        XCTAssertEqual(a.status, "stopped")
        XCTAssertEqual(a.epochs, 4)
        XCTAssertEqual(a.modelWeights, "best")
        XCTAssertEqual(a.modelEpoch, 2)
        let last = try Checkpoint.readManifest(runs + "/a/checkpoints/last")
        let state = try XCTUnwrap(last.state.callbackStates["early_stopping:val_loss"])
        XCTAssertTrue(state.replacingOccurrences(of: " ", with: "").contains(#""wait":2"#), state)

        spec.runDirectory = runs + "/b"
        let first = try TrainingRun.create(spec, notify: { _ in })
        inject(first)
        XCTAssertEqual(try runInterrupted(first, afterStep: 8).status, "interrupted")  // in epoch 3, after the best epoch
        let resumed = try TrainingRun.resume(runs + "/b", notify: { _ in })
        inject(resumed)
        let b = try resumed.run()
        XCTAssertEqual(b.status, "stopped")
        XCTAssertEqual(b.modelWeights, "best")
        XCTAssertEqual(b.modelEpoch, 2)
        try TRData.assertIdentical(try SafeTensors.load(runs + "/a/model.safetensors"),
                                   try SafeTensors.load(runs + "/b/model.safetensors"), "resumed run")

        let weights = try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/a/model.safetensors"))
        XCTAssertThrowsError(try TrainingRun.resume(runs + "/a", notify: { _ in })) { error in
            XCTAssertEqual(error as? RunError, .stoppedEarly(path: RunDirectory(runs + "/a").path))
        }
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/a/model.safetensors")), weights)
    }

    /// `findLearningRate` keeps the precision `auto` resolved for the model: the run trains as one
    /// given the suggestion would. It rebuilt the configuration after the range test and dropped
    /// bf16 (the range test ran in bf16, the training in fp32, while the log said bf16).
    func testTheLearningRateFinderKeepsTheResolvedPrecision() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var spec = specification(data: data, out: runs + "/found")
        spec.recipe.precision = .auto
        spec.recipe.findLearningRate = true
        let found = try TrainingRun.create(spec, notify: { _ in })
        defer { found.release() }
        spec.runDirectory = runs + "/given"
        spec.recipe.findLearningRate = nil
        let given = try TrainingRun.create(spec, notify: { _ in })
        defer { given.release() }
        XCTAssertNotNil(found.config.learningRateFinder)
        XCTAssertEqual(found.trainer.configuration.autocastBF16, given.trainer.configuration.autocastBF16)
        XCTAssertEqual(found.trainer.configuration.autocastBF16, Precision.auto.resolved(for: given.trainer.model) == .bf16)
    }

    /// `--lr find` into a folder the run may not use is refused before the range test: the test ran
    /// (a minute on 1,000 small images, far longer on real data), and then the folder was refused.
    func testTheLearningRateFinderRunsOnlyWhenTheRunDirectoryCanBeUsed() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        try FileManager.default.createDirectory(atPath: runs + "/mine", withIntermediateDirectories: true)
        try "notes".write(toFile: runs + "/mine/notes.txt", atomically: false, encoding: .utf8)
        try "a file".write(toFile: runs + "/file", atomically: false, encoding: .utf8)
        let earlier = try TrainingRun.create(specification(data: data, out: runs + "/earlier"), notify: { _ in })
        earlier.release()
        for (out, expected) in [("mine", "is not a finetune run directory"), ("earlier", "pass --overwrite"),
                                ("file/run", "is a file, not a folder")] {
            var spec = specification(data: data, out: runs + "/" + out)
            spec.recipe.findLearningRate = true
            var notices: [String] = []
            XCTAssertThrowsError(try TrainingRun.create(spec, notify: { notices.append("\($0)") })) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(out): \(error)")
            }
            XCTAssertFalse(notices.contains { $0.contains("LR finder") }, "\(out): \(notices)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runs + "/mine"), ["notes.txt"])
        var spec = specification(data: data, out: runs + "/earlier")
        spec.recipe.findLearningRate = true
        spec.overwrite = true
        let replaced = try TrainingRun.create(spec, notify: { _ in })
        defer { replaced.release() }
        XCTAssertNotNil(replaced.config.learningRateFinder)
    }

    /// `resume` with fewer epochs than the checkpoint has trained is refused, naming the setting, and
    /// the run is left as it was. Before, the run "completed" with `epochs: 1` in its config and the
    /// weights of two epochs (the second in part).
    func testResumingWithFewerEpochsThanTrainedIsRefused() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/run"
        let first = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })
        XCTAssertEqual(try runInterrupted(first, afterStep: 5).status, "interrupted")  // epoch 1 done, epoch 2 in part
        let config = try Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))

        XCTAssertThrowsError(try TrainingRun.resume(out, changes: .init(epochs: 1), notify: { _ in })) { error in
            guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "epochs")
            XCTAssertTrue(reason.contains("fewer than the 2 epochs the checkpoint has trained (the last in part)"), reason)
        }
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/config.json")), config)
        let resumed = try TrainingRun.resume(out, changes: .init(epochs: 2), notify: { _ in })
        resumed.signalStop = SignalStop(signals: [])
        let summary = try resumed.run()
        XCTAssertEqual(summary.status, "completed")
        XCTAssertEqual(summary.epochs, 2)
        XCTAssertEqual(try RunDirectory(out).readConfig().options.epochs, 2)
    }

    /// A resumed run is `running` in config.json once the resume is accepted (it stayed `interrupted` or
    /// `completed`, so readers said "resume it" while it was being resumed). A completed run extended
    /// by a resume that has not finished keeps its older `model.safetensors`: loading it says so.
    func testAResumedRunIsRunningAndItsOlderModelIsNamedUntilItFinishes() throws {
        let out = try completedOneEpochRun()
        let directory = RunDirectory(out)
        var notices: [String] = []
        _ = try directory.loadModel(try directory.readConfig()) { notices.append("\($0)") }
        XCTAssertEqual(notices, [], "a completed run's model is its own")

        let resumed = try TrainingRun.resume(out, changes: .init(epochs: 3), notify: { _ in })
        XCTAssertEqual(try directory.readConfig().status, "running")
        // While the resume trains (it holds the lock), a reader is told which process trains the run.
        var whileTraining: [String] = []
        _ = try directory.loadModel(try directory.readConfig()) { whileTraining.append("\($0)") }
        XCTAssertTrue(whileTraining.first?.contains("(process \(getpid()) is training it)") == true, "\(whileTraining)")
        XCTAssertEqual(try runInterrupted(resumed, afterStep: resumed.trainer.state.globalStep + 1).status, "interrupted")
        resumed.release()
        let config = try directory.readConfig()
        XCTAssertEqual(config.status, "interrupted")
        _ = try directory.loadModel(config) { notices.append("\($0)") }
        XCTAssertEqual(notices.count, 1)
        XCTAssertTrue(notices.first?.contains("epoch 1, written when the run last finished; it is interrupted now") == true,
                      "\(notices)")
    }

    /// A resume refuses a bad value of config.json's naming config.json and the field: it named the
    /// flag (`--input-size: must be …`), which the user never gave.
    func testAResumeNamesConfigJSONForABadRecordedSetting() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/run"
        let first = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })
        XCTAssertEqual(try runInterrupted(first, afterStep: 1).status, "interrupted")
        first.release()
        let path = out + "/config.json"
        var json = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var options = try XCTUnwrap(json["options"] as? [String: Any])
        options["inputSize"] = -64
        json["options"] = options
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TrainingRun.resume(out, notify: { _ in })) { error in
            guard case RunError.invalidConfig(let file, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(file, path)
            XCTAssertTrue(reason.hasPrefix("options.inputSize: must be 16 to"), reason)
        }
    }

    /// A run resumed at an epoch boundary with another number of processes than it trained with takes
    /// another number of images per step: the resume says so (it was silent), once, and a resume with
    /// the same number says nothing of it. The checkpoints it writes record the new number (they kept
    /// the old one, so a later interruption mid-epoch could be resumed only with the wrong count).
    func testAResumeWithAnotherProcessCountSaysWhatChanges() throws {
        let out = try completedOneEpochRun()
        func warnings(epochs: Int) throws -> [String] {
            var seen: [String] = []
            let resumed = try TrainingRun.resume(out, changes: .init(epochs: epochs), notify: { notice in
                if case .warning(let text) = notice { seen.append(text) }
            })
            resumed.signalStop = SignalStop(signals: [])
            XCTAssertEqual(try resumed.run().status, "completed")
            resumed.release()
            return seen.filter { $0.contains("process") }
        }
        XCTAssertEqual(try warnings(epochs: 2), [])
        // As two ranks would have recorded it at the end of an epoch.
        let path = out + "/checkpoints/last/trainer.json"
        var manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            as? [String: Any])
        var state = try XCTUnwrap(manifest["state"] as? [String: Any])
        XCTAssertNil(state["worldSize"])
        state["worldSize"] = 2
        manifest["state"] = state
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(try warnings(epochs: 3), [
            "resuming with 1 process; the run trained with 2 processes, so from epoch 3 each step takes 1 × 4 = 4 images "
            + "(it took 8) and the data is split 1 way: the steps and results differ from an uninterrupted run (resume "
            + "with 2 processes to continue it exactly)"])
        // The checkpoints from here on are one process's: a later mid-epoch resume wants 1, not 2.
        let written = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            as? [String: Any])
        XCTAssertNil((written["state"] as? [String: Any])?["worldSize"], "\(written)")
        XCTAssertEqual(try warnings(epochs: 4), [])
    }
}
