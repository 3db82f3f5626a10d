import Data
import Foundation
import TensorIO
import Torch
@testable import Training
import Vision
import XCTest

extension TrainingRunTests {
    /// Ctrl-C while a head-only run computes its feature cache (minutes on a large dataset) ended the
    /// process: no checkpoint, `config.json` left "running", `--resume` refused, and a half-written
    /// cache file left in the shared cache folder. Now the computation stops after its current batch,
    /// nothing is left in the cache folder, the untrained state is the resumable checkpoint, and the
    /// resumed run ends with the uninterrupted run's weights, bit for bit.
    func testCtrlCWhileTheFeatureCacheIsComputedLeavesAResumableRun() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func spec(_ name: String) -> TrainingRun.Specification {
            var spec = specification(data: data, out: runs + "/" + name)
            spec.recipe.recipe = .headOnly
            spec.options.augment = .none
            spec.options.featureCache = .on
            spec.options.featureCacheDirectory = runs + "/features-" + name
            return spec
        }
        try trainStraight(spec("a"))

        let first = try TrainingRun.create(spec("b"), notify: { _ in })
        let stop = SignalStop(signals: [])
        stop.trigger(signal: SIGINT)  // as if Ctrl-C came during the first batch of backbone features
        first.signalStop = stop
        let interrupted = try first.run()
        XCTAssertEqual(interrupted.status, "interrupted")
        XCTAssertEqual(interrupted.globalStep, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runs + "/features-b"), [],
                       "no cache and no temporary file: the computation stopped")
        XCTAssertEqual(try RunDirectory(runs + "/b").readConfig().status, "interrupted")
        XCTAssertFalse(stop.isTriggered, "the interrupt was handled")

        try resumeToTheEnd(runs + "/b", equalling: runs + "/a")
    }

    /// Ctrl-C during `--lr find`'s range test (a minute on a thousand small images, far longer on real
    /// data), or after it but before the run directory was made, ended the process by the signal: no
    /// word, and a run directory made in that moment was left "running" with nothing to resume. The
    /// stop given to `create` is polled before every step of the range test and once more before the
    /// directory is made; either ends `create` with `TrainingError.interrupted` and nothing made. Once
    /// the run exists, the same stop is its `signalStop`.
    func testAStopDuringTheRangeTestOrBeforeTheRunExistsMakesNothing() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var spec = specification(data: data, out: runs + "/found")
        spec.recipe.findLearningRate = true
        let stop = SignalStop(signals: [])
        var notices: [String] = []
        XCTAssertThrowsError(try TrainingRun.create(spec, notify: { notice in
            notices.append("\(notice)")
            if "\(notice)".contains("LR finder: up to") { stop.trigger(signal: SIGINT) }  // as Ctrl-C at its start
        }, stop: stop)) { error in
            XCTAssertEqual("\(error)", "interrupted during the learning-rate range test")
        }
        XCTAssertFalse(notices.contains { $0.contains("suggested learning rate") }, "\(notices)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs + "/found"))

        spec.recipe.findLearningRate = nil
        XCTAssertThrowsError(try TrainingRun.create(spec, notify: { _ in }, stop: stop)) { error in
            XCTAssertEqual("\(error)", "interrupted before the run directory was made")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs + "/found"))

        let listening = SignalStop(signals: [])
        let run = try TrainingRun.create(spec, notify: { _ in }, stop: listening)
        defer { run.release() }
        XCTAssertTrue(run.signalStop === listening)
    }

    /// A run killed (SIGKILL) before its first checkpoint has nothing to resume; the error says so and
    /// how to start again, rather than that the folder is not a run directory.
    func testResumingARunKilledBeforeItsFirstCheckpointSaysHowToStartAgain() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/killed"
        let run = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })
        run.release()  // as the kernel drops a killed process's lock; config.json still says "running"
        XCTAssertThrowsError(try TrainingRun.resume(out, notify: { _ in })) { error in
            XCTAssertEqual(error as? RunError, .nothingToResume(path: out, status: "running"))
            XCTAssertTrue("\(error)".contains("--overwrite"), "\(error)")
        }
    }

    /// A run whose checkpoints/last is gone but that holds trained weights was told it "ended before
    /// its first checkpoint, so nothing was trained" and to start again with --overwrite, which
    /// deletes those weights. The error now lists what the run holds and changes nothing.
    func testAMissingLastCheckpointWithTrainedStateIsNotCalledNothingToResume() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/done"
        let run = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try run.run().status, "completed")
        run.release()
        try FileManager.default.removeItem(atPath: RunDirectory(out).lastCheckpoint)
        XCTAssertThrowsError(try TrainingRun.resume(out, notify: { _ in })) { error in
            XCTAssertEqual(error as? RunError,
                           .lastCheckpointMissing(path: out, kept: ["checkpoints/best", "model.safetensors"]))
            XCTAssertFalse("\(error)".contains("--overwrite"), "\(error)")
            XCTAssertTrue("\(error)".contains("copy checkpoints/best to checkpoints/last"), "\(error)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: RunDirectory(out).model))
    }
}

