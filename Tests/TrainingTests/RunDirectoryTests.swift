import Data
import Foundation
import TensorIO
import Torch
@testable import Training
import Vision
import XCTest

/// Issue 18, findings 1, 3, 4 and 5 at the library level: which folders a new run may replace, one
/// writer per run directory, `config.json` validation, overflow-safe epoch counts and splits with
/// no usable image.
final class RunDirectoryTests: XCTestCase {
    func folder(_ name: String) throws -> String {
        let path = try TRData.temporaryDirectory(self) + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func write(_ text: String, to path: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try Foundation.Data(text.utf8).write(to: URL(fileURLWithPath: path))
    }

    /// A folder that passes for a finetune run: config.json with the format and version, run files only.
    func fakeRun(_ path: String) throws {
        try write(#"{"format": "finetune-run", "version": 1}"#, to: path + "/config.json")
        try write("epoch,loss\n", to: path + "/history.csv")
        try write("x", to: path + "/checkpoints/last/trainer.json")
    }

    // MARK: Finding 1: only a provable finetune run is replaced, and only with overwrite

    func testAModelFolderWithAConfigJSONIsNeverReplaced() throws {
        let hf = try folder("bert")
        try write(#"{"model_type": "bert"}"#, to: hf + "/config.json")
        try write("weights", to: hf + "/pytorch_model.bin")
        try write("{}", to: hf + "/tokenizer.json")
        for overwrite in [false, true] {
            XCTAssertThrowsError(try RunDirectory(hf).prepareNew(overwrite: overwrite)) { error in
                XCTAssertTrue("\(error)".contains("not a finetune run directory"), "\(error)")
            }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: hf).sorted(),
                       ["config.json", "pytorch_model.bin", "tokenizer.json"])
    }

    func testARunWithForeignFilesOrAnUnknownVersionIsNotReplaced() throws {
        let run = try folder("run")
        try fakeRun(run)
        try write("my notes", to: run + "/notes.txt")
        XCTAssertNotNil(RunDirectory(run).reasonNotARun())
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: true))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/notes.txt"))

        let future = try folder("future")
        try write(#"{"format": "finetune-run", "version": 99}"#, to: future + "/config.json")
        XCTAssertTrue(RunDirectory(future).reasonNotARun()?.contains("version 99") == true)
        XCTAssertThrowsError(try RunDirectory(future).prepareNew(overwrite: true))
        XCTAssertTrue(FileManager.default.fileExists(atPath: future + "/config.json"))
    }

    /// A user's file anywhere in an earlier run's tree keeps `--overwrite` from deleting it; only
    /// the top level was checked, so a note in `tensorboard/` or `checkpoints/last/`, or a folder
    /// named `loss.svg`, was deleted with the run.
    func testAUserFileAnywhereInARunKeepsItFromBeingReplaced() throws {
        func fullRun(_ path: String) throws {
            try fakeRun(path)
            for file in ["model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors"] {
                try write("x", to: path + "/checkpoints/last/" + file)
                try write("x", to: path + "/checkpoints/best/" + file)
            }
            try write("x", to: path + "/checkpoints/epoch-0003/trainer.json")
            try write("x", to: path + "/checkpoints/last.tmp-\(UUID().uuidString)/.model.safetensors.77.1.tmp")
            try write("x", to: path + "/tensorboard/train/events.out.tfevents.1796488889.vm")
            try write("x", to: path + "/tensorboard/validation/events.out.tfevents.1796488889.vm.1")
            try write("<svg/>", to: path + "/loss.svg")
            try write("<svg/>", to: path + "/lr_find.svg")  // `--lr find`: such a run could not be replaced
            try write("lr,loss\n", to: path + "/lr_find.csv")
        }
        let clean = try folder("clean")
        try fullRun(clean)
        XCTAssertEqual(RunDirectory(clean).foreignEntries(), [])
        XCTAssertNil(RunDirectory(clean).reasonNotARun())

        let placements: [(String, (String) throws -> Void)] = [
            ("tensorboard/README.txt", { try self.write("mine", to: $0 + "/tensorboard/README.txt") }),
            ("tensorboard/train/notes.txt", { try self.write("mine", to: $0 + "/tensorboard/train/notes.txt") }),
            ("checkpoints/last/notes.txt", { try self.write("mine", to: $0 + "/checkpoints/last/notes.txt") }),
            ("checkpoints/mine", { try self.write("mine", to: $0 + "/checkpoints/mine/a.txt") }),
            // A backup named like a replaced checkpoint, but not with the UUID finetune gives one.
            ("checkpoints/best.old-paper", { try self.write("x", to: $0 + "/checkpoints/best.old-paper/model.safetensors") }),
            ("checkpoints/best/model.safetensors/", { run in
                try FileManager.default.removeItem(atPath: run + "/checkpoints/best/model.safetensors")
                try self.write("mine", to: run + "/checkpoints/best/model.safetensors/a.txt")
            }),
            ("loss.svg/", { run in
                try FileManager.default.removeItem(atPath: run + "/loss.svg")
                try self.write("mine", to: run + "/loss.svg/user.txt")
            }),
        ]
        for (index, (expected, place)) in placements.enumerated() {
            let run = try folder("run\(index)")
            try fullRun(run)
            try place(run)
            XCTAssertEqual(RunDirectory(run).foreignEntries(), [expected])
            XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: true), expected) { error in
                XCTAssertTrue("\(error)".contains("holds files a run does not write (\(expected))"), "\(error)")
            }
            XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + expected), expected)
        }
    }

    /// A temporary file a killed atomic write left (model-sized) is removed when the run is resumed;
    /// a user's hidden file that merely ends in .tmp is neither removed nor taken for a run file.
    func testAResumeRemovesTemporaryFilesOfKilledWritesOnly() throws {
        let run = try folder("killed")
        try fakeRun(run)
        try write("partial weights", to: run + "/.model.safetensors.4242.17.tmp")
        // Named like a run file but not as AtomicFile names its temporary files, or a folder.
        let mine = [".notes.tmp", ".config.json.mine.tmp", ".history.csv.tmp", ".history.csv.1.tmp",
                    ".tensorboard.bak.tmp/f", ".loss.svg.12.34.tmp/f"]
        for name in mine { try write("mine", to: run + "/" + name) }
        XCTAssertEqual(RunDirectory(run).foreignEntries(),
                       [".config.json.mine.tmp", ".history.csv.1.tmp", ".history.csv.tmp", ".loss.svg.12.34.tmp/",
                        ".notes.tmp", ".tensorboard.bak.tmp"])
        let lock = try RunLock(directory: run)
        RunDirectory(run).removeStaleTemporaryFiles(lockedBy: lock)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run + "/.model.safetensors.4242.17.tmp"))
        for name in mine { XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/" + name), name) }
    }

    /// `--out` below a file said "NSCocoaErrorDomain error 512"; it names the file in the way.
    func testARunDirectoryBelowAFileNamesTheFile() throws {
        let base = try folder("below")
        try write("x", to: base + "/pfile")
        XCTAssertThrowsError(try RunDirectory(base + "/pfile/run").prepareNew(overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains("\(base)/pfile is a file, not a folder"), "\(error)")
        }
    }

    /// The lock file is never written through a symbolic link: the PID went into the link's target.
    func testTheLockIsNeverTakenThroughASymbolicLink() throws {
        let run = try folder("linked")
        let notes = try folder("elsewhere") + "/notes.txt"
        try write("my notes", to: notes)
        try FileManager.default.createSymbolicLink(atPath: run + "/" + RunLock.fileName, withDestinationPath: notes)
        XCTAssertThrowsError(try RunLock(directory: run)) { error in
            XCTAssertTrue("\(error)".contains("symbolic link"), "\(error)")
        }
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: false))
        XCTAssertEqual(try String(contentsOfFile: notes, encoding: .utf8), "my notes")
        // Nor through a hard link, which is the user's file under another name.
        try FileManager.default.removeItem(atPath: run + "/" + RunLock.fileName)
        XCTAssertEqual(link(notes, run + "/" + RunLock.fileName), 0)
        XCTAssertThrowsError(try RunLock(directory: run)) { error in
            XCTAssertTrue("\(error)".contains("hard link"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: notes, encoding: .utf8), "my notes")
    }

    /// A folder holding only a `.lock` counts as empty when the lock is finetune's (a run killed as it
    /// started); another tool's `.lock` is refused, not overwritten with a PID.
    func testAnotherToolsLockFileIsNotTakenForARunsLock() throws {
        let theirs = try folder("theirs")
        try write("other tool's lock: important state", to: theirs + "/" + RunLock.fileName)
        XCTAssertThrowsError(try RunDirectory(theirs).prepareNew(overwrite: true))
        XCTAssertEqual(try String(contentsOfFile: theirs + "/" + RunLock.fileName, encoding: .utf8), "other tool's lock: important state")
        let ours = try folder("ours")
        try write("4242\n", to: ours + "/" + RunLock.fileName)
        try RunDirectory(ours).prepareNew(overwrite: false).release()
    }

    /// `--out` a symbolic link to nothing is refused naming its target, and kept (the error was
    /// "A file with the same name already exists", after the data was scanned).
    func testADanglingLinkAsTheRunDirectoryIsRefusedNamingItsTarget() throws {
        let base = try folder("dangling")
        try FileManager.default.createSymbolicLink(atPath: base + "/run", withDestinationPath: base + "/not-mounted")
        XCTAssertThrowsError(try RunDirectory(base + "/run").prepareNew(overwrite: true)) { error in
            XCTAssertTrue("\(error)".contains("is a symbolic link to \(base)/not-mounted, which does not exist"), "\(error)")
        }
        XCTAssertNotNil(try? FileManager.default.destinationOfSymbolicLink(atPath: base + "/run"))
    }

    func testAnEarlierRunNeedsOverwriteAndIsThenReplaced() throws {
        let run = try folder("run")
        try fakeRun(run)
        XCTAssertNil(RunDirectory(run).reasonNotARun())
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains("--overwrite"), "\(error)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/history.csv"))
        let lock = try RunDirectory(run).prepareNew(overwrite: true)
        defer { lock.release() }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run), [RunLock.fileName])
        // Nothing is left beside it.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: (run as NSString).deletingLastPathComponent),
                       ["run"])
    }

    /// A run whose name is near NAME_MAX can be replaced: the name it was moved aside under (its own
    /// plus ".replaced-PID-N") was too long, and `--overwrite` always failed ("The file name is invalid").
    func testAnEarlierRunWithALongNameIsReplaced() throws {
        let run = try folder("runs") + "/" + String(repeating: "r", count: 250)
        try fakeRun(run)
        let lock = try RunDirectory(run).prepareNew(overwrite: true)
        defer { lock.release() }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: run), [RunLock.fileName])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: (run as NSString).deletingLastPathComponent).count, 1)
    }

    /// `--out LINK --overwrite` where LINK leads to an earlier run replaces that run and keeps the link (the
    /// link was replaced by a folder on the link's own disk, and the earlier run stayed: probe AK).
    func testAnEarlierRunReachedThroughALinkIsReplacedWhereItIs() throws {
        let fm = FileManager.default
        let run = try folder("disk2") + "/run"
        try fakeRun(run)
        let link = try folder("here") + "/current"
        try fm.createSymbolicLink(atPath: link, withDestinationPath: run)
        let lock = try RunDirectory(link).prepareNew(overwrite: true)
        defer { lock.release() }
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: link), run)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: run), [RunLock.fileName])
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: (run as NSString).deletingLastPathComponent), ["run"])
    }

    func testTheRunDirectoryMayNotContainOrLieInsideTheData() throws {
        let root = try folder("project")
        let data = root + "/data"
        try write("png", to: data + "/cat/1.png")
        for out in [root, data, data + "/run", data + "/cat"] {
            XCTAssertThrowsError(try RunDirectory(out).prepareNew(overwrite: true, data: data), out) { error in
                XCTAssertTrue("\(error)".contains("training data"), "\(error)")
            }
        }
        // Through a symbolic link too.
        let link = try folder("links") + "/data-link"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: data)
        XCTAssertThrowsError(try RunDirectory(link + "/run").prepareNew(overwrite: true, data: data))
        XCTAssertTrue(FileManager.default.fileExists(atPath: data + "/cat/1.png"))
        // A sibling is fine.
        let lock = try RunDirectory(root + "/run").prepareNew(overwrite: false, data: data)
        lock.release()
        // The folder of a CSV file's images (listed, never scanned) may hold the run, as
        // project/runs/x beside project/train.csv (it was refused), but not be it or lie inside it.
        let inside = try RunDirectory(data + "/runs/x").prepareNew(overwrite: false, data: data, listed: true)
        inside.release()
        for out in [data, root] {
            XCTAssertThrowsError(try RunDirectory(out).prepareNew(overwrite: true, data: data, listed: true), out)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: data + "/cat/1.png"))
    }

    // MARK: Finding 3: one writer

    func testASecondWriterGetsTheHoldersPID() throws {
        let run = try folder("run")
        let first = try RunLock(directory: run)
        XCTAssertThrowsError(try RunLock(directory: run)) { error in
            XCTAssertEqual(error as? RunError, .locked(directory: run, pid: getpid()))
            XCTAssertTrue("\(error)".contains("process \(getpid())"), "\(error)")
        }
        // Replacing a locked run is refused too, and leaves it alone.
        try fakeRun(run)
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: true)) { error in
            guard case .locked = error as? RunError else { return XCTFail("\(error)") }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: run + "/history.csv"))
        first.release()
        let second = try RunLock(directory: run)
        second.release()
    }

    /// Probe V: a writer that opened `.lock` just before another `--overwrite` moved the run aside
    /// (and, after releasing it, deleted it) locked the deleted file, then replaced the other's new,
    /// live run: two writers in one folder. The lock must be the file the path names now.
    func testALockFileReplacedBetweenOpenAndLockIsNotTaken() throws {
        let run = try folder("raced")
        try fakeRun(run)
        var newcomer: RunLock?
        XCTAssertThrowsError(try RunLock(directory: run, beforeLocking: {
            // Another process's --overwrite: the old run aside, a new run at the path, locked.
            try FileManager.default.moveItem(atPath: run, toPath: run + ".aside")
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: false)
            newcomer = try RunLock(directory: run)
        })) { error in
            XCTAssertEqual(error as? RunError, .locked(directory: run, pid: getpid()))
        }
        XCTAssertNotNil(newcomer)
        newcomer?.release()
        // A replaced lock file that nobody holds is simply taken at its new place.
        let again = try RunLock(directory: run, beforeLocking: {
            try FileManager.default.removeItem(atPath: run + "/" + RunLock.fileName)
            _ = FileManager.default.createFile(atPath: run + "/" + RunLock.fileName, contents: nil)
        })
        XCTAssertTrue(again.isHeld)
        XCTAssertEqual(RunLock.holder(of: run), getpid())
        again.release()
    }

    /// Probe V: a second `train --out X` racing the first one's start was told that X "is not a
    /// finetune run directory (it has no config.json)"; it is in use, by the process named.
    func testARunBeingStartedIsInUseRatherThanNoRun() throws {
        let run = try folder("starting")
        let lock = try RunLock(directory: run)
        _ = FileManager.default.createFile(atPath: run + "/.config.json.123.4.tmp", contents: Foundation.Data())
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: true)) { error in
            XCTAssertEqual(error as? RunError, .locked(directory: run, pid: getpid()))
        }
        lock.release()
        XCTAssertThrowsError(try RunDirectory(run).prepareNew(overwrite: true)) { error in
            XCTAssertTrue("\(error)".contains("is not a finetune run directory"), "\(error)")
        }
    }

    // MARK: Finding 4: config.json is validated before use

    func validConfig() -> RunConfig {
        RunConfig(architecture: "mobilenet_v2", weights: nil, classNames: ["a", "b", "c"], preprocessing: .imagenet,
                  head: .init(numClasses: 3), training: TrainingConfiguration(),
                  options: TrainOptions(epochs: 1, batchSize: 4),
                  data: .init(path: "/d", hasSplitFolders: false, trainSamples: 3, validationSamples: 0, testSamples: 0),
                  createdAt: "", updatedAt: "", finetuneVersion: "test", libtorchVersion: "test", status: "completed",
                  epochsCompleted: 1)
    }

    /// `export --input-size` of a run trained at another size scales the weights' own preprocessing,
    /// as `train --input-size` does: scaling the run's rounded resize side again rounded twice (96 px,
    /// resize 110, exported at 224: 257, where a 224 px run has 256). Preprocessing that is not the
    /// weights' (a user's) is scaled as it is.
    func testThePreprocessingAtAnotherCropSizeIsScaledFromTheWeightsOwn() throws {
        var config = validConfig()
        config.preprocessing = Preprocessing.imagenet.withCropSize(96)
        XCTAssertEqual(config.preprocessing.resizeSize, 110)
        XCTAssertEqual(config.preprocessing(cropSize: 224), .imagenet)
        XCTAssertEqual(config.preprocessing(cropSize: 96), config.preprocessing)
        XCTAssertEqual(config.preprocessing(cropSize: 160).resizeSize, Preprocessing.imagenet.withCropSize(160).resizeSize)
        config.preprocessing.resizeSize = 100  // not the weights' own scaled
        XCTAssertEqual(config.preprocessing(cropSize: 192).resizeSize, 200)
    }

    /// While a process trains the run, the older-model notice says to wait for it: it said to
    /// resume the run, which only met that process's lock.
    func testTheOlderModelNoticeSaysToWaitForTheTrainingProcess() throws {
        var config = validConfig()
        config.modelEpoch = 1
        config.status = "running"
        let training = try XCTUnwrap(config.olderModelNotice(trainingProcess: 42))
        XCTAssertTrue(training.contains("process 42 is training it") && training.hasSuffix("replaced when that process finishes"),
                      training)
        XCTAssertFalse(training.contains("--resume"), training)
        config.status = "interrupted"
        XCTAssertTrue(try XCTUnwrap(config.olderModelNotice(trainingProcess: nil)).contains("finish it with `finetune train --resume`"))
    }

    func testConfigValidationNamesTheField() throws {
        XCTAssertNoThrow(try validConfig().validate())
        var shortClasses = validConfig()
        shortClasses.classNames = ["a", "b"]
        var zeroStd = validConfig()
        zeroStd.preprocessing.std = [0, 0.2, 0.2]
        var hugeCrop = validConfig()
        hugeCrop.preprocessing.cropSize = 100_000
        hugeCrop.preprocessing.resizeSize = 100_000
        var wrongFormat = validConfig()
        wrongFormat.format = "something-else"
        var futureVersion = validConfig()
        futureVersion.version = 2
        // A subnormal std or an enormous mean made every prediction NaN with status 0; a hidden
        // layer of 1e8 units asked LibTorch for 512 GB.
        var tinyStd = validConfig()
        tinyStd.preprocessing.std = [1e-45, 1e-45, 1e-45]
        var hugeMean = validConfig()
        hugeMean.preprocessing.mean = [1e308, 0, 0]
        var wideHead = validConfig()
        wideHead.head.spec = HeadSpec(outputs: wideHead.classNames.count, hiddenUnits: [100_000_000])
        // A value range of [0, 1e308] scaled every pixel to infinity (NaN predictions, status 0).
        var hugeRange = validConfig()
        hugeRange.preprocessing.valueRange = [0, 1e308]
        var unknownArchitecture = validConfig()  // "unknown architecture", naming no file
        unknownArchitecture.architecture = "nonexistent"
        for (config, expected) in [(shortClasses, "classNames"), (zeroStd, "std"), (hugeCrop, "at most 4096"),
                                   (hugeRange, "valueRange"), (unknownArchitecture, "architecture 'nonexistent'"),
                                   (wrongFormat, "format"), (futureVersion, "version 2"), (tinyStd, "std must be finite"),
                                   (hugeMean, "mean must be finite"), (wideHead, "head.spec")] {
            XCTAssertThrowsError(try config.validate(), expected) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(error)")
            }
        }
        // readConfig applies it, naming the file.
        let run = try folder("run")
        try RunDirectory(run).write(shortClasses)
        XCTAssertThrowsError(try RunDirectory(run).readConfig()) { error in
            XCTAssertTrue("\(error)".contains(run + "/config.json"), "\(error)")
        }
        // A number that does not fit its field (a seed of -1) was "The given data was not valid JSON";
        // a wrong type names its path.
        try RunDirectory(run).write(validConfig())
        let path = run + "/config.json"
        let valid = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        func rewritten(_ change: (inout [String: Any]) -> Void) throws -> String {
            var json = valid
            change(&json)
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
            do { _ = try RunDirectory(run).readConfig(); return "accepted" } catch { return "\(error)" }
        }
        let negativeSeed = try rewritten { json in
            var options = json["options"] as! [String: Any]
            options["seed"] = -1
            json["options"] = options
        }
        XCTAssertTrue(negativeSeed.contains("a number does not fit its field") && negativeSeed.contains("JSON itself is valid"),
                      negativeSeed)
        let wrongType = try rewritten { json in
            var options = json["options"] as! [String: Any]
            options["batchSize"] = "many"
            json["options"] = options
        }
        XCTAssertTrue(wrongType.contains("options.batchSize"), wrongType)

        // An empty model.safetensors cannot be read; it "did not fit the model config.json describes".
        try Foundation.Data().write(to: URL(fileURLWithPath: run + "/model.safetensors"))
        XCTAssertThrowsError(try RunDirectory(run).loadModel(validConfig())) { error in
            XCTAssertTrue("\(error)".contains("model.safetensors: cannot read it"), "\(error)")
        }
    }

    func testMemoryEstimateRefusesAbsurdSizesWithoutOverflowing() throws {
        XCTAssertNoThrow(try MemoryEstimate.checkImagePipeline(preprocessing: .imagenet, batchSize: 32))
        var huge = Preprocessing.imagenet
        huge.cropSize = 100_000
        huge.resizeSize = 114_286
        XCTAssertThrowsError(try MemoryEstimate.checkImagePipeline(preprocessing: huge, batchSize: 32))
        XCTAssertNil(MemoryEstimate.imagePipelineBytes(preprocessing: .imagenet, batchSize: .max))
        XCTAssertThrowsError(try MemoryEstimate.checkImagePipeline(preprocessing: .imagenet, batchSize: .max))
    }

    func testThreadCountsAreCapped() throws {
        let before = Runtime.numThreads
        defer { try? Runtime.setNumThreads(before) }
        XCTAssertThrowsError(try Runtime.setNumThreads(100_000))
        XCTAssertThrowsError(try Runtime.setNumThreads(.max))
        XCTAssertThrowsError(try Runtime.setNumThreads(0))
        XCTAssertNoThrow(try Runtime.setNumThreads(Runtime.maxThreads))
        XCTAssertThrowsError(try DataLoader(try TRData.dataset(count: 4), batchSize: 2, transform: TRData.transform,
                                            workers: 100_000))
    }

    // MARK: Finding 4: huge epoch counts and batch sizes do not overflow

    func testIntMaxEpochsAndBatchSizeTrainWithoutOverflow() throws {
        let dataset = try TRData.dataset(count: 12)
        let loader = try DataLoader(dataset, batchSize: .max, transform: TRData.transform, workers: 0)
        XCTAssertEqual(loader.batchesPerEpoch, 1)
        XCTAssertEqual(try TRData.loader(dataset, batchSize: 5).batchesPerEpoch, 3)
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration(
            optimizer: .sgd(learningRate: 0.01), schedule: .cosine(etaMin: 0, periodSteps: nil)))
        trainer.callbacks = [TRStopper(step: 3)]
        let result = try trainer.fit(train: try TRData.loader(dataset, batchSize: 4), epochs: Int.max)
        XCTAssertEqual(result.globalStep, 3)
        let second = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration(
            optimizer: .sgd(learningRate: 0.01), schedule: .cosine(etaMin: 0, periodSteps: nil)))
        second.callbacks = [TRStopper(step: 2)]
        let big = try second.fit(train: loader, epochs: Int.max)  // one batch of all 12 per epoch
        XCTAssertEqual(big.globalStep, 2)
    }

    // MARK: Finding 5: a split with no usable image is an error; skipped files are reported once

    func truncatedImages(_ count: Int) throws -> LabeledDataset {
        let dir = try folder("truncated")
        var samples: [LabeledSample] = []
        let png = try Image(rgb: (0..<(16 * 16 * 3)).map { UInt8($0 % 251) }, width: 16, height: 16)
            .pngData(compressionLevel: 0)
        for i in 0..<count {
            let path = "\(dir)/\(i).png"
            try png.prefix(png.count / 2).write(to: URL(fileURLWithPath: path))
            samples.append(LabeledSample(source: .file(path), label: i % 3))
        }
        return LabeledDataset(samples: samples, classNames: ["class0", "class1", "class2"])
    }

    func testTrainingAndEvaluatingOnlyUndecodableImagesIsAnError() throws {
        let bad = try truncatedImages(6)
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        XCTAssertThrowsError(try trainer.fit(train: try TRData.loader(bad, batchSize: 2), epochs: 1)) { error in
            guard case .noUsableData(let message) = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("training data"), message)
            XCTAssertTrue(message.contains("truncated/") && message.contains(".png: "), message)  // names files
        }
        XCTAssertThrowsError(try trainer.evaluate(try TRData.loader(bad, batchSize: 2, shuffle: false))) { error in
            guard case .noUsableData = error as? TrainingError else { return XCTFail("\(error)") }
        }
    }

    func testEachSkippedFileIsReportedOnceAcrossEpochsAndLoaders() throws {
        let bad = try truncatedImages(2)
        let good = try TRData.dataset(count: 6)
        let mixed = LabeledDataset(samples: good.samples + bad.samples, classNames: good.classNames)
        var reported: [String] = []
        let reporter = SkippedFileReporter { split, entry in reported.append("\(split) \(entry.path)") }
        let train = try TRData.loader(mixed, batchSize: 4)
        let again = try TRData.loader(mixed, batchSize: 4)
        reporter.watch(train, split: "training")
        reporter.watch(again, split: "training")
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        try trainer.fit(train: train, epochs: 3)
        for _ in again.epoch(0) {}
        XCTAssertEqual(reported.sorted(), bad.samples.map { "training \($0.source.description)" }.sorted())
        XCTAssertEqual(reporter.count(split: "training"), 2)
        // Strict loaders throw, naming the file.
        let strict = try DataLoader(mixed, batchSize: 4, transform: TRData.transform, workers: 0, strict: true)
        XCTAssertThrowsError(try trainer.fit(train: strict, epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains(".png"), "\(error)")
        }
    }
}

