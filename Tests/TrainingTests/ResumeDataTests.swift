import Foundation
import TensorIO
import TestSupport
import Torch
import Vision
@testable import Training
import XCTest

extension TrainingRunTests {
    /// A resume on other images trained on them without a word (at an epoch boundary; mid-epoch it
    /// failed blaming the loader settings), and a resume on the same images in another folder left
    /// config.json naming the old one. Now other images are refused, naming DATA, and the same images
    /// elsewhere resume exactly, with the new place recorded.
    func testAResumeMustSeeTheImagesTheRunWasCreatedWith() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        try trainStraight(specification(data: data, out: runs + "/a"))

        let first = try TrainingRun.create(specification(data: data, out: runs + "/b"), notify: { _ in })
        let stop = SignalStop(signals: [])
        first.signalStop = stop
        first.extraCallbacks = [Interrupter(step: 3, stop: stop)]  // the end of epoch 1 (3 steps an epoch)
        XCTAssertEqual(try first.run().status, "interrupted")
        XCTAssertNotNil(try RunDirectory(runs + "/b").readConfig().data.fingerprint)

        let fm = FileManager.default
        let image = data + "/train/blue/0.png"
        XCTAssertTrue(fm.fileExists(atPath: image))
        let changes: [(String, () throws -> Void, () throws -> Void)] = [
            ("an image removed", { try fm.moveItem(atPath: image, toPath: runs + "/aside.png") },
             { try fm.moveItem(atPath: runs + "/aside.png", toPath: image) }),
            ("an image moved to another class", { try fm.moveItem(atPath: image, toPath: data + "/train/green/moved.png") },
             { try fm.moveItem(atPath: data + "/train/green/moved.png", toPath: image) }),
            ("an image added", { try fm.copyItem(atPath: image, toPath: data + "/train/red/extra.png") },
             { try fm.removeItem(atPath: data + "/train/red/extra.png") }),
        ]
        for (what, change, undo) in changes {
            try change()
            XCTAssertThrowsError(try TrainingRun.resume(runs + "/b", notify: { _ in }), what) { error in
                guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(what): \(error)") }
                XCTAssertEqual(setting, "data")
                XCTAssertTrue(reason.contains("the images in \(data) are not those the run was created with"), reason)
            }
            try undo()
        }

