import Data
import Foundation
import ImagePreprocessing
import TensorIO
import TestSupport
import Torch
import Training
import XCTest

/// `finetune export` as a user runs it: runs trained with every head `train` builds, exported and run by
/// onnxruntime against `finetune predict`; bad input; an interrupted export.
final class ExportCLITests: XCTestCase {
    func run(_ arguments: [String]) throws -> CLITests.Run { try CLITests.run(arguments) }

    /// A fresh folder, removed after the test.
    func temporaryFolder(_ name: String) throws -> String {
        let path = try Interop.temporaryDirectory(name)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// What the head-variant test trains on. By default the tiny 3-colour dataset at 64 px, one head-only
    /// epoch (seconds). With `FINETUNE_EXPORT_MAIN_JOB=DATA` (`scripts/check-export-main-job`), the README
    /// main job's data (`data/fashion-mnist`: 1,000 training and 1,000 test images) and recipe (224 px,
    /// 3 head-only epochs, batch 32, 10% validation), and the binary variant on its first two classes.
    struct HeadVariantSetup {
        var data: String
        var binaryData: String
        var flags: [String]
        var classes: Int
        var inputSize: String
    }

    func headVariantSetup() throws -> HeadVariantSetup {
        // ImageNet-pretrained MobileNetV2 in both (as the README's main job): a random backbone would give
        // every image the same embedding, and the outputs would match trivially.
        let fm = FileManager.default
        if let main = ProcessInfo.processInfo.environment["FINETUNE_EXPORT_MAIN_JOB"], !main.isEmpty {
            let classes = try fm.contentsOfDirectory(atPath: "\(main)/train").filter { !$0.hasPrefix(".") }.sorted()
            let binary = try temporaryFolder("main-job-binary")
            for split in ["train", "test"] {
                for name in classes.prefix(2) {
                    try fm.createDirectory(atPath: "\(binary)/\(split)/\(name)", withIntermediateDirectories: true)
                    for file in try fm.contentsOfDirectory(atPath: "\(main)/\(split)/\(name)") {
                        try fm.copyItem(atPath: "\(main)/\(split)/\(name)/\(file)", toPath: "\(binary)/\(split)/\(name)/\(file)")
                    }
                }
            }
            return HeadVariantSetup(data: main, binaryData: binary,
                                    flags: ["--arch", "mobilenet_v2", "--weights", "imagenet", "--epochs", "3", "--val-split", "0.1",
                                            "--batch-size", "32"],
                                    classes: classes.count, inputSize: "224")
        }
        let tiny = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: tiny)
        let tinyBinary = try temporaryFolder("tiny-binary")
        try TrainCLITests.writeDataset(at: tinyBinary)
        for split in ["train", "test"] { try fm.removeItem(atPath: "\(tinyBinary)/\(split)/green") }
        return HeadVariantSetup(data: tiny, binaryData: tinyBinary,
                                flags: ["--epochs", "1"] + TrainCLITests.common.map { $0 == "none" ? "imagenet" : $0 },
                                classes: TrainCLITests.classes.count, inputSize: "64")
    }

    /// `finetune predict RUN images --json --top-k classes` as a [N, classes] tensor of probabilities
    /// in class order (for a binary run: [N, 1], P(class 1)), with the files in predict's order.
    func predictedProbabilities(_ runDir: String, _ files: [String], classes: Int, binary: Bool) throws -> Tensor {
        let predict = try run(["predict", runDir] + files + ["--json", "--top-k", String(classes), "--threads", "2",
                                                               "--precision", "fp32"])  // the exported graph is fp32
        XCTAssertEqual(predict.status, 0, predict.stderr)
        var rows: [[Float]] = []
        for line in predict.lines {
            let object = try predict.json(line)
            XCTAssertEqual(object["file"] as? String, files[rows.count])
            var row = [Float](repeating: 0, count: classes)
            for entry in try XCTUnwrap(object["top_k"] as? [[String: Any]]) {
                row[try XCTUnwrap(entry["index"] as? Int)] = Float(try XCTUnwrap(entry["probability"] as? Double))
            }
            rows.append(binary ? [row[1]] : row)
        }
        XCTAssertEqual(rows.count, files.count)
        return try Tensor(rows.flatMap { $0 }, shape: [rows.count, rows.first?.count ?? 0])
    }

