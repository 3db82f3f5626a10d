import Foundation
import XCTest

// Pseudo-labelling end to end on the tiny dataset of `TrainCLITests`: its test split (class folders)
// is the unlabelled folder. Kill-and-resume in a pseudo-labelling epoch, the records, bad input, and
// `finetune pseudo-label`.
extension TrainCLITests {
    static let pseudo = ["--pseudo-label-start-epoch", "1", "--pseudo-label-threshold", "0.34",
                         "--pseudo-label-fraction", "0.3"]

    /// Acceptance: SIGKILLed in epoch 2 of 2 (a pseudo-labelling epoch) and resumed, the run ends
    /// with the weights of an uninterrupted one, bit for bit; the records have the pseudo-label columns.
    func testKillAndResumeDuringAPseudoLabellingEpochIsBitExact() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("kill-pseudo")
        let unlabeled = runs + "/unlabeled"
        try FileManager.default.copyItem(atPath: data + "/test", toPath: unlabeled)
        let arguments = TrainCLITests.common + TrainCLITests.pseudo + ["--epochs", "2", "--save-every-steps", "1",
                                                                       "--unlabeled", unlabeled]
        let uninterrupted = try run(["train", data, "--out", runs + "/a"] + arguments)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        let history = try String(contentsOfFile: runs + "/a/history.csv", encoding: .utf8)
        let header = try XCTUnwrap(history.split(separator: "\n").first)
        for column in ["pseudo_count", "pseudo_confidence", "pseudo_class_blue", "pseudo_class_red", "pseudo_folder_accuracy"] {
            XCTAssertTrue(header.contains(column), "\(column) in \(header)")
        }
        let events = try String(contentsOfFile: runs + "/a/events.jsonl", encoding: .utf8)
        XCTAssertTrue(events.contains("\"pseudo_count\""), "events.jsonl has the pseudo-label records")
        let state = try readJSON(runs + "/a/checkpoints/last/trainer.json")
        let pseudo = try XCTUnwrap((state["state"] as? [String: Any])?["pseudoLabels"] as? [String: Any], "\(state.keys)")
        XCTAssertEqual(pseudo["refreshedEpoch"] as? Int, 1)
        XCTAssertGreaterThan((pseudo["labels"] as? [Any])?.count ?? 0, 0, "a threshold of 0.34 keeps some of the 9 images")