        // The same images in another folder: resumed exactly, and the new place recorded.
        let moved = runs + "/moved-data"
        try fm.moveItem(atPath: data, toPath: moved)
        // Without the new place, the error says how to give it (it was "dataset folder … does not exist").
        XCTAssertThrowsError(try TrainingRun.resume(runs + "/b", notify: { _ in })) { error in
            XCTAssertTrue("\(error)".contains("if they have moved, give their new place after the run directory"), "\(error)")
        }
        var notices: [String] = []
        let resumed = try TrainingRun.resume(runs + "/b", changes: .init(data: moved), notify: {
            if case .info(let text) = $0 { notices.append(text) }
        })
        XCTAssertTrue(notices.contains { $0.contains("now in \(moved)") }, "\(notices)")
        XCTAssertEqual(try RunDirectory(runs + "/b").readConfig().data.path, moved)
        resumed.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try resumed.run().status, "completed")
        try TRData.assertIdentical(try SafeTensors.load(runs + "/a/model.safetensors"),
                                   try SafeTensors.load(runs + "/b/model.safetensors"), "resumed on the moved data")
    }

    /// A CSV run whose images moved could not be resumed: `--image-root` was ignored on resume and
    /// the recorded one used. The same images under a new image root now resume exactly, and the new
    /// root is recorded; a refused resume leaves config.json as it was.
    func testACSVRunResumesWithItsImagesUnderANewImageRoot() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var rows = ["path,label"]
        for name in ["blue", "green", "red"] {
            for i in 0..<6 { rows.append("train/\(name)/\(i).png,\(name)") }
        }
        let csv = runs + "/list.csv"
        try rows.joined(separator: "\n").write(toFile: csv, atomically: true, encoding: .utf8)
        func spec(_ name: String) -> TrainingRun.Specification {
            var spec = specification(data: csv, out: runs + "/" + name)
            spec.options.imageRoot = data
            return spec
        }
        try trainStraight(spec("a"))
        let first = try TrainingRun.create(spec("b"), notify: { _ in })
        let stop = SignalStop(signals: [])
        first.signalStop = stop
        first.extraCallbacks = [Interrupter(step: 4, stop: stop)]
        XCTAssertEqual(try first.run().status, "interrupted")

        let moved = runs + "/images-moved"
        try FileManager.default.moveItem(atPath: data, toPath: moved)
        let before = try String(contentsOfFile: runs + "/b/config.json", encoding: .utf8)
        XCTAssertThrowsError(try TrainingRun.resume(runs + "/b", changes: .init(imageRoot: moved + "/train"), notify: { _ in }),
                             "another image root whose paths do not resolve")
        XCTAssertThrowsError(try TrainingRun.resume(runs + "/b", changes: .init(epochs: 1, imageRoot: moved), notify: { _ in }),
                             "fewer epochs than trained")
        XCTAssertEqual(try String(contentsOfFile: runs + "/b/config.json", encoding: .utf8), before, "a refused resume changes nothing")

        let resumed = try TrainingRun.resume(runs + "/b", changes: .init(imageRoot: moved), notify: { _ in })
        XCTAssertEqual(try RunDirectory(runs + "/b").readConfig().options.imageRoot, moved)
        resumed.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try resumed.run().status, "completed")
        try TRData.assertIdentical(try SafeTensors.load(runs + "/a/model.safetensors"),
                                   try SafeTensors.load(runs + "/b/model.safetensors"), "resumed under the new image root")
    }
}

extension TrainingRunTests {
    /// TF-slim's warm start (`--checkpoint-path`, `--checkpoint-exclude-scopes`) loads what fits and
    /// says what it skipped; a file of which nothing fits (another architecture) carried on training
    /// from random weights with only a list of missing keys, and is now an error naming the file.
    func testAWarmStartLoadsWhatFitsAndAFileOfWhichNothingFitsIsAnError() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        let donor = try ModelZoo.make("mobilenet_v2", options: ModelOptions(numClasses: 3))
        let good = runs + "/donor.safetensors"
        try SafeTensors.write(donor.stateDict(), to: good)
        var spec = specification(data: data, out: runs + "/warm")
        spec.options.checkpointPath = good
        spec.options.checkpointExcludeScopes = ["classifier"]
        var notices: [String] = []
        let run = try TrainingRun.create(spec, notify: { if case .info(let text) = $0 { notices.append(text) } })
        run.release()
        XCTAssertTrue(notices.contains { $0.hasPrefix("Warm start from \(good): 2 tensors excluded (classifier)") }, "\(notices)")
        let loaded = run.trainer.model.stateDict()
        let key = "features.0.0.weight"
        XCTAssertTrue(try loaded[key]!.allClose(donor.stateDict()[key]!, rtol: 0, atol: 0), "the backbone came from the file")

        // `classifier.` (TF-slim's prefixes allow it) excluded nothing, and a scope that matches no key
        // was accepted without a word: the trailing dot is dropped, and such a scope is warned about.
        spec.options.checkpointExcludeScopes = ["classifier.", "fc"]
        spec.runDirectory = runs + "/dotted"
        var warnings: [String] = []
        notices = []
        try TrainingRun.create(spec, notify: {
            if case .info(let text) = $0 { notices.append(text) }
            if case .warning(let text) = $0 { warnings.append(text) }
        }).release()
        XCTAssertTrue(notices.contains { $0.hasPrefix("Warm start from \(good): 2 tensors excluded (classifier, fc)") }, "\(notices)")
        XCTAssertEqual(warnings.filter { $0.hasPrefix("--checkpoint-exclude-scopes: fc matched no tensor of \(good)") }.count, 1,
                       "\(warnings)")

