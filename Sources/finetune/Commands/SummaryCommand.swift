import ArgumentParser
import NN
import Vision

/// `finetune summary MODEL`: a Keras-style table of a zoo architecture.
struct SummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "Print a Keras-style summary of an architecture: layers, output shapes, parameters.",
        discussion: """
            Examples:
              finetune summary mobilenet_v2
              finetune summary resnet50 --classes 10 --freeze-backbone --depth 1
              finetune summary efficientnet_b0 --no-top --pooling max --json
            """)

    @Argument(help: "Architecture: \(ModelZoo.architectures.joined(separator: ", ")).") var model: String
    @Option(help: "Output classes of the head.") var classes = 1000
    @Flag(name: .customLong("no-top"), help: "Drop the classifier (Keras include_top=False).") var noTop = false
    @Option(help: "Pooling without a top: avg, max or none.") var pooling = "avg"
    @Option(help: "Input side in pixels (default: the architecture's ImageNet crop size).") var inputSize: Int?
    @Option(help: "Only list modules up to this depth (1 = top-level groups).") var depth: Int?
    @Flag(help: "Freeze everything but the head, to show trainable counts.") var freezeBackbone = false
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        guard let pool = GlobalPooling(rawValue: pooling) else {
            throw ValidationError("--pooling must be avg, max or none, not '\(pooling)'")
        }
        let network = try ModelZoo.make(model, options: ModelOptions(numClasses: classes, includeTop: !noTop, pooling: pool))
        if freezeBackbone { try network.freeze(network.backboneGroups) }
        let side = inputSize ?? WeightsCatalog.builtIn.entries(for: model).first?.preprocessing.cropSize ?? 224
        let summary = try ModelSummary(network, inputShape: [1, 3, side, side], maxDepth: depth)
        if json {
            print(jsonString([
                "model": model, "input_shape": summary.inputShape, "output_shape": summary.outputShape,
                "total_parameters": summary.totalParameters, "trainable_parameters": summary.trainableParameters,
                "non_trainable_parameters": summary.nonTrainableParameters, "layer_groups": network.layerGroups,
                "layers": summary.rows.map { row -> [String: Any] in
                    ["name": row.name, "type": row.type, "output_shape": row.outputShape as Any,
                     "parameters": row.parameters, "trainable_parameters": row.trainableParameters]
                },
            ]))
        } else {
            print(summary.render())
            print("Layer groups: \(network.layerGroups.joined(separator: ", "))")
        }
    }
}
