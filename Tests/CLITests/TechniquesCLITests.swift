@testable import finetune
import Foundation
import TensorIO
import Torch
import XCTest

// The training techniques of `finetune train` end to end on the tiny dataset of `TrainCLITests`:
// what config.json and model.safetensors record, errors naming the flag, lr-find, test-time
// augmentation, and a kill-and-resume that stays bit-exact with every stateful technique on.
extension TrainCLITests {
    func readJSON(_ path: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func assertIdentical(_ a: String, _ b: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let x = try SafeTensors.load(a), y = try SafeTensors.load(b)
        XCTAssertEqual(x.keys, y.keys, file: file, line: line)
        for (key, tensor) in x {
            let other = try XCTUnwrap(y[key], key)
            XCTAssertTrue(try tensor.allClose(other, rtol: 0, atol: 0), "\(key): \(a) vs \(b)", file: file, line: line)
        }
    }

    /// --ema and --accumulate-steps: recorded in config.json, val_*_ema in the history, and
    /// model.safetensors holds the EMA (the last checkpoint's ema.safetensors).
    func testEMAAndAccumulationAreRecordedAndTheEMAIsTheModel() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"
        let r = try run(["train", data, "--out", out, "--epochs", "2", "--json", "--ema", "0.9", "--ema-warmup",
                         "--accumulate-steps", "2"] + TrainCLITests.common)
        XCTAssertEqual(r.status, 0, r.stderr)
        let summary = try r.json(XCTUnwrap(r.lines.last))
        XCTAssertEqual(summary["model_weights"] as? String, "ema")
        // 18 training images in batches of 4: 5 batches, groups of 2, 2 and 1 → 3 optimizer steps per epoch.
        XCTAssertEqual(summary["global_step"] as? Int, 6)
        let config = try readJSON(out + "/config.json")
        XCTAssertEqual(config["model_weights"] as? String ?? config["modelWeights"] as? String, "ema")
        let training = try XCTUnwrap(config["training"] as? [String: Any])
        XCTAssertEqual(training["accumulateSteps"] as? Int, 2)
        let ema = try XCTUnwrap(training["ema"] as? [String: Any])
        XCTAssertEqual(ema["decay"] as? Double, 0.9)
        XCTAssertEqual(ema["warmup"] as? Bool, true)
        let history = try String(contentsOfFile: out + "/history.csv", encoding: .utf8)
        XCTAssertTrue(history.contains("val_loss_ema"), history)
        XCTAssertTrue(history.contains("val_accuracy_ema"), history)
        try assertIdentical(out + "/model.safetensors", out + "/checkpoints/last/ema.safetensors")

        // Test-time augmentation: evaluate and predict say which they used.
        let evaluate = try run(["evaluate", out, data, "--tta", "crops", "--json", "--threads", "2", "--workers", "0"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let report = try evaluate.json(XCTUnwrap(evaluate.lines.last))
        XCTAssertEqual(report["tta"] as? String, "crops")
        XCTAssertEqual(report["weights_used"] as? String, "model.safetensors")
        XCTAssertEqual(report["sample_count"] as? Int, 9)
        let predict = try run(["predict", out, "\(data)/test/red", "--tta", "flip", "--json", "--threads", "2"])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        XCTAssertEqual(predict.lines.count, 3)
        XCTAssertEqual(try predict.json(XCTUnwrap(predict.lines.first))["tta"] as? String, "flip")
    }

    /// `--color-jitter` reads as timm reads its own: one number is brightness, contrast and saturation
    /// alike (`--color-jitter 0.4`, refused until 2026-12-07), three leave the hue alone, four are B,C,S,H.
    func testColorJitterTakesTimmsOneOrThreeNumbers() throws {
        for (given, expected) in [("0.4", [0.4, 0.4, 0.4, 0]), ("0.4,0.3,0.2", [0.4, 0.3, 0.2, 0]),
                                  ("0.4,0.3,0.2,0.1", [0.4, 0.3, 0.2, 0.1])] {
            XCTAssertEqual(try TechniqueOptions.parse(["--color-jitter", given]).jitter(), expected, given)
        }
    }

    /// A path,label CSV outside the images (--image-root), --class-weights auto, --sampler balanced,
    /// --color-jitter and the augmentation policies reach the run and are recorded in config.json.
    func testCSVDataClassWeightsSamplerAndJitterReachTheRun() throws {
        let data = try makeDataset()
        let lists = try temporaryFolder("lists")
        var rows = ["path,label"]
        for (name, count) in [("blue", 8), ("green", 4), ("red", 2)] {
            for i in 0..<count { rows.append("train/\(name)/\(i).png,\(name)") }
        }
        try (rows.joined(separator: "\n") + "\n").write(toFile: lists + "/train.csv", atomically: true, encoding: .utf8)
        let out = try temporaryFolder("runs") + "/run"
        let r = try run(["train", lists + "/train.csv", "--image-root", data, "--out", out, "--epochs", "1",
                         "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "64", "--batch-size", "4",
                         "--workers", "0", "--threads", "2", "--class-weights", "auto", "--sampler", "balanced",
                         "--color-jitter", "0.4,0.4,0.4,0.1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let policy = try run(["train", lists + "/train.csv", "--image-root", data, "--out", out + "-ra", "--epochs", "1",
                              "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "64", "--batch-size", "4",
                              "--workers", "0", "--threads", "2", "--augment", "randaugment:n=1,m=30"])
        XCTAssertEqual(policy.status, 0, policy.stderr)
        let policyOptions = try XCTUnwrap(try readJSON(out + "-ra/config.json")["options"] as? [String: Any])
        XCTAssertEqual(policyOptions["augment"] as? String, "randaugment")
        XCTAssertEqual(policyOptions["randAugment"] as? [Int], [1, 30])
        let auto = try run(["train", lists + "/train.csv", "--image-root", data, "--out", out + "-aa", "--epochs", "1",
                            "--arch", "mobilenet_v2", "--weights", "none", "--input-size", "64", "--batch-size", "4",
                            "--workers", "0", "--threads", "2", "--augment", "autoaugment", "--random-erasing", "0.25"])
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssertEqual(try XCTUnwrap(try readJSON(out + "-aa/config.json")["options"] as? [String: Any])["augment"] as? String,
                       "autoaugment")
        XCTAssertEqual(r.status, 0, r.stderr)
        let config = try readJSON(out + "/config.json")
        let training = try XCTUnwrap(config["training"] as? [String: Any])
        let weights = try XCTUnwrap(training["classWeights"] as? [Double])
        // scikit-learn's "balanced": 14 images / (3 classes × count).
        for (w, count) in zip(weights, [8.0, 4, 2]) { XCTAssertEqual(w, 14 / (3 * count), accuracy: 1e-12) }
        let options = try XCTUnwrap(config["options"] as? [String: Any])
        XCTAssertEqual(options["sampler"] as? String, "balanced")
        XCTAssertEqual(options["colorJitter"] as? [Double], [0.4, 0.4, 0.4, 0.1])
        XCTAssertEqual(options["classWeights"] as? String, "auto")
        let recorded = try XCTUnwrap(config["data"] as? [String: Any])
        XCTAssertEqual(recorded["trainSamples"] as? Int, 14)
    }

    /// `lr-find` writes its plot and points and suggests a rate; `train --lr find` trains at the
    /// suggestion and records it in config.json.
    func testLRFindAndTrainWithFoundLearningRate() throws {
        let data = try makeDataset()
        let folder = try temporaryFolder("lr")
        let r = try run(["lr-find", data, "--out", folder + "/find", "--steps", "20", "--json"] + TrainCLITests.common)
        XCTAssertEqual(r.status, 0, r.stderr)
        let result = try r.json(XCTUnwrap(r.lines.last))
        let lrs = try XCTUnwrap(result["learning_rates"] as? [Double], "\(result)")
        XCTAssertEqual(lrs.first, 1e-7)
        XCTAssertLessThanOrEqual(lrs.count, 20)
        XCTAssertNotNil(result["suggestion"] as? Double, "\(result)")
        for file in ["lr_find.svg", "lr_find.csv"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/find/" + file), file)
        }
        try "mine".write(toFile: folder + "/find/notes.txt", atomically: true, encoding: .utf8)
        let refused = try run(["lr-find", data, "--out", folder + "/find", "--steps", "20"] + TrainCLITests.common)
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--out"), refused.stderr)
        // A file as --out is refused before the test runs (it ran the whole test, then failed to write).
        let file = folder + "/find/notes.txt"
        let onFile = try run(["lr-find", data, "--out", file, "--steps", "20"] + TrainCLITests.common)
        XCTAssertEqual(onFile.status, 64, onFile.stderr)
        XCTAssertTrue(onFile.stderr.contains("--out: \(file) is a file"), onFile.stderr)
        XCTAssertFalse(onFile.stdout.contains("LR finder"), onFile.stdout)

        let common = TrainCLITests.common.filter { $0 != "--lr" && $0 != "0.01" }
        let train = try run(["train", data, "--out", folder + "/run", "--epochs", "1", "--lr", "find"] + common)
        XCTAssertEqual(train.status, 0, train.stderr)
        let config = try readJSON(folder + "/run/config.json")
        let found = try XCTUnwrap(config["learningRateFinder"] as? Double)
        let training = try XCTUnwrap(config["training"] as? [String: Any])
        let optimizer = try XCTUnwrap(training["optimizer"] as? [String: Any])
        XCTAssertEqual(optimizer["learningRate"] as? Double, found)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/run/lr_find.svg"))

        // Ctrl-C during the range test ended the process by the signal, with no word: it now stops the
        // test, says so, writes nothing and exits 130, for `train --lr find` and for `lr-find`.
        for (name, arguments) in [("train", ["train", data, "--out", folder + "/stopped", "--epochs", "1", "--lr", "find"] + common),
                                  ("lr-find", ["lr-find", data, "--out", folder + "/stopped", "--steps", "1000"] + TrainCLITests.common)] {
            let errors = folder + "/\(name).stderr"
            func written() -> String { String(decoding: FileManager.default.contents(atPath: errors) ?? Foundation.Data(), as: UTF8.self) }
            let (process, wasRunning) = try CLITests.interrupt(arguments + ["--json"], once: "LR finder: up to", appearsIn: errors)
            XCTAssertTrue(wasRunning, "\(name) ended before its range test could be interrupted: \(written())")
            XCTAssertEqual(process.terminationReason, .exit, "\(name) was killed by the signal")
            XCTAssertEqual(process.terminationStatus, 130, written())
            XCTAssertTrue(written().contains("interrupted during the learning-rate range test"), written())
            XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/stopped"), "\(name) wrote its folder")
        }
    }

    func testBadTechniqueValuesNameTheFlag() throws {
        let data = try makeDataset()
        let out = try temporaryFolder("runs") + "/run"
        let cases: [([String], String)] = [
            (["--ema", "1.5"], "--ema"),
            (["--accumulate-steps", "0"], "--accumulate-steps"),
            (["--mixup", "-1"], "--mixup"),
            // A negative value reaches the option's own check (it was "Missing value for '--ema <ema>'").
            (["--ema", "-0.1"], "--ema: must be in [0, 1)"),
            (["--random-erasing", "-.5"], "--random-erasing: expected a probability in [0, 1]"),
            (["--label-smoothing", "-1e-3"], "--label-smoothing"),
            // After a flag, a negative number is not joined to it: the parser's error as written.
            (["--json", "-5"], "Unknown option '-5'"),
            // Probe AA: with a flag before a negative number too, --ema's value still joins (it was
            // "Missing value for '--ema <ema>'"); its range check comes before the unknown '-5'.
            (["--json", "-5", "--ema", "-0.1"], "--ema: must be in [0, 1)"),
            (["--optimizer", "sgd", "--momentum", "1"], "--momentum: must be in [0, 1) (0.9 is usual)"),
            (["--no-bias-decay"], "--no-bias-decay: leaves biases and normalisation parameters out of weight decay, and there is none"),
            (["--optimizer", "sgd", "--momentum", "0", "--lr-schedule", "onecycle:base_momentum=0.8"],
             "--lr-schedule: base_momentum/max_momentum cycle the optimizer's momentum"),
            (["--augment", "randaugment:n=2,m=40"], "--augment"),
            (["--augment", "randaugment:n=2,n=3"], "--augment"),
            (["--augment", "randaugment:"], "--augment"),
            (["--augment", "autoaugment:n=2"], "--augment"),
            (["--mix-prob", "0.5"], "--mix-prob"),
            (["--color-jitter", "0.4,0.4"], "--color-jitter: '0.4,0.4' is not 4 numbers B,C,S,H"),
            (["--color-jitter", "0.4,"], "--color-jitter"),
            (["--color-jitter", "0.4,0.4,0.4,0.1", "--augment", "none"], "--color-jitter"),
            (["--random-erasing", "1.5"], "--random-erasing: expected a probability in [0, 1]"),
            (["--random-erasing", "0.25", "--augment", "keras"], "--random-erasing: follows --augment standard"),
            (["--erasing-mode", "const"], "--erasing-mode: applies with --random-erasing"),
            (["--random-erasing", "0.25", "--erasing-mode", "zero"], "--erasing-mode"),
            (["--class-weights", "/nonexistent/weights.json"], "--class-weights"),
            (["--image-root", "/tmp"], "--image-root"),
            // The head's settings are named one by one (all were "--pooling/--head-*").
            (["--mixup", "0.4", "--batch-size", "1"], "--mixup: MixUp/CutMix mix each image with another of its batch"),
            // CutMix alone is named as itself (both were refused as --mixup until stop 52).
            (["--cutmix", "1", "--batch-size", "1"], "--cutmix: MixUp/CutMix mix each image with another of its batch"),
            (["--cutmix", "1", "--binary"], "--cutmix: MixUp/CutMix mix softmax targets"),
            (["--head-dropout", "1"], "--head-dropout: head dropout must be in [0, 1), got 1.0"),
            (["--head-hidden", "100000"], "--head-hidden: hidden Dense layers need 1 to 65536 units, got 100000"),
        ]
        for (flags, expected) in cases {
            let r = try CLITests.runUnlessRefusedInParsing(["train", data, "--out", out, "--epochs", "1"] + TrainCLITests.common + flags)
            XCTAssertNotEqual(r.status, 0, "\(flags)")
            XCTAssertTrue(r.stderr.contains(expected), "\(flags): \(r.stderr)")
            XCTAssertFalse(r.stderr.contains("Missing value"), "\(flags): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(flags) created the run")
        }
    }

    /// A run with every stateful technique is SIGKILLed in its second epoch and resumed: the final
    /// weights (the EMA) equal an uninterrupted run's bit for bit. The one-cycle schedule cycles Adam's
    /// β1, random erasing draws from each sample's stream, and biases train without weight decay.
    func testKillAndResumeWithTechniquesIsBitExact() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("kill")
        let arguments = TrainCLITests.common + ["--epochs", "3", "--save-every-steps", "1", "--optimizer", "adam",
                                                "--lr-schedule", "onecycle", "--ema", "0.8", "--accumulate-steps", "2",
                                                "--mixup", "0.4", "--cutmix", "1.0", "--label-smoothing", "0.1",
                                                "--augment", "trivialaugment", "--random-erasing", "0.5",
                                                "--weight-decay", "0.05", "--no-bias-decay"]
        let uninterrupted = try run(["train", data, "--out", runs + "/a"] + arguments)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)

        XCTAssertTrue(try CLITests.killDuringSecondEpoch(["train", data, "--out", runs + "/b"] + arguments,
                                                          history: runs + "/b/history.csv"),
                      "the run finished before it could be killed; make it longer")

        let resumed = try run(["train", "--resume", runs + "/b", "--epochs", "3", "--workers", "0", "--threads", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        try assertIdentical(runs + "/a/model.safetensors", runs + "/b/model.safetensors")
        try assertIdentical(runs + "/a/checkpoints/last/model.safetensors", runs + "/b/checkpoints/last/model.safetensors")
        let config = try String(contentsOfFile: runs + "/b/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains(#""randomErasing" : 0.5"#) || config.contains(#""randomErasing":0.5"#), config)
        XCTAssertTrue(config.contains("cycle_momentum"), config)
        XCTAssertTrue(config.contains(#""noBiasDecay" : true"#) || config.contains(#""noBiasDecay":true"#), config)
    }
}