extension TrainingRunTests {
    /// Ctrl-C during the final test evaluation (minutes on a large test set) was ignored until it
    /// ended. Now the evaluation stops: the run is complete with its weights written, the cut-short
    /// metrics are missing, and the summary says so (`train` exits with status 130). With an EMA the
    /// validation split is evaluated again on the averaged weights first: stopped there, it failed the
    /// run with "no usable image in the evaluation data" (its report counted no image).
    func testCtrlCDuringTheFinalEvaluationStopsItAndKeepsTheCompletedRun() throws {
        final class StopAtFitEnd: TrainingCallback {
            let stop: SignalStop
            init(_ stop: SignalStop) { self.stop = stop }
            func handle(_ event: TrainingEvent, trainer: Trainer) throws {
                if case .fitEnd = event { stop.trigger(signal: SIGINT) }  // as if Ctrl-C came as the test pass began
            }
        }
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        for ema in [false, true] {
            let out = runs + (ema ? "/ema" : "/run")
            var spec = specification(data: data, out: out)
            if ema { spec.recipe.emaDecay = 0.9 }
            let run = try TrainingRun.create(spec, notify: { _ in })
            let stop = SignalStop(signals: [])
            run.signalStop = stop
            run.extraCallbacks = [StopAtFitEnd(stop)]
            let summary = try run.run()
            XCTAssertEqual(summary.status, "completed")
            XCTAssertTrue(summary.evaluationInterrupted)
            XCTAssertNil(summary.testReport, "no partial test metrics")
            XCTAssertTrue(summary.interruptionNotice()?.contains("finetune evaluate \(out)") == true,
                          "\(String(describing: summary.interruptionNotice()))")
            XCTAssertTrue(FileManager.default.fileExists(atPath: RunDirectory(out).model))
            let config = try RunDirectory(out).readConfig()
            XCTAssertEqual(config.status, "completed")
            XCTAssertNil(config.testAccuracy)
        }
    }
}

extension TrainingRunTests {
    /// A resume that training refuses at its start (here: config.json's batch size edited after the run
    /// stopped mid-epoch) changes nothing: config.json keeps its status and settings (it was left
    /// "failed"), the error names the run and the setting, and the run still resumes once the edit is
    /// undone, to the uninterrupted run's weights.
    func testAResumeRefusedAtTheStartOfTrainingChangesNothing() throws {
        let runs = try straightAndInterruptedRuns(afterStep: 5)  // mid-epoch 2

        let directory = RunDirectory(runs + "/b")
        var edited = try directory.readConfig()
        let original = edited
        edited.options.batchSize = 12  // one batch per epoch: the position is past it, which blamed trainer.json
        try directory.write(edited)
        let before = try Foundation.Data(contentsOf: URL(fileURLWithPath: directory.config))
        let resumed = try TrainingRun.resume(runs + "/b", notify: { _ in })
        resumed.signalStop = SignalStop(signals: [])
        XCTAssertThrowsError(try resumed.run()) { error in
            guard case RunError.resumeRefused(let path, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, directory.path)
            XCTAssertTrue(reason.contains("batch size 4, now 12"), reason)
        }
        resumed.release()
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: directory.config)), before)
        XCTAssertEqual(try directory.readConfig().status, "interrupted")

        try directory.write(original)
        try resumeToTheEnd(runs + "/b", equalling: runs + "/a")
    }
}

