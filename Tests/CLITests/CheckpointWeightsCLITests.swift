import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `--checkpoint best|last`: the commands that use a run's model take a checkpoint's weights, so a run
/// stopped with Ctrl-C (or still training) can be evaluated, predicted with, exported and reported on.
extension TrainCLITests {
    /// Until 2026-12-07 `evaluate`, `predict`, `export`, `features` and `pseudo-label` had only a run's
    /// final weights, and said a stopped run had none, with no way to use its checkpoints.
    func testAStoppedRunsCheckpointsServeEvaluatePredictExportFeaturesAndPseudoLabel() throws {
        let data = try makeDataset()
        let work = try temporaryFolder("checkpoint-weights")
        let out = work + "/run"
        let train = try CLITests.start(["train", data, "--out", out, "--epochs", "200", "--save-every-steps", "2"]
                                       + Self.common)
        let deadline = Date().addingTimeInterval(120)
        while train.isRunning && Date() < deadline
                && !FileManager.default.fileExists(atPath: out + "/checkpoints/best/trainer.json") {
            Thread.sleep(forTimeInterval: 0.01)
        }
        kill(train.processIdentifier, SIGINT)
        train.waitUntilExit()
        XCTAssertEqual(train.terminationStatus, 130)

        let unfinished = try CLITests.run(["evaluate", out, data])
        XCTAssertEqual(unfinished.status, 1, unfinished.stderr)
        XCTAssertTrue(unfinished.stderr.contains(", or use its checkpoints/best, epoch "), unfinished.stderr)
        XCTAssertTrue(unfinished.stderr.contains(" (`--checkpoint best`)"), unfinished.stderr)

        let evaluated = try CLITests.run(["evaluate", out, data, "--checkpoint", "best", "--json"])
        XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
        XCTAssertTrue(evaluated.stderr.hasPrefix("weights: checkpoints/best, epoch "), evaluated.stderr)
        XCTAssertEqual(try evaluated.json(evaluated.stdout)["sample_count"] as? Int, 9)
        // The JSON names the weights too (`weights_used`, added 2026-12-07), as standard error does.
        XCTAssertEqual(try evaluated.json(evaluated.stdout)["weights_used"] as? String,
                       String(evaluated.stderr.prefix { $0 != "\n" }.dropFirst("weights: ".count)))

        let image = data + "/test/\(Self.classes[0])/0.png"
        let predicted = try CLITests.run(["predict", out, image, "--checkpoint", "last", "--json"])
        XCTAssertEqual(predicted.status, 0, predicted.stderr)
        XCTAssertTrue(predicted.stderr.hasPrefix("weights: checkpoints/last, epoch "), predicted.stderr)
        XCTAssertEqual(try predicted.json(predicted.lines[0])["file"] as? String, image)

        let exported = try CLITests.run(["export", out, "--checkpoint", "best", "--out", work + "/best.onnx"])
        XCTAssertEqual(exported.status, 0, exported.stderr)
        let onnx = try Foundation.Data(contentsOf: URL(fileURLWithPath: work + "/best.onnx"))
        XCTAssertNotNil(onnx.range(of: Foundation.Data("run \(out), checkpoints/best, epoch ".utf8)), "the provenance")

        let features = try CLITests.run(["features", out, data, "--checkpoint", "best", "--out", work + "/f.npy"])
        XCTAssertEqual(features.status, 0, features.stderr)
        let labelled = try CLITests.run(["pseudo-label", out, data + "/test", "--checkpoint", "best", "--threshold", "0.01",
                                         "--out", work + "/review"])
        XCTAssertEqual(labelled.status, 0, labelled.stderr)

        for zoo in [["export", "--arch", "mobilenet_v2", "--weights", "none", "--out", work + "/zoo.onnx"],
                    ["predict", "--arch", "mobilenet_v2", "--weights", "none", image]] {
            let refused = try CLITests.run(zoo + ["--checkpoint", "best"])
            XCTAssertEqual(refused.status, 64, refused.stderr)
            XCTAssertTrue(refused.stderr.contains("--checkpoint best needs a run directory"), refused.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/zoo.onnx"))
    }
}
