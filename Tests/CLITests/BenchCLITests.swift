import Foundation
import Torch
import XCTest

/// `finetune bench` (the model table): JSON fields on tiny inputs, and clear errors for bad flags.
final class BenchCLITests: XCTestCase {
    func run(_ arguments: [String]) throws -> CLITests.Run { try CLITests.run(arguments) }

    func testModelTableJSONHasOneResultPerModelAndDtype() throws {
        let r = try run(["bench", "--models", "resnet18,mobilenet_v2", "--quick", "--input-size", "32",
                         "--batch-size", "2", "--iterations", "1", "--warmup", "0", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.count, 1, r.stdout)
        let table = try r.json(XCTUnwrap(r.lines.first))
        XCTAssertEqual(table["batch_size"] as? Int, 2)
        XCTAssertEqual(table["device"] as? String, "cpu")
        XCTAssertEqual(table["iterations"] as? Int, 1)
        XCTAssertEqual(table["warmup"] as? Int, 0)
        XCTAssertGreaterThanOrEqual(table["threads"] as? Int ?? 0, 1)
        XCTAssertFalse((table["libtorch"] as? String ?? "").isEmpty)
        let results = try XCTUnwrap(table["results"] as? [[String: Any]])
        XCTAssertEqual(results.map { $0["model"] as? String }, ["resnet18", "mobilenet_v2"])
        for result in results {
            XCTAssertEqual(result["dtype"] as? String, "fp32")
            XCTAssertEqual(result["channels_last"] as? Bool, false)
            XCTAssertEqual(result["input_size"] as? Int, 32)
            XCTAssertNil(result["error"])
            let number = { (key: String) throws -> Double in try XCTUnwrap(result[key] as? Double, key) }
            let forward = try number("forward_ms"), backward = try number("backward_ms")
            let total = try number("total_ms"), step = try number("step_ms")
            XCTAssertGreaterThan(forward, 0)
            XCTAssertGreaterThan(backward, 0)
            XCTAssertEqual(total, forward + backward, accuracy: 1e-6)
            XCTAssertGreaterThanOrEqual(step, total)
            XCTAssertEqual(try number("images_per_second"), 2 * 1000 / step, accuracy: 1e-6)
            let inference = try number("inference_ms")
            XCTAssertEqual(try number("inference_images_per_second"), 2 * 1000 / inference, accuracy: 1e-6)
        }
    }

    func testBF16ChannelsLastRowsAreLabelled() throws {
        let r = try run(["bench", "models", "--models", "mobilenet_v2", "--dtype", "both", "--channels-last",
                         "--input-size", "32", "--batch-size", "2", "--iterations", "1", "--warmup", "0", "--no-inference",
                         "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let results = try XCTUnwrap(r.json(XCTUnwrap(r.lines.first))["results"] as? [[String: Any]])
        XCTAssertEqual(results.map { $0["dtype"] as? String }, ["fp32", "bf16"])
        XCTAssertEqual(results.map { $0["channels_last"] as? Bool }, [true, true])
        for result in results {  // bf16 training of MobileNetV2 needs a ReLU6 that differentiates in bf16
            XCTAssertNil(result["error"], "\(result)")
            XCTAssertGreaterThan(result["step_ms"] as? Double ?? 0, 0, "\(result)")
            XCTAssertTrue(result["inference_ms"] is NSNull, "\(result)")
        }
    }

    func testInferenceOnlyLeavesTheTrainingFieldsNull() throws {
        let r = try run(["bench", "--models", "resnet18", "--input-size", "32", "--batch-size", "2",
                         "--iterations", "1", "--warmup", "0", "--no-training", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let results = try XCTUnwrap(r.json(XCTUnwrap(r.lines.first))["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, 1)
        XCTAssertTrue(results[0]["step_ms"] is NSNull, "\(results[0])")
        XCTAssertGreaterThan(results[0]["inference_ms"] as? Double ?? 0, 0, "\(results[0])")
        let both = try run(["bench", "--models", "resnet18", "--no-training", "--no-inference"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--no-training"), both.stderr)
    }

    func testHumanTableHasAHeaderAndOneRowPerModel() throws {
        let r = try run(["bench", "--models", "resnet18", "--input-size", "32", "--batch-size", "1",
                         "--iterations", "1", "--warmup", "0", "--no-inference"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.lines.count, 3, r.stdout)
        XCTAssertTrue(r.lines[1].hasPrefix("model"), r.stdout)
        XCTAssertTrue(r.lines[1].contains("total ms"), r.stdout)
        XCTAssertTrue(r.lines[2].hasPrefix("resnet18"), r.stdout)
    }

    /// A GPU this LibTorch cannot reach is a one-line error naming the flag, not the dispatcher's list
    /// of backends from the first tensor op.
    func testUnavailableDeviceNamesTheFlag() throws {
        guard !Runtime.cudaIsAvailable else { throw XCTSkip("this machine has CUDA") }
        let r = try run(["bench", "--models", "resnet18", "--quick", "--device", "cuda:1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--device: cuda:1 is not available"), r.stderr)
        XCTAssertFalse(r.stderr.contains("registered at"), r.stderr)
    }

    func testUnknownModelNamesTheFlagAndTheValidModels() throws {
        let r = try run(["bench", "--models", "resnet18,resnet9000", "--json"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--models"), r.stderr)
        XCTAssertTrue(r.stderr.contains("resnet9000"), r.stderr)
        XCTAssertTrue(r.stderr.contains("mobilenet_v2") && r.stderr.contains("inception_v3"), r.stderr)
    }

    func testUnknownDtypeNamesTheFlagAndTheValidValues() throws {
        let r = try run(["bench", "--dtype", "fp16"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--dtype"), r.stderr)
        XCTAssertTrue(r.stderr.contains("fp32") && r.stderr.contains("bf16") && r.stderr.contains("both"), r.stderr)
    }

    func testLoaderSubcommandStillParses() throws {
        let r = try run(["bench", "loader", "--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("--workers"), r.stdout)
    }
}