        let other = runs + "/other.safetensors"
        try SafeTensors.write(StateDict([("fc.weight", try Tensor.zeros([3, 512])), ("conv1.weight", try Tensor.zeros([64, 3, 7, 7]))]),
                              to: other)
        spec.options.checkpointPath = other
        spec.options.checkpointExcludeScopes = nil
        spec.runDirectory = runs + "/cold"
        XCTAssertThrowsError(try TrainingRun.create(spec, notify: { _ in })) { error in
            guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "checkpointPath")
            XCTAssertTrue(reason.contains("none of the 2 tensors of \(other) fits the model"), reason)
        }
    }
}

extension TrainingRunTests {
    /// `train` names a folder beside DATA's split folders that no split reads (it was dropped silently).
    func testTrainWarnsOfAFolderBesideTheSplitsThatNoSplitReads() throws {
        let data = try makeData()
        try FileManager.default.createDirectory(atPath: data + "/dev/blue", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: data + "/train/blue/0.png", toPath: data + "/dev/blue/0.png")
        var warnings: [String] = []
        let run = try TrainingRun.create(specification(data: data, out: try TRData.temporaryDirectory(self) + "/run"),
                                         notify: { if case .warning(let text) = $0 { warnings.append(text) } })
        run.release()
        XCTAssertTrue(warnings.contains { $0.hasPrefix("\(data)/dev is not read") }, "\(warnings)")
    }
}

extension TrainingRunTests {
    /// `--trainable-scopes` that leave out the head froze the run's new, random head without a word
    /// (TF-slim's rule: what is not listed is frozen); it is warned about now.
    func testTrainableScopesThatLeaveOutTheNewHeadAreWarnedAbout() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        // A custom head (a Sequential at the head's path) too: its keys are `classifier.1.N.…`.
        for (scopes, hidden, warned) in [(["features.18"], false, true), (["features.18", "classifier"], false, false),
                                         (["features.18"], true, true)] {
            var spec = specification(data: data, out: runs + "/\(scopes.count)\(hidden)")
            spec.recipe.trainableScopes = scopes
            if hidden { spec.head = HeadSpec(outputs: 0, hiddenUnits: [8]) }
            var warnings: [String] = []
            let run = try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } })
            run.release()
            XCTAssertEqual(warnings.contains { $0.contains("leaves out the new head (classifier.1)") }, warned, "\(scopes): \(warnings)")
            let head = run.trainer.model.namedParameters().filter { $0.0.hasPrefix("classifier.1.") }.map(\.1)
            XCTAssertFalse(head.isEmpty)
            XCTAssertEqual(head.contains { $0.requiresGrad }, !warned)
        }
    }
}

extension TrainingRunTests {
    /// An input size too small for the architecture failed in LibTorch once training had started,
    /// leaving a failed run directory; it is an error naming the setting before anything is written.
    func testAnInputSizeTooSmallForTheArchitectureIsRefusedBeforeTheRunIsMade() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/alexnet"
        var spec = specification(data: data, out: out)
        spec.architecture = "alexnet"
        spec.options.inputSize = 32
        XCTAssertThrowsError(try TrainingRun.create(spec, notify: { _ in })) { error in
            guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "inputSize")
            XCTAssertTrue(reason.hasPrefix("32 px is too small for alexnet"), reason)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        spec.options.inputSize = 64
        XCTAssertNoThrow(try TrainingRun.create(spec, notify: { _ in }).release())
    }
}

extension TrainingRunTests {
    /// `--feature-cache on` that the run cannot use (augmented inputs) is refused before the run
    /// directory is made: it was refused when training started, leaving a failed run that `--resume`
    /// could not continue and a new `train` would not replace without `--overwrite`.
    func testAFeatureCacheTheRunCannotUseIsRefusedBeforeTheRunIsMade() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/cache-on"
        var spec = specification(data: data, out: out)  // augment standard
        spec.recipe.recipe = .headOnly
        spec.options.featureCache = .on
        XCTAssertThrowsError(try TrainingRun.create(spec, notify: { _ in })) { error in
            guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "featureCache")
            XCTAssertTrue(reason.hasPrefix("on: augmentation standard changes the inputs"), reason)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}