    /// The run's test images through the run's own preprocessing (config.json), as predict applies it.
    func preprocessedInputs(_ runDir: String, _ files: [String]) throws -> Tensor {
        let config = try XCTUnwrap(JSONSerialization.jsonObject(
            with: Foundation.Data(contentsOf: URL(fileURLWithPath: "\(runDir)/config.json"))) as? [String: Any])
        let preprocessing = try JSONDecoder().decode(
            Preprocessing.self, from: JSONSerialization.data(withJSONObject: XCTUnwrap(config["preprocessing"])))
        return try Tensor.stack(files.map { try preprocessing.evaluationTransform(Image(contentsOfFile: $0).rgb()) })
    }

    /// Every head variant `train` builds (plain Linear, --head-batchnorm, --head-dropout, --head-hidden,
    /// --binary), trained head-only (`headVariantSetup`: the tiny dataset, or the README main job's with
    /// `scripts/check-export-main-job`), then judged by the field's own tools:
    /// - exported with --softmax, onnxruntime's probabilities equal `finetune predict`'s on the run's test
    ///   images (top-1 on every image, within 1e-4), at batch 1 and 7; onnx's full checker and the
    ///   metadata pass;
    /// - `model.safetensors` loads with `load_state_dict(strict=True)` into torchvision's `mobilenet_v2`
    ///   with the head replaced the same way, and gives finetune's logits to 1e-4;
    /// - TensorBoard's `EventAccumulator` reads the run's event files and their epoch scalars equal
    ///   history.csv.
    func testEveryHeadVariantIsReadByOnnxruntimeTorchvisionAndTensorBoard() throws {
        _ = try Interop.python()
        guard RealAssets.mobileNetV2 != nil else {
            return XCTFail("MobileNetV2's ImageNet weights are not in the cache: run scripts/setup")
        }
        let setup = try headVariantSetup()
        let runs = try temporaryFolder("runs")
        let judge = try ONNXJudge("heads")
        let variants: [(name: String, flags: [String], binary: Bool)] = [
            ("plain", [], false),
            ("head-batchnorm", ["--head-batchnorm"], false),
            ("head-dropout", ["--head-dropout", "0.3"], false),
            ("head-hidden", ["--head-hidden", "16,8"], false),
            ("binary", ["--binary", "--head-batchnorm", "--head-hidden", "8"], true),
        ]
        for variant in variants {
            let dataset = variant.binary ? setup.binaryData : setup.data
            let runDir = "\(runs)/\(variant.name)"
            let train = try run(["train", dataset, "--out", runDir, "--recipe", "head-only", "--json"] + setup.flags + variant.flags)
            XCTAssertEqual(train.status, 0, train.stderr)
            let classes = variant.binary ? 2 : setup.classes
            let files = try FileManager.default.subpathsOfDirectory(atPath: "\(dataset)/test")
                .filter { $0.hasSuffix(".png") }.sorted().map { "\(dataset)/test/\($0)" }
            let onnx = "\(judge.directory)/\(variant.name).onnx"
            let export = try run(["export", runDir, "--format", "onnx", "--out", onnx, "--softmax", "--json"])
            XCTAssertEqual(export.status, 0, export.stderr)
            let report = try export.json(XCTUnwrap(export.lines.last))
            XCTAssertEqual(report["output"] as? String, "probabilities")
            XCTAssertEqual(report["output_shape"] as? [String], ["batch", variant.binary ? "1" : String(classes)])
            XCTAssertEqual(report["input_shape"] as? [String], ["batch", "3", setup.inputSize, setup.inputSize])
            let inputs = try preprocessedInputs(runDir, files)
            try judge.add(variant.name, onnx: onnx, inputs: inputs,
                          expected: predictedProbabilities(runDir, files, classes: classes, binary: variant.binary),
                          classes: classes, binary: variant.binary, output: "probabilities")

            // model.safetensors in torchvision, against finetune's logits for the same inputs.
            let run = RunDirectory(runDir)
            let model = try run.loadModel(run.readConfig())
            let logits = try withInferenceMode { try model(inputs) }
            let inputsPath = "\(judge.directory)/\(variant.name).tv-inputs.safetensors"
            let logitsPath = "\(judge.directory)/\(variant.name).tv-logits.safetensors"
            try SafeTensors.write(StateDict([("input", inputs.contiguous())]), to: inputsPath)
            try SafeTensors.write(StateDict([("output", logits.contiguous())]), to: logitsPath)
            let torchvision = try Interop.run("check_torchvision.py", ["\(runDir)/model.safetensors",
                                                                        "\(runDir)/config.json", inputsPath, logitsPath])
            print(torchvision.output)
            XCTAssertEqual(torchvision.status, 0, "\(variant.name): torchvision: \(torchvision.output)")
            XCTAssertTrue(torchvision.output.contains("\"ok\": true"), torchvision.output)

            let tensorboard = try Interop.run("check_history_tensorboard.py", [runDir])
            print(tensorboard.output)
            XCTAssertEqual(tensorboard.status, 0, "\(variant.name): TensorBoard: \(tensorboard.output)")
            XCTAssertTrue(tensorboard.output.contains("\"ok\": true"), tensorboard.output)
        }
        try judge.judge()
    }
}

