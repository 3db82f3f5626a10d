@testable import finetune
import Foundation
import TensorIO
import TestSupport
import Torch
import Training
import XCTest

/// Issue 18's hostile-user findings 1, 3, 4 and 5, reproduced against the `finetune` binary: each
/// of these wiped a folder, let two writers into one run, crashed, or trained on nothing, before
/// the fix.
final class ReliabilityCLITests: XCTestCase {
    func run(_ arguments: [String]) throws -> CLITests.Run { try CLITests.run(arguments) }

    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    func dataset() throws -> String {
        let root = try temporaryFolder("data")
        try TrainCLITests.writeDataset(at: root)
        return root
    }

    static let fast = ["--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--batch-size", "4",
                       "--workers", "0", "--threads", "2", "--augment", "none", "--epochs", "1"]

    func files(_ path: String) -> [String] {
        ((try? FileManager.default.subpathsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Exited with a status (not a signal), non-zero, and said `expected` on standard error.
    func assertError(_ result: CLITests.Run, mentions expected: [String], file: StaticString = #filePath,
                     line: UInt = #line) {
        XCTAssertNotEqual(result.status, 0, result.stdout, file: file, line: line)
        XCTAssertLessThan(result.status, 128, "killed by a signal: \(result.stderr)", file: file, line: line)
        for text in expected {
            XCTAssertTrue(result.stderr.contains(text), "expected '\(text)' in: \(result.stderr)", file: file, line: line)
        }
    }

    /// A folder this process may not write in: a read-only tmpfs mounted on it as root (who may write
    /// in any folder its mode forbids), else mode 0555. Skips where neither can be made.
    func readOnlyFolder() throws -> String {
        let folder = try temporaryFolder("read-only")
        if getuid() == 0 {
            let mount = Process()
            mount.executableURL = URL(fileURLWithPath: "/bin/mount")
            mount.arguments = ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", folder]
            mount.standardError = FileHandle.nullDevice
            try mount.run()
            mount.waitUntilExit()
            try XCTSkipUnless(mount.terminationStatus == 0, "root here may not mount a read-only tmpfs (no CAP_SYS_ADMIN)")
            addTeardownBlock {
                let umount = Process()
                umount.executableURL = URL(fileURLWithPath: "/bin/umount")
                umount.arguments = [folder]
                try? umount.run()
                umount.waitUntilExit()
            }
        } else {
            XCTAssertEqual(chmod(folder, 0o555), 0)
            addTeardownBlock { chmod(folder, 0o755) }
        }
        XCTAssertNotEqual(access(folder, W_OK), 0)
        return folder
    }

    /// A server under an open-file limit too low to accept one connection said it was listening and
    /// ready, and every client then waited for ever (accepting failed with EMFILE, silently). It now
    /// refuses to start, naming `ulimit -n` (before the fix this ran until `timeout` stopped it).
    func testServeUnderAnOpenFileLimitTooLowForAConnectionRefusesToStart() throws {
        #if os(Linux)
        let refused = try CLITests.run(shell: #"ulimit -n 16 && exec timeout 20 "$0" serve --arch resnet18 --weights none --port 0"#, [])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("Error: the open-file limit (ulimit -n) is 16 and "), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("no connection could be accepted; raise it (ulimit -n 4096"), refused.stderr)
        XCTAssertFalse(refused.stdout.contains("listening"), refused.stdout)
        #endif
    }

    /// Probe AK: on a read-only disk `lr-find --out` ran its whole range test and then failed in
    /// Foundation's words (`Error Domain=NSCocoaErrorDomain Code=642 …`), `train --lr find` ran it before
    /// the run directory failed, and the other outputs failed after their work. Each is now refused
    /// before any work, naming the flag and the folder, and nothing is written.
    func testAnOutputOnAReadOnlyDiskIsRefusedBeforeAnyWork() throws {
        let data = try dataset()
        let readOnly = try readOnlyFolder()
        let fast = Self.fast + ["--val-split", "0.25"]
        for (arguments, expected) in [
            (["train", data, "--out", readOnly + "/run"] + fast, "--out: \(readOnly)/run: cannot create the run directory: "),
            (["train", data, "--out", readOnly + "/run", "--lr", "find"] + fast, "cannot create the run directory: "),
            (["lr-find", data + "/train", "--out", readOnly + "/lr", "--steps", "5"] + fast, "--out: "),
            (["convert", "mnist", data, readOnly + "/converted"], "DST: "),
            (["export", "--arch", "resnet18", "--weights", "none", "--input-size", "32", "--out", readOnly + "/m.onnx"], "--out: "),
            (["features", "mobilenet_v2", data, "--weights", "none", "--out", readOnly + "/f.npy"], "--out: "),
        ] {
            let result = try CLITests.runUnlessRefusedInParsing(arguments)
            assertError(result, mentions: [expected + "cannot write in \(readOnly)"])
            XCTAssertFalse(result.stdout.contains("LR finder") || result.stderr.contains("LR finder"), "\(arguments): \(result.stdout)")
            XCTAssertFalse(result.stderr.contains("NSCocoaErrorDomain"), result.stderr)
        }
        XCTAssertEqual(files(readOnly), [])
    }

    /// A feature-cache folder this process may not write in (a shared cache an administrator filled
    /// with weights, `FINETUNE_CACHE_DIR` on a read-only disk) failed a head-only run as it started
    /// ("cannot create the folder …/features: cannot write in …: Permission denied", status `failed`).
    /// The features are now computed and kept in memory for the run, which says so, writes nothing
    /// there, and ends with the very weights of a run whose cache folder is writable; the ranks of a
    /// data-parallel run do the same.
    func testAFeatureCacheFolderThatCannotBeWrittenKeepsTheFeaturesInMemory() throws {
        let data = try dataset()
        let readOnly = try readOnlyFolder(), runs = try temporaryFolder("runs")
        let headOnly = ["train", data, "--recipe", "head-only", "--augment", "none", "--epochs", "2", "--val-split", "0.25"]
            + TrainCLITests.common
        let inMemory = try run(headOnly + ["--out", runs + "/in-memory", "--feature-cache-dir", readOnly + "/features"])
        XCTAssertEqual(inMemory.status, 0, inMemory.stderr)
        XCTAssertTrue(inMemory.stdout.contains("kept in memory for this run only, since cannot write in \(readOnly): "),
                      inMemory.stdout)
        XCTAssertEqual(files(readOnly), [])
        let onDisk = try run(headOnly + ["--out", runs + "/on-disk", "--feature-cache-dir", runs + "/features"])
        XCTAssertEqual(onDisk.status, 0, onDisk.stderr)
        XCTAssertTrue(onDisk.stdout.contains("computed in"), onDisk.stdout)
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/in-memory/model.safetensors")),
                       try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/on-disk/model.safetensors")))

        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let ranks = try run(headOnly + ["--out", runs + "/ranks", "--feature-cache-dir", readOnly + "/features",
                                        "--nproc-per-node", "2", "--master-port", String(try FreePort.make())])
        XCTAssertEqual(ranks.status, 0, ranks.stderr)
        XCTAssertTrue(ranks.stdout.contains("by 2 ranks (kept in memory for this run only"), ranks.stdout)
        XCTAssertEqual(files(readOnly), [])
    }

    /// Probe AK: a path the user gave reached the terminal raw in errors and results, so an ESC
    /// sequence in a folder's name (made by a script, or pasted) retitled the window and cleared the
    /// screen. Every line printed for a reader shows control characters escaped: a usage error, a
    /// command's failure (exit 1) and a result on standard output. The path itself is used as given.
    func testControlCharactersInAPathArePrintedEscaped() throws {
        let folder = try temporaryFolder("terminal") + "/c\u{1B}]0;pwned\u{07}\u{1B}[2Jd"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false)
        try Foundation.Data("junk".utf8).write(to: URL(fileURLWithPath: folder + "/w.pth"))
        let usage = try run(["export", folder + "/run", "--out", folder + "/m.onnx"])
        XCTAssertEqual(usage.status, 64, usage.stderr)
        let failure = try run(["weights", "import", folder + "/w.pth"])
        XCTAssertEqual(failure.status, 1, failure.stderr)
        let listed = try run(["cache", "list", "--dir", folder])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        for text in [usage.stderr, failure.stderr, listed.stdout] {
            XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 }, text)
            XCTAssertTrue(text.contains("c\\u{1b}]0;pwned\\u{7}\\u{1b}[2Jd"), text)
        }
        XCTAssertTrue(listed.stdout.hasSuffix("\n"), "a line of its own: \(listed.stdout)")
    }

    // MARK: Finding 1

    /// An output file name longer than a name may be (255 bytes) is refused while the flags are read,
    /// naming the flag; a long one that fits is written (`AtomicFile.temporaryStem`), for export as for
    /// features: their temporary file's name was the output's plus 24 bytes, so names over about 231
    /// bytes failed after the work (probe AK).
    func testOutputFileNamesUpToTheSystemsLimitAreWrittenAndLongerOnesRefusedFirst() throws {
        let folder = try temporaryFolder("long-names")
        let tooLong = folder + "/" + String(repeating: "m", count: 252) + ".onnx"
        for arguments in [["export", "--arch", "mobilenet_v2", "--weights", "none", "--out", tooLong],
                          ["features", "mobilenet_v2", folder, "--weights", "none", "--out", tooLong + ".npy"]] {
            let refused = try CLITests.runUnlessRefusedInParsing(arguments)
            XCTAssertEqual(refused.status, 64, refused.stderr)
            XCTAssertTrue(refused.stderr.contains("--out: the name mmmmmmmmmmmmmmmmmmmmmmmm… in it is 2"), refused.stderr)
        }
        let long = folder + "/" + String(repeating: "m", count: 245) + ".onnx"  // 250 bytes
        let export = try run(["export", "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--out", long])
        XCTAssertEqual(export.status, 0, export.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), [URL(fileURLWithPath: long).lastPathComponent])
    }