extension TrainingRunTests {
    /// The library's `EvaluationData.select` gives a run's own hold-out beside a test/ folder (what
    /// `evaluate --split val` reads), its training images without it, and the test folder as it is.
    func testEvaluationDataIsTheRunsOwnSplit() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/split"
        let run = try TrainingRun.create(specification(data: data, out: out), notify: { _ in })  // --val-split 0.25
        run.release()
        let config = try RunDirectory(out).readConfig()
        func count(_ split: DataSplit) throws -> Int {
            try EvaluationData.select(data, split: split, run: config, classNames: config.classNames).dataset.count
        }
        XCTAssertEqual(try count(.val), config.data.validationSamples)
        XCTAssertEqual(try count(.train), config.data.trainSamples)
        XCTAssertEqual(try count(.test), config.data.testSamples)
        XCTAssertEqual(try EvaluationData.select(data, split: nil, run: config, classNames: config.classNames).split, "test")
        // The run's own DATA through a link is still its own: `--split train` leaves the hold-out out.
        let link = (out as NSString).deletingLastPathComponent + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: data)
        XCTAssertEqual(try EvaluationData.select(link, split: .train, run: config, classNames: config.classNames).dataset.count,
                       config.data.trainSamples)

        // With --limit-per-class, every split of the run's own DATA is the run's (the test split its
        // test metrics were taken on, not the whole test/ folder); other data is read as it is.
        var limitedSpec = specification(data: data, out: out + "-limited")
        limitedSpec.options.limitPerClass = 1
        limitedSpec.options.valSplit = nil
        limitedSpec.options.splitSeed = 3  // a choice that the image added below changes
        try TrainingRun.create(limitedSpec, notify: { _ in }).release()
        let limited = try RunDirectory(out + "-limited").readConfig()
        XCTAssertEqual(limited.data.testSamples, 3)
        let own = try EvaluationData.select(data, split: nil, run: limited, classNames: limited.classNames)
        XCTAssertEqual(own.split, "test")
        XCTAssertEqual(own.dataset.count, 3)
        XCTAssertEqual(try EvaluationData.select(data, split: .train, run: limited, classNames: limited.classNames).dataset.count,
                       limited.data.trainSamples)
        XCTAssertEqual(try EvaluationData.select(data, split: .all, run: limited, classNames: limited.classNames).dataset.count, 24)
        let copy = (out as NSString).deletingLastPathComponent + "/copy"
        try FileManager.default.copyItem(atPath: data, toPath: copy)
        XCTAssertEqual(try EvaluationData.select(copy, split: nil, run: limited, classNames: limited.classNames).dataset.count, 6)
        XCTAssertThrowsError(try EvaluationData.select(data, split: .val, run: limited, classNames: limited.classNames)) {
            XCTAssertTrue("\($0)".contains("holds no validation images"), "\($0)")
        }
        // An image added since: the run's choice cannot be made again, so the split is read as it is,
        // with a warning (it was refused, and the run could no longer be evaluated at all).
        try FileManager.default.copyItem(atPath: data + "/test/red/0.png", toPath: data + "/test/red/added.png")
        let changed = try EvaluationData.select(data, split: nil, run: limited, classNames: limited.classNames)
        XCTAssertEqual(changed.split, "test")
        XCTAssertEqual(changed.dataset.count, 7)
        XCTAssertTrue(changed.warnings.contains { $0.contains("its test split is read whole") }, "\(changed.warnings)")
        // A hold-out cannot be read "as it is": that stays an error.
        XCTAssertThrowsError(try EvaluationData.select(data, split: .val, run: config, classNames: config.classNames)) {
            XCTAssertTrue("\($0)".contains("not those the run was created with"), "\($0)")
        }
    }
}