/// Issue 18, finding 7: a NaN or infinite loss stops the run as `diverged`, naming the step,
/// before the step is applied.
final class DivergenceTests: XCTestCase {
    func testANonFiniteLossStopsTheRunAsDivergedWithoutApplyingTheStep() throws {
        let model = try TRTinyNet()
        let trainer = try Trainer(model: model, configuration: TrainingConfiguration(optimizer: .sgd(learningRate: 0.1)))
        let loader = try TRData.loader(try TRData.dataset(count: 16), batchSize: 4)
        try trainer.fit(train: loader, epochs: 1)  // four good steps
        let before = try TRData.snapshot(model.stateDict())
        // Poison the head's bias with infinity: the next loss is not finite.
        let bias = try XCTUnwrap(model.stateDict()["classifier.1.bias"])
        try withNoGrad { try bias.fill_(.infinity) }
        let poisoned = try TRData.snapshot(model.stateDict())
        XCTAssertNotEqual(before["classifier.1.bias"], poisoned["classifier.1.bias"])
        let result = try trainer.fit(train: loader, epochs: 2)
        guard case .diverged(let step, let loss) = result.status else { return XCTFail("\(result.status)") }
        XCTAssertEqual(step, 5)
        XCTAssertFalse(loss.isFinite)
        XCTAssertEqual(result.status.name, "diverged")
        XCTAssertEqual(result.globalStep, 4, "the diverged step is not counted")
        // No optimizer step: every parameter is as it was (BatchNorm's running statistics did see the
        // forward pass, as they do in PyTorch).
        let after = try TRData.snapshot(model.stateDict())
        for (key, _) in model.namedParameters() {
            XCTAssertTrue(after[key] == poisoned[key], "\(key) changed")
        }
    }
}