extension TrainingRunTests {
    /// Reading a run that a process is training says which process (it said "resume it", which only
    /// met that process's lock); once the lock is released, a run without its model or a checkpoint
    /// says to train it again (it said to resume it, which `--resume` refused: no checkpoint).
    func testReadingARunThatIsTrainingNamesTheProcess() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/training"
        let run = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })
        let directory = RunDirectory(out)
        XCTAssertEqual(RunLock.holder(of: out), getpid())
        XCTAssertThrowsError(try directory.loadModel(directory.readConfig())) { error in
            XCTAssertTrue("\(error)".contains("process \(getpid()) is training it"), "\(error)")
        }
        run.release()
        XCTAssertNil(RunLock.holder(of: out))
        XCTAssertThrowsError(try directory.loadModel(directory.readConfig())) { error in
            XCTAssertTrue("\(error)".contains("it has no checkpoint to resume from: train it again"), "\(error)")
        }
    }
}

extension TrainingRunTests {
    /// A resumed run whose `history.csv` and `events.jsonl` were lost (deleted, or a copy of the run
    /// without them) gets the earlier epochs back from the checkpoint's history: the files held only
    /// the resumed epochs, and `report` drew those alone.
    func testLostLogsGetTheirEarlierEpochsBackOnResume() throws {
        let runs = try straightAndInterruptedRuns(afterStep: 7)  // in epoch 3
        let fm = FileManager.default
        try fm.copyItem(atPath: runs + "/b", toPath: runs + "/c")
        for file in ["history.csv", "events.jsonl"] { try fm.removeItem(atPath: runs + "/b/" + file) }
        // In c, only the first epoch's row and event are gone (the header and the rest kept).
        let history = try String(contentsOfFile: runs + "/c/history.csv", encoding: .utf8).split(separator: "\n")
        try (history.enumerated().filter { $0.offset != 1 }.map { $0.element + "\n" }.joined())
            .write(toFile: runs + "/c/history.csv", atomically: true, encoding: .utf8)
        let events = try String(contentsOfFile: runs + "/c/events.jsonl", encoding: .utf8).split(separator: "\n")
        let kept = events.filter { !($0.contains(#""event":"epoch""#) && $0.hasPrefix(#"{"epoch":0,"#)) }
        XCTAssertEqual(events.count - kept.count, 1, "the first epoch's event")
        try kept.map { $0 + "\n" }.joined().write(toFile: runs + "/c/events.jsonl", atomically: true, encoding: .utf8)
        try resumeToTheEnd(runs + "/b", equalling: runs + "/a")
        try resumeToTheEnd(runs + "/c", equalling: runs + "/a")

        let straight = try RunHistory(eventsFile: runs + "/a/events.jsonl")
        for run in ["b", "c"] {
            XCTAssertEqual(try String(contentsOfFile: runs + "/\(run)/history.csv", encoding: .utf8),
                           try String(contentsOfFile: runs + "/a/history.csv", encoding: .utf8), run)
            let restored = try RunHistory(eventsFile: runs + "/\(run)/events.jsonl")
            XCTAssertEqual(restored.epochs.map(\.number), [1, 2, 3], run)
            XCTAssertEqual(restored.epochs.map(\.metrics), straight.epochs.map(\.metrics), run)
        }
    }
}

extension TrainingRunTests {
    /// A CSV file that lists an image twice trains on both rows, and with a validation split the copies
    /// can land on both sides: the run says so, naming the file (it said nothing).
    func testACSVListingAnImageTwiceIsNamed() throws {
        let data = try makeData()
        var rows = ["path,label"]
        for name in ["blue", "green", "red"] {
            for i in 0..<6 { rows.append("train/\(name)/\(i).png,\(name)") }
        }
        rows.append("train/red/0.png,red")
        let csv = data + "/all.csv"
        try rows.joined(separator: "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        var spec = specification(data: csv, out: try TRData.temporaryDirectory(self) + "/run")
        spec.options.epochs = 1
        var warnings: [String] = []
        let run = try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } })
        run.release()
        XCTAssertEqual(run.splits.repeatedFiles, [data + "/train/red/0.png"])
        XCTAssertTrue(warnings.contains { $0.hasPrefix("1 image file is listed more than once (\(data)/train/red/0.png)")
                                          && $0.contains("both the training and the validation split") }, "\(warnings)")
    }
}

extension TrainingRunTests {
    /// Library use of `TrainingRun`, as the hostile trial found it:
    /// - a run's weights do not depend on what else ran in the process between its `create` and its
    ///   `run()` (dropout drew from LibTorch's shared generator, which another run had moved on);
    /// - `run()` once the lock is gone (a second `run()`, or after `release()`) is refused: it trained
    ///   into a folder another `TrainingRun` had locked;
    /// - a resume released without `run()` leaves `config.json` as it was (it stayed `running`).
    func testARunIsReproducibleInOneProcessAndWritesOnlyWhileItHoldsItsLock() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        try trainStraight(specification(data: data, out: runs + "/a"))