    func testOutNeverWipesAFolderThatIsNotAFinetuneRun() throws {
        let data = try dataset()
        let model = try temporaryFolder("hf-model")
        for (name, text) in [("config.json", #"{"model_type": "bert"}"#), ("pytorch_model.bin", "weights"),
                             ("tokenizer.json", "{}")] {
            try Foundation.Data(text.utf8).write(to: URL(fileURLWithPath: model + "/" + name))
        }
        for extra in [[], ["--overwrite"]] {
            let result = try run(["train", data, "--out", model] + Self.fast + extra)
            assertError(result, mentions: ["--out", model, "not a finetune run directory"])
        }
        XCTAssertEqual(files(model), ["config.json", "pytorch_model.bin", "tokenizer.json"])
    }

    func testOutMayNotContainTheTrainingData() throws {
        let root = try temporaryFolder("project")
        try TrainCLITests.writeDataset(at: root + "/data")
        let before = files(root + "/data")
        for out in [root, root + "/data", root + "/data/train/red"] {
            let result = try run(["train", root + "/data", "--out", out, "--overwrite"] + Self.fast)
            assertError(result, mentions: ["--out", "training data"])
        }
        XCTAssertEqual(files(root + "/data"), before)
    }

    /// A dataset that cannot be used is a usage error (64) in `train`, as in `check-data`: a test class
    /// the training split lacks exited 1 from `train` and 64 from `check-data`.
    func testAnUnusableDatasetIsStatus64InTrainAsInCheckData() throws {
        let root = try temporaryFolder("stray")
        try TrainCLITests.writeDataset(at: root + "/data")
        try FileManager.default.moveItem(atPath: root + "/data/test/red", toPath: root + "/data/test/bird")
        let train = try run(["train", root + "/data", "--out", root + "/run"] + Self.fast)
        XCTAssertEqual(train.status, 64, train.stderr)
        XCTAssertTrue(train.stderr.contains("test/bird is not one of the"), train.stderr)
        XCTAssertEqual(try run(["check-data", root + "/data"]).status, 64)
    }

    func testAnEarlierRunIsReplacedOnlyWithOverwrite() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/run"
        XCTAssertEqual(try run(["train", data, "--out", out] + Self.fast).status, 0)
        let created = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        assertError(try run(["train", data, "--out", out] + Self.fast), mentions: ["--overwrite"])
        XCTAssertEqual(try String(contentsOfFile: out + "/config.json", encoding: .utf8), created)
        let replaced = try run(["train", data, "--out", out, "--overwrite"] + Self.fast)
        XCTAssertEqual(replaced.status, 0, replaced.stderr)
        XCTAssertTrue(replaced.stdout.contains("run directory: \(out)"), replaced.stdout)
        // Nothing of the earlier run is left beside it.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: (out as NSString).deletingLastPathComponent), ["run"])
    }