/// Issue 18, finding 7: a damaged checkpoint file is an error that names the file.
final class CheckpointFileErrorTests: XCTestCase {
    func testATruncatedOptimizerFileIsNamed() throws {
        let directory = try TRData.temporaryDirectory(self) + "/last"
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        try trainer.fit(train: try TRData.loader(try TRData.dataset(count: 8), batchSize: 4), epochs: 1)
        try trainer.saveCheckpoint(to: directory)
        for file in [Checkpoint.optimizerHyperparametersFile, Checkpoint.optimizerFile, Checkpoint.modelFile] {
            let path = directory + "/" + file
            let original = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
            try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Checkpoint.read(from: directory), file) { error in
                XCTAssertTrue("\(error)".contains(path), "\(error)")
            }
            try original.write(to: URL(fileURLWithPath: path))
        }
        XCTAssertNoThrow(try Checkpoint.read(from: directory))
    }

    /// Probe AK: a user's `checkpoints/best` made a link to a folder elsewhere was replaced by a folder
    /// in the run on the next best epoch, and the user's files there were moved into the run; a file
    /// named `last` was deleted by the next save. The link now stays and the checkpoint is written where
    /// it leads; a file, or a link to nothing, is refused by name and left as it was.
    func testALinkedCheckpointIsWrittenWhereItLeadsAndAFileThereIsRefused() throws {
        let root = try TRData.temporaryDirectory(self)
        let fm = FileManager.default
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        try trainer.fit(train: try TRData.loader(try TRData.dataset(count: 8), batchSize: 4), epochs: 1)
        let elsewhere = root + "/keep/best", checkpoints = root + "/run/checkpoints"
        try fm.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try fm.createDirectory(atPath: checkpoints, withIntermediateDirectories: true)
        try "mine".write(toFile: elsewhere + "/NOTES.txt", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: checkpoints + "/best", withDestinationPath: elsewhere)
        for _ in 0..<2 {  // the first save, then one that replaces the checkpoint the link leads to
            try trainer.saveCheckpoint(to: checkpoints + "/best")
            XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: checkpoints + "/best"), elsewhere)
            XCTAssertTrue(Checkpoint.isComplete(elsewhere))
            XCTAssertEqual(try String(contentsOfFile: elsewhere + "/NOTES.txt", encoding: .utf8), "mine")
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: checkpoints), ["best"])
            XCTAssertEqual(try fm.contentsOfDirectory(atPath: root + "/keep"), ["best"])
        }
        XCTAssertNoThrow(try Checkpoint.read(from: checkpoints + "/best"))

        try "a file of mine".write(toFile: checkpoints + "/last", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try trainer.saveCheckpoint(to: checkpoints + "/last")) { error in
            XCTAssertTrue("\(error)".contains(checkpoints + "/last") && "\(error)".contains("is not a folder"), "\(error)")
        }
        XCTAssertEqual(try String(contentsOfFile: checkpoints + "/last", encoding: .utf8), "a file of mine")
        try fm.createSymbolicLink(atPath: checkpoints + "/epoch-0001", withDestinationPath: root + "/gone")
        XCTAssertThrowsError(try trainer.saveCheckpoint(to: checkpoints + "/epoch-0001")) { error in
            XCTAssertTrue("\(error)".contains(root + "/gone, which does not exist"), "\(error)")
        }
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: checkpoints).sorted(), ["best", "epoch-0001", "last"])
        XCTAssertFalse(fm.fileExists(atPath: root + "/gone"))
    }

    /// An edited optimizer.json that does not decode (a NaN literal, a rate of the wrong type) is named
    /// in the decoder's words: the message was Swift's dump of the error value
    /// ("dataCorrupted(Swift.DecodingError.Context(codingPath: [], …").
    func testAnUndecodableOptimizerJSONIsDescribedNotDumped() throws {
        let directory = try TRData.temporaryDirectory(self) + "/last"
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        try trainer.fit(train: try TRData.loader(try TRData.dataset(count: 8), batchSize: 4), epochs: 1)
        try trainer.saveCheckpoint(to: directory)
        let path = directory + "/" + Checkpoint.optimizerHyperparametersFile
        let original = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertTrue(original.contains("\"learningRate\":"), original)
        let rate = #""learningRate" ?: ?[0-9.e+-]+"#
        for (pattern, replacement, expected) in [(rate, #""learningRate":NaN"#, "not valid JSON"),
                                                 (rate, #""learningRate":"fast""#, "at groups[0].learningRate: "),
                                                 // Probe Z: a missing field was "No value associated with key CodingKeys(…)".
                                                 (rate, #""learningrate":0.1"#, "missing field groups[0].learningRate"),
                                                 (#""betas.0" ?: ?[0-9.e+-]+"#, #""betas.0":"x""#, #"at groups[0].options["betas.0"]: "#)] {
            let edited = try NSRegularExpression(pattern: pattern).stringByReplacingMatches(
                in: original, range: NSRange(original.startIndex..., in: original),
                withTemplate: NSRegularExpression.escapedTemplate(for: replacement))
            XCTAssertNotEqual(edited, original)
            try edited.write(toFile: path, atomically: false, encoding: .utf8)
            XCTAssertThrowsError(try Checkpoint.read(from: directory), replacement) { error in
                let text = "\(error)"
                XCTAssertTrue(text.contains(path) && text.contains(expected), text)
                XCTAssertFalse(text.contains("DecodingError") || text.contains("Context(") || text.contains("CodingKeys("), text)
            }
        }
    }

    /// A damaged random-generator state or trainer.json was reported in LibTorch's words without the
    /// file ("Invalid mt19937 state"), a missing file as "no complete checkpoint", and a position
    /// past the epoch (or negative) was accepted: the epoch trained no step and the run "completed".
    func testDamagedRNGStateAndPositionsAreNamed() throws {
        let directory = try TRData.temporaryDirectory(self) + "/last"
        let trainer = try Trainer(model: try TRTinyNet(), configuration: TrainingConfiguration())
        let loader = try TRData.loader(try TRData.dataset(count: 8), batchSize: 4)
        try trainer.fit(train: loader, epochs: 1)
        try trainer.saveCheckpoint(to: directory)
        let rng = directory + "/" + Checkpoint.rngFile
        let original = try Foundation.Data(contentsOf: URL(fileURLWithPath: rng))
        func resume() throws -> Trainer { try Trainer.resume(from: directory, model: try TRTinyNet()) }

        try SafeTensors.write(StateDict([("cpu", try Tensor.zeros([16], dtype: .uint8))]), to: rng)
        XCTAssertThrowsError(try resume()) { error in
            XCTAssertTrue("\(error)".contains(rng) && "\(error)".contains("random-generator state"), "\(error)")
        }
        try SafeTensors.write(StateDict([("cpu", try Tensor.zeros([5056]))]), to: rng)
        XCTAssertThrowsError(try resume()) { error in
            XCTAssertTrue("\(error)".contains(rng) && "\(error)".contains("not uint8"), "\(error)")
        }
        try FileManager.default.removeItem(atPath: rng)
        XCTAssertEqual(Checkpoint.whyIncomplete(directory), "\(Checkpoint.rngFile) is missing")
        try original.write(to: URL(fileURLWithPath: rng))
        XCTAssertNil(Checkpoint.whyIncomplete(directory))

        let manifest = directory + "/" + Checkpoint.trainerFile
        let text = try String(contentsOfFile: manifest, encoding: .utf8)
        func withState(_ key: String, _ value: Int) throws {
            var json = try JSONSerialization.jsonObject(with: Foundation.Data(text.utf8)) as! [String: Any]
            var state = json["state"] as! [String: Any]
            state[key] = value
            json["state"] = state
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: manifest))
        }
        try withState("epoch", -3)
        XCTAssertThrowsError(try Checkpoint.read(from: directory)) { error in
            XCTAssertTrue("\(error)".contains(manifest) && "\(error)".contains("negative position"), "\(error)")
        }
        // Counters no run reaches: Int.max steps trapped adding one on resume (stop 34's probe).
        for key in ["globalStep", "epoch", "batchInEpoch"] {
            try withState(key, Int.max)
            XCTAssertThrowsError(try Checkpoint.read(from: directory), key) { error in
                XCTAssertTrue("\(error)".contains(manifest) && "\(error)".contains("a position beyond"), "\(error)")
            }
        }
        try withState("batchInEpoch", 1_000_000_000)
        let resumed = try resume()
        XCTAssertThrowsError(try resumed.fit(train: loader, epochs: 2)) { error in
            XCTAssertTrue("\(error)".contains("past the epoch's 2 batches"), "\(error)")
        }
    }
}

/// Issue 18, finding 7: a run killed after an epoch's log rows but before that epoch's checkpoint
/// logs the epoch again on resume; the logs are truncated to the checkpoint, so no row is doubled.
final class ResumeLogTests: XCTestCase {
    /// Throws at the end of `epoch`, after the loggers and before the checkpoint (a kill there).
    final class KillAtEpochEnd: TrainingCallback {
        let epoch: Int
        init(epoch: Int) { self.epoch = epoch }
        func handle(_ event: TrainingEvent, trainer: Trainer) throws {
            if case .epochEnd(let r) = event, r.epoch == epoch { throw TrainingError.invalidConfiguration("killed") }
        }
    }

    func testAKillBetweenAnEpochsLogRowAndItsCheckpointLeavesNoDuplicateRows() throws {
        let directory = try TRData.temporaryDirectory(self)
        let history = directory + "/history.csv", events = directory + "/events.jsonl"
        func callbacks(kill: Bool) -> [TrainingCallback] {
            [CSVLoggerCallback(path: history), JSONLinesLoggerCallback(path: events)]
                + (kill ? [KillAtEpochEnd(epoch: 1)] : [])
                + [ModelCheckpoint(directory: directory + "/checkpoints", everySteps: 1)]
        }
        let loader = try TRData.loader(try TRData.dataset(count: 16), batchSize: 4)
        var configuration = TrainingConfiguration()
        configuration.checkpointDirectory = directory + "/checkpoints"
        let first = try Trainer(model: try TRTinyNet(), configuration: configuration, callbacks: callbacks(kill: true))
        XCTAssertThrowsError(try first.fit(train: loader, epochs: 3))
        let resumed = try Trainer.resume(from: directory + "/checkpoints/last", model: try TRTinyNet(),
                                         callbacks: callbacks(kill: false))
        XCTAssertEqual(resumed.state.epoch, 1, "resumes inside epoch 1, after its last step")
        try resumed.fit(train: loader, epochs: 3)

        let rows = try CSVLogger(path: history, resume: true).read()
        XCTAssertEqual(rows.map(\.epoch), [0, 1, 2])
        let logged = try JSONLinesLogger(path: events, resume: true).read()
        for name in ["epoch", "train"] {
            let keys = logged.filter { $0["event"] as? String == name }.map { "\($0["epoch"] ?? "")/\($0["step"] ?? "")" }
            XCTAssertEqual(keys.count, Set(keys).count, "\(name) events doubled: \(keys)")
        }
        XCTAssertEqual(logged.filter { $0["event"] as? String == "epoch" }.count, 3)
    }
}