        let b = try TrainingRun.create(specification(data: data, out: runs + "/b"), notify: { _ in })
        try trainStraight(specification(data: data, out: runs + "/other"))  // moves the shared generator on
        b.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try b.run().status, "completed")
        try TRData.assertIdentical(try SafeTensors.load(runs + "/a/model.safetensors"),
                                   try SafeTensors.load(runs + "/b/model.safetensors"), "b after another run")

        XCTAssertThrowsError(try b.run()) { error in
            XCTAssertEqual(error as? RunError, .released(directory: RunDirectory(runs + "/b").path))
        }
        let c = try TrainingRun.create(specification(data: data, out: runs + "/c"), notify: { _ in })
        c.release()
        var replacing = specification(data: data, out: runs + "/c")
        replacing.overwrite = true
        let holder = try TrainingRun.create(replacing, notify: { _ in })
        XCTAssertThrowsError(try c.run(), "c released its lock, and another run holds the folder")
        holder.release()

        let before = try Foundation.Data(contentsOf: URL(fileURLWithPath: RunDirectory(runs + "/a").config))
        let resumed = try TrainingRun.resume(runs + "/a", changes: .init(epochs: 4), notify: { _ in })
        XCTAssertEqual(try RunDirectory(runs + "/a").readConfig().status, "running")
        resumed.release()
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: RunDirectory(runs + "/a").config)), before)
    }
}

extension TrainingRunTests {
    /// `Predictor.predict` with one k per input, each at least 1; other k lists are an error (a list
    /// of the wrong length or a k below 1 trapped: index out of range).
    func testPredictorRefusesAKListThatDoesNotFitItsInputs() throws {
        let predictor = try Predictor(architecture: "mobilenet_v2", weights: nil)
        let input = try Tensor.zeros([3, 32, 32])
        XCTAssertEqual(try predictor.predict([input, input], k: [2, 1]).map(\.count), [2, 1])
        for k in [[1, 1, 1], [2, -1], [], [0]] {
            let inputs = k.count == 2 ? [input, input] : [input]
            XCTAssertThrowsError(try predictor.predict(inputs, k: k), "k \(k)") { error in
                XCTAssertTrue("\(error)".contains("one k of at least 1 per row"), "\(error)")
            }
        }
    }
}

