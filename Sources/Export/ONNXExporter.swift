import AtomicFiles
import Foundation
import ImagePreprocessing
import NN
import SwiftProtobuf
import Torch
import Vision

/// Why a model could not be exported.
public enum ExportError: Error, CustomStringConvertible, Equatable {
    /// A module no emitter knows (its type name and dotted path).
    case unsupportedLayer(type: String, path: String)
    /// The model was built without a classifier (`includeTop: false`).
    case noTop(architecture: String)
    /// A layer received a tensor of the wrong shape while the graph was traced.
    case shapeMismatch(path: String, expected: String, got: [Int])
    /// The input is too small for a layer (its output would be empty).
    case inputTooSmall(path: String, shape: [Int])
    /// A setting of the export that cannot be used (naming it).
    case invalidSetting(String)
    /// A bug: the exporter contradicted itself.
    case internalInconsistency(String)

    public var description: String {
        switch self {
        case .unsupportedLayer(let type, let path):
            return "cannot export \(type)\(path.isEmpty ? "" : " at '\(path)'"): no ONNX emitter for it"
        case .noTop(let architecture):
            return "\(architecture) was built without a classifier: there is nothing to export as logits"
        case .shapeMismatch(let path, let expected, let got):
            return "'\(path)' expects \(expected) per sample, got \(got)"
        case .inputTooSmall(let path, let shape):
            return "the input is too small: '\(path)' gets \(shape) per sample and would output nothing"
        case .invalidSetting(let message):
            return message
        case .internalInconsistency(let message):
            return "internal error: \(message)"
        }
    }
}

/// What the exported graph outputs.
public enum ONNXOutput: String, Codable, Sendable {
    /// The model's raw outputs, [N, classes] (or [N, 1] for a binary head).
    case logits
    /// Softmax over the classes, or the sigmoid of a binary head's one output (P(class 1)).
    case probabilities
}

/// Everything about the model that a runtime user needs and the graph cannot say: stored in the
/// ONNX file's `metadata_props`.
public struct ExportMetadata: Equatable, Sendable {
    /// The zoo's registry name, e.g. "mobilenet_v2".
    public var architecture: String
    /// Class names in head order (output index i is `classNames[i]`; a binary head's one output is
    /// the logit of `classNames[1]`).
    public var classNames: [String]
    /// The input transform the weights expect.
    public var preprocessing: Preprocessing
    /// finetune's version.
    public var finetuneVersion: String
    /// Where the weights came from: a run directory or a weights name (free text).
    public var source: String
    /// Whether the head has one sigmoid output for two classes.
    public var binary: Bool

    public init(architecture: String, classNames: [String], preprocessing: Preprocessing, finetuneVersion: String,
                source: String, binary: Bool = false) {
        self.architecture = architecture
        self.classNames = classNames
        self.preprocessing = preprocessing
        self.finetuneVersion = finetuneVersion
        self.source = source
        self.binary = binary
    }
}

/// What `ONNXExporter.export` wrote (`finetune export --json`, whose encoder writes the keys in
/// snake_case: `input_shape`, `output_shape`).
public struct ONNXExportReport: Codable, Equatable, Sendable {
    public var path: String
    public var format: String
    public var opset: Int
    public var architecture: String
    public var input: String
    public var inputShape: [String]
    public var output: String
    public var outputShape: [String]
    public var nodes: Int
    public var parameters: Int
    public var bytes: Int
}

/// Exports a zoo classifier as an ONNX inference graph: input `input` [batch, 3, H, W] float32 (the
/// preprocessed images, batch dynamic), output `logits` or `probabilities`, opset 17, BatchNorm folded
/// into the convolutions as inference does, metadata in `metadata_props`.
public enum ONNXExporter {
    /// The ONNX operator set the graphs use.
    public static let opset = 17
    /// ONNX IR version 8, the one that goes with opset 17.
    public static let irVersion: Int64 = 8
    /// Name of the graph's input.
    public static let inputName = "input"