        XCTAssertTrue(try CLITests.killDuringSecondEpoch(["train", data, "--out", runs + "/b"] + arguments,
                                                          history: runs + "/b/history.csv"),
                      "the run finished before it could be killed; make it longer")
        // With an unlabelled file gone, the checkpoint's labels (positions in the old list) no longer fit:
        // mid-epoch the resume is refused naming the images (it trapped on an index past the end), at an
        // epoch's start they are computed again. A copy of the run tries; the folder is then restored.
        try FileManager.default.copyItem(atPath: runs + "/b", toPath: runs + "/b2")
        let gone = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: unlabeled + "/red").sorted().last)
        try FileManager.default.moveItem(atPath: unlabeled + "/red/" + gone, toPath: runs + "/" + gone)
        let saved = try XCTUnwrap(try readJSON(runs + "/b2/checkpoints/last/trainer.json")["state"] as? [String: Any])
        let configBefore = try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/b2/config.json"))
        let changed = try run(["train", "--resume", runs + "/b2", "--epochs", "2", "--workers", "0", "--threads", "2"])
        if saved["pseudoLabels"] == nil {
            XCTAssertEqual(changed.status, 0, "killed before pseudo-labelling began: nothing to fit. \(changed.stderr)")
        } else if saved["batchInEpoch"] as? Int == 0 {
            XCTAssertEqual(changed.status, 0, changed.stderr)
            XCTAssertTrue(changed.stdout.contains("unlabelled images changed since the checkpoint"), changed.stdout)
        } else {
            XCTAssertEqual(changed.status, 64, changed.stderr)
            XCTAssertTrue(changed.stderr.contains("the unlabelled images (8 now) are not those the checkpoint's pseudo-labels index"),
                          changed.stderr)
            XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/b2/config.json")), configBefore,
                           "a refused resume changes nothing")
        }
        try FileManager.default.moveItem(atPath: runs + "/" + gone, toPath: unlabeled + "/red/" + gone)

        let resumed = try run(["train", "--resume", runs + "/b", "--epochs", "2", "--workers", "0", "--threads", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        try assertIdentical(runs + "/a/model.safetensors", runs + "/b/model.safetensors")
    }

    func testPseudoLabelFlagsOutOfRangeAreErrorsNamingTheFlag() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"
        let cases: [([String], String)] = [
            (["--unlabeled", data + "/test", "--pseudo-label-threshold", "0"], "--pseudo-label-threshold"),
            (["--unlabeled", data + "/test", "--pseudo-label-fraction", "1"], "--pseudo-label-fraction"),
            (["--unlabeled", data + "/test", "--pseudo-label-weight", "-1"], "--pseudo-label-weight"),
            (["--pseudo-label-threshold", "0.8"], "--unlabeled"),
            // Starting at or after the last epoch would never use the unlabelled images (it was accepted).
            (["--unlabeled", data + "/test", "--pseudo-label-start-epoch", "1"], "--pseudo-label-start-epoch: 1 (0-based) is past"),
            (["--unlabeled", data + "/test", "--pseudo-label-fraction", "0.95"], "--pseudo-label-fraction"),
        ]
        for (flags, expected) in cases {
            let r = try CLITests.runUnlessRefusedInParsing(["train", data, "--out", out, "--epochs", "1"] + TrainCLITests.common + flags)
            XCTAssertNotEqual(r.status, 0, "\(flags)")
            XCTAssertTrue(r.stderr.contains(expected), "\(flags): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(flags) created the run")
        }
    }

    /// A missing folder and a corrupt file are reported once; a threshold nobody reaches is said at
    /// each refresh; the runs train on labelled data only.
    func testBadUnlabelledInputIsReportedAndTrainingGoesOn() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("bad-unlabeled")
        let missing = try run(["train", data, "--out", runs + "/missing", "--epochs", "1", "--unlabeled", runs + "/nowhere",
                               "--pseudo-label-start-epoch", "0"] + TrainCLITests.common)
        XCTAssertEqual(missing.status, 0, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("nowhere") && missing.stderr.contains("labelled data only"), missing.stderr)
        // Also on cached features (head-only without augmentation): the start epoch failed the run.
        let cached = try run(["train", data, "--out", runs + "/missing-cached", "--epochs", "2", "--unlabeled", runs + "/nowhere",
                              "--pseudo-label-start-epoch", "1", "--recipe", "head-only", "--augment", "none",
                              "--feature-cache", "on"] + TrainCLITests.common)
        XCTAssertEqual(cached.status, 0, cached.stderr)

        let unlabeled = try temporaryFolder("unlabeled")
        try FileManager.default.copyItem(atPath: data + "/test/red/0.png", toPath: unlabeled + "/a.png")
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: unlabeled + "/broken.png"))
        let r = try run(["train", data, "--out", runs + "/corrupt", "--epochs", "3", "--unlabeled", unlabeled,
                         "--pseudo-label-start-epoch", "1", "--pseudo-label-threshold", "1"] + TrainCLITests.common)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "broken.png").count - 1, 1, "reported once: \(r.stderr)")
        XCTAssertEqual((r.stdout + r.stderr).components(separatedBy: "no unlabelled image reaches the threshold").count - 1, 2,
                       "said at each of the 2 refreshes: \(r.stdout)")
    }

    /// Unlabelled images that are also the run's own images (through a symbolic or hard link) are
    /// named, by split: a test image pseudo-labelled into training leaks into the test metrics. A copy
    /// is a file of its own and is not named.
    func testUnlabelledImagesThatAreAlsoTheRunsImagesAreWarnedAboutBySplit() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("shared-unlabeled")
        let unlabeled = runs + "/unlabeled"
        try FileManager.default.createDirectory(atPath: unlabeled, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: unlabeled + "/test-red.png", withDestinationPath: data + "/test/red/0.png")
        try FileManager.default.copyItem(atPath: data + "/test/green/0.png", toPath: unlabeled + "/copy.png")
        for i in 0..<8 {  // --val-split 0.25: 6 of them train, 2 validate
            try FileManager.default.linkItem(atPath: data + "/train/blue/\(i).png", toPath: unlabeled + "/blue\(i).png")
        }
        let r = try run(["train", data, "--out", runs + "/run", "--epochs", "1", "--unlabeled", unlabeled,
                         "--pseudo-label-start-epoch", "0"] + TrainCLITests.common)
        XCTAssertEqual(r.status, 0, r.stderr)
        for expected in ["6 of the unlabeled images in \(unlabeled) are also training images",
                         "2 of the unlabeled images in \(unlabeled) are also validation images",
                         "1 unlabeled image in \(unlabeled) is also a test image (\(unlabeled)/test-red.png)"] {
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) in \(r.stderr)")
        }
        XCTAssertFalse(r.stderr.contains("copy.png"), r.stderr)
        XCTAssertTrue(r.stderr.contains("test metrics are no longer measured"), r.stderr)
    }

    func testPseudoLabelCommandWritesLinksByClassAndASortedCSV() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"
        let trained = try run(["train", data, "--out", out, "--epochs", "1"] + TrainCLITests.common)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let unlabeled = try temporaryFolder("unlabeled")
        try FileManager.default.copyItem(atPath: data + "/test", toPath: unlabeled + "/photos")
        try Data().write(to: URL(fileURLWithPath: unlabeled + "/photos/empty.png"))
        let review = try temporaryFolder("review") + "/out"
        let r = try run(["pseudo-label", out, unlabeled, "--out", review, "--threshold", "0.34", "--json",
                         "--workers", "0", "--threads", "2"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "empty.png").count - 1, 1, r.stderr)
        let summary = try r.json(XCTUnwrap(r.lines.last))
        XCTAssertEqual(summary["candidates"] as? Int, 9)
        let labelled = try XCTUnwrap(summary["labelled"] as? Int)
        XCTAssertGreaterThan(labelled, 0)
        let csv = try String(contentsOfFile: review + "/pseudo_labels.csv", encoding: .utf8)
        let rows = csv.split(separator: "\n").dropFirst().map { $0.split(separator: ",").map(String.init) }
        XCTAssertEqual(csv.split(separator: "\n").first, "file,class,confidence")
        XCTAssertEqual(rows.count, labelled)
        let confidences = rows.compactMap { Double($0[2]) }
        XCTAssertEqual(confidences, confidences.sorted(), "least confident first")
        XCTAssertTrue(confidences.allSatisfy { $0 >= 0.34 })
        // --precision is honoured (it always labelled in fp32): bf16 and fp32 give other confidences.
        var byPrecision: [String: String] = [:]
        for precision in ["fp32", "bf16"] {
            let folder = try temporaryFolder("review-" + precision) + "/out"
            let labelled = try run(["pseudo-label", out, unlabeled, "--out", folder, "--threshold", "0.34",
                                    "--precision", precision, "--workers", "0", "--threads", "2"])
            XCTAssertEqual(labelled.status, 0, labelled.stderr)
            XCTAssertFalse(labelled.stderr.contains("precision: bf16 (auto"), "asked for, not chosen: \(labelled.stderr)")
            byPrecision[precision] = try String(contentsOfFile: folder + "/pseudo_labels.csv", encoding: .utf8)
        }
        XCTAssertNotEqual(byPrecision["fp32"], byPrecision["bf16"])
        // Each class folder holds links to exactly the CSV's files of that class.
        for name in Set(rows.map { $0[1] }) {
            let folder = "\(review)/\(name)"
            let targets = try FileManager.default.contentsOfDirectory(atPath: folder).map {
                try FileManager.default.destinationOfSymbolicLink(atPath: folder + "/" + $0)
            }
            XCTAssertEqual(Set(targets), Set(rows.filter { $0[1] == name }.map { $0[0] }), name)
        }
        // Never into a folder with something in it; bad input names what is wrong.
        let again = try run(["pseudo-label", out, unlabeled, "--out", review, "--threshold", "0.34"])
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("--out") && again.stderr.contains("not empty"), again.stderr)
        let none = try run(["pseudo-label", out, unlabeled, "--out", review + "-1", "--threshold", "1"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("no image reaches"), none.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: review + "-1"))
        let empty = try temporaryFolder("empty")
        let nothing = try run(["pseudo-label", out, empty, "--out", review + "-2"])
        XCTAssertNotEqual(nothing.status, 0)
        XCTAssertTrue(nothing.stderr.contains("UNLABELED") && nothing.stderr.contains("no usable image"), nothing.stderr)
        let missing = try run(["pseudo-label", out, empty + "/nowhere", "--out", review + "-3"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("does not exist"), missing.stderr)
        let copies = try run(["pseudo-label", out, unlabeled, "--out", review + "-4", "--threshold", "0.34", "--copy"])
        XCTAssertEqual(copies.status, 0, copies.stderr)
        let first = try XCTUnwrap(rows.first)
        let copiedFolder = "\(review)-4/\(first[1])"
        let copied = try FileManager.default.contentsOfDirectory(atPath: copiedFolder).map { copiedFolder + "/" + $0 }
        XCTAssertTrue(copied.allSatisfy { (try? FileManager.default.destinationOfSymbolicLink(atPath: $0)) == nil }, "copies")
        XCTAssertTrue(copied.contains { FileManager.default.contents(atPath: $0) == FileManager.default.contents(atPath: first[0]) })

        // A CSV that cannot be written (a file-size limit of 0 stands for a full disk) is a failure (1,
        // not a usage error), and the links written before it are removed: they stayed, and a re-run
        // found the folder "not empty". A report that cannot be written is a failure too. SIGXFSZ keeps
        // its default action here: finetune ignores it itself (it died of it, status 153, probe AK).
        func limited(_ arguments: [String]) throws -> CLITests.Run {
            try CLITests.run(shell: "trap - XFSZ; ulimit -f 0; exec \"$0\" \"$@\"", arguments)
        }
        let full = try limited(["pseudo-label", out, unlabeled, "--out", review + "-5", "--threshold", "0.34"])
        XCTAssertEqual(full.status, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains("pseudo_labels.csv") && full.stderr.contains("File too large"), full.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: review + "-5"), "what it wrote is removed")
        XCTAssertEqual(try run(["pseudo-label", out, unlabeled, "--out", review + "-5", "--threshold", "0.34"]).status, 0)
        let report = try limited(["report", out, data, "--out", review + "-6.html", "--workers", "0", "--no-data-check"])
        XCTAssertEqual(report.status, 1, report.stderr)
        XCTAssertTrue(report.stderr.contains("--out") && report.stderr.contains("File too large"), report.stderr)
    }
}