    // MARK: Finding 3

    func testASecondWriterIsRefusedNamingTheHoldersPID() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/run"
        let output = (out as NSString).deletingLastPathComponent + "/first.json"
        let first = try CLITests.start(["train", data, "--out", out, "--json"] + Self.fast + ["--epochs", "1000"], output: output)
        defer { if first.isRunning { first.interrupt(); first.waitUntilExit() } }
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: out + "/config.json") && Date() < deadline {
            Thread.sleep(forTimeInterval: 0.02)
        }
        XCTAssertTrue(first.isRunning)
        let pid = "process \(first.processIdentifier)"
        assertError(try run(["train", data, "--out", out, "--overwrite"] + Self.fast), mentions: ["--out", pid])
        assertError(try run(["train", data, "--out", out] + Self.fast), mentions: [pid])
        assertError(try run(["train", "--resume", out, "--threads", "2"]), mentions: ["--resume", pid])
        first.interrupt()  // Ctrl-C: a resumable checkpoint, and the lock is free again
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 130)
        // --json prints the summary of an interrupted run too (it printed nothing: a crash to a script).
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: output)))
            as? [String: Any])
        XCTAssertEqual(summary["status"] as? String, "interrupted")
        // Resumed to the epochs the checkpoint has begun (fewer are refused), so that it ends at once.
        let manifest = try Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/checkpoints/last/trainer.json"))
        let state = try XCTUnwrap((try JSONSerialization.jsonObject(with: manifest) as? [String: Any])?["state"] as? [String: Any])
        let epochs = max(1, (state["epoch"] as? Int ?? 0) + ((state["batchInEpoch"] as? Int ?? 0) > 0 ? 1 : 0))
        let resumed = try run(["train", "--resume", out, "--epochs", String(epochs), "--threads", "2", "--workers", "0"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
    }

    // MARK: Finding 4

    func testAbsurdValuesAreErrorsNamingTheFlagNotCrashes() throws {
        let data = try dataset()
        let runs = try temporaryFolder("runs")
        let cases: [([String], [String])] = [
            (["--input-size", "100000"], ["--input-size", "must be 16 to 4096"]),
            (["--threads", "100000"], ["--threads"]),
            (["--workers", "100000"], ["--workers"]),
            (["--cache-augmentations", "1000000000", "--recipe", "head-only"], ["--cache-augmentations"]),
            (["--phase1-epochs", "5", "--recipe", "two-phase"], ["--phase1-epochs"]),
        ]
        for (i, (flags, expected)) in cases.enumerated() {
            let result = try CLITests.runUnlessRefusedInParsing(["train", data, "--out", "\(runs)/\(i)"] + Self.fast + flags)
            assertError(result, mentions: expected)
        }
        // A billion views over 2e9 epochs are estimated, not extracted: the streamed cache file would not fit
        // on the disk (it is written first, then memory-mapped).
        let views = try run(["train", data, "--out", "\(runs)/views"] + Self.fast
                            + ["--epochs", "2000000000", "--cache-augmentations", "1000000000", "--recipe", "head-only",
                               "--augment", "standard"])
        assertError(views, mentions: ["cache fewer augmented views", "disk free"])
    }

    /// A run that fails while it trains (here an image removed under `--on-bad-image fail`; out of memory
    /// and a disk error end a run the same way) keeps its last checkpoint, and the error now says so and
    /// how to continue. Until 2026-12-07 it named only what failed, and the run looked lost.
    func testARunThatFailsWhileTrainingNamesItsCheckpointAndHowToContinue() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/failing"
        let log = out + ".log"
        let train = try CLITests.start(["train", data, "--out", out, "--epochs", "200", "--save-every-steps", "2",
                                        "--on-bad-image", "fail"] + TrainCLITests.common, errorOutput: log)
        let deadline = Date().addingTimeInterval(120)
        while train.isRunning && Date() < deadline
                && !FileManager.default.fileExists(atPath: out + "/checkpoints/last/trainer.json") {
            Thread.sleep(forTimeInterval: 0.005)
        }
        let removed = data + "/train/\(TrainCLITests.classes[0])/0.png"
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: removed))
        try FileManager.default.removeItem(atPath: removed)
        train.waitUntilExit()
        let errors = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertEqual(train.terminationStatus, 1, errors)
        XCTAssertTrue(errors.contains("--on-bad-image fail: "), errors)
        XCTAssertTrue(errors.contains("\nThe run's last checkpoint is intact (checkpoints/last, epoch "), errors)
        XCTAssertTrue(errors.contains("once the cause is fixed, continue with `finetune train --resume \(out)`"), errors)

        // Out of memory (LibTorch's words for `ulimit -v`), the error says what needs less too.
        let memory = "\(TrainCommand.withAdvice(TorchError("[enforce fail at alloc_cpu.cpp:75] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 144506880 bytes. Error code 12 (Cannot allocate memory)"), RunDirectory(out), processes: 2))"
        XCTAssertTrue(memory.contains("bytes. Error code 12 (Cannot allocate memory)\nLibTorch ran out of memory: "), memory)
        XCTAssertTrue(memory.contains("a smaller --batch-size or --input-size"), memory)
        XCTAssertTrue(memory.hasSuffix("`finetune train --resume \(out) --nproc-per-node 2`"), memory)

        try bytes.write(to: URL(fileURLWithPath: removed))  // the cause fixed: the run's own image back
        let resumed = try run(["train", "--resume", out, "--epochs", "3"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
    }

    /// 24 training images in batches of 23 leave a last batch of one image, on which ResNet's
    /// BatchNorm cannot train ([1, 512, 1, 1] at 32 px): the run ended with LibTorch's error. Now that
    /// batch is left out with one warning naming the image, and the run completes.
    func testALastBatchOfOneImageIsLeftOutInsteadOfEndingTheRun() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/one"
        let flags = Self.fast.filter { $0 != "4" && $0 != "--batch-size" && $0 != "1" && $0 != "--epochs" }
            .map { $0 == "mobilenet_v2" ? "resnet18" : $0 }
        let result = try run(["train", data, "--out", out, "--recipe", "full", "--batch-size", "23", "--epochs", "2"] + flags)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stderr.components(separatedBy: "holds one image").count, 2, result.stderr)
        XCTAssertTrue(result.stderr.contains("BatchNorm cannot train on one"), result.stderr)
        XCTAssertTrue(result.stdout.contains("2 epochs, 2 steps"), result.stdout)
    }

    /// A run that diverges is a failure of the run, not of the command line: exit status 1 with the
    /// error naming the step and the last good checkpoint when there is one, and no usage text
    /// (before: status 64, EX_USAGE, the root command's usage after the error, and a checkpoint path
    /// even when the run diverged before writing any).
    func testADivergedRunExitsWithAFailureNotAUsageError() throws {
        let data = try dataset()
        for saving in [false, true] {
            let out = try temporaryFolder("diverged") + "/run"
            let result = try run(["train", data, "--out", out, "--recipe", "full", "--optimizer", "sgd", "--lr", "1e38"]
                + Self.fast + ["--epochs", "3"] + (saving ? ["--save-every-steps", "1"] : []))
            XCTAssertEqual(result.status, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("training diverged: the loss of step 2 is NaN"), result.stderr)
            // The advice names the backbone's rates too (probe AH: --lr-factor 1e-38 was the cause, --lr named).
            XCTAssertTrue(result.stderr.contains("--lr-factor, --layer-decay or --phase2-lr"), result.stderr)
            XCTAssertFalse(result.stderr.contains("Usage:"), result.stderr)
            let checkpoint = out + "/checkpoints/last"
            XCTAssertEqual(FileManager.default.fileExists(atPath: checkpoint + "/trainer.json"), saving)
            XCTAssertEqual(result.stderr.contains("The last good checkpoint is " + checkpoint), saving, result.stderr)
            XCTAssertEqual(result.stderr.contains("It diverged before its first checkpoint"), !saving, result.stderr)
        }
    }

    /// An argument found unusable once a subcommand runs is a usage error of that subcommand: its
    /// usage and help pointer follow the message (before: the root's "Usage: finetune <subcommand>").
    func testAnArgumentRejectedWhileRunningShowsTheSubcommandsUsage() throws {
        let missing = try temporaryFolder("missing") + "/nothing-here"
        let result = try run(["train", missing, "--out", try temporaryFolder("out") + "/run"] + Self.fast)
        XCTAssertEqual(result.status, 64, result.stderr)
        XCTAssertTrue(result.stderr.contains("Error: DATA: \(missing) does not exist"), result.stderr)
        XCTAssertTrue(result.stderr.contains("Usage: finetune train ["), result.stderr)
        XCTAssertTrue(result.stderr.contains("See 'finetune train --help'"), result.stderr)

        // A flag lr-find refuses while parsing names lr-find (it read "finetune train lr-find", since
        // its flags include train's).
        let lrFind = try run(["lr-find", missing, "--steps", "1", "--out", try temporaryFolder("lr") + "/find"] + Self.fast)
        XCTAssertEqual(lrFind.status, 64, lrFind.stderr)
        XCTAssertTrue(lrFind.stderr.contains("Error: --steps must be at least 2"), lrFind.stderr)
        XCTAssertTrue(lrFind.stderr.contains("Usage: finetune lr-find ["), lrFind.stderr)
        XCTAssertTrue(lrFind.stderr.contains("See 'finetune lr-find --help'"), lrFind.stderr)
    }

    func testHugeEpochsAndBatchSizeTrainInsteadOfOverflowing() throws {
        let data = try dataset()
        let runs = try temporaryFolder("runs")
        let batch = try run(["train", data, "--out", runs + "/batch", "--batch-size", "9223372036854775807"]
                            + Self.fast.filter { $0 != "4" && $0 != "--batch-size" })
        XCTAssertEqual(batch.status, 0, batch.stderr)
        // Int.max epochs: stopped by early stopping after the first epoch without improvement.
        let epochs = try run(["train", data, "--out", runs + "/epochs", "--val-split", "0.25", "--early-stopping", "0"]
                             + Self.fast + ["--epochs", "9223372036854775807", "--lr-schedule", "cosine"])
        XCTAssertEqual(epochs.status, 0, epochs.stderr)
        XCTAssertTrue(epochs.stdout.contains("stopped"), epochs.stdout)

        // Int.max batches per step trains (one step per epoch); other huge values are refused naming
        // their flag. Each trapped (status 132): (n + k − 1) / k, the resize side, the ONNX padding
        // sums; RandAugment with 10⁹ operations never finished a batch.
        let accumulate = try run(["train", data, "--out", runs + "/accumulate"] + Self.fast
                                 + ["--accumulate-steps", "9223372036854775807"])
        XCTAssertEqual(accumulate.status, 0, accumulate.stderr)
        let base = ["--arch", "mobilenet_v2", "--weights", "none", "--batch-size", "4", "--workers", "0", "--epochs", "1"]
        for (flags, flag) in [(["--input-size", "9223372036854775807"], "--input-size"),
                              (["--input-size", "32", "--augment", "randaugment:n=1000000000,m=9"], "--augment")] {
            let refused = try run(["train", data, "--out", runs + "/refused"] + base + flags)
            XCTAssertEqual(refused.status, 64, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(flag), refused.stderr)
        }
        let export = try run(["export", runs + "/batch", "--out", runs + "/x.onnx", "--input-size", "9223372036854775807"])
        XCTAssertEqual(export.status, 64, export.stderr)
        XCTAssertTrue(export.stderr.contains("--input-size must be 1 to 4096"), export.stderr)
    }

    func testPredictOnARunWhoseClassListIsShorterThanItsHeadIsAnError() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/run"
        XCTAssertEqual(try run(["train", data, "--out", out] + Self.fast).status, 0)
        // Finite weights whose outputs are −∞ for every class (float32 overflows): predict says so (it
        // printed null probabilities without a word).
        let weights = out + "/model.safetensors"
        let trained = try Foundation.Data(contentsOf: URL(fileURLWithPath: weights))
        var state = try SafeTensors.loadCopy(weights)
        let head = try XCTUnwrap(state["classifier.1.weight"])
        state["classifier.1.weight"] = try Tensor([Float](repeating: -Float.greatestFiniteMagnitude, count: head.count), shape: head.shape)
        try SafeTensors.write(state, metadata: ["format": "pt"], to: weights)
        let nan = try run(["predict", out, data + "/test/red", "--json"])
        XCTAssertEqual(nan.status, 0, nan.stderr)
        XCTAssertTrue(nan.stderr.contains("are not finite (NaN, or −∞ for every class): their probabilities are null"), nan.stderr)
        try trained.write(to: URL(fileURLWithPath: weights))
        let configPath = out + "/config.json"
        var config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: configPath))) as? [String: Any])
        config["classNames"] = ["blue"]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        assertError(try run(["predict", out, data + "/test/red"]), mentions: [configPath, "classNames"])
        assertError(try run(["evaluate", out, data]), mentions: [configPath, "classNames"])

        config["classNames"] = ["blue", "green", "red"]
        var preprocessing = try XCTUnwrap(config["preprocessing"] as? [String: Any])
        preprocessing["cropSize"] = 100000
        preprocessing["resizeSize"] = 100000
        config["preprocessing"] = preprocessing
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
        assertError(try run(["predict", out, data + "/test/red"]), mentions: [configPath, "at most 4096"])
    }

    // MARK: Finding 6

    /// A run trained with one intra-op thread and resumed without --threads (on a machine whose
    /// default is every core) resumes with the run's own thread count, bit-exactly.
    func testResumeWithoutThreadsUsesTheRunsThreadCountAndIsBitExact() throws {
        let data = try dataset()
        let runs = try temporaryFolder("threads")
        let flags = ["--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32", "--batch-size", "4",
                     "--workers", "0", "--threads", "1", "--epochs", "3", "--val-split", "0.25", "--lr", "0.01",
                     "--save-every-steps", "1"]
        let straight = try run(["train", data, "--out", runs + "/a"] + flags)
        XCTAssertEqual(straight.status, 0, straight.stderr)
        let process = try CLITests.start(["train", data, "--out", runs + "/b"] + flags)
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline {
            let history = (try? String(contentsOfFile: runs + "/b/history.csv", encoding: .utf8)) ?? ""
            if history.split(separator: "\n").count >= 2 { break }
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertTrue(process.isRunning, "the run finished before it could be killed")
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let resumed = try run(["train", "--resume", runs + "/b"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.contains("Using the run's 1 intra-op threads"), resumed.stdout)
        let a = try SafeTensors.load(runs + "/a/model.safetensors")
        let b = try SafeTensors.load(runs + "/b/model.safetensors")
        for (key, tensor) in a { XCTAssertTrue(try tensor.allClose(XCTUnwrap(b[key]), rtol: 0, atol: 0), key) }
    }

    // MARK: Finding 7: --exif

    /// `--exif ignore` is recorded in the run and used by predict: a JPEG whose EXIF tag says "rotate"
    /// then predicts exactly as its stored pixels (the same as the untagged file); `--exif apply`
    /// turns it upright, which changes the prediction.
    func testExifIgnoreIsRecordedAndUsedByPredict() throws {
        let data = try dataset()
        let out = try temporaryFolder("runs") + "/run"
        let train = try run(["train", data, "--out", out, "--exif", "ignore"] + Self.fast)
        XCTAssertEqual(train.status, 0, train.stderr)
        let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"exif\" : \"ignore\"") || config.contains("\"exif\":\"ignore\""), config)
        let files = [Fixtures.path("images/orient_1.jpg"), Fixtures.path("images/orient_6.jpg")]
        func probabilities(_ extra: [String]) throws -> [[Double]] {
            let result = try run(["predict", out, "--json", "--top-k", "3", "--threads", "2"] + extra + files)
            XCTAssertEqual(result.status, 0, result.stderr)
            return try result.lines.map { line in
                let ranked = try XCTUnwrap(result.json(line)["top_k"] as? [[String: Any]])
                return ranked.compactMap { $0["probability"] as? Double }
            }
        }
        let stored = try probabilities([])
        XCTAssertEqual(stored.count, 2)
        XCTAssertEqual(stored[0], stored[1], "with the run's --exif ignore both files are the same pixels")
        let upright = try probabilities(["--exif", "apply"])
        XCTAssertNotEqual(upright[0], upright[1], "applied, orientation 6 is rotated")
    }

    // MARK: Finding 5

    /// Truncates every PNG under `folder` to half its length (the header still passes the scan).
    func truncate(_ folder: String, only count: Int? = nil) throws -> [String] {
        var done: [String] = []
        for name in files(folder) where name.hasSuffix(".png") {
            if let count, done.count >= count { break }
            let path = folder + "/" + name
            let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
            try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
            done.append(path)
        }
        return done
    }

    func testADatasetOfTruncatedImagesIsAnErrorNotAnEmptySuccess() throws {
        let data = try dataset()
        _ = try truncate(data)
        let train = try run(["train", data, "--out", try temporaryFolder("runs") + "/run"] + Self.fast)
        assertError(train, mentions: ["no usable image in the training data", "truncated"])
    }

    func testTruncatedImagesAreReportedOnceAndLeftOutOfTheTotals() throws {
        let data = try dataset()
        let bad = try truncate(data + "/train/red", only: 2) + truncate(data + "/test/blue", only: 1)
        let out = try temporaryFolder("runs") + "/run"
        let train = try run(["train", data, "--out", out, "--json"] + Self.fast + ["--epochs", "2"])
        XCTAssertEqual(train.status, 0, train.stderr)
        for path in bad {
            let mentions = train.stderr.components(separatedBy: "warning: skipping \(path)").count - 1
            XCTAssertEqual(mentions, 1, "\(path) reported \(mentions) times: \(train.stderr)")
        }
        let summary = try train.json(XCTUnwrap(train.lines.last))
        XCTAssertEqual(summary["train_samples"] as? Int, 24 - 2)
        XCTAssertEqual(summary["test_samples"] as? Int, 9 - 1)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any])
        let recorded = try XCTUnwrap(config["data"] as? [String: Any])
        XCTAssertEqual(recorded["trainSamples"] as? Int, 22)
        XCTAssertEqual(recorded["testSamples"] as? Int, 8)

        let evaluate = try run(["evaluate", out, data, "--json", "--threads", "2", "--workers", "0"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        XCTAssertTrue(evaluate.stderr.contains("warning: skipping \(bad[2])"), evaluate.stderr)

        // --on-bad-image fail: strict, naming the flag and the file.
        let strict = try run(["train", data, "--out", out + "-strict", "--on-bad-image", "fail"] + Self.fast)
        assertError(strict, mentions: ["--on-bad-image fail", "train/red/"])
        assertError(try run(["evaluate", out, data, "--on-bad-image", "fail"]), mentions: ["--on-bad-image fail", bad[2]])
        assertError(try run(["train", data, "--out", out + "-x", "--on-bad-image", "maybe"] + Self.fast),
                    mentions: ["--on-bad-image"])
    }
}