extension TrainingRunTests {
    /// A folder of some of the run's classes (more photos of two of them, or of one) is read by name,
    /// with a note naming the classes it has none of; a folder that is not one of the run's classes
    /// is an error naming it. Until stop 52 anything but a folder for every class was refused.
    func testAFolderOfSomeOfTheRunsClassesIsEvaluatedByName() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/subset"
        let run = try TrainingRun.create(specification(data: data, out: out, epochs: 1), notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try run.run().status, "completed")
        let config = try RunDirectory(out).readConfig()
        XCTAssertEqual(config.classNames, ["blue", "green", "red"])
        let photos = (out as NSString).deletingLastPathComponent + "/photos"
        for name in ["green", "red"] {
            try FileManager.default.createDirectory(atPath: photos + "/" + name, withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(data)/test/\(name)/0.png", toPath: "\(photos)/\(name)/0.png")
        }
        let two = try EvaluationData.select(photos, split: nil, run: config, classNames: config.classNames)
        XCTAssertEqual(two.split, "folder")
        XCTAssertEqual(two.dataset.classNames, config.classNames)
        XCTAssertEqual(two.dataset.samples.map(\.label), [1, 2], "labels index the run's classes")
        XCTAssertEqual(two.notes, ["\(photos) has images of 2 of the run's 3 classes (none of blue): their rows of the "
            + "per-class report are empty, and the macro averages are over the classes these images have or the model "
            + "predicted for them (sklearn's)"])
        try FileManager.default.removeItem(atPath: photos + "/green")
        let one = try EvaluationData.select(photos, split: nil, run: config, classNames: config.classNames)
        XCTAssertEqual(one.dataset.samples.map(\.label), [2], "one class")
        // The report of it too: its data check, which reads DATA as a training set, says why it did not run.
        let report = try RunReport.make(run: out, options: RunReportOptions(data: photos, gradCAMCount: 0))
        XCTAssertEqual(report.evaluation.sampleCount, 1)
        XCTAssertTrue(report.html().contains("<p>Not run: only one class folder (red) in \(photos)"), report.dataCheckNotRun ?? "")
        try FileManager.default.createDirectory(atPath: photos + "/purple", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: "\(data)/test/red/0.png", toPath: "\(photos)/purple/0.png")
        XCTAssertThrowsError(try EvaluationData.select(photos, split: nil, run: config, classNames: config.classNames)) {
            XCTAssertTrue("\($0)".contains("class folder \(photos)/purple is not one of the 3 training classes"), "\($0)")
        }
        // The run's own test split, every class there: no such note.
        XCTAssertEqual(try EvaluationData.select(data, split: nil, run: config, classNames: config.classNames).notes, [])
    }
}