extension ExportCLITests {
    /// Bad input names the flag or the file, and nothing is written: an unknown format, an --out in a
    /// missing folder, a run directory without its model, a folder that is no run, an --out that
    /// finetune did not write. An export killed while writing leaves no file at --out.
    func testBadInputNamesTheFlagOrFileAndAnInterruptedExportLeavesNoFile() throws {
        let folder = try temporaryFolder("export-errors")
        let out = "\(folder)/model.onnx"
        let zoo = ["export", "--arch", "resnet18", "--weights", "none", "--input-size", "32"]

        let format = try run(zoo + ["--format", "tflite", "--out", out])
        XCTAssertNotEqual(format.status, 0)
        XCTAssertTrue(format.stderr.contains("--format") && format.stderr.contains("onnx"), format.stderr)

        let missing = try run(zoo + ["--out", "\(folder)/no/such/folder/model.onnx"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("--out") && missing.stderr.contains("\(folder)/no/such/folder"),
                      missing.stderr)

        let notARun = try run(["export", folder, "--out", out])
        XCTAssertNotEqual(notARun.status, 0)
        XCTAssertTrue(notARun.stderr.contains(folder) && notARun.stderr.contains("config.json"), notARun.stderr)

        // A run directory whose model.safetensors is gone (e.g. a run that never finished).
        let data = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: data)
        let runDir = "\(folder)/run"
        let train = try run(["train", data, "--out", runDir, "--epochs", "1", "--recipe", "head-only"] + TrainCLITests.common)
        XCTAssertEqual(train.status, 0, train.stderr)
        try FileManager.default.removeItem(atPath: "\(runDir)/model.safetensors")
        let noModel = try run(["export", runDir, "--out", out])
        XCTAssertNotEqual(noModel.status, 0)
        XCTAssertTrue(noModel.stderr.contains("\(runDir)/model.safetensors"), noModel.stderr)

        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a failed export must write nothing")

        // A file finetune did not write is never replaced; one it wrote is.
        let foreign = "\(folder)/notes.onnx"
        try Foundation.Data("my notes".utf8).write(to: URL(fileURLWithPath: foreign))
        let refused = try run(zoo + ["--out", foreign])
        XCTAssertNotEqual(refused.status, 0)
        XCTAssertTrue(refused.stderr.contains("--out") && refused.stderr.contains(foreign), refused.stderr)
        XCTAssertEqual(try String(contentsOfFile: foreign, encoding: .utf8), "my notes")
        for _ in 0..<2 {
            let written = try run(zoo + ["--out", out])
            XCTAssertEqual(written.status, 0, written.stderr)
        }

        // Killed in the middle of writing (the temporary file is there): --out is not created.
        let big = "\(folder)/big.onnx"
        let process = try CLITests.start(["export", "--arch", "vgg16", "--weights", "none", "--input-size", "32", "--out", big])
        let deadline = Date().addingTimeInterval(120)
        var sawTemporary = false
        while process.isRunning, Date() < deadline, !sawTemporary {
            sawTemporary = (try FileManager.default.contentsOfDirectory(atPath: folder))
                .contains { $0.hasPrefix(".big.onnx.") && $0.hasSuffix(".tmp") }
            if !sawTemporary { usleep(2_000) }
        }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        XCTAssertTrue(sawTemporary, "the export finished before it could be interrupted")
        XCTAssertFalse(FileManager.default.fileExists(atPath: big), "an interrupted export left a file at --out")
    }
}

extension JSONKeysCLITests {
    /// `export --json` (a zoo model with random weights at 32 px).
    func testExport() throws {
        let out = try temporaryFolder("export") + "/model.onnx"
        let export = try run(["export", "--arch", "resnet18", "--weights", "none", "--input-size", "32", "--out", out,
                              "--json"])
        assertShape(try shape(export), [
            "architecture: string", "bytes: number", "format: string", "input: string", "input_shape: array",
            "input_shape[]: string", "output_shape: array",
            "nodes: number", "opset: number", "output: string", "output_shape[]: string", "parameters: number",
            "path: string",
        ], "export")
    }
}