extension TrainingRunTests {
    /// `predict`, `serve` and `export --arch A --weights FILE` run the file's own head: a resnet18
    /// fine-tuned to 5 classes got a fresh, random 1000-class head named with ImageNet's classes.
    /// A GoogLeNet file without aux heads (torchvision deletes them after loading pretrained weights,
    /// and finetune's runs have none) loads; it was refused ("loaded 0 tensors").
    func testAPredictorFromAWeightsFileKeepsItsHeadAndGoogLeNetNeedsNoAuxHeads() throws {
        let folder = try TRData.temporaryDirectory(self)
        // Inception v3 saved with `aux_logits=False` has no `AuxLogits` either (it was refused too).
        let inception = try InceptionV3.inceptionV3(ModelOptions(numClasses: 5), auxLogits: false, transformInput: true)
        for (architecture, model) in [("resnet18", try ModelZoo.make("resnet18", options: ModelOptions(numClasses: 5))),
                                      ("googlenet", try ModelZoo.makePretrainedVariant("googlenet", options: ModelOptions(numClasses: 5))),
                                      ("inception_v3", inception as ImageClassifier)] {
            let path = folder + "/\(architecture).safetensors"
            try SafeTensors.write(model.stateDict(), to: path)
            model.eval()
            let predictor = try Predictor(architecture: architecture, weights: path)
            XCTAssertEqual(predictor.classNames, (0..<5).map { "class_\($0)" }, architecture)
            let input = try Tensor.rand([3, 80, 80])
            let expected = try withInferenceMode { try Functional.softmax(model(input.unsqueeze(dim: 0)), dim: 1) }
            XCTAssertTrue(try predictor.probabilities([input]).allClose(expected, rtol: 1e-4, atol: 1e-6), architecture)
        }
        // A one-output head is binary (it was one class, `class_0`, with P(class_1) as its probability).
        let single = try ModelZoo.make("resnet18", options: ModelOptions(numClasses: 1))
        try SafeTensors.write(single.stateDict(), to: folder + "/single.safetensors")
        single.eval()
        let binary = try Predictor(architecture: "resnet18", weights: folder + "/single.safetensors")
        XCTAssertTrue(binary.isBinary)
        XCTAssertEqual(binary.classNames, ["class_0", "class_1"])
        let input = try Tensor.rand([3, 64, 64])
        let positive = try withInferenceMode { try single(input.unsqueeze(dim: 0)).sigmoid() }.item()
        let probabilities = try binary.probabilities([input]).contiguous().toArray(Float.self)
        XCTAssertEqual(Double(probabilities[1]), positive, accuracy: 1e-5)
        XCTAssertEqual(Double(probabilities[0]), 1 - positive, accuracy: 1e-5)
    }

    /// Logits of +∞ (a model that overflowed) get the softmax's limit, where softmax is NaN: predict
    /// and serve ranked the NaNs in LibTorch's order, another top-1 than evaluate's.
    func testInfiniteLogitsGetTheSoftmaxsLimit() throws {
        let logits = try Tensor([Float.infinity, 0, -.infinity, 1, .infinity, .infinity, 1, 2, 3], shape: [3, 3])
        let p = try TestTimeAugmentation.softmax(logits).contiguous().toArray(Float.self)
        XCTAssertEqual(Array(p[0..<6]), [1, 0, 0, 0, 0.5, 0.5])
        let finite = try Functional.softmax(Tensor([Float(1), 2, 3], shape: [1, 3]), dim: 1).contiguous().toArray(Float.self)
        XCTAssertEqual(Array(p[6..<9]), finite)
        // Row by row: a NaN in another image's logits made the batch's maximum NaN, and the +∞ row
        // then got NaNs too (a result depended on the batch it shared in `serve`).
        let mixed = try Tensor([Float.nan, 0, 1, 0, .infinity, 0], shape: [2, 3])
        let q = try TestTimeAugmentation.softmax(mixed).contiguous().toArray(Float.self)
        XCTAssertTrue(q[0].isNaN)
        XCTAssertEqual(Array(q[3..<6]), [0, 1, 0])

        // Ranking: equal probabilities rank the lower class first (evaluate's top-1), NaN last;
        // `topk` gave LibTorch's order for both.
        let predictor = try Predictor(architecture: "mobilenet_v2", weights: nil)
        var rows = [Float](repeating: 0, count: 2000)
        rows[7] = 0.5; rows[3] = 0.5
        rows[1000] = .nan; rows[1001] = 0.25; rows[1002] = 0.75
        let ranked = try predictor.ranked(Tensor(rows, shape: [2, 1000]), k: [2, 1000])
        XCTAssertEqual(ranked[0].map(\.index), [3, 7])
        XCTAssertEqual(Array(ranked[1].prefix(3).map(\.index)), [2, 1, 3])
        XCTAssertEqual(ranked[1].last?.index, 0, "NaN last")
        XCTAssertEqual(ranked[1].count, 1000)
    }
}