    /// The `ModelProto` of `model` for square or rectangular inputs of `inputSize` (height, width).
    /// The model is put in eval mode.
    public static func makeModel(_ model: ImageClassifier, metadata: ExportMetadata, inputSize: (Int, Int),
                                 output: ONNXOutput = .logits) throws -> Onnx_ModelProto {
        let largest = Preprocessing.largestSide
        guard inputSize.0 > 0, inputSize.1 > 0, inputSize.0 <= largest, inputSize.1 <= largest else {
            // Sides past any image model's overflowed the shape arithmetic (a trap) or allocated terabytes.
            throw ExportError.invalidSetting("the input size must be 1 to \(largest) pixels a side, got \(inputSize.0)×\(inputSize.1)")
        }
        if let outputs = model.numClasses {
            // A graph whose outputs the metadata names otherwise: a 3-output model exported as binary got
            // sigmoids of all 3 logits under a "sigmoid of class_names[1]" description.
            let names = metadata.classNames.count
            if metadata.binary ? (outputs != 1 || names != 2) : names != outputs {
                throw ExportError.invalidSetting("the model has \(outputs) output\(outputs == 1 ? "" : "s") and the metadata "
                    + "\(metadata.binary ? "says binary (1 output, 2 class names)" : "names \(names) class\(names == 1 ? "" : "es")")"
                    + (metadata.binary ? " with \(names) class name\(names == 1 ? "" : "s")" : ""))
            }
        }
        model.eval()
        var emitter = ONNXEmitter()
        emitter.graph.reserve(inputName)
        let outputName = output.rawValue
        emitter.graph.reserve(outputName)
        let input = ONNXValue(name: inputName, shape: [3, inputSize.0, inputSize.1])
        var result = try withNoGrad { try emitter.emitLogits(model, input) }
        if output == .probabilities {
            if metadata.binary {
                result = emitter.unary("Sigmoid", result, path: "probabilities")
            } else {
                result = ONNXValue(name: emitter.graph.node("Softmax", [result.name], name: "probabilities",
                                                            attributes: [ONNXGraphBuilder.attribute("axis", int: -1)]),
                                   shape: result.shape)
            }
        }
        // Name the final tensor `logits`/`probabilities` with an Identity (its producer keeps its own name).
        emitter.graph.node("Identity", [result.name], name: "output", outputName: outputName)

        var graph = Onnx_GraphProto()
        graph.name = metadata.architecture
        graph.node = emitter.graph.nodes
        graph.initializer = emitter.graph.initializers
        graph.input = [ONNXGraphBuilder.valueInfo(inputName, batched: input.shape,
                                                  docString: "preprocessed RGB images, NCHW float32 (metadata_props)")]
        graph.output = [ONNXGraphBuilder.valueInfo(outputName, batched: result.shape)]

        var proto = Onnx_ModelProto()
        proto.irVersion = irVersion
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.domain = ""
        opsetID.version = Int64(opset)
        proto.opsetImport = [opsetID]
        proto.producerName = "finetune"
        proto.producerVersion = metadata.finetuneVersion
        proto.docString = "\(metadata.architecture) exported by finetune \(metadata.finetuneVersion) from \(metadata.source)"
        proto.graph = graph
        proto.metadataProps = try metadataProps(metadata, output: output, inputSize: inputSize)
        return proto
    }

    /// `metadata_props`: the preprocessing field by field (its crop is the input size when that is
    /// square), the class names (a JSON array, head order), the architecture, finetune's version, and
    /// what the input and output hold.
    static func metadataProps(_ m: ExportMetadata, output: ONNXOutput, inputSize: (Int, Int)) throws
        -> [Onnx_StringStringEntryProto] {
        func json<T: Encodable>(_ value: T) throws -> String {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return String(decoding: try encoder.encode(value), as: UTF8.self)
        }
        // The preprocessing of the input the graph takes: at another (square) input size than the
        // setting's crop, that size, with the resize side scaled alike (it kept the run's crop, which
        // the graph then refused).
        let p = inputSize.0 == inputSize.1 && inputSize.0 != m.preprocessing.cropSize
            ? m.preprocessing.withCropSize(inputSize.0) : m.preprocessing
        let outputDescription: String
        switch (output, m.binary) {
        case (.logits, false): outputDescription = "logits [batch, \(m.classNames.count)] in class_names order"
        case (.logits, true): outputDescription = "logit [batch, 1] of class_names[1] (sigmoid gives its probability)"
        case (.probabilities, false): outputDescription = "softmax probabilities [batch, \(m.classNames.count)]"
        case (.probabilities, true): outputDescription = "sigmoid probability [batch, 1] of class_names[1]"
        }
        let pairs: [(String, String)] = [
            ("architecture", m.architecture),
            ("class_names", try json(m.classNames)),
            ("num_classes", String(m.classNames.count)),
            ("binary", m.binary ? "true" : "false"),
            ("output", output.rawValue),
            ("output_description", outputDescription),
            ("input_layout", "NCHW"),
            ("input_color", "RGB"),
            ("input_size", "\(inputSize.0)x\(inputSize.1)"),
            ("preprocessing", try json(p)),
            ("preprocessing.mean", try json(p.mean)),
            ("preprocessing.std", try json(p.std)),
            ("preprocessing.resize", String(p.resizeSize)),
            ("preprocessing.resize_mode", "shorter side to resize, aspect kept, antialiased"),
            ("preprocessing.crop", String(p.cropSize)),
            ("preprocessing.crop_mode", "center"),
            ("preprocessing.interpolation", p.interpolation),
            ("preprocessing.value_range", try json(p.valueRange)),
            ("preprocessing.formula",
             "x = (pixel / 255 * (value_range[1] - value_range[0]) + value_range[0] - mean[c]) / std[c]"),
            ("finetune_version", m.finetuneVersion),
            ("source", m.source),
        ]
        return pairs.map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
    }

