import ArgumentParser
import AtomicFiles
import Foundation
import NN
import Training
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
              finetune summary resnet50 --plot resnet50.svg   draw the layer groups
                                                              (Keras' plot_model)
            """)

    @Argument(help: "Architecture: \(ModelZoo.architectures.joined(separator: ", ")).") var model: String
    @Option(help: "Output classes of the head.") var classes = 1000
    @Flag(name: .customLong("no-top"), help: "Drop the classifier (Keras include_top=False).") var noTop = false
    @Option(help: "Pooling without a top.") var pooling: GlobalPooling = .avg
    @Option(help: "Input side in pixels, at most 2048 (default: the architecture's ImageNet crop size).") var inputSize: Int?
    /// The largest `--input-size`: the summary runs one forward pass, whose activations at 100,000 px
    /// asked LibTorch for 120 GB.
    static let largestInputSize = 2048
    @Option(help: "Only list modules up to this depth (1 = top-level groups).") var depth: Int?
    @Flag(help: "Freeze everything but the head, to show trainable counts.") var freezeBackbone = false
    @Flag(help: "Print JSON instead of a table.") var json = false
    @Option(help: "Also write an SVG drawing of the layer groups (output shapes, parameters) to this file.")
    var plot: String?

    func validate() throws {
        // (2⁶³ − 1 classes gave LibTorch's "Storage size calculation overflowed".)
        guard (1...100_000).contains(classes) else { throw ValidationError("--classes must be 1 to 100000, got \(classes)") }
        if let inputSize, !(1...Self.largestInputSize).contains(inputSize) {
            throw ValidationError("--input-size must be 1 to \(Self.largestInputSize) pixels, got \(inputSize)")
        }
        guard let plot else { return }
        try checkReplaceable(plot, flag: "--plot", what: "a finetune architecture plot", isOurs: Plots.isArchitecturePlot)
    }

    func run() throws {
        let network = try ModelZoo.make(model, options: ModelOptions(numClasses: classes, includeTop: !noTop, pooling: pooling))
        if freezeBackbone { try network.freeze(network.backboneGroups) }
        let side = inputSize ?? WeightsCatalog.builtIn.entries(for: model).first?.preprocessing.cropSize ?? 224
        let summary = try ModelSummary(network, inputShape: [1, 3, side, side], maxDepth: depth)
        if let plot {
            let full = depth == nil ? summary : try ModelSummary(network, inputShape: [1, 3, side, side])
            let svg = Plots.architecture(title: "\(model) (\(full.model))", inputShape: full.inputShape,
                                         outputShape: full.outputShape,
                                         boxes: Plots.layerBoxes(network, summary: full, groups: network.layerGroups),
                                         totalParameters: full.totalParameters, trainableParameters: full.trainableParameters)
            do {
                try AtomicFile.write(Foundation.Data(svg.utf8), to: plot)
            } catch {
                throw ValidationError("--plot \(plot): \(error)")
            }
        }
        if json {
            printEncodedJSON(Output(model: model, inputShape: summary.inputShape, outputShape: summary.outputShape,
                                    totalParameters: summary.totalParameters,
                                    trainableParameters: summary.trainableParameters,
                                    nonTrainableParameters: summary.nonTrainableParameters,
                                    layerGroups: network.layerGroups, layers: summary.rows.map(Output.Layer.init)))
        } else {
            printLine(summary.render())
            printLine("Layer groups: \(network.layerGroups.joined(separator: ", "))")
        }
    }

    /// `summary --json`: the architecture's name (as given), the `ModelSummary`'s shapes and counts, the
    /// layer groups, and one row per module.
    struct Output: Encodable {
        var model: String
        var inputShape: [Int]
        var outputShape: [Int]
        var totalParameters: Int
        var trainableParameters: Int
        var nonTrainableParameters: Int
        var layerGroups: [String]
        var layers: [Layer]

        /// One row of `layers`; `output_shape` is null for a module the sample forward pass did not call.
        struct Layer: Encodable {
            var name: String
            var type: String
            @NullIfMissing var outputShape: [Int]?
            var parameters: Int
            var trainableParameters: Int

            init(_ row: ModelSummary.Row) {
                name = row.name
                type = row.type
                outputShape = row.outputShape
                parameters = row.parameters
                trainableParameters = row.trainableParameters
            }
        }
    }
}