extension TrainingRunTests {
    /// A warm start from another run's weights gives the rows of the head's output layer by class name.
    /// Loaded by shape alone, a run on blue, green, red put its blue row on the new data's green (a run
    /// on Bag, Coat, Shirt started at a loss of 4.9 on Coat, Shirt, Trouser; stop 53), and a run with a
    /// class more lost the whole layer. A class the run did not have keeps the model's fresh row.
    func testAWarmStartFromARunMatchesTheHeadsRowsByClassName() throws {
        let runs = try TRData.temporaryDirectory(self)
        let data = try makeData()
        var donorSpec = specification(data: data, out: runs + "/donor", epochs: 1)
        donorSpec.recipe.seed = 11
        try trainStraight(donorSpec)
        let donor = try SafeTensors.load(runs + "/donor/model.safetensors")
        let fm = FileManager.default
        // green, red, yellow (blue renamed), and blue, green, red, yellow (a class added).
        let renamed = runs + "/renamed", added = runs + "/added"
        try fm.copyItem(atPath: data, toPath: renamed)
        try fm.copyItem(atPath: data, toPath: added)
        for split in ["train", "test"] {
            try fm.moveItem(atPath: "\(renamed)/\(split)/blue", toPath: "\(renamed)/\(split)/yellow")
            try fm.copyItem(atPath: "\(added)/\(split)/blue", toPath: "\(added)/\(split)/yellow")
        }
        func head(_ data: String, warm: Bool) throws -> (weight: Tensor, bias: Tensor, notes: [String]) {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString)
            spec.options.checkpointPath = warm ? runs + "/donor/model.safetensors" : nil
            var notes: [String] = []
            let run = try TrainingRun.create(spec, notify: { if case .info(let text) = $0 { notes.append(text) } })
            run.release()
            let state = run.trainer.model.stateDict()
            return (state["classifier.1.weight"]!, state["classifier.1.bias"]!, notes.filter { $0.hasPrefix("Warm start") })
        }
        func assertRows(_ tensor: Tensor, _ expected: [Tensor], _ message: String) throws {
            XCTAssertTrue(try tensor.allClose(Tensor.cat(expected.map { try $0.unsqueeze(dim: 0) }), rtol: 0, atol: 0), message)
        }
        for (folder, classes) in [(renamed, ["green", "red", "yellow"]), (added, ["blue", "green", "red", "yellow"])] {
            let warm = try head(folder, warm: true), cold = try head(folder, warm: false)
            for (name, tensor, fresh) in [("weight", warm.weight, cold.weight), ("bias", warm.bias, cold.bias)] {
                let source = donor["classifier.1.\(name)"]!
                let expected = try classes.enumerated().map { i, name in
                    try ["blue", "green", "red"].firstIndex(of: name).map { try source.select(dim: 0, index: $0) }
                        ?? fresh.select(dim: 0, index: i)
                }
                try assertRows(tensor, expected, "\(classes) \(name)")
            }
            let carried = classes.filter { $0 != "yellow" }.joined(separator: ", ")
            XCTAssertEqual(warm.notes.count, 1)
            XCTAssertTrue(warm.notes.first?.hasSuffix("; \(runs)/donor was trained on other classes (blue, green, red), so the "
                + "rows of the head's output layer (classifier.1) follow the data's classes by name: \(carried) from the run, "
                + "yellow trained anew") == true, "\(warm.notes)")
        }
        // A checkpoint of the run is the run's too; a file of no run says nothing of its classes.
        XCTAssertEqual(TrainingRun.warmStartSource(runs + "/donor/checkpoints/best/model.safetensors")?.classNames,
                       ["blue", "green", "red"])
        try fm.copyItem(atPath: runs + "/donor/model.safetensors", toPath: runs + "/loose.safetensors")
        XCTAssertNil(TrainingRun.warmStartSource(runs + "/loose.safetensors"))
        // The run's own classes: its head as it is, and nothing more to say.
        let same = try head(data, warm: true)
        XCTAssertTrue(try same.weight.allClose(donor["classifier.1.weight"]!, rtol: 0, atol: 0))
        XCTAssertFalse(same.notes.first?.contains("other classes") ?? true, "\(same.notes)")
    }
}

extension TrainingRunTests {
    /// Validation and test images copied from train/ (a split made by copying instead of moving) are
    /// warned as `train` starts: their accuracy is the training accuracy. `train` said nothing; only
    /// `check-data` found them (stop 53). A file of a training image's name and size with other bytes is
    /// not a copy.
    func testValidationAndTestImagesCopiedFromTrainAreWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func warnings() throws -> [String] {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString)
            spec.options.valSplit = nil
            var warnings: [String] = []
            try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } }).release()
            return warnings.filter { $0.contains("byte-for-byte") }
        }
        let fm = FileManager.default
        try fm.createDirectory(atPath: data + "/val/red", withIntermediateDirectories: true)
        // The same name and size as a training image, one byte changed (the last data chunk's CRC).
        var bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: data + "/train/red/0.png"))
        bytes[bytes.count - 13] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: data + "/val/red/0.png"))
        XCTAssertEqual(try warnings(), [])
        for name in ["blue", "green"] { try fm.createDirectory(atPath: "\(data)/val/\(name)", withIntermediateDirectories: true) }
        try fm.copyItem(atPath: data + "/train/blue/2.png", toPath: data + "/val/blue/2.png")
        try fm.copyItem(atPath: data + "/train/green/3.png", toPath: data + "/val/green/3.png")
        try fm.copyItem(atPath: data + "/train/red/5.png", toPath: data + "/test/red/5.png")
        XCTAssertEqual(try warnings(), ["2 validation and 1 test images are byte-for-byte copies of training images "
            + "(val/blue/2.png = train/blue/2.png, …): what is measured on them is the training accuracy, not a held-out one; "
            + "keep each image in one split (`finetune check-data` lists them, and finds renamed and re-encoded copies too)"])
    }
}

