@testable import Export
import Foundation
import ImagePreprocessing
import NN
import TestSupport
import Torch
import Vision
import XCTest

/// The exported file read back with the same generated types (no Python): opset, IR version, input
/// and output, metadata, an inference graph (BatchNorm folded, Dropout gone), the atomic write.
final class ONNXExporterTests: XCTestCase {
    let preprocessing = Preprocessing(mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3], resizeSize: 40, cropSize: 32,
                                      interpolation: "bicubic", valueRange: [0, 1])

    func exported(_ model: ImageClassifier, classNames: [String], binary: Bool = false,
                  output: ONNXOutput = .logits) throws -> (Onnx_ModelProto, ONNXExportReport) {
        let folder = NSTemporaryDirectory() + "onnx-exporter-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/model.onnx"
        let report = try ONNXExporter.export(model, metadata: ExportMetadata(
            architecture: model.architecture, classNames: classNames, preprocessing: preprocessing,
            finetuneVersion: "9.9.9", source: "test", binary: binary), inputSize: (32, 32), output: output, to: path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), ["model.onnx"],
                       "the atomic write leaves only the file")
        XCTAssertTrue(ONNXExporter.isFinetuneExport(path))
        let proto = try Onnx_ModelProto(serializedBytes: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertEqual(report.bytes, try (proto.serializedBytes() as Foundation.Data).count)
        return (proto, report)
    }

    /// Only a ModelProto whose `producer_name` is exactly "finetune" counts as finetune's (and may be
    /// replaced by `export --out`); "finetune" elsewhere near the start does not.
    func testOnlyAFileProducedByFinetuneCountsAsAnExport() throws {
        let folder = NSTemporaryDirectory() + "onnx-producer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func file(producer: String, input: String = "input", ir: Int64 = 8) throws -> String {
            var proto = Onnx_ModelProto()
            proto.irVersion = ir
            proto.producerName = producer
            var value = Onnx_ValueInfoProto()
            value.name = input
            proto.graph.input = [value]
            let path = folder + "/\(UUID().uuidString).onnx"
            try (proto.serializedBytes() as Foundation.Data).write(to: URL(fileURLWithPath: path))
            return path
        }
        XCTAssertTrue(ONNXExporter.isFinetuneExport(try file(producer: "finetune")))
        XCTAssertTrue(ONNXExporter.isFinetuneExport(try file(producer: "finetune", ir: 300)), "a two-byte varint")
        XCTAssertFalse(ONNXExporter.isFinetuneExport(try file(producer: "pytorch", input: "finetune_input")))
        XCTAssertFalse(ONNXExporter.isFinetuneExport(try file(producer: "my-finetuned-pipeline")))
        XCTAssertFalse(ONNXExporter.isFinetuneExport(try file(producer: "finetune2")))
        XCTAssertFalse(ONNXExporter.isFinetuneExport(try file(producer: "")))
        // A FIFO is no export, and is not waited on (opening it to read waited for a writer for good).
        XCTAssertEqual(mkfifo(folder + "/fifo.onnx", 0o600), 0)
        XCTAssertFalse(ONNXExporter.isFinetuneExport(folder + "/fifo.onnx"))
        let truncated = folder + "/truncated.onnx"
        try Foundation.Data([0x08, 0x08, 0x12, 0x08] + Array("fine".utf8)).write(to: URL(fileURLWithPath: truncated))
        XCTAssertFalse(ONNXExporter.isFinetuneExport(truncated))
        XCTAssertFalse(ONNXExporter.isFinetuneExport(folder + "/missing.onnx"))
    }

    func testGraphIsAnInferenceGraphWithMetadataOpset17AndADynamicBatch() throws {
        let model = try ResNet.resnet18(ModelOptions(numClasses: 3))
        try model.configureHead(HeadSpec(outputs: 3, batchNorm: true, dropout: 0.5, hiddenUnits: [8]))
        let (proto, report) = try exported(model, classNames: ["cat", "dog", "emu"])
        XCTAssertEqual(proto.opsetImport.map(\.version), [17])
        XCTAssertEqual(proto.irVersion, 8)
        XCTAssertEqual(proto.producerName, "finetune")
        XCTAssertEqual(report.inputShape, ["batch", "3", "32", "32"])
        XCTAssertEqual(report.outputShape, ["batch", "3"])
        XCTAssertEqual(proto.graph.input.map(\.name), ["input"])
        XCTAssertEqual(proto.graph.output.map(\.name), ["logits"])
        let ops = proto.graph.node.map(\.opType)
        XCTAssertEqual(ops.filter { $0 == "Conv" }.count, 20, "ResNet-18 has 20 convolutions")
        XCTAssertFalse(ops.contains("BatchNormalization"), "BatchNorm2d is folded into the convolutions")
        XCTAssertFalse(ops.contains("Dropout"))
        XCTAssertEqual(ops.filter { $0 == "Gemm" }.count, 2, "the hidden and the output Dense layers")
        // Folding leaves each convolution its weight plus a bias and removes the BatchNorm2d layers; the
        // head's BatchNorm1d becomes a scale and a shift.
        let modules = model.namedModules().map(\.1)
        let convolutions = modules.compactMap { $0 as? Conv2d }.reduce(0) { $0 + $1.weight.count + $1.outChannels }
        let linears = modules.compactMap { $0 as? Linear }.reduce(0) { $0 + $1.weight.count + ($1.bias?.count ?? 0) }
        XCTAssertEqual(report.parameters, convolutions + linears + 2 * 512)

        let metadata = Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(metadata["architecture"], "resnet18")
        XCTAssertEqual(metadata["class_names"], #"["cat","dog","emu"]"#)
        XCTAssertEqual(metadata["preprocessing.mean"], "[0.5,0.4,0.3]")
        XCTAssertEqual(metadata["preprocessing.std"], "[0.2,0.25,0.3]")
        XCTAssertEqual(metadata["preprocessing.resize"], "40")
        XCTAssertEqual(metadata["preprocessing.crop"], "32")
        XCTAssertEqual(metadata["preprocessing.interpolation"], "bicubic")
        XCTAssertEqual(metadata["preprocessing.value_range"], "[0,1]")
        XCTAssertEqual(metadata["finetune_version"], "9.9.9")
        XCTAssertEqual(metadata["output"], "logits")
    }

    /// Exported at another input size than its crop (`export --input-size`), the metadata describes
    /// the input the graph takes: the crop is that size and the resize keeps its ratio (they kept the
    /// run's 96-px crop, and onnxruntime refused the tensor the metadata described).
    func testMetadataAtAnotherInputSizeDescribesTheGraphsInput() throws {
        let model = try ResNet.resnet18(ModelOptions(numClasses: 2))
        let metadata = ExportMetadata(architecture: "resnet18", classNames: ["a", "b"], preprocessing: preprocessing,
                                      finetuneVersion: "9.9.9", source: "test")
        func props(_ side: (Int, Int)) throws -> [String: String] {
            let proto = try ONNXExporter.makeModel(model, metadata: metadata, inputSize: side)
            return Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
        }
        let larger = try props((48, 48))
        XCTAssertEqual(larger["input_size"], "48x48")
        XCTAssertEqual(larger["preprocessing.crop"], "48")
        XCTAssertEqual(larger["preprocessing.resize"], "60", "40/32 of 48")
        let setting = try JSONDecoder().decode(Preprocessing.self, from: Foundation.Data(larger["preprocessing"]!.utf8))
        XCTAssertEqual([setting.cropSize, setting.resizeSize], [48, 60])
        XCTAssertEqual(setting.mean, preprocessing.mean)
        let same = try props((32, 32))
        XCTAssertEqual([same["preprocessing.crop"], same["preprocessing.resize"]], ["32", "40"])
    }

    func testSoftmaxAndBinarySigmoidOutputs() throws {
        let model = try MobileNetV2.make(ModelOptions(numClasses: 4))
        let (softmax, _) = try exported(model, classNames: ["a", "b", "c", "d"], output: .probabilities)
        XCTAssertEqual(softmax.graph.output.map(\.name), ["probabilities"])
        XCTAssertEqual(softmax.graph.node.suffix(2).map(\.opType), ["Softmax", "Identity"])
        try model.configureHead(HeadSpec(outputs: 1))
        let (sigmoid, report) = try exported(model, classNames: ["no", "yes"], binary: true, output: .probabilities)
        XCTAssertEqual(sigmoid.graph.node.suffix(2).map(\.opType), ["Sigmoid", "Identity"])
        XCTAssertEqual(report.outputShape, ["batch", "1"])
    }

    func testUnsupportedLayersModelsWithoutATopAndTooSmallInputsAreClearErrors() throws {
        let headless = try ResNet.resnet18(ModelOptions(includeTop: false))
        XCTAssertThrowsError(try exported(headless, classNames: [])) { error in
            XCTAssertEqual(error as? ExportError, .noTop(architecture: "resnet18"))
        }
        let model = try MobileNetV2.make(ModelOptions(numClasses: 2))
        try model.replaceModule(at: "classifier.1", with: Sequential(GELU(), try Linear(1280, 2)))
        XCTAssertThrowsError(try exported(model, classNames: ["a", "b"])) { error in
            XCTAssertEqual(error as? ExportError, .unsupportedLayer(type: "GELU", path: "classifier.1.0"))
        }
        let inception = try InceptionV3.inceptionV3(ModelOptions(numClasses: 2))
        XCTAssertThrowsError(try exported(inception, classNames: ["a", "b"])) { error in
            guard case .inputTooSmall? = error as? ExportError else { return XCTFail("\(error)") }
        }
    }

    /// PyTorch's pooled sizes, ceil mode included (a last window that would start in the padding is dropped).
    func testPooledSizeFollowsPyTorch() throws {
        for (input, kernel, stride, padding, ceil) in [(112, 3, 2, 0, true), (7, 2, 2, 0, true), (8, 3, 2, 1, true),
                                                      (5, 3, 2, 1, false), (6, 3, 3, 1, true), (14, 3, 1, 1, true)] {
            let x = try Tensor.zeros([1, 1, input, input])
            let expected = try Functional.maxPool2d(x, kernelSize: (kernel, kernel), stride: (stride, stride),
                                                    padding: (padding, padding), ceilMode: ceil).shape[2]
            XCTAssertEqual(ONNXEmitter.pooledSize(input, kernel: kernel, stride: stride, padding: padding,
                                                       ceilMode: ceil), expected, "\(input) \(kernel) \(stride) \(padding) \(ceil)")
        }
        // A window larger than its input outputs nothing (PyTorch refuses it); Swift's `/` made it 1.
        for (input, kernel, stride, ceil) in [(2, 3, 2, false), (1, 3, 2, false), (1, 3, 2, true), (4, 7, 2, false)] {
            XCTAssertLessThanOrEqual(ONNXEmitter.pooledSize(input, kernel: kernel, stride: stride, padding: 0, ceilMode: ceil), 0,
                                     "\(input) \(kernel) \(stride) \(ceil)")
            XCTAssertThrowsError(try Functional.maxPool2d(try Tensor.zeros([1, 1, input, input]), kernelSize: (kernel, kernel),
                                                          stride: (stride, stride), ceilMode: ceil))
        }
    }

    /// The input sizes `train` refuses as too small for the architecture are refused by the export
    /// too: AlexNet at 47 to 62 px was exported (its last pool got a 2×2 map), and onnxruntime
    /// crashed on the file with a floating-point exception (probe AG).
    func testInputsTooSmallForTheArchitectureAreRefusedAsTrainRefusesThem() throws {
        let alexnet = try AlexNet.alexnet(ModelOptions(numClasses: 2))
        let folder = NSTemporaryDirectory() + "onnx-small-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func export(_ side: Int) throws {
            _ = try ONNXExporter.export(alexnet, metadata: ExportMetadata(
                architecture: "alexnet", classNames: ["a", "b"], preprocessing: preprocessing, finetuneVersion: "9.9.9",
                source: "test", binary: false), inputSize: (side, side), output: .logits, to: folder + "/\(side).onnx")
        }
        for side in [40, 47, 55, 62] {
            XCTAssertThrowsError(try export(side), "\(side)") { error in
                guard case .inputTooSmall? = error as? ExportError else { return XCTFail("\(side): \(error)") }
            }
            alexnet.eval()
            XCTAssertThrowsError(try withInferenceMode { try alexnet(Tensor.zeros([1, 3, side, side])) }, "LibTorch at \(side)")
        }
        XCTAssertNoThrow(try export(63))
    }

    /// The library refuses what the CLI never passes (probe AC): metadata naming another number of
    /// classes than the model has outputs (a 3-output model exported as binary got 3 sigmoids under a
    /// "sigmoid of class_names[1]" description), and input sides past 4096 (Int.max trapped in the
    /// shape arithmetic, 2⁴⁰ tried to allocate 824 GB).
    func testMetadataThatContradictsTheModelAndHugeInputsAreRefused() throws {
        let model = try ResNet.resnet18(ModelOptions(numClasses: 3))
        func problem(_ names: [String], binary: Bool = false, side: Int = 32) -> String? {
            let metadata = ExportMetadata(architecture: "resnet18", classNames: names, preprocessing: preprocessing,
                                          finetuneVersion: "9.9.9", source: "test", binary: binary)
            do {
                _ = try ONNXExporter.makeModel(model, metadata: metadata, inputSize: (side, side), output: .probabilities)
                return nil
            } catch { return "\(error)" }
        }
        XCTAssertNil(problem(["a", "b", "c"]))
        XCTAssertEqual(problem(["a"], binary: true),
                       "the model has 3 outputs and the metadata says binary (1 output, 2 class names) with 1 class name")
        XCTAssertEqual(problem(["a", "b"]), "the model has 3 outputs and the metadata names 2 classes")
        for side in [Int.max, 1 << 40, 4097] {
            XCTAssertEqual(problem(["a", "b", "c"], side: side),
                           "the input size must be 1 to 4096 pixels a side, got \(side)×\(side)")
        }
    }
}
