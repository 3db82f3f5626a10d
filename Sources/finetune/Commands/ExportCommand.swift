import ArgumentParser
import Export
import Foundation
import Training
import Vision

/// `finetune export`: write a run's model, or a zoo model, in a format other runtimes read.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a fine-tuned run (or a zoo model) as an ONNX model that onnxruntime runs.",
        discussion: """
            The graph takes preprocessed images [batch, 3, H, W] (float32, RGB, the model's own resize, centre crop, \
            mean and std: all in the file's metadata_props, with the class names in head order) and outputs logits, or \
            probabilities with --softmax (a sigmoid for a binary run). The batch dimension is dynamic; H and W are the \
            crop size unless --input-size says otherwise. BatchNorm is folded into the convolutions, dropout is \
            dropped: an inference graph, opset 17.

            Examples:
              finetune export runs/flowers --format onnx --out flowers.onnx
              finetune export runs/flowers --format onnx --out flowers.onnx \\
                  --softmax --json
              finetune export --arch mobilenet_v2 --weights imagenet --format onnx \\
                  --out mobilenet_v2.onnx
            """)

    @Argument(help: "A run directory written by `finetune train` (not needed with --arch).") var runDirectory: String?
    @Option(help: "Architecture of a zoo model to export instead of a run.") var arch: String?
    @Option(help: "With --arch: a catalog tag such as imagenet, a catalog name, a .pth/.safetensors file, or none.")
    var weights = "imagenet"
    @Option(help: "The file format.") var format: ExportFormat = .onnx
    @Option(help: "The file to write (its folder must exist).") var out: String
    @Option(help: "Input height and width in pixels (default: the preprocessing's crop size).") var inputSize: Int?
    @Flag(help: "Output probabilities (softmax; a sigmoid for a binary run) instead of logits.") var softmax = false
    @OptionGroup var runWeights: RunWeightsOption
    @Flag(help: "Print what was written as one JSON object.") var json = false

    func validate() throws {
        if runDirectory != nil, arch != nil { throw ValidationError("give a run directory or --arch, not both") }
        if runDirectory == nil, arch == nil { throw ValidationError("give a run directory, or --arch for a zoo model") }
        if out.isEmpty { throw ValidationError("--out must name the file to write") }
        if let inputSize, !(1...Preprocessing.largestSide).contains(inputSize) {
            throw ValidationError("--input-size must be 1 to \(Preprocessing.largestSide) pixels, got \(inputSize)")
        }
        try checkOutputFolder(out, flag: "--out")
        try checkRegularIfPresent(out, flag: "--out")
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) {
            if isDirectory.boolValue { throw ValidationError("--out: \(out) is a folder; give a file name") }
            if !ONNXExporter.isFinetuneExport(out) {
                throw ValidationError("--out: \(out) exists and was not written by finetune export; "
                                      + "move it away or choose another file")
            }
        }
        try runWeights.check(isRun: runDirectory != nil)
        if let runDirectory, !RunDirectory.isRun(runDirectory) {
            throw ValidationError("\(runDirectory) is not a run directory (it has no config.json)")
        }
    }

    func run() throws {
        let model: ImageClassifier, metadata: ExportMetadata
        if let runDirectory {
            let run = RunDirectory(runDirectory)
            let config = try run.readConfig()
            let loaded = try runWeights.loadModel(run, config)
            model = loaded.model
            let checkpoint = runWeights.weights == .final ? "" : ", " + loaded.weights
            metadata = ExportMetadata(architecture: config.architecture, classNames: config.classNames,
                                      preprocessing: config.preprocessing(cropSize: inputSize ?? config.preprocessing.cropSize),
                                      finetuneVersion: finetuneVersion, source: "run \(runDirectory)" + checkpoint,
                                      binary: config.head.isBinary)
        } else {
            let arch = arch ?? ""
            let pretrained = try ModelZoo.make(arch, weights: weights.lowercased() == "none" ? nil : weights,
                                               keepingTheirHead: true)
            model = pretrained.model
            metadata = ExportMetadata(architecture: arch, classNames: pretrained.predictedClassNames,
                                      preprocessing: pretrained.preprocessing, finetuneVersion: finetuneVersion,
                                      source: "weights \(weights)", binary: pretrained.isBinary)
        }
        let side = inputSize ?? metadata.preprocessing.cropSize
        let report: ONNXExportReport
        switch format {
        case .onnx:
            report = try ONNXExporter.export(model, metadata: metadata, inputSize: (side, side),
                                             output: softmax ? .probabilities : .logits, to: out)
        }
        if json {
            printEncodedJSON(report)
        } else {
            printLine("wrote \(report.path): ONNX opset \(report.opset), \(report.architecture), "
                      + "\(report.input) [\(report.inputShape.joined(separator: ", "))] → "
                      + "\(report.output) [\(report.outputShape.joined(separator: ", "))], "
                      + "\(report.nodes) nodes, \(report.parameters) parameters, \(report.bytes) bytes")
        }
    }
}
