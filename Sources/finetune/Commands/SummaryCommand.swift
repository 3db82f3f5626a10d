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
    @Option(help: "Pooling without a top.") var pooling: GlobalPooling = .avg
    @Option(help: "Input side in pixels (default: the architecture's ImageNet crop size).") var inputSize: Int?
    @Option(help: "Only list modules up to this depth (1 = top-level groups).") var depth: Int?
    @Flag(help: "Freeze everything but the head, to show trainable counts.") var freezeBackbone = false
    @Flag(help: "Print JSON instead of a table.") var json = false

    func run() throws {
        let network = try ModelZoo.make(model, options: ModelOptions(numClasses: classes, includeTop: !noTop, pooling: pooling))
        if freezeBackbone { try network.freeze(network.backboneGroups) }
        let side = inputSize ?? WeightsCatalog.builtIn.entries(for: model).first?.preprocessing.cropSize ?? 224
        let summary = try ModelSummary(network, inputShape: [1, 3, side, side], maxDepth: depth)
        if json {
            printEncodedJSON(Output(model: model, summary: summary, layerGroups: network.layerGroups))
        } else {
            print(summary.render())
            print("Layer groups: \(network.layerGroups.joined(separator: ", "))")
        }
    }

    /// `summary --json`: the architecture's name (as given), the `ModelSummary` and the layer groups.
    struct Output: Encodable {
        var model: String
        var summary: ModelSummary
        var layerGroups: [String]

        enum CodingKeys: String, CodingKey {
            case model, inputShape = "input_shape", outputShape = "output_shape", totalParameters = "total_parameters"
            case trainableParameters = "trainable_parameters", nonTrainableParameters = "non_trainable_parameters"
            case layerGroups = "layer_groups", layers
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(model, forKey: .model)
            try c.encode(summary.inputShape, forKey: .inputShape)
            try c.encode(summary.outputShape, forKey: .outputShape)
            try c.encode(summary.totalParameters, forKey: .totalParameters)
            try c.encode(summary.trainableParameters, forKey: .trainableParameters)
            try c.encode(summary.nonTrainableParameters, forKey: .nonTrainableParameters)
            try c.encode(layerGroups, forKey: .layerGroups)
            try c.encode(summary.rows.map(Layer.init), forKey: .layers)
        }

        /// One row of `layers`; `output_shape` is null for a module the sample forward pass did not call.
        struct Layer: Encodable {
            var row: ModelSummary.Row

            enum CodingKeys: String, CodingKey {
                case name, type, outputShape = "output_shape", parameters, trainableParameters = "trainable_parameters"
            }

            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(row.name, forKey: .name)
                try c.encode(row.type, forKey: .type)
                try c.encodeOrNull(row.outputShape, forKey: .outputShape)
                try c.encode(row.parameters, forKey: .parameters)
                try c.encode(row.trainableParameters, forKey: .trainableParameters)
            }
        }
    }
}
