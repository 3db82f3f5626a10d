import Data
import Foundation
import TensorIO
import Torch
import XCTest

/// `finetune train`, `evaluate` and `predict RUN_DIR` on a tiny synthetic class-folder dataset
/// (3 colour classes of 32×32 PNGs), with a randomly initialised MobileNetV2 at 64 px.
final class TrainCLITests: XCTestCase {
    static let classes = ["blue", "green", "red"]

    func run(_ arguments: [String]) throws -> CLITests.Run { try CLITests.run(arguments) }

    func temporaryFolder(_ name: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// root/train/<class>/*.png (8 each) and root/test/<class>/*.png (3 each).
    func makeDataset() throws -> String {
        let root = try temporaryFolder("tiny-data")
        try Self.writeDataset(at: root)
        return root
    }

    /// Writes the tiny dataset (see `makeDataset`) into `root`.
    static func writeDataset(at root: String) throws {
        var seed: UInt32 = 12345
        func noise() -> UInt8 {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            return UInt8(seed >> 26)  // 0…63
        }
        for (split, count) in [("train", 8), ("test", 3)] {
            for (c, name) in Self.classes.enumerated() {
                let folder = "\(root)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    var rgb = [UInt8]()
                    for _ in 0..<(32 * 32) {
                        for channel in 0..<3 {
                            // class 0 blue, 1 green, 2 red
                            let on = (c == 0 && channel == 2) || (c == 1 && channel == 1) || (c == 2 && channel == 0)
                            rgb.append(on ? 192 &+ noise() : noise())
                        }
                    }
                    try TinyPNG.encode(rgb: rgb, width: 32, height: 32)
                        .write(to: URL(fileURLWithPath: "\(folder)/\(i).png"))
                }
            }
        }
    }

    static let common = ["--arch", "mobilenet_v2", "--weights", "none", "--input-size", "64", "--batch-size", "4",
                         "--val-split", "0.25", "--workers", "0", "--threads", "2", "--lr", "0.01"]

    func testTrainEvaluatePredictAndResume() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"