    /// Serialises `proto` and writes it to `path` atomically (a temporary file renamed into place, so
    /// an interrupted export leaves no half file). `durable` also fsyncs it (tests that throw the file
    /// away skip that).
    public static func write(_ proto: Onnx_ModelProto, to path: String, durable: Bool = true) throws -> Int {
        let data: Data = try proto.serializedBytes()
        try AtomicFile.write(data, to: path, durable: durable)
        return data.count
    }

    /// `makeModel`, then `write`: the report says what was written.
    @discardableResult
    public static func export(_ model: ImageClassifier, metadata: ExportMetadata, inputSize: (Int, Int),
                              output: ONNXOutput = .logits, to path: String,
                              durable: Bool = true) throws -> ONNXExportReport {
        let proto = try makeModel(model, metadata: metadata, inputSize: inputSize, output: output)
        let bytes = try write(proto, to: path, durable: durable)
        func dims(_ info: Onnx_ValueInfoProto) -> [String] {
            info.type.tensorType.shape.dim.map { dim -> String in
                if case .dimParam(let name)? = dim.value { return name }
                return String(dim.dimValue)
            }
        }
        let parameters = proto.graph.initializer.reduce(0) { $0 + Int($1.dims.reduce(1, *)) }
        return ONNXExportReport(path: path, format: "onnx", opset: opset, architecture: metadata.architecture,
                                input: inputName, inputShape: dims(proto.graph.input[0]),
                                output: output.rawValue, outputShape: dims(proto.graph.output[0]),
                                nodes: proto.graph.node.count, parameters: parameters, bytes: bytes)
    }
}

/// The formats `finetune export` writes.
public enum ExportFormat: String, CaseIterable, Codable, Sendable {
    /// ONNX (opset 17), which onnxruntime, OpenVINO, TensorRT and the Core ML converters read.
    case onnx
}

extension ONNXExporter {
    /// Whether the file at `path` was written by finetune's exporter: such a file may be replaced, any
    /// other may not. The exporter's ModelProto starts with `ir_version` (field 1, a varint) and then
    /// `producer_name` (field 2), which must be exactly "finetune". (Until 2026-12-05 any file whose
    /// first 64 bytes held "finetune" anywhere passed: PyTorch's export of a model whose input was
    /// named `finetune_input`, or a producer named `my-finetuned-pipeline`, was overwritten.)
    public static func isFinetuneExport(_ path: String) -> Bool {
        // Opened without blocking and checked to be a regular file: a FIFO waited for a writer for good.
        guard let fd = try? RegularFile.openForReading(path) else { return false }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let head = [UInt8]((try? handle.read(upToCount: 64)) ?? Data())
        var i = 0
        /// A protobuf varint at `i` (at most 10 bytes), nil when the bytes end first.
        func varint() -> UInt64? {
            var value: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard i < head.count else { return nil }
                let byte = head[i]
                i += 1
                value |= UInt64(byte & 0x7F) << UInt64(shift)
                if byte & 0x80 == 0 { return value }
            }
            return nil
        }
        let producer = Array("finetune".utf8)
        guard varint() == 1 << 3 | 0, varint() != nil,        // ir_version
              varint() == 2 << 3 | 2, varint() == UInt64(producer.count),  // producer_name's tag and length
              i + producer.count <= head.count else { return false }
        return Array(head[i..<i + producer.count]) == producer
    }
}
