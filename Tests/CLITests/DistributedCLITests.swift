import Foundation
import TensorIO
import TestSupport
import Torch
import Training
import XCTest

/// Data-parallel `finetune train` on loopback: 2 ranks at batch 8 against 1 process at batch 16 (the
/// same weights and validation metrics), the launchers, and bad launch input.
/// (An extension of `TrainCLITests`: its temporary folders, classes and PNG writer.)
extension TrainCLITests {
    /// train/ of 32 images (two batches of 16 per epoch) and val/ of 11 (an odd count: one rank
    /// evaluates 6, the other 5), in the three colour classes of `TrainCLITests`.
    func makeDistributedDataset() throws -> String {
        let root = try temporaryFolder("dist-data")
        var seed: UInt32 = 777
        func noise() -> UInt8 {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return UInt8(seed >> 26)
        }
        for (split, counts) in [("train", [11, 11, 10]), ("val", [4, 4, 3])] {
            for (c, name) in Self.classes.enumerated() {
                let folder = "\(root)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<counts[c] {
                    var rgb = [UInt8]()
                    for _ in 0..<(32 * 32) {
                        for channel in 0..<3 { rgb.append(channel == 2 - c ? 160 &+ noise() : noise() &* 2) }
                    }
                    try TinyPNG.encode(rgb: rgb, width: 32, height: 32).write(to: URL(fileURLWithPath: "\(folder)/\(i).png"))
                }
            }
        }
        return root
    }

    /// `makeDistributedDataset()` with the PNG at `path` (relative to the root) cut in half: the scan
    /// finds it, and it fails only when decoded, so only on the rank whose shard holds it.
    func makeDistributedDataset(truncating path: String) throws -> String {
        let root = try makeDistributedDataset()
        let url = URL(fileURLWithPath: root + "/" + path)
        let png = try Foundation.Data(contentsOf: url)
        try png.prefix(png.count / 2).write(to: url)
        return root
    }

    /// MobileNetV2 fully fine-tuned except its BatchNorm layers, which stay frozen (running statistics),
    /// so each sample's forward does not depend on the rest of its batch; no dropout.
    static let frozenBatchNormScopes: [String] = {
        var scopes = ["features.0.0", "features.1.conv.0.0", "features.1.conv.1", "features.18.0", "classifier"]
        for i in 2...17 { scopes += ["features.\(i).conv.0.0", "features.\(i).conv.1.0", "features.\(i).conv.2"] }
        return scopes
    }()

    func trainArguments(data: String, out: String, batchSize: Int) -> [String] {
        ["train", data, "--out", out, "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32",
         "--batch-size", String(batchSize), "--epochs", "2", "--optimizer", "sgd", "--lr", "0.05", "--seed", "3",
         "--augment", "none", "--head-dropout", "0", "--workers", "0",
         "--trainable-scopes", Self.frozenBatchNormScopes.joined(separator: ","), "--dist-timeout", "60",
         // fp32: two ranks of 8 must equal one process of 16 to rounding; in bf16 (what `auto` picks
         // on a CPU with native bf16) the two batch shapes round differently.
         "--precision", "fp32"]
    }

    /// The largest ‖a − b‖ / ‖a‖ over the tensors of two safetensors files (the same keys).
    func largestRelativeDifference(_ a: String, _ b: String) throws -> Double {
        let x = try SafeTensors.load(a), y = try SafeTensors.load(b)
        var worst = 0.0
        for (key, tensor) in x {
            guard tensor.dtype.isFloatingPoint else { continue }
            let other = try XCTUnwrap(y[key], key)
            let norm = try tensor.norm().item()
            let difference = try (tensor - other).norm().item()
            worst = max(worst, norm > 0 ? difference / norm : difference)
        }
        return worst
    }

    /// The last row of a run's history.csv as [column: value].
    func lastHistoryRow(_ run: String) throws -> [String: String] {
        try historyRows(run).last ?? [:]
    }

    /// The rows of a run's history.csv, each as [column: value].
    func historyRows(_ run: String) throws -> [[String: String]] {
        let lines = try String(contentsOfFile: run + "/history.csv", encoding: .utf8).split(separator: "\n")
        let header = lines[0].split(separator: ",").map(String.init)
        return lines.dropFirst().map { line in
            Dictionary(uniqueKeysWithValues: zip(header, line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)))
        }
    }

    /// `state` of a run's checkpoints/last/trainer.json (nil: none yet).
    static func checkpointState(_ run: String) throws -> [String: Any]? {
        let data = try Foundation.Data(contentsOf: URL(fileURLWithPath: run + "/checkpoints/last/trainer.json"))
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["state"] as? [String: Any]
    }

    /// Starts `finetune arguments` (a run into `run` that saves checkpoints as it goes) and returns it
    /// once its first checkpoint is written, i.e. training has started (at most 120 s).
    func launchedUntilItsFirstCheckpoint(_ arguments: [String], run: String, errorOutput: String? = nil,
                                         file: StaticString = #filePath, line: UInt = #line) throws -> Process {
        let launcher = try CLITests.start(arguments, errorOutput: errorOutput)
        let deadline = Date().addingTimeInterval(120)
        while launcher.isRunning && Date() < deadline && (try? Self.checkpointState(run)) == nil {
            Thread.sleep(forTimeInterval: 0.005)
        }
        XCTAssertTrue(launcher.isRunning, "the run ended before its first checkpoint was seen", file: file, line: line)
        return launcher
    }

    /// `--nproc-per-node 2` on a run of 200 epochs at batch 1 into `out` (checkpoints every 2 steps),
    /// returned once training has begun: a run to kill things in.
    func launchedLongRunWithTwoWorkers(out: String) throws -> Process {
        try launchedUntilItsFirstCheckpoint(
            trainArguments(data: try makeDistributedDataset(), out: out, batchSize: 1)
                + ["--epochs", "200", "--save-every-steps", "2", "--threads", "1", "--nproc-per-node", "2",
                   "--master-port", String(try FreePort.make())],
            run: out)
    }

    /// `state.worldSize` of a run's last checkpoint.
    static func checkpointWorldSize(_ run: String) throws -> Int? { try checkpointState(run)?["worldSize"] as? Int }

    /// Runs `arguments` (plus `perRank[rank]`, with `data` replaced by `dataPerRank[rank]`) as ranks
    /// 0..<n at once, each with the variables torchrun sets.
    func runRanks(_ n: Int, _ arguments: [String], port: Int, extra: [String: String] = [:],
                  perRank: [Int: [String]] = [:], dataPerRank: [Int: (data: String, replacement: String)] = [:]) throws -> [CLITests.Run] {
        final class Box: @unchecked Sendable { var runs: [Int: Result<CLITests.Run, Error>] = [:]; let lock = NSLock() }
        let box = Box()
        DispatchQueue.concurrentPerform(iterations: n) { rank in
            let environment = ["RANK": String(rank), "WORLD_SIZE": String(n), "LOCAL_RANK": String(rank),
                               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": String(port)].merging(extra) { $1 }
            let own = dataPerRank[rank].map { swap in arguments.map { $0 == swap.data ? swap.replacement : $0 } } ?? arguments
            let result = Result { try CLITests.run(own + (perRank[rank] ?? []), environment: environment) }
            box.lock.withLock { box.runs[rank] = result }
        }
        return try (0..<n).map { try box.runs[$0]!.get() }
    }

    /// 16 images per rank in batches of 15: each rank's last batch holds one image, on which ResNet's
    /// BatchNorm cannot train at 32 px. Equal shards give both ranks that batch, so both leave it out
    /// and the gradient all-reduces stay paired; the run completes on both.
    func testBothRanksLeaveOutALastBatchOfOneImage() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset()
        let out = try temporaryFolder("dist-one") + "/run"
        let arguments = ["train", data, "--out", out, "--arch", "resnet18", "--weights", "none", "--input-size", "32",
                         "--recipe", "full", "--batch-size", "15", "--epochs", "1", "--augment", "none", "--workers", "0",
                         "--threads", "1", "--dist-timeout", "60"]
        let ranks = try runRanks(2, arguments, port: FreePort.make())
        for (rank, result) in ranks.enumerated() { XCTAssertEqual(result.status, 0, "rank \(rank): \(result.stderr)") }
        XCTAssertTrue(ranks[0].stderr.contains("holds one image"), ranks[0].stderr)
        XCTAssertTrue(ranks[0].stderr.contains("each rank's share of them) trains on all of them, as does --sync-bn"), ranks[0].stderr)
        XCTAssertTrue(ranks[0].stdout.contains("1 epochs, 1 steps"), ranks[0].stdout)
        // Under --sync-bn the statistics are the whole step's (two images): the batch trains, as one
        // process at batch 30 trains its last batch of two (it was left out on both ranks).
        let synced = try runRanks(2, arguments.map { $0 == out ? out + "-sync" : $0 } + ["--sync-bn"], port: FreePort.make())
        for (rank, result) in synced.enumerated() { XCTAssertEqual(result.status, 0, "rank \(rank): \(result.stderr)") }
        XCTAssertFalse(synced[0].stderr.contains("holds one image"), synced[0].stderr)
        XCTAssertTrue(synced[0].stdout.contains("1 epochs, 2 steps"), synced[0].stdout)
    }

    /// An unreadable training file on one rank: every batch slot is still one step on every rank, so
    /// the collectives stay paired, and a slot's gradient is the mean over all its images, as one
    /// process with the same file skipped computes it.
    /// * Batch 8 per rank against 16: the rank with the bad file has 7 images in one slot; the
    ///   gradients are weighted by images (7 and 8 of 15), not averaged per rank.
    /// * Batch 1 per rank against 2: that rank has no image in one slot; it joins the all-reduce with
    ///   zero gradients and steps with the other.
    /// Both end with the one-process weights and metrics. (Before, the gradients were averaged per
    /// rank, and the rank with no image skipped the batch: its next gradient all-reduce met the other
    /// rank's stop check, and Gloo aborted the process.)
    func testAnUnreadableFileOnOneRankKeepsTheRanksInStepAndMatchesOneProcess() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset(truncating: "train/\(Self.classes[0])/3.png")
        let runs = try temporaryFolder("dist-bad-file")
        for (perRank, name) in [(8, "weighted"), (1, "gap")] {
            let single = try CLITests.run(trainArguments(data: data, out: "\(runs)/\(name)-single", batchSize: 2 * perRank)
                + ["--threads", "1"])
            XCTAssertEqual(single.status, 0, single.stderr)
            let ranks = try runRanks(2, trainArguments(data: data, out: "\(runs)/\(name)-ddp", batchSize: perRank)
                + ["--threads", "1", "--dist-timeout", "20"], port: try FreePort.make())
            for (rank, run) in ranks.enumerated() { XCTAssertEqual(run.status, 0, "\(name), rank \(rank): " + run.stderr) }
            XCTAssertTrue((ranks[0].stderr + ranks[1].stderr).contains("3.png"), "\(name): the skipped file is not reported")

            XCTAssertLessThan(try largestRelativeDifference("\(runs)/\(name)-single/model.safetensors",
                                                            "\(runs)/\(name)-ddp/model.safetensors"), 1e-5, name)
            let a = try lastHistoryRow("\(runs)/\(name)-single"), b = try lastHistoryRow("\(runs)/\(name)-ddp")
            XCTAssertEqual(a["step"], b["step"], name)
            XCTAssertEqual(a["accuracy"], b["accuracy"], name)
            XCTAssertEqual(a["val_accuracy"], b["val_accuracy"], name)
            XCTAssertEqual(a["loss"].flatMap(Double.init) ?? 0, b["loss"].flatMap(Double.init) ?? 1, accuracy: 1e-5, name)
        }
    }

    /// Ctrl-C of a data-parallel run with gradient accumulation (4), head dropout and an unreadable
    /// file on one rank: the ranks stop together at the end of an accumulation group (each rank's
    /// accumulated gradients are its own; rank 0's checkpoint holds rank 0's), and `--resume` ends
    /// with the uninterrupted run's weights, bit for bit: every batch's dropout masks come from
    /// (seed, epoch, batch, rank), not from a generator whose position differs between ranks.
    ///
    /// Warnings: a folder beside the splits (`dev/`) is warned about once, by rank 0 (every rank printed
    /// it until stop 41); the cut file is warned about by the rank that decodes it, rank N > 0 saying so;
    /// LibTorch's gradient-layout warning is not given.
    func testCtrlCOfADataParallelRunResumesExactlyAtAnAccumulationGroupsEnd() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset(truncating: "train/\(Self.classes[1])/3.png")
        try FileManager.default.createDirectory(atPath: data + "/dev", withIntermediateDirectories: true)
        let runs = try temporaryFolder("dist-ctrl-c")
        func arguments(_ out: String) throws -> [String] {
            trainArguments(data: data, out: out, batchSize: 1)
                + ["--epochs", "8", "--head-dropout", "0.5", "--accumulate-steps", "4",
                   "--nproc-per-node", "2", "--master-port", String(try FreePort.make())]
        }
        let whole = try CLITests.run(try arguments(runs + "/whole"))
        XCTAssertEqual(whole.status, 0, whole.stderr)
        let lines = whole.stderr.split(separator: "\n")
        XCTAssertEqual(lines.filter { $0 == "warning: \(data)/dev is not read: beside train/, only val/ (validation/, "
            + "valid/) and test/ (testing/) are splits; a class folder belongs inside each split" }.count, 1, whole.stderr)
        let cut = lines.filter { $0.contains("skipping \(data)/train/\(Self.classes[1])/3.png") }
        XCTAssertFalse(cut.isEmpty, whole.stderr)
        XCTAssertTrue(cut.allSatisfy { $0.hasPrefix("warning: skipping") || $0.hasPrefix("rank 1: warning: skipping") },
                      whole.stderr)
        // The rank without an image of a batch adds zero gradients in its parameters' (channels-last) layout:
        // contiguous ones made LibTorch warn at the group's next batch.
        XCTAssertFalse(whole.stderr.contains("do not obey the gradient layout contract"), whole.stderr)

        // Checkpoints change no arithmetic; the first one says training has started.
        let log = runs + "/stopped.log"
        let launcher = try launchedUntilItsFirstCheckpoint(try arguments(runs + "/stopped") + ["--save-every-steps", "5"],
                                                           run: runs + "/stopped", errorOutput: log)
        launcher.interrupt()
        launcher.waitUntilExit()
        // A worker that stops on the interrupt the launcher passed on has not failed: the launcher said
        // "worker rank 0 (process …) exited with status 130; stopping the others" (probe AF).
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertEqual(launcher.terminationStatus, 130, text)
        XCTAssertFalse(text.contains("exited with status"), text)
        let state = try XCTUnwrap(try Self.checkpointState(runs + "/stopped"))
        XCTAssertEqual(state["status"] as? String, "interrupted")
        XCTAssertNil(state["accumulation"], "the checkpoint was taken inside an accumulation group")
        XCTAssertEqual((state["batchInEpoch"] as? Int ?? 1) % 4, 0, "\(state["batchInEpoch"] ?? "none")")

        let resumed = try CLITests.run(["train", "--resume", runs + "/stopped", "--nproc-per-node", "2",
                                        "--master-port", String(try FreePort.make())])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try largestRelativeDifference(runs + "/whole/model.safetensors", runs + "/stopped/model.safetensors"), 0)
        // The interrupted epoch's training loss and accuracy count every sample once: the checkpoint holds
        // both ranks' sums, and rank 1 starts from zero (it counted rank 0's first part twice and rank 1's
        // not at all). The sums are added in another order, hence the tolerance.
        try assertTrainingMetricsMatch(runs + "/whole", runs + "/stopped")
    }

    /// The training loss and accuracy of each epoch in `resumed`'s history.csv are `whole`'s (an
    /// uninterrupted run's), up to the order in which the sums were added.
    func assertTrainingMetricsMatch(_ whole: String, _ resumed: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let wholeRows = try historyRows(whole), resumedRows = try historyRows(resumed)
        XCTAssertEqual(resumedRows.count, wholeRows.count, file: file, line: line)
        for (a, b) in zip(wholeRows, resumedRows) {
            for column in ["loss", "accuracy"] {
                let x = try XCTUnwrap(a[column].flatMap(Double.init)), y = try XCTUnwrap(b[column].flatMap(Double.init))
                XCTAssertEqual(x, y, accuracy: 1e-9 * max(1, abs(x)), "epoch \(a["epoch"] ?? "?") \(column)", file: file, line: line)
            }
        }
    }

    /// A DATA that does not exist or an unknown --arch is refused by the launcher, once, before any
    /// worker starts: each worker found it and printed it, and the launcher added "worker rank 0 …
    /// exited with status 64; stopping the others".
    func testALauncherRefusesMissingDataOrAnUnknownArchitectureBeforeStartingWorkers() throws {
        let folder = try temporaryFolder("dist-refused")
        let data = try makeDistributedDataset()
        for (arguments, message) in [([folder + "/missing", "--arch", "mobilenet_v2"], "DATA: \(folder)/missing does not exist"),
                                     ([data, "--arch", "mobilenet_v3"], "--arch: unknown architecture 'mobilenet_v3'")] {
            let refused = try CLITests.run(["train"] + arguments + ["--out", folder + "/run", "--nproc-per-node", "2",
                                                                     "--master-port", String(try FreePort.make())])
            XCTAssertEqual(refused.status, 64, refused.stderr)
            XCTAssertEqual(refused.stderr.components(separatedBy: message).count - 1, 1, refused.stderr)
            XCTAssertFalse(refused.stderr.contains("worker rank"), refused.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/run"))
        }
    }

    /// `makeDistributedDataset()` with one training file that is a PNG signature and then junk: the
    /// scan reads it (a file cut in its pixels is found later, by the rank that decodes it).
    func makeDistributedDatasetWithABadImage() throws -> String {
        let data = try makeDistributedDataset()
        try Foundation.Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + Array(" junk".utf8))
            .write(to: URL(fileURLWithPath: "\(data)/train/\(Self.classes[0])/3.png"))
        return data
    }

    /// A bad image under `--on-bad-image fail` is found by every worker's scan, before the run is
    /// made: the error is printed once (by rank 0), not once per rank, and the launcher names rank 0
    /// and its status. Nothing is trained (probe AF).
    func testABadImageUnderOnBadImageFailIsReportedOnceByTheWorkers() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDatasetWithABadImage()
        let out = try temporaryFolder("dist-strict") + "/run"
        let refused = try CLITests.run(trainArguments(data: data, out: out, batchSize: 4)
            + ["--on-bad-image", "fail", "--threads", "1", "--nproc-per-node", "2", "--master-port", String(try FreePort.make())])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertEqual(refused.stderr.components(separatedBy: "--on-bad-image fail: ").count - 1, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("3.png"), refused.stderr)
        XCTAssertTrue(refused.stderr.contains("worker rank 0 ("), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/model.safetensors"))
    }

    /// The same bad image in a group started by hand (torchrun's variables, no launcher to stop the
    /// ranks): printed once, by rank 0, at once. Rank 1 waited 10 s to be stopped, then printed it too.
    /// A rank whose failure is its own still prints it, and rank 0 names that rank.
    func testAnErrorEveryRankSharesIsReportedOnceInAGroupStartedByHand() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDatasetWithABadImage()
        let out = try temporaryFolder("dist-strict-by-hand") + "/run"
        let arguments = trainArguments(data: data, out: out, batchSize: 4) + ["--on-bad-image", "fail", "--threads", "1"]
        let started = Date()
        let shared = try runRanks(2, arguments, port: FreePort.make())
        XCTAssertLessThan(Date().timeIntervalSince(started), 9, "rank 1 waited to be stopped")
        XCTAssertEqual(shared.map(\.status), [1, 1], shared.map(\.stderr).joined(separator: "\n---\n"))
        XCTAssertEqual(shared[0].stderr.components(separatedBy: "--on-bad-image fail: ").count - 1, 1, shared[0].stderr)
        XCTAssertTrue(shared[0].stderr.contains("3.png"), shared[0].stderr)
        XCTAssertEqual(shared[1].stderr, "", "rank 1 repeated rank 0's error")

        // Only rank 1 reads the bad image (its own copy of the data): its error is its own.
        let clean = try makeDistributedDataset()
        let own = try runRanks(2, trainArguments(data: clean, out: try temporaryFolder("dist-own") + "/run", batchSize: 4)
                                + ["--on-bad-image", "fail", "--threads", "1"],
                               port: FreePort.make(), dataPerRank: [1: (data: clean, replacement: data)])
        XCTAssertEqual(own.map(\.status), [1, 1], own.map(\.stderr).joined(separator: "\n---\n"))
        XCTAssertTrue(own[1].stderr.contains("--on-bad-image fail: "), own[1].stderr)
        XCTAssertTrue(own[0].stderr.contains("rank 1 could not make its run"), own[0].stderr)
        XCTAssertFalse(own[0].stderr.contains("--on-bad-image fail: "), own[0].stderr)
    }

    /// Ctrl-C during the learning-rate range test of `--lr find` (each rank runs its own, before the
    /// run exists): the launcher passes it to every rank, and "nothing was written" is said once, by
    /// rank 0; every rank said it.
    func testCtrlCBeforeTheRunExistsIsReportedOnceByTheWorkers() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset()
        let folder = try temporaryFolder("dist-lr-find")
        let (launcher, wasRunning) = try CLITests.interrupt(
            trainArguments(data: data, out: folder + "/run", batchSize: 4)
                + ["--lr", "find", "--json", "--threads", "1", "--nproc-per-node", "2", "--master-port", String(try FreePort.make())],
            once: "LR finder:", appearsIn: folder + "/stderr")
        let text = try String(contentsOfFile: folder + "/stderr", encoding: .utf8)
        try XCTSkipUnless(wasRunning, "the range test ended before the interrupt: \(text)")
        XCTAssertEqual(launcher.terminationStatus, 130, text)
        XCTAssertEqual(text.components(separatedBy: "nothing was written").count - 1, 1, text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/run"), text)
    }

    /// A launcher killed with SIGKILL forwards nothing: its workers trained on, orphaned, holding the
    /// port. Each worker now watches its launcher and stops as on Ctrl-C when it is gone, rank 0
    /// writing its resumable checkpoint.
    func testWorkersStopWhenTheirLauncherIsKilled() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let out = try temporaryFolder("dist-orphans") + "/run"
        let launcher = try launchedLongRunWithTwoWorkers(out: out)
        let launcherPID = launcher.processIdentifier
        let workers = Array(try Self.workers(of: launcherPID).values)
        XCTAssertEqual(workers.count, 2)
        kill(launcherPID, SIGKILL)
        launcher.waitUntilExit()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && workers.contains(where: { kill($0, 0) == 0 }) { Thread.sleep(forTimeInterval: 0.1) }
        let left = workers.filter { kill($0, 0) == 0 }
        for pid in left { kill(pid, SIGKILL) }
        XCTAssertEqual(left, [], "workers still running a minute after their launcher was killed")
        XCTAssertEqual(try Self.checkpointState(out)?["status"] as? String, "interrupted")
    }

    /// The workers of a `--nproc-per-node` launcher (the processes whose parent it is), by rank.
    static func workers(of launcher: pid_t) throws -> [Int: pid_t] {
        var workers: [Int: pid_t] = [:]
        for pid in ProcessInspection.children(of: launcher) {
            guard let environment = try? Foundation.Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/environ")),
                  let rank = environment.split(separator: 0).lazy.map({ String(decoding: $0, as: UTF8.self) })
                      .first(where: { $0.hasPrefix("RANK=") }).flatMap({ Int($0.dropFirst(5)) })
            else { continue }
            workers[rank] = pid
        }
        return workers
    }

    /// A worker's private copy of the run (a folder in the temporary directory) holds no checkpoint:
    /// nothing reads one (a resume copies rank 0's), and until 2026-12-07 each rank above 0
    /// wrote `checkpoints/last` (model and optimizer state, fsync'd) there as often as rank 0 did. A worker
    /// killed with SIGKILL runs no exit handler, so its folder stayed behind; the probes left dozens. The
    /// launcher removes it.
    func testAWorkersPrivateFolderHoldsNoCheckpointAndGoesWhenTheWorkerIsKilled() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let out = try temporaryFolder("dist-killed-worker") + "/run"
        let launcher = try launchedLongRunWithTwoWorkers(out: out)
        let worker = try XCTUnwrap(try Self.workers(of: launcher.processIdentifier)[1])
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-rank1-\(worker)").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/config.json"), "rank 1 trains into \(folder)")
        // Rank 0 saves every 2 steps (`launchedLongRunWithTwoWorkers`): a few saves later, rank 1 has none.
        let deadline = Date().addingTimeInterval(60)
        while launcher.isRunning, Date() < deadline, (try? Self.checkpointState(out))?["globalStep"] as? Int ?? 0 < 8 {
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertGreaterThanOrEqual(try Self.checkpointState(out)?["globalStep"] as? Int ?? 0, 8)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/checkpoints/last"), "rank 1 wrote checkpoints/last")
        // Nor checkpoints/best, once rank 0 has one (the first epoch's end): until stop 52 rank 1 wrote it too.
        while launcher.isRunning, Date() < deadline, Checkpoint.locate(out + "/checkpoints/best") == nil {
            Thread.sleep(forTimeInterval: 0.01)
        }
        XCTAssertNotNil(Checkpoint.locate(out + "/checkpoints/best"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/checkpoints/best"), "rank 1 wrote checkpoints/best")
        kill(worker, SIGKILL)
        launcher.waitUntilExit()
        // The killed worker's 137, or rank 0's 1 when it stopped (naming the lost rank) before the
        // launcher saw the kill; rank 0 ended by SIGPIPE writing to the dead peer was 141.
        XCTAssertTrue([137, 1].contains(launcher.terminationStatus), "\(launcher.terminationStatus)")
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder), "\(folder) is left behind")
    }

    /// A worker killed under `--nproc-per-node`: the launcher says which rank ended and how, as
    /// torchrun does, and the surviving rank's error is printed whole. (The launcher's SIGTERM killed
    /// the survivor while it printed, so a killed rank 0 left exit status 137 and not one word.)
    func testALostWorkerIsNamedByTheLauncherAndTheOtherRanksErrorIsWhole() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let folder = try temporaryFolder("dist-lost-worker")
        let out = folder + "/run", log = folder + "/stderr.log"
        let launcher = Process()
        launcher.executableURL = CLITests.binary
        launcher.arguments = trainArguments(data: try makeDistributedDataset(), out: out, batchSize: 1)
            + ["--epochs", "200", "--save-every-steps", "2", "--threads", "1", "--nproc-per-node", "2",
               "--master-port", String(try FreePort.make())]
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        launcher.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        launcher.standardOutput = FileHandle.nullDevice
        try launcher.run()
        let deadline = Date().addingTimeInterval(120)
        while launcher.isRunning && Date() < deadline && (try? Self.checkpointState(out)) == nil { Thread.sleep(forTimeInterval: 0.005) }
        let rank0 = try XCTUnwrap(try Self.workers(of: launcher.processIdentifier)[0])
        kill(rank0, SIGKILL)
        launcher.waitUntilExit()
        let text = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertEqual(launcher.terminationStatus, 137, text)
        XCTAssertTrue(text.contains("worker rank 0 (process \(rank0)) was killed by signal 9"), text)
        XCTAssertTrue(text.contains("Error: rank 0 stopped answering") && text.contains("; rank 1 stops"), text)
    }

    /// A non-finite loss on one rank only (a class weight of 3.4e38, float32's largest, overflows the
    /// weighted loss of a batch holding that class on one rank): every rank stops as diverged at the same step, the one at
    /// which one process at the whole batch stops, with no step applied. (Before, that rank stopped
    /// alone and the other reported it lost: "stopped answering (killed, crashed or unreachable)".)
    func testANonFiniteLossOnOneRankStopsEveryRankAsDiverged() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset()
        let runs = try temporaryFolder("dist-diverged")
        let weights = runs + "/weights.json"
        try Foundation.Data("[1, 1, 3.4e38]".utf8).write(to: URL(fileURLWithPath: weights))  // red: float32 overflows in w·loss
        func step(_ text: String) -> String? {
            text.range(of: "the loss of step [0-9]+", options: .regularExpression).map { String(text[$0]) }
        }
        let single = try CLITests.run(trainArguments(data: data, out: runs + "/single", batchSize: 2)
            + ["--threads", "1", "--class-weights", weights])
        XCTAssertEqual(single.status, 1, single.stderr)
        let expected = try XCTUnwrap(step(single.stderr), single.stderr)
        let ranks = try runRanks(2, trainArguments(data: data, out: runs + "/ddp", batchSize: 1)
            + ["--threads", "1", "--class-weights", weights, "--dist-timeout", "20"], port: try FreePort.make())
        for (rank, run) in ranks.enumerated() {
            XCTAssertEqual(run.status, 1, "rank \(rank): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("training diverged"), "rank \(rank): \(run.stderr)")
            XCTAssertFalse(run.stderr.contains("stopped answering"), "rank \(rank): \(run.stderr)")
            XCTAssertEqual(step(run.stderr), expected, "rank \(rank): \(run.stderr)")
        }
    }

    func testBadLaunchInputIsAClearError() throws {
        let data = try makeDistributedDataset()
        let out = try temporaryFolder("dist-bad") + "/run"
        let arguments = trainArguments(data: data, out: out, batchSize: 8)

        let noRank = try CLITests.run(arguments, environment: ["WORLD_SIZE": "2"])
        XCTAssertNotEqual(noRank.status, 0)
        XCTAssertTrue(noRank.stderr.contains("WORLD_SIZE=2 is set but RANK is not"), noRank.stderr)
        // A world size beyond 32 bits and an infinite timeout trapped converting them (status 132).
        let huge = try CLITests.run(arguments, environment: ["RANK": "0", "WORLD_SIZE": "4294967297", "MASTER_ADDR": "127.0.0.1"])
        XCTAssertTrue((1..<128).contains(huge.status), huge.stderr)
        XCTAssertTrue(huge.stderr.contains("world size (RANK/WORLD_SIZE) must be 1 to"), huge.stderr)
        for timeout in ["inf", "1e308"] {
            let forever = try CLITests.run(arguments + ["--dist-timeout", timeout], environment: ["RANK": "1", "WORLD_SIZE": "2",
                                                                                                  "MASTER_ADDR": "127.0.0.1"])
            XCTAssertEqual(forever.status, 64, forever.stderr)
            XCTAssertTrue(forever.stderr.contains("--dist-timeout must be positive and at most 86400"), forever.stderr)
        }
        // Pseudo-labelling does not run data-parallel: refused before any worker or folder (the run
        // directory was made and left "failed", so the next plain run needed --overwrite).
        let unlabeled = try CLITests.run(arguments + ["--unlabeled", data, "--nproc-per-node", "2"])
        XCTAssertEqual(unlabeled.status, 64, unlabeled.stderr)
        XCTAssertTrue(unlabeled.stderr.contains("--unlabeled: pseudo-labelling does not run data-parallel yet"), unlabeled.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "the run directory was made")
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")

        // Rank 1 of 2 with nobody at the master: an error naming the address, after --dist-timeout.
        let port = try FreePort.make()
        let started = Date()
        let unreachable = try CLITests.run(arguments + ["--dist-timeout", "1"], environment: [
            "RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": String(port)])
        XCTAssertNotEqual(unreachable.status, 0)
        XCTAssertTrue(unreachable.stderr.contains("127.0.0.1:\(port)"), unreachable.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 30)

        // Rank 0 whose port is taken.
        let taken = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 5)
        let inUse = try CLITests.run(arguments + ["--dist-timeout", "2"], environment: [
            "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": String(port)])
        XCTAssertNotEqual(inUse.status, 0)
        XCTAssertTrue(inUse.stderr.contains("port \(port)") && inUse.stderr.contains("already in use"), inUse.stderr)
        // The --nproc-per-node launcher stops the other worker once one fails: rank 0 cannot listen, and
        // rank 1 no longer waits out its rendezvous timeout (60 s here) before the command ends.
        let launched = Date()
        let launcher = try CLITests.run(arguments + ["--nproc-per-node", "2", "--master-port", String(port), "--threads", "1"])
        XCTAssertNotEqual(launcher.status, 0)
        XCTAssertTrue(launcher.stderr.contains("already in use"), launcher.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(launched), 30, "the launcher waited for rank 1's rendezvous")
        withExtendedLifetime(taken) {}
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a failed launch created the run directory")

        // Ranks whose settings differ in what decides their collectives are refused, naming the setting;
        // gloo aborted the process (SIGABRT, a backtrace) when their all-reduces did not pair.
        let mismatched = try runRanks(2, arguments + ["--epochs", "1"], port: FreePort.make(),
                                      extra: [:], perRank: [1: ["--accumulate-steps", "2"]])
        for (rank, run) in mismatched.enumerated() {
            XCTAssertEqual(run.status, 1, "rank \(rank): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("gradient accumulation (--accumulate-steps)"), "rank \(rank): \(run.stderr)")
        }
        // Ranks given different WORLD_SIZE values are told so; it read as a rendezvous timeout with
        // Gloo's "136 vs 272".
        let sizePort = String(try FreePort.make())
        final class Box: @unchecked Sendable { var runs: [Int: CLITests.Run] = [:]; let lock = NSLock() }
        let box = Box()
        DispatchQueue.concurrentPerform(iterations: 2) { rank in
            let environment = ["RANK": String(rank), "WORLD_SIZE": rank == 0 ? "2" : "3", "MASTER_ADDR": "127.0.0.1",
                               "MASTER_PORT": sizePort]
            let result = try? CLITests.run(trainArguments(data: data, out: out + "-sizes", batchSize: 8) + ["--dist-timeout", "20"],
                                           environment: environment)
            box.lock.withLock { box.runs[rank] = result }
        }
        // Rank 0 holds the store and counts; a rank that finds it gone has only Gloo's sign of it
        // (worded by LibTorch: a hint is added where it is recognised).
        XCTAssertTrue(try XCTUnwrap(box.runs[0]).stderr.contains("the ranks disagree on the number of processes (WORLD_SIZE"))
        for rank in 0..<2 {
            let result = try XCTUnwrap(box.runs[rank])
            XCTAssertNotEqual(result.status, 0)
        }

        // So are ranks that differ in the model or the images' pixels, before any features are
        // computed: one rank at another --input-size wrote its features into the shared cache under rank
        // 0's key, and --augment differing in a head-only run left the ranks' collectives out of step.
        for (i, (flags, named)) in [(["--input-size", "48"], "preprocessing (--input-size) (rank 1 differs from rank 0)"),
                                    (["--augment", "standard"], "augmentation (--augment"),
                                    (["--head-dropout", "0.5"], "model (--arch"),
                                    (["--epochs", "2"], "epochs (--epochs)")].enumerated() {
            let differing = try runRanks(2, trainArguments(data: data, out: out + "-\(i)", batchSize: 8) + ["--epochs", "1"],
                                         port: FreePort.make(), extra: [:], perRank: [1: flags])
            for (rank, run) in differing.enumerated() {
                XCTAssertEqual(run.status, 1, "rank \(rank) \(flags): \(run.stderr)")
                XCTAssertTrue(run.stderr.contains("the ranks disagree on \(named)"), "rank \(rank) \(flags): \(run.stderr)")
            }
        }
        // And test data (rank 1's test/ folder took part in the sharded test evaluation unseen).
        let withTest = try temporaryFolder("dist-test-data") + "/data"
        try FileManager.default.copyItem(atPath: data, toPath: withTest)
        try FileManager.default.copyItem(atPath: data + "/val", toPath: withTest + "/test")
        let testData = try runRanks(2, trainArguments(data: data, out: out + "-test", batchSize: 8) + ["--epochs", "1"],
                                    port: FreePort.make(), dataPerRank: [1: (data, withTest)])
        for (rank, run) in testData.enumerated() {
            XCTAssertEqual(run.status, 1, "rank \(rank): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("the ranks disagree on test data"), "rank \(rank): \(run.stderr)")
        }
    }

    /// A data-parallel run's validation metrics are those of the model it saves: every rank evaluates
    /// with rank 0's BatchNorm statistics (each rank's had followed its own shard, so history.csv's
    /// val_loss was no model's: 1.1024 against `evaluate`'s 1.1020 on the saved weights).
    func testDataParallelValidationMetricsAreTheSavedModels() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset()
        let out = try temporaryFolder("dist-val") + "/run"
        let arguments = ["train", data, "--out", out, "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "32",
                         "--batch-size", "4", "--epochs", "1", "--workers", "0", "--threads", "1", "--precision", "fp32",
                         "--nproc-per-node", "2", "--master-port", String(try FreePort.make())]
        let trained = try CLITests.run(arguments)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        // Rank 0's time in collectives, once: the gradients', the metric sums' and the batch agreement's.
        let timing = trained.lines.filter { $0.hasPrefix("all-reduce: ") }
        XCTAssertEqual(timing.count, 1, trained.stdout)
        XCTAssertNotNil(timing.first?.range(of: #"ms per step \(\d+ steps, 2 ranks\); metric sums: \d+\.\d\d ms; waiting at batch agreement: \d+\.\d ms$"#,
                                            options: .regularExpression), trained.stdout)
        let history = try String(contentsOfFile: out + "/history.csv", encoding: .utf8).split(separator: "\n")
        let header = history[0].split(separator: ","), last = history[history.count - 1].split(separator: ",")
        let recorded = try XCTUnwrap(header.firstIndex(of: "val_loss").flatMap { Double(last[$0]) })
        let evaluated = try CLITests.run(["evaluate", out, data, "--split", "val", "--precision", "fp32", "--threads", "1", "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(evaluated.lines.last).utf8))
            as? [String: Any])
        let loss = try XCTUnwrap(report["loss"] as? Double)
        XCTAssertEqual(recorded, loss, accuracy: 1e-5 * loss, "history.csv's val_loss is the saved model's")
    }

    /// torchrun itself (Debian's PyTorch 1.13, `python -m torch.distributed.run` in the interop venv, whose flags are spelt with underscores) launches
    /// the run that the hand-set variables launch, to the bit. Its agent already listens on MASTER_PORT
    /// and tells the workers so (`TORCHELASTIC_USE_AGENT_STORE=True`); before rank 0 joined that store,
    /// it tried to listen there too and stopped with "address already in use".
    func testTorchrunLaunchesTheSameRun() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let python = try Interop.python()
        // torchrun's agent hosts the TCPStore the ranks join, and TCPStore's protocol changed in torch 2
        // (clients validate the server first; a 1.13 server resets them): the venv's torch must have
        // our LibTorch's major version.
        let theirs = try Self.pythonTorchVersion()
        try XCTSkipUnless(theirs.split(separator: ".").first == Runtime.libTorchVersion.split(separator: ".").first,
                          "torchrun from torch \(theirs) cannot host ranks built on LibTorch \(Runtime.libTorchVersion)")
        let data = try makeDistributedDataset()
        let runs = try temporaryFolder("dist-torchrun")
        let env = try runRanks(2, trainArguments(data: data, out: runs + "/env", batchSize: 8) + ["--threads", "1"],
                               port: try FreePort.make())
        for (rank, run) in env.enumerated() { XCTAssertEqual(run.status, 0, "rank \(rank): " + run.stderr) }

        let log = runs + "/torchrun.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        let torchrun = Process()
        torchrun.executableURL = URL(fileURLWithPath: python)
        // --redirects 1 --tee 2: 1.13's default ("0", no redirection) fails on Python 3.11, whose Flag
        // enums no longer list the zero member that torchrun's parser looks for.
        torchrun.arguments = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                              String(try FreePort.make()), "--redirects", "1", "--tee", "2", "--log_dir", runs + "/logs",
                              "--no_python", CLITests.binary.path]
            + trainArguments(data: data, out: runs + "/torchrun", batchSize: 8) + ["--threads", "1"]
        torchrun.standardOutput = handle
        torchrun.standardError = handle
        try torchrun.run()
        torchrun.waitUntilExit()
        let output = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertEqual(torchrun.terminationStatus, 0, output)
        XCTAssertEqual(try largestRelativeDifference(runs + "/env/model.safetensors", runs + "/torchrun/model.safetensors"), 0,
                       output)
    }

    /// `torch.__version__` of the interop venv's Python (`tools/interop/torch_version.py`).
    static func pythonTorchVersion() throws -> String {
        let (status, output) = try Interop.run("torch_version.py", [])
        XCTAssertEqual(status, 0, output)
        let line = output.split(separator: "\n").last { $0.hasPrefix("torch_version=") }
        return try XCTUnwrap(line, output).dropFirst("torch_version=".count).trimmingCharacters(in: .whitespaces)
    }

    /// Starts `arguments` as rank `rank` of 2 (torchrun's variables), output to `log`.
    func startRank(_ rank: Int, _ arguments: [String], port: Int, log: String) throws -> Process {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["RANK": String(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": String(port)]) { $1 }
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// The acceptance runs of data-parallel training, sharing their runs to keep the test short:
    /// * 2 ranks at batch 8 (`--nproc-per-node 2`) end with the weights of 1 process at batch 16, to
    ///   1e-5 relative, with the same validation metrics, and only rank 0 writes;
    /// * the same command with torchrun's variables set by hand gives the same weights, bit for bit;
    /// * SIGKILL of rank 1 during training: rank 0 exits non-zero within --dist-timeout naming rank 1
    ///   and leaves a resumable checkpoint; `--resume` with 2 ranks ends bit-identical to the
    ///   uninterrupted run.
    func testTwoRanksMatchOneProcessUnderEitherLauncherAndResumeExactlyAfterAKill() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDistributedDataset()
        let runs = try temporaryFolder("dist-runs")
        let single = try CLITests.run(trainArguments(data: data, out: runs + "/single", batchSize: 16) + ["--threads", "1"])
        XCTAssertEqual(single.status, 0, single.stderr)
        let parallel = try CLITests.run(trainArguments(data: data, out: runs + "/ddp", batchSize: 8)
            + ["--nproc-per-node", "2", "--master-port", String(try FreePort.make())])
        XCTAssertEqual(parallel.status, 0, parallel.stdout + parallel.stderr)

        XCTAssertLessThan(try largestRelativeDifference(runs + "/single/model.safetensors", runs + "/ddp/model.safetensors"), 1e-5)
        let a = try lastHistoryRow(runs + "/single"), b = try lastHistoryRow(runs + "/ddp")
        XCTAssertEqual(a["val_accuracy"], b["val_accuracy"])
        XCTAssertEqual(a["val_macro_f1"], b["val_macro_f1"])
        let lossA = try XCTUnwrap(Double(a["val_loss"] ?? "")), lossB = try XCTUnwrap(Double(b["val_loss"] ?? ""))
        XCTAssertEqual(lossA, lossB, accuracy: 1e-5 * max(1, abs(lossA)))
        XCTAssertEqual(a["loss"].flatMap(Double.init) ?? 0, b["loss"].flatMap(Double.init) ?? 1, accuracy: 1e-5)
        XCTAssertEqual(try Self.checkpointWorldSize(runs + "/ddp"), 2)
        XCTAssertNil(try Self.checkpointWorldSize(runs + "/single"))

        // torchrun's variables by hand (--threads 1 is what --nproc-per-node gives each rank here).
        let env = try runRanks(2, trainArguments(data: data, out: runs + "/env", batchSize: 8) + ["--threads", "1"],
                               port: try FreePort.make())
        for (rank, run) in env.enumerated() { XCTAssertEqual(run.status, 0, "rank \(rank): " + run.stderr) }
        XCTAssertEqual(try largestRelativeDifference(runs + "/ddp/model.safetensors", runs + "/env/model.safetensors"), 0)

        // Kill rank 1 once rank 0 has saved a step (--save-every-steps 1 changes no arithmetic). BatchNorm
        // trains here: the failed batch's forward pass had updated its running statistics, and the
        // checkpoint kept them (the resumed run's were one batch ahead).
        func trainingBatchNorm(_ arguments: [String]) -> [String] {
            var arguments = arguments
            if let i = arguments.firstIndex(of: "--trainable-scopes") { arguments.removeSubrange(i...(i + 1)) }
            return arguments + ["--recipe", "full"]
        }
        let withBatchNorm = try CLITests.run(trainingBatchNorm(trainArguments(data: data, out: runs + "/ddp-bn", batchSize: 8))
            + ["--nproc-per-node", "2", "--master-port", String(try FreePort.make())])
        XCTAssertEqual(withBatchNorm.status, 0, withBatchNorm.stdout + withBatchNorm.stderr)
        let logs = try temporaryFolder("dist-logs")
        let port = try FreePort.make()
        let killedArguments = trainingBatchNorm(trainArguments(data: data, out: runs + "/killed", batchSize: 8))
            + ["--threads", "1", "--save-every-steps", "1", "--dist-timeout", "20"]
        let rank0 = try startRank(0, killedArguments, port: port, log: logs + "/rank0.log")
        let rank1 = try startRank(1, killedArguments, port: port, log: logs + "/rank1.log")
        let deadline = Date().addingTimeInterval(120)
        while rank1.isRunning && Date() < deadline && (try? Self.checkpointState(runs + "/killed")) == nil {
            Thread.sleep(forTimeInterval: 0.005)
        }
        XCTAssertTrue(rank1.isRunning, "rank 1 ended before it could be killed")
        kill(rank1.processIdentifier, SIGKILL)
        // A rank killed with SIGKILL outside --nproc-per-node leaves its private folder (documented).
        let leftover = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-rank1-\(rank1.processIdentifier)")
        addTeardownBlock { try? FileManager.default.removeItem(at: leftover) }
        let killed = Date()
        rank0.waitUntilExit()
        rank1.waitUntilExit()
        let log = try String(contentsOfFile: logs + "/rank0.log", encoding: .utf8)
        XCTAssertNotEqual(rank0.terminationStatus, 0, log)
        XCTAssertLessThan(Date().timeIntervalSince(killed), 20, "rank 0 did not stop within --dist-timeout")
        XCTAssertTrue(log.contains("rank 1 stopped answering"), log)
        XCTAssertEqual(try Self.checkpointState(runs + "/killed")?["status"] as? String, "interrupted")

        let resumed = try CLITests.run(["train", "--resume", runs + "/killed", "--nproc-per-node", "2",
                                        "--master-port", String(try FreePort.make())])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try largestRelativeDifference(runs + "/ddp-bn/model.safetensors", runs + "/killed/model.safetensors"), 0)
        // So are the killed epoch's training loss and accuracy: rank 0's checkpoint, written at the end of
        // the step before, holds both ranks' sums (it held rank 0's, counted by both ranks on resume).
        try assertTrainingMetricsMatch(runs + "/ddp-bn", runs + "/killed")
        // Only rank 0 wrote: the run directories and nothing else.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: runs).sorted(), ["ddp", "ddp-bn", "env", "killed", "single"])
    }
}