        // train --json: one JSON object with the documented keys, and the run directory's files.
        let train = try run(["train", data, "--out", out, "--epochs", "1", "--json"] + Self.common)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(train.lines.count, 1, train.stdout)
        let summary = try train.json(XCTUnwrap(train.lines.last))
        for key in ["run_dir", "architecture", "classes", "status", "epochs", "global_step", "train_samples",
                    "validation_samples", "test_samples", "final_metrics", "monitor", "model_weights",
                    "test_accuracy", "seconds"] {
            XCTAssertNotNil(summary[key], "missing key \(key)")
        }
        XCTAssertEqual(summary["classes"] as? [String], Self.classes)
        XCTAssertEqual(summary["epochs"] as? Int, 1)
        XCTAssertEqual(summary["status"] as? String, "completed")
        XCTAssertEqual(summary["train_samples"] as? Int, 18)
        XCTAssertEqual(summary["validation_samples"] as? Int, 6)
        XCTAssertEqual(summary["test_samples"] as? Int, 9)
        XCTAssertEqual(summary["model_weights"] as? String, "final")
        let accuracy = try XCTUnwrap(summary["test_accuracy"] as? Double)
        XCTAssertTrue((0...1).contains(accuracy))
        for file in ["config.json", "model.safetensors", "history.csv", "events.jsonl", "tensorboard",
                     "checkpoints/last/trainer.json", "checkpoints/best/trainer.json",
                     "loss.svg", "accuracy.svg", "auc.svg", "confusion_matrix.svg"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/\(file)"), "\(file) missing")
        }
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: "\(out)/config.json"))) as? [String: Any])
        XCTAssertEqual(config["architecture"] as? String, "mobilenet_v2")
        XCTAssertEqual(config["classNames"] as? [String], Self.classes)
        XCTAssertEqual((config["preprocessing"] as? [String: Any])?["cropSize"] as? Int, 64)
        XCTAssertEqual((config["head"] as? [String: Any])?["numClasses"] as? Int, 3)
        XCTAssertNotNil(config["training"] as? [String: Any])

        // evaluate --json: the test split, with per-class entries.
        let evaluate = try run(["evaluate", out, data, "--json", "--threads", "2", "--workers", "0"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let report = try evaluate.json(XCTUnwrap(evaluate.lines.last))
        XCTAssertEqual(report["split"] as? String, "test")
        XCTAssertEqual(report["sample_count"] as? Int, 9)
        XCTAssertEqual((report["per_class"] as? [[String: Any]])?.compactMap { $0["name"] as? String }, Self.classes)
        XCTAssertEqual((report["confusion_matrix"] as? [[Int]])?.count, 3)
        XCTAssertEqual(report["accuracy"] as? Double ?? -1, accuracy, accuracy: 1e-9)

        // The same test images listed in a path,label CSV file (relative to --image-root) evaluate
        // alike; evaluate took class folders only ("DATA folder x.csv does not exist").
        var rows = ["path,label"]
        for name in Self.classes {
            for file in try FileManager.default.contentsOfDirectory(atPath: "\(data)/test/\(name)").sorted() {
                rows.append("\(name)/\(file),\(name)")
            }
        }
        let csv = try temporaryFolder("csv") + "/test.csv"
        try Foundation.Data(rows.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: csv))
        let byCSV = try run(["evaluate", out, csv, "--image-root", data + "/test", "--json", "--threads", "2", "--workers", "0"])
        XCTAssertEqual(byCSV.status, 0, byCSV.stderr)
        let csvReport = try byCSV.json(XCTUnwrap(byCSV.lines.last))
        XCTAssertEqual(csvReport["split"] as? String, "csv")
        XCTAssertEqual(csvReport["sample_count"] as? Int, 9)
        XCTAssertEqual(csvReport["accuracy"] as? Double ?? -1, accuracy, accuracy: 1e-9)
        XCTAssertEqual(csvReport["confusion_matrix"] as? [[Int]], report["confusion_matrix"] as? [[Int]])

        // Class names must match.
        let other = try temporaryFolder("other")
        try FileManager.default.copyItem(atPath: "\(data)/test/red", toPath: "\(other)/red")
        try FileManager.default.copyItem(atPath: "\(data)/test/blue", toPath: "\(other)/cat")
        let mismatch = try run(["evaluate", out, other])
        XCTAssertNotEqual(mismatch.status, 0)
        XCTAssertTrue(mismatch.stderr.contains("cat") && mismatch.stderr.contains("green"), mismatch.stderr)

        // predict RUN_DIR --json: the run's class names.
        let predict = try run(["predict", out, "\(data)/test/red", "--json", "--top-k", "2", "--threads", "2"])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        XCTAssertEqual(predict.lines.count, 3)
        for line in predict.lines {
            let top = try XCTUnwrap(try predict.json(line)["top_k"] as? [[String: Any]])
            XCTAssertEqual(top.count, 2)
            XCTAssertTrue(Self.classes.contains(top[0]["class"] as? String ?? ""), "\(top)")
        }

        // --resume to 2 epochs: history with 2 epochs.
        let resumed = try run(["train", "--resume", out, "--epochs", "2", "--json", "--threads", "2", "--workers", "0"])
        XCTAssertFalse(resumed.stderr.contains("ignored"), "flags --resume uses: \(resumed.stderr)")
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        let second = try resumed.json(XCTUnwrap(resumed.lines.last))
        XCTAssertEqual(second["epochs"] as? Int, 2)
        let history = try String(contentsOfFile: "\(out)/history.csv", encoding: .utf8)
            .split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertEqual(history.count, 3, history.joined(separator: "\n"))  // header + 2 epochs
    }

    /// Acceptance: a run killed with SIGKILL after epoch 1 and resumed ends with weights equal to an
    /// uninterrupted run (bit for bit), because checkpoints are atomic and carry the optimizer,
    /// schedule position, RNG state and data position.
    func testSIGKILLedRunResumesToTheSameWeightsAsAnUninterruptedRun() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("kill")
        let arguments = Self.common + ["--epochs", "3", "--save-every-steps", "1", "--optimizer", "adam",
                                       "--lr-schedule", "cosine"]
        let uninterrupted = try run(["train", data, "--out", runs + "/a"] + arguments)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)

        // Kill it once epoch 1 is in the history (so the kill lands in epoch 2 or later).
        XCTAssertTrue(try CLITests.killDuringSecondEpoch(["train", data, "--out", runs + "/b"] + arguments,
                                                          history: runs + "/b/history.csv"),
                      "the run finished before it could be killed; make it longer")

        // Training flags on a resume change nothing (the weights below are bit-exact) and are named.
        let resumed = try run(["train", "--resume", runs + "/b", "--epochs", "3", "--workers", "0", "--threads", "2",
                               "--lr", "0.5", "--batch-size=4"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("warning: --resume continues with the run's saved settings; ignored: "
                                              + "--lr, --batch-size"), resumed.stderr)
        let a = try SafeTensors.load(runs + "/a/model.safetensors")
        let b = try SafeTensors.load(runs + "/b/model.safetensors")
        XCTAssertEqual(a.keys, b.keys)
        for (key, tensor) in a {
            let other = try XCTUnwrap(b[key], key)
            XCTAssertTrue(try tensor.allClose(other, rtol: 0, atol: 0), "\(key) differs after SIGKILL + resume")
        }
    }

    /// A binary (sigmoid) run with a Keras-style head: max pooling → BatchNorm1d → Dropout → Dense(8)
    /// → Dense(1). config.json records the head; evaluate and predict rebuild it from the run alone.
    func testBinaryRunWithCustomHeadEvaluatesAndPredicts() throws {
        let data = try makeDataset()
        try FileManager.default.removeItem(atPath: "\(data)/train/green")
        try FileManager.default.removeItem(atPath: "\(data)/test/green")
        let out = try temporaryFolder("runs") + "/binary"
        let head = ["--binary", "--pooling", "max", "--head-batchnorm", "--head-dropout", "0.3", "--head-hidden", "8"]
        let train = try run(["train", data, "--out", out, "--epochs", "2", "--recipe", "head-only", "--json"]
                            + Self.common + head)
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertTrue(train.stderr.contains("head max pool → BatchNorm1d → Dropout(0.3) → Dense(8, relu)"), train.stderr)
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: "\(out)/config.json"))) as? [String: Any])
        let spec = try XCTUnwrap((config["head"] as? [String: Any])?["spec"] as? [String: Any])
        XCTAssertEqual(spec["outputs"] as? Int, 1)
        XCTAssertEqual(spec["pooling"] as? String, "max")
        XCTAssertEqual(spec["hiddenUnits"] as? [Int], [8])
        let weights = try SafeTensors.load("\(out)/model.safetensors")
        XCTAssertEqual(weights["classifier.1.0.running_mean"]?.shape, [1280])
        XCTAssertEqual(weights["classifier.1.5.weight"]?.shape, [1, 8])

        let evaluate = try run(["evaluate", out, data, "--json", "--threads", "2", "--workers", "0"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let report = try evaluate.json(XCTUnwrap(evaluate.lines.last))
        XCTAssertEqual(report["sample_count"] as? Int, 6)
        XCTAssertEqual((report["confusion_matrix"] as? [[Int]])?.count, 2)
        let auc = try XCTUnwrap(report["auc"] as? Double)
        XCTAssertTrue((0...1).contains(auc), "\(auc)")

        let predict = try run(["predict", out, "\(data)/test/red", "--json", "--top-k", "2", "--threads", "2"])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        for line in predict.lines {
            let top = try XCTUnwrap(try predict.json(line)["top_k"] as? [[String: Any]])
            XCTAssertEqual(Set(top.compactMap { $0["class"] as? String }), ["blue", "red"])
            let total = top.compactMap { $0["probability"] as? Double }.reduce(0, +)
            XCTAssertEqual(total, 1, accuracy: 1e-5)
        }

        // --binary needs two classes; a bad head flag names itself.
        let three = try makeDataset()
        let notBinary = try run(["train", three, "--out", out, "--epochs", "1", "--binary"] + Self.common)
        XCTAssertNotEqual(notBinary.status, 0)
        XCTAssertTrue(notBinary.stderr.contains("--binary") && notBinary.stderr.contains("exactly 2 classes"), notBinary.stderr)
        let badHidden = try run(["train", three, "--out", out, "--head-hidden", "8,x"] + Self.common)
        XCTAssertTrue(badHidden.stderr.contains("--head-hidden"), badHidden.stderr)
        let badPooling = try run(["train", three, "--out", out, "--pooling", "median"] + Self.common)
        XCTAssertTrue(badPooling.stderr.contains("--pooling") && badPooling.stderr.contains("avg or max"),
                      badPooling.stderr)
    }

    /// `--feature-cache`: head-only epochs on cached features (computed, then reused by a second
    /// run), and clear refusals when the cache cannot apply.
    func testFeatureCacheIsComputedThenReusedAndRefusedWhenItCannotApply() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("runs"), cache = try temporaryFolder("cache")
        let flags = ["--recipe", "head-only", "--augment", "none", "--epochs", "2", "--feature-cache", "on",
                     "--feature-cache-dir", cache] + Self.common
        let first = try run(["train", data, "--out", runs + "/a"] + flags)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("Feature cache: 18 training images × 1 view + 6 validation images, "
                                            + "1280 features each, computed"), first.stdout)
        let second = try run(["train", data, "--out", runs + "/b"] + flags)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("reused"), second.stdout)
        // Same data, same seed, same features: the same model.
        let a = try SafeTensors.load(runs + "/a/model.safetensors"), b = try SafeTensors.load(runs + "/b/model.safetensors")
        for (key, tensor) in a { XCTAssertTrue(try tensor.allClose(XCTUnwrap(b[key]), rtol: 0, atol: 0), key) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache).count, 2)

        let augmented = try run(["train", data, "--out", runs + "/c", "--recipe", "head-only", "--augment", "standard",
                                 "--feature-cache", "on", "--feature-cache-dir", cache] + Self.common)
        XCTAssertNotEqual(augmented.status, 0)
        XCTAssertTrue(augmented.stderr.contains("--cache-augmentations"), augmented.stderr)
        let full = try run(["train", data, "--out", runs + "/d", "--recipe", "full", "--feature-cache", "on",
                            "--feature-cache-dir", cache] + Self.common)
        XCTAssertNotEqual(full.status, 0)
        XCTAssertTrue(full.stderr.contains("--feature-cache: on: the backbone is not frozen"), full.stderr)
        let auto = try run(["train", data, "--out", runs + "/e", "--recipe", "head-only", "--epochs", "1",
                            "--feature-cache-dir", cache] + Self.common)
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssertTrue(auto.stdout.contains("Feature cache not used: augmentation standard"), auto.stdout)
    }

    /// `finetune features`: the same embeddings and labels as .safetensors, .npy and .csv.
    func testFeaturesExportsSafetensorsNpyAndCSV() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("features")
        var exported: [String: Any] = [:]
        for name in ["f.safetensors", "f.npy", "f.csv"] {
            let r = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/\(name)", "--json",
                             "--threads", "2", "--workers", "0", "--split", "test"])
            XCTAssertEqual(r.status, 0, r.stderr)
            exported = try r.json(XCTUnwrap(r.lines.last))
            XCTAssertEqual(exported["images"] as? Int, 9)
            XCTAssertEqual(exported["feature_size"] as? Int, 512)
        }
        let file = try SafeTensors.read("\(out)/f.safetensors")
        let features = try XCTUnwrap(file.tensors["features"])
        XCTAssertEqual(features.shape, [9, 512])
        XCTAssertEqual(try XCTUnwrap(file.tensors["labels"]).toArray(Int64.self), [0, 0, 0, 1, 1, 1, 2, 2, 2])
        XCTAssertEqual(file.metadata["class_names"], #"["blue","green","red"]"#)

        // .npy: NumPy's header, then the same float32 values.
        let npy = try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: "\(out)/f.npy")))
        XCTAssertEqual(Array(npy[0..<8]), [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(npy[8]) | Int(npy[9]) << 8
        XCTAssertEqual((10 + headerLength) % 64, 0)
        let header = String(decoding: npy[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '<f4'") && header.contains("'shape': (9, 512)"), header)
        let values = npy[(10 + headerLength)...].withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertTrue(values == (try features.floats()), "the .npy values differ from the .safetensors ones")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/f_labels.npy"))

        // .csv: a header and one row per image.
        let rows = try String(contentsOfFile: "\(out)/f.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 10)
        XCTAssertTrue(rows[0].hasPrefix("path,label,class,f0,f1,"))
        XCTAssertEqual(rows[1].split(separator: ",").count, 3 + 512)
        XCTAssertEqual(Float(rows[1].split(separator: ",")[3]), try features.floats()[0])

        // Photos without class folders are embedded too, unlabelled (it was "no class folders").
        let photos = out + "/photos"
        try FileManager.default.createDirectory(atPath: photos, withIntermediateDirectories: false)
        for (i, name) in (try FileManager.default.contentsOfDirectory(atPath: data + "/test/blue")).sorted().prefix(2).enumerated() {
            try FileManager.default.copyItem(atPath: data + "/test/blue/" + name, toPath: photos + "/photo\(i).png")
        }
        for name in ["u.csv", "u.safetensors"] {
            let r = try run(["features", "resnet18", photos, "--weights", "none", "--out", "\(out)/\(name)", "--threads", "2",
                             "--workers", "0"])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        let unlabelled = try String(contentsOfFile: "\(out)/u.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(unlabelled.count, 3)
        XCTAssertTrue(unlabelled[1].hasPrefix(photos + "/photo0.png,-1,,"), String(unlabelled[1].prefix(80)))
        let embedded = try SafeTensors.read("\(out)/u.safetensors")
        XCTAssertEqual(try XCTUnwrap(embedded.tensors["labels"]).toArray(Int64.self), [-1, -1])
        XCTAssertEqual(embedded.metadata["class_names"], "[]")
        let photosSplit = try run(["features", "resnet18", photos, "--weights", "none", "--out", "\(out)/v.csv", "--split", "test"])
        XCTAssertEqual(photosSplit.status, 64, photosSplit.stderr)

        // Its own earlier outputs are replaced; a file it did not write is not, unless --overwrite.
        for name in ["f.safetensors", "f.npy", "f.csv"] {
            let again = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/\(name)",
                                 "--threads", "2", "--workers", "0", "--split", "test"])
            XCTAssertEqual(again.status, 0, "\(name): \(again.stderr)")
        }
        for name in ["mine.csv", "mine.safetensors", "mine.npy", "pair_labels.npy"] {
            try Foundation.Data("precious".utf8).write(to: URL(fileURLWithPath: "\(out)/\(name)"))
        }
        try FileManager.default.copyItem(atPath: "\(out)/f.npy", toPath: "\(out)/pair.npy")  // beside a foreign labels file
        // A float32 [N, D] .npy of the user's without a labels file beside it (it was replaced).
        try FileManager.default.copyItem(atPath: "\(out)/f.npy", toPath: "\(out)/alone.npy")
        let alone = try Foundation.Data(contentsOf: URL(fileURLWithPath: "\(out)/alone.npy"))
        for name in ["mine.csv", "mine.safetensors", "mine.npy", "pair.npy", "alone.npy"] {
            let refused = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/\(name)",
                                   "--threads", "2", "--workers", "0", "--split", "test"])
            XCTAssertNotEqual(refused.status, 0, name)
            XCTAssertTrue(refused.stderr.contains("--out") && refused.stderr.contains("--overwrite"), refused.stderr)
        }
        for name in ["mine.csv", "mine.safetensors", "mine.npy", "pair_labels.npy"] {
            XCTAssertEqual(try String(contentsOfFile: "\(out)/\(name)", encoding: .utf8), "precious", name)
        }
        XCTAssertEqual(try Foundation.Data(contentsOf: URL(fileURLWithPath: "\(out)/alone.npy")), alone)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(out)/alone_labels.npy"))
        let forced = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/mine.csv", "--overwrite",
                              "--threads", "2", "--workers", "0", "--split", "test"])
        XCTAssertEqual(forced.status, 0, forced.stderr)
        XCTAssertTrue(try String(contentsOfFile: "\(out)/mine.csv", encoding: .utf8).hasPrefix("path,label,class,f0,"))

        // Class folders whose names hold a quote and a comma read back whole; a name with a carriage
        // return is refused, naming the folder (a class name is one line of text, as a CSV label).
        let odd = "say \"hi\", there", cr = "line\rbreak"
        for split in ["test", "train"] {
            try FileManager.default.moveItem(atPath: "\(data)/\(split)/blue", toPath: "\(data)/\(split)/\(odd)")
            try FileManager.default.moveItem(atPath: "\(data)/\(split)/green", toPath: "\(data)/\(split)/\(cr)")
        }
        let refused = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/odd.csv",
                               "--threads", "2", "--workers", "0", "--split", "test"])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("line\\rbreak: its name holds a line break"), refused.stderr)
        for split in ["test", "train"] {
            try FileManager.default.moveItem(atPath: "\(data)/\(split)/\(cr)", toPath: "\(data)/\(split)/green")
        }
        let oddRun = try run(["features", "resnet18", data, "--weights", "none", "--out", "\(out)/odd.csv",
                              "--threads", "2", "--workers", "0", "--split", "test"])
        XCTAssertEqual(oddRun.status, 0, oddRun.stderr)
        let records = try CSV.parse(String(contentsOfFile: "\(out)/odd.csv", encoding: .utf8))
        XCTAssertEqual(records.count, 10)
        XCTAssertTrue(records.dropFirst().allSatisfy { $0.fields.count == 3 + 512 })
        XCTAssertEqual(Set(records.dropFirst().compactMap { $0.fields.count > 2 ? $0.fields[2] : nil }), [odd, "green", "red"])
        XCTAssertTrue(records.dropFirst().contains { $0.fields[0].contains("/test/\(odd)/") })

        let bad = try run(["features", "resnet18", data, "--out", "\(out)/f.txt"])
        XCTAssertTrue(bad.stderr.contains("--out") && bad.stderr.contains(".npy"), bad.stderr)
    }

    /// A run on a `path,label` CSV is usable from another folder: a relative `--image-root` is recorded
    /// absolute (report and resume from elsewhere failed: "none of its images is usable"), `report`
    /// takes the CSV as DATA (it wanted a folder) and checks its data. `features --json` counts the
    /// files the scan left out among `skipped` (only undecodable ones were), and `--feature-cache-dir`
    /// naming a file is refused before the run directory is made (a raw Cocoa error, and a `failed` run).
    func testACSVRunIsUsableFromAnotherFolderAndSmallerOutputMistakes() throws {
        let data = try makeDataset()
        let lists = try temporaryFolder("lists")
        let rows = ["path,label"] + Self.classes.flatMap { name in (0..<8).map { "train/\(name)/\($0).png,\(name)" } }
        try rows.joined(separator: "\n").write(toFile: lists + "/data.csv", atomically: true, encoding: .utf8)
        let out = try temporaryFolder("runs") + "/csv"
        let previous = FileManager.default.currentDirectoryPath
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath((data as NSString).deletingLastPathComponent))
        let trained = try run(["train", lists + "/data.csv", "--image-root", (data as NSString).lastPathComponent,
                               "--out", out, "--epochs", "1"] + Self.common)
        XCTAssertEqual(trained.status, 0, trained.stderr)
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(lists))
        let config = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: out + "/config.json")))
            as? [String: Any])
        XCTAssertEqual((config["options"] as? [String: Any])?["imageRoot"] as? String, URL(fileURLWithPath: data).standardizedFileURL.path)
        let report = try run(["report", out, lists + "/data.csv", "--split", "val", "--out", lists + "/report.html",
                              "--near-method", "phash", "--grad-cam", "0", "--threads", "2"])
        XCTAssertEqual(report.status, 0, report.stderr)
        let html = try String(contentsOfFile: lists + "/report.html", encoding: .utf8)
        XCTAssertTrue(html.contains("data check: 24 images"), "the CSV's data was checked")
        // Without --split, the CSV is read whole, as evaluate reads it (it was "no test split").
        let whole = try run(["report", out, "--out", lists + "/report.html", "--no-data-check", "--grad-cam", "0", "--threads", "2"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        XCTAssertTrue(whole.stdout.contains("(24 csv images"), whole.stdout)
        XCTAssertTrue(try String(contentsOfFile: lists + "/report.html", encoding: .utf8).contains("(csv)</h1>"))
        // features takes the CSV too ("DATA folder … is not a folder"): the run's hold-out, or all of it.
        for (arguments, images) in [([out, lists + "/data.csv", "--split", "val"], 6),
                                    (["mobilenet_v2", lists + "/data.csv", "--image-root", data, "--weights", "none"], 24)] {
            let csvFeatures = try run(["features"] + arguments + ["--out", lists + "/f\(images).csv", "--json", "--threads", "2"])
            XCTAssertEqual(csvFeatures.status, 0, csvFeatures.stderr)
            let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(csvFeatures.lines.last).utf8))
                as? [String: Any])
            XCTAssertEqual(summary["images"] as? Int, images)
        }

        try Foundation.Data().write(to: URL(fileURLWithPath: data + "/train/blue/empty.png"))
        let features = try run(["features", "mobilenet_v2", data, "--split", "train", "--weights", "none",
                                "--out", lists + "/f.csv", "--json", "--threads", "2"])
        XCTAssertEqual(features.status, 0, features.stderr)
        let summary = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(XCTUnwrap(features.lines.last).utf8))
            as? [String: Any])
        XCTAssertEqual(summary["skipped"] as? Int, 1, "the empty file")
        XCTAssertEqual(summary["images"] as? Int, 24)

        let cacheFile = lists + "/cache"
        try Foundation.Data("x".utf8).write(to: URL(fileURLWithPath: cacheFile))
        let cache = try run(["train", data, "--out", out + "-cache", "--epochs", "1", "--feature-cache-dir", cacheFile] + Self.common)
        XCTAssertEqual(cache.status, 64, cache.stderr)
        XCTAssertTrue(cache.stderr.contains("--feature-cache-dir: \(cacheFile) is a file"), cache.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "-cache"))
    }

    func testBadFlagsNameTheFlagOrPath() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"
        let cases: [([String], [String])] = [
            (["--optimizer", "foo"], ["--optimizer", "adamw"]),
            (["--recipe", "foo"], ["--recipe", "head-only"]),
            (["--augment", "foo"], ["--augment", "keras"]),
            (["--freeze-until", "nosuchscope"], ["--freeze-until", "nosuchscope", "features.0"]),
            (["--pooling", "none"], ["--pooling", "'avg' and 'max'"]),  // summary's `none` was offered by train's help
        ]
        for (flags, expected) in cases {
            let r = try CLITests.runUnlessRefusedInParsing(["train", data, "--out", out, "--epochs", "1"] + Self.common + flags)
            XCTAssertNotEqual(r.status, 0, "\(flags)")
            for text in expected { XCTAssertTrue(r.stderr.contains(text), "\(flags): \(r.stderr)") }
        }
        let missing = try run(["train", "/nonexistent/data", "--arch", "mobilenet_v2", "--out", out])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/data"), missing.stderr)
        let noRun = try run(["evaluate", "/nonexistent/run", data])
        XCTAssertNotEqual(noRun.status, 0)
        XCTAssertTrue(noRun.stderr.contains("/nonexistent/run"), noRun.stderr)
    }
}

