import Foundation
import XCTest

/// `--precision fp32|bf16|auto` (and `--bf16`) on train, evaluate and predict; `bench --precision`
/// rows and `bench --precision-probe`.
extension TrainCLITests {
    func testPrecisionFlagsTrainEvaluateAndPredictAndAutoIsRecorded() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("runs")
        let auto = try run(["train", data] + Self.common + ["--epochs", "1", "--precision", "auto", "--out", runs + "/auto"])
        XCTAssertEqual(auto.status, 0, auto.stderr)
        XCTAssertTrue(auto.stdout.contains("Precision auto: "), auto.stdout)
        let config = try String(contentsOfFile: runs + "/auto/config.json", encoding: .utf8)
        // This test machine decides from its own /proc/cpuinfo; the run records what was chosen.
        let native = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "").contains("avx512_bf16")
        XCTAssertTrue(auto.stdout.contains(native ? "auto: bf16" : "auto: fp32"), auto.stdout)
        XCTAssertTrue(config.contains("\"autocastBF16\" : \(native)") || config.contains("\"autocastBF16\":\(native)"), config)

        let evaluate = try run(["evaluate", runs + "/auto", data, "--precision", "bf16", "--workers", "0", "--json"])
        XCTAssertEqual(evaluate.status, 0, evaluate.stderr)
        let fp32 = try run(["evaluate", runs + "/auto", data, "--precision", "fp32", "--workers", "0", "--json"])
        XCTAssertEqual(fp32.status, 0, fp32.stderr)
        let lossBF16 = try XCTUnwrap(evaluate.json(XCTUnwrap(evaluate.lines.first))["loss"] as? Double)
        let lossFP32 = try XCTUnwrap(fp32.json(XCTUnwrap(fp32.lines.first))["loss"] as? Double)
        XCTAssertEqual(lossBF16, lossFP32, accuracy: 0.05 * max(1, lossFP32))
        XCTAssertNotEqual(lossBF16, lossFP32, "--precision bf16 changed nothing")
        // Without a flag, evaluate runs `auto`: bf16 on this CPU if it has native bf16, fp32 otherwise.
        let byDefault = try run(["evaluate", runs + "/auto", data, "--workers", "0", "--json"])
        XCTAssertEqual(byDefault.status, 0, byDefault.stderr)
        let lossDefault = try XCTUnwrap(byDefault.json(XCTUnwrap(byDefault.lines.first))["loss"] as? Double)
        XCTAssertEqual(lossDefault, native ? lossBF16 : lossFP32)
        // auto's bf16 is said (probabilities differ from fp32's and an ONNX export's); asked-for fp32 is not.
        XCTAssertEqual(byDefault.stderr.contains("precision: bf16 (auto: native bf16"), native, byDefault.stderr)
        XCTAssertFalse(fp32.stderr.contains("precision:"), fp32.stderr)
        let predict = try run(["predict", runs + "/auto", data + "/test/red", "--precision", "bf16", "--json"])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        XCTAssertEqual(predict.lines.count, 3, predict.stdout)

        let both = try run(["evaluate", runs + "/auto", data, "--bf16", "--precision", "fp32"])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--bf16") && both.stderr.contains("--precision"), both.stderr)
        let bad = try run(["train", data] + Self.common + ["--precision", "fp16", "--out", runs + "/bad"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--precision") && bad.stderr.contains("auto"), bad.stderr)
    }
}

extension BenchCLITests {
    func testPrecisionRowsAreLabelledAndTheProbePrintsAPolicy() throws {
        let r = try run(["bench", "--models", "mobilenet_v2", "--precision", "all", "--input-size", "32",
                         "--batch-size", "2", "--iterations", "1", "--warmup", "0", "--no-training", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let results = try XCTUnwrap(r.json(XCTUnwrap(r.lines.first))["results"] as? [[String: Any]])
        XCTAssertEqual(results.map { $0["dtype"] as? String }, ["fp32", "bf16-all", "bf16"])
        let probe = try run(["bench", "--precision-probe", "--input-size", "32", "--batch-size", "1", "--iterations", "1",
                             "--warmup", "0", "--json"])
        XCTAssertEqual(probe.status, 0, probe.stderr)
        let object = try probe.json(XCTUnwrap(probe.lines.first))
        let layers = try XCTUnwrap(object["layers"] as? [[String: Any]])
        XCTAssertEqual(Set(layers.compactMap { $0["kind"] as? String }),
                       ["depthwise_conv2d", "depthwise_conv2d_large", "depthwise_conv2d_strided", "conv2d", "linear",
                        "batch_norm", "relu", "relu6", "silu", "activation"])
        XCTAssertTrue(layers.allSatisfy { ($0["cast_ms"] as? Double ?? -1) >= 0 }, "\(layers)")
        XCTAssertTrue(layers.allSatisfy { ($0["bf16_speedup"] as? Double ?? 0) > 0 }, "\(layers)")
        XCTAssertTrue(layers.allSatisfy { ($0["bf16_forward_speedup"] as? Double ?? 0) > 0 }, "\(layers)")
        // The documented policies (docs/cli.md, "Precision"): one for LibTorch 1.x, one for 2.x.
        let libtorch = try XCTUnwrap(object["libtorch"] as? String)
        XCTAssertEqual(object["standard_policy"] as? String, libtorch.hasPrefix("1.")
            ? "depthwise_conv2d=bf16 depthwise_conv2d_large=fp32 depthwise_conv2d_strided=bf16 conv2d=bf16 linear=bf16 "
                + "batch_norm=bf16 relu=bf16 relu6=fp32 silu=bf16 activation=bf16; inference: depthwise_conv2d=bf16 "
                + "depthwise_conv2d_large=bf16 depthwise_conv2d_strided=bf16 conv2d=bf16 linear=bf16 batch_norm=bf16 "
                + "relu=bf16 relu6=bf16 silu=bf16 activation=bf16"
            : "depthwise_conv2d=bf16 depthwise_conv2d_large=fp32 depthwise_conv2d_strided=fp32 conv2d=bf16 linear=bf16 "
                + "batch_norm=bf16 relu=bf16 relu6=fp32 silu=bf16 activation=bf16; inference: depthwise_conv2d=bf16 "
                + "depthwise_conv2d_large=bf16 depthwise_conv2d_strided=bf16 conv2d=bf16 linear=bf16 batch_norm=bf16 "
                + "relu=bf16 relu6=bf16 silu=bf16 activation=bf16")
        XCTAssertTrue((object["measured_policy"] as? String ?? "").hasPrefix("depthwise_conv2d="), "\(object)")

        // --policy: the bf16 rows run another policy; a policy the probe's notation does not allow is refused.
        let custom = try run(["bench", "--models", "mobilenet_v2", "--precision", "bf16", "--input-size", "32",
                              "--batch-size", "2", "--iterations", "1", "--warmup", "0", "--no-training", "--json",
                              "--policy", "conv2d=bf16; inference: conv2d=bf16 relu6=bf16"])
        XCTAssertEqual(custom.status, 0, custom.stderr)
        let badPolicy = try run(["bench", "--precision", "bf16", "--policy", "conv3d=bf16"])
        XCTAssertNotEqual(badPolicy.status, 0)
        XCTAssertTrue(badPolicy.stderr.contains("--policy") && badPolicy.stderr.contains("conv3d"), badPolicy.stderr)

        let conflict = try run(["bench", "--dtype", "fp32", "--precision", "bf16"])
        XCTAssertNotEqual(conflict.status, 0)
        XCTAssertTrue(conflict.stderr.contains("--dtype") && conflict.stderr.contains("--precision"), conflict.stderr)
    }
}