extension TrainingRunTests {
    /// Evaluating a run on its DATA's train/ folder (`evaluate runs/x data/x/train`) reported the images it
    /// trained on as if unseen: only DATA itself, used whole, had the note (stop 53). Its test/ folder,
    /// and other folders, have none; a link to train/ is train/.
    func testEvaluatingOnTheRunsOwnTrainFolderIsNoted() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/run"
        try trainStraight(specification(data: data, out: out))
        let config = try RunDirectory(out).readConfig()
        func notes(_ root: String) throws -> [String] {
            try EvaluationData.select(root, split: nil, run: config, classNames: config.classNames).notes
        }
        let note = "\(data)/train holds images the run was trained on (it is inside \(data)/train): these metrics include "
            + "them and overstate how it does on new ones; --split val on \(data) evaluates only its --val-split hold-out"
        XCTAssertEqual(try notes(data + "/train"), [note])
        let link = try TRData.temporaryDirectory(self) + "/link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: data + "/train")
        XCTAssertEqual(try notes(link).first?.hasPrefix("\(link) holds images the run was trained on (it is inside "), true)
        XCTAssertEqual(try notes(data + "/test"), [])
        let elsewhere = try TRData.temporaryDirectory(self) + "/copy"
        try FileManager.default.copyItem(atPath: data + "/test", toPath: elsewhere)
        XCTAssertEqual(try notes(elsewhere), [])
    }
}

extension TrainingRunTests {
    /// `--seed` no longer picks the `--val-split` hold-out: a sweep over seeds held out other images at
    /// each seed, so the runs' validation metrics differed by the split as well as by the seed (stop
    /// 53). `splitSeed` picks it (0 unless given, recorded), and a run recorded without one splits
    /// with its `seed`, as it did.
    func testTheValidationSplitDoesNotFollowTheSeed() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func validation(seed: UInt64, splitSeed: UInt64?) throws -> (files: Set<String>, recorded: UInt64?) {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString)
            spec.recipe.seed = seed
            spec.options.seed = seed
            spec.options.splitSeed = splitSeed
            let run = try TrainingRun.create(spec, notify: { _ in })
            run.release()
            let config = try RunDirectory(spec.runDirectory).readConfig()
            let files = try RunSplits.recreate(data, run: config).validation?.samples.compactMap(\.source.path) ?? []
            return (Set(files), config.options.splitSeed)
        }
        let one = try validation(seed: 1, splitSeed: nil), two = try validation(seed: 2, splitSeed: nil)
        XCTAssertEqual(one.files.count, 6)
        XCTAssertEqual(one.files, two.files, "one validation set whatever --seed is")
        XCTAssertEqual(one.recorded, 0)
        XCTAssertNotEqual(try validation(seed: 1, splitSeed: 5).files, one.files, "--split-seed picks another")
        // A run from before splitSeed: its seed's split, made again.
        var old = TrainOptions(epochs: 1, batchSize: 4, valSplit: 0.25, seed: 5)
        old.splitSeed = nil
        let oldFiles = try RunSplits.load(data, options: old).validation?.samples.compactMap(\.source.path) ?? []
        XCTAssertEqual(Set(oldFiles), try validation(seed: 1, splitSeed: 5).files)
    }
}