/// A minimal PNG writer (8-bit RGB, stored deflate blocks) so the tests need no image library.
enum TinyPNG {
    static func encode(rgb: [UInt8], width: Int, height: Int) -> Foundation.Data {
        var raw = [UInt8]()
        for y in 0..<height {
            raw.append(0)
            raw += rgb[(y * width * 3)..<((y + 1) * width * 3)]
        }
        var zlib: [UInt8] = [0x78, 0x01]
        var offset = 0
        repeat {
            let n = min(65535, raw.count - offset)
            let final: UInt8 = offset + n >= raw.count ? 1 : 0
            zlib += [final, UInt8(n & 0xFF), UInt8(n >> 8), UInt8(~n & 0xFF), UInt8((~n >> 8) & 0xFF)]
            zlib += raw[offset..<(offset + n)]
            offset += n
        } while offset < raw.count
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in raw { a = (a + UInt32(byte)) % 65521; b = (b + a) % 65521 }
        zlib += be32((b << 16) | a)
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        png += chunk("IHDR", be32(UInt32(width)) + be32(UInt32(height)) + [8, 2, 0, 0, 0])
        png += chunk("IDAT", zlib)
        png += chunk("IEND", [])
        return Foundation.Data(png)
    }

    static func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)] }

    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let body = Array(type.utf8) + data
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in body {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return be32(UInt32(data.count)) + body + be32(~crc)
    }
}
