import Foundation
import XCTest

// `--split` of evaluate, features and report on DATA without split folders (tiny dataset of
// `TrainCLITests`, its train/ folder copied as a plain folder of class folders).
extension TrainCLITests {
    /// `--split val` on the plain folder a run held its validation images out of evaluates those
    /// images, and `--split train` the others: before, both evaluated the whole folder, training images
    /// too, and said only `folder`. A split that DATA does not have is an error naming the flag, and
    /// images changed since the run was made are refused (its split of them would not be its own).
    func testSplitOnAPlainFolderIsTheRunsOwnSplitOrAnError() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("plain-split")
        let plain = runs + "/plain"
        try FileManager.default.copyItem(atPath: data + "/train", toPath: plain)
        let out = runs + "/run"
        let trained = try run(["train", plain, "--out", out, "--epochs", "1"] + Self.common)  // --val-split 0.25
        XCTAssertEqual(trained.status, 0, trained.stderr)
        func evaluated(_ extra: [String]) throws -> (split: String?, paths: [String], notes: [String]) {
            let r = try run(["evaluate", out, plain, "--json", "--per-sample", "--threads", "2"] + extra)
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(r.lines.last).utf8))
                as? [String: Any])
            let samples = try XCTUnwrap(json["samples"] as? [[String: Any]])
            let notes = json["notes"] as? [String] ?? []
            return (json["split"] as? String, samples.compactMap { $0["path"] as? String }, notes)
        }
        let everything = try evaluated(["--split", "all"])
        let validation = try evaluated(["--split", "val"])
        let training = try evaluated(["--split", "train"])
        let whole = try evaluated([])
        XCTAssertEqual(validation.split, "val")
        XCTAssertEqual(validation.paths.count, 6, "2 of each class's 8 images held out")
        XCTAssertEqual(training.split, "train")
        XCTAssertEqual(training.paths.count, 18)
        XCTAssertTrue(Set(validation.paths).isDisjoint(with: training.paths))
        XCTAssertEqual(whole.split, "folder")
        XCTAssertEqual(Set(whole.paths), Set(validation.paths + training.paths))
        // The run's own folder used whole holds its training images: the metrics say so (probe AG:
        // `evaluate runs/flowers data/flowers`, "test-split metrics" in the help, reported 240
        // training images of 300 as if unseen). A split the run holds out has no such note.
        let trainedOn = "is the data the run was trained on, used whole"
        XCTAssertTrue(whole.notes.contains { $0.contains(trainedOn) && $0.contains("--split val") }, "\(whole.notes)")
        XCTAssertTrue(everything.notes.contains { $0.contains(trainedOn) }, "the same images, the same note (probe AH)")
        XCTAssertFalse((validation.notes + training.notes).contains { $0.contains(trainedOn) }, "\(validation.notes)")
        let features = try run(["features", out, plain, "--split", "val", "--out", runs + "/val.csv", "--json", "--threads", "2"])
        XCTAssertEqual(features.status, 0, features.stderr)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(features.lines.last).utf8))
            as? [String: Any])
        XCTAssertEqual(summary["images"] as? Int, 6)

        for (arguments, expected) in [
            (["evaluate", out, plain, "--split", "test"], "--split test: \(plain) is a folder of class folders"),
            (["features", "mobilenet_v2", plain, "--weights", "none", "--split", "val", "--out", runs + "/x.csv"],
             "--split val: \(plain) is a folder of class folders"),
            // Checked before any work (a report into a missing folder failed after its whole evaluation).
            (["report", out, "--split", "val", "--out", runs + "/nowhere/report.html"], "--out: the folder \(runs)/nowhere does not exist"),
            (["features", out, plain, "--out", runs + "/nowhere/x.csv"], "--out: the folder \(runs)/nowhere does not exist"),
            (["report", out, "--split", "val", "--out", runs + "/nowhere/"], "--out \(runs)/nowhere/ names a folder"),
            (["export", out, "--out", out + "/config.json/x.onnx"], "--out: \(out)/config.json is not a folder"),
            // Folders these create: a file in the path failed after the work, with Cocoa's error 512.
            (["lr-find", plain, "--arch", "mobilenet_v2", "--weights", "none", "--out", out + "/config.json/lr"],
             "--out: \(out)/config.json is a file, not a folder"),
            (["pseudo-label", out, plain, "--out", out + "/config.json/review"], "--out: \(out)/config.json is a file, not a folder"),
            (["convert", "mnist", plain, out + "/config.json/mnist"], "DST: \(out)/config.json is a file, not a folder"),
        ] {
            let r = try run(arguments + ["--threads", "2"])
            XCTAssertEqual(r.status, 64, r.stderr)
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) in \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs + "/x.csv"))

        // Beside a test/ folder too: `--split val` was an error ("no val/ folder") and `--split train`
        // held the validation images.
        let folders = runs + "/folders"
        let withTest = try run(["train", data, "--out", folders, "--epochs", "1"] + Self.common)
        XCTAssertEqual(withTest.status, 0, withTest.stderr)
        for (split, count) in [("val", 6), ("train", 18), ("test", 9)] {
            let r = try run(["evaluate", folders, data, "--split", split, "--json", "--threads", "2"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(r.lines.last).utf8))
                as? [String: Any])
            XCTAssertEqual(json["sample_count"] as? Int, count, split)
        }

        // The report reads DATA as evaluate does (it refused a plain folder: "no test split").
        let report = try run(["report", out, "--out", runs + "/plain.html", "--no-data-check", "--grad-cam", "0",
                              "--threads", "2"])
        XCTAssertEqual(report.status, 0, report.stderr)
        XCTAssertTrue(report.stdout.contains("(24 folder images"), report.stdout)
        XCTAssertTrue(try String(contentsOfFile: runs + "/plain.html", encoding: .utf8).contains(trainedOn))

        try FileManager.default.copyItem(atPath: plain + "/blue/0.png", toPath: plain + "/blue/extra.png")
        for command in [["evaluate", out, plain, "--split", "val"],
                        ["report", out, plain, "--split", "val", "--out", runs + "/report.html"]] {
            let r = try run(command + ["--threads", "2"])
            XCTAssertNotEqual(r.status, 0, r.stdout)
            XCTAssertTrue(r.stderr.contains("not those the run was created with"), r.stderr)
            XCTAssertTrue(r.stderr.contains("Error: DATA: the images in"), "named as DATA (report said --data): \(r.stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: runs + "/report.html"))
    }
}