/// Standard streams that cannot be written or are closed (stop 34's probe): Foundation's
/// `FileHandle.write(_:)` traps on a failed write, so an error message to a full disk ended the
/// command with SIGILL; output that `print` could not write was lost with status 0; and with standard
/// output closed, the run directory's lock file took descriptor 1 and received the progress.
extension ReliabilityCLITests {
    func testAFullOrClosedStandardStreamIsNeitherACrashNorSilent() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/dev/full"), "no /dev/full")
        // An error message that cannot be written: the usage error's status, not a trap.
        XCTAssertEqual(try CLITests.run(shell: "exec \"$0\" \"$@\" 2>/dev/full",
                                        ["check-data", "/nonexistent-\(UUID().uuidString)"]).status, 64)
        // Output that cannot be written: status 1, saying so.
        let full = try CLITests.run(shell: "exec \"$0\" \"$@\" >/dev/full", ["info", "--json"])
        XCTAssertEqual(full.status, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains("cannot write standard output"), full.stderr)
        // The help text too (swift-argument-parser printed it and exited 0); written, it is unchanged.
        for arguments in [["--help"], ["train", "--help"], ["help", "cache", "prune"]] {
            let help = try CLITests.run(shell: "exec \"$0\" \"$@\" >/dev/full", arguments)
            XCTAssertEqual(help.status, 1, "\(arguments): \(help.stderr)")
            XCTAssertTrue(help.stderr.contains("cannot write standard output"), help.stderr)
            let written = try CLITests.run(shell: "exec \"$0\" \"$@\"", arguments)
            XCTAssertEqual(written.status, 0, written.stderr)
            XCTAssertTrue(written.stdout.contains("USAGE: finetune") && written.stdout.hasSuffix("\n"), written.stdout)
        }

        // Standard output closed: the progress goes nowhere, the lock holds the PID alone.
        let data = try dataset()
        let run = try temporaryFolder("closed") + "/run"
        let trained = try CLITests.run(shell: "exec \"$0\" \"$@\" >&-",
                                       ["train", data, "--out", run, "--save-every-steps", "1"] + Self.fast)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let log = try String(contentsOfFile: run + "/config.json", encoding: .utf8)
        XCTAssertTrue(log.contains("\"completed\""), log)
        let lock = (try? String(contentsOfFile: run + "/.lock", encoding: .utf8)) ?? ""
        XCTAssertFalse(lock.contains("Epoch"), "the progress went into the lock file: \(lock)")
    }
}
