import Foundation
import Torch

/// Records each module's output shape during one forward pass (used by `ModelSummary`).
/// Only calls made through `callAsFunction` are seen.
public final class ForwardRecorder {
    /// The recorder of the forward pass in progress on this thread, if any.
    static var active: ForwardRecorder? {
        get { Thread.current.threadDictionary[key] as? ForwardRecorder }
        set { Thread.current.threadDictionary[key] = newValue }
    }
    private static let key = "finetune.ForwardRecorder"

    private(set) var outputShapes: [ObjectIdentifier: [Int]] = [:]
    private(set) var outputDTypes: [ObjectIdentifier: DType] = [:]

    func record(_ module: Module, output: Tensor) {
        // The first call wins: a module reused within one pass reports its first output.
        if outputShapes[ObjectIdentifier(module)] == nil {
            outputShapes[ObjectIdentifier(module)] = output.shape
            outputDTypes[ObjectIdentifier(module)] = output.dtype
        }
    }

    /// Runs `body` with this recorder active.
    func recording<R>(_ body: () throws -> R) rethrows -> R {
        let previous = ForwardRecorder.active
        ForwardRecorder.active = self
        defer { ForwardRecorder.active = previous }
        return try body()
    }
}

/// A Keras-style model summary: one row per module (layer, type, output shape, parameters,
/// trainable), then total, trainable and non-trainable parameter counts.
public struct ModelSummary: Codable, Equatable {
    /// One module's line in the table.
    public struct Row: Codable, Equatable {
        /// Dotted path, e.g. `features.3.conv.0.0` ("" for the model itself is not listed).
        public var name: String
        /// The module's `typeName`, e.g. `Conv2d`, `InvertedResidual`.
        public var type: String
        /// Output shape from the sample forward pass (batch dimension included), nil if not called.
        public var outputShape: [Int]?
        /// The output's dtype from the sample forward pass (`float32`, `bfloat16` under a precision
        /// policy), nil if not called.
        public var outputDType: String?
        /// Parameters counted on this row: its own, or its whole subtree when no descendant is
        /// listed (as Keras shows a nested model), so the rows add up to the total.
        public var parameters: Int
        /// How many of those require gradients.
        public var trainableParameters: Int
        /// "yes", "no" or "partly" (nil without parameters).
        public var trainable: String? {
            guard parameters > 0 else { return nil }
            return trainableParameters == parameters ? "yes" : trainableParameters == 0 ? "no" : "partly"
        }
    }

    /// The summarised model's `typeName`, e.g. `MobileNetV2`.
    public var model: String
    /// The shape of the zeros the sample forward pass ran on, e.g. [1, 3, 224, 224] (NCHW).
    public var inputShape: [Int]
    /// The model's output shape for that input, e.g. [1, 1000].
    public var outputShape: [Int]
    /// One row per module, depth first in definition order, down to `maxDepth`.
    public var rows: [Row]
    /// Parameter elements in the whole model, as Keras' "Total params".
    public var totalParameters: Int
    /// Parameter elements that currently require gradients (not frozen).
    public var trainableParameters: Int
    /// Parameter elements that are frozen: `totalParameters - trainableParameters`. (Buffers such as
    /// BatchNorm running statistics are not counted, unlike Keras' non-trainable weights.)
    public var nonTrainableParameters: Int { totalParameters - trainableParameters }

    /// Summarises `model` by running one forward pass (in inference mode, eval) on zeros of
    /// `inputShape`. `maxDepth` limits how deep rows go (nil: every module). With `precision`, the pass
    /// runs under that policy (`PrecisionPolicy.with`), so each row's `outputDType` shows where it ran.
    /// With `recordingGradients`, the pass runs with gradient mode on instead (still eval, so no
    /// statistics change), as a training step's forward does: layers with trainable parameters, and
    /// those after them, then show the policy's training dtypes (`PrecisionPolicy.bf16`).
    public init(_ model: Module, inputShape: [Int], maxDepth: Int? = nil, precision: PrecisionPolicy? = nil,
                recordingGradients: Bool = false) throws {
        let recorder = ForwardRecorder()
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        let pass = { try PrecisionPolicy.with(precision) { try recorder.recording { try model(Tensor.zeros(inputShape)) } } }
        let output = try recordingGradients ? withGradEnabled(true, pass) : withInferenceMode(pass)
        self.model = model.typeName
        self.inputShape = inputShape
        self.outputShape = output.shape
        rows = model.namedModules().dropFirst().compactMap { path, module in
            let depth = path.split(separator: ".").count
            if let maxDepth, depth > maxDepth { return nil }
            let collapsed = module.namedChildren.isEmpty || depth == maxDepth
            let counted = collapsed ? module.parameters() : module.namedLocalParameters.map(\.1)
            return Row(name: path, type: module.typeName,
                       outputShape: recorder.outputShapes[ObjectIdentifier(module)],
                       outputDType: recorder.outputDTypes[ObjectIdentifier(module)]?.description,
                       parameters: counted.reduce(0) { $0 + $1.count },
                       trainableParameters: counted.filter(\.requiresGrad).reduce(0) { $0 + $1.count })
        }
        let parameters = model.parameters()
        totalParameters = parameters.reduce(0) { $0 + $1.count }
        trainableParameters = parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count }
    }

    /// The table as text, with thousands separators like Keras.
    public func render() -> String {
        func shape(_ s: [Int]?) -> String { s.map { "(" + $0.map(String.init).joined(separator: ", ") + ")" } ?? "-" }
        let header = ["Layer", "Type", "Output shape", "Param #", "Trainable"]
        let body = rows.map { [$0.name, $0.type, shape($0.outputShape), grouped($0.parameters), $0.trainable ?? ""] }
        var widths = header.map(\.count)
        for row in body { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == 3 ? String(repeating: " ", count: widths[i] - c.count) + c
                    : c + String(repeating: " ", count: widths[i] - c.count)
            }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
        }
        let rule = String(repeating: "─", count: widths.reduce(0, +) + 2 * (widths.count - 1))
        var out = ["Model: \(model)   input \(shape(inputShape)) → output \(shape(outputShape))", rule, line(header), rule]
        out += body.map(line)
        out += [rule,
                "Total params: \(grouped(totalParameters))",
                "Trainable params: \(grouped(trainableParameters))",
                "Non-trainable params: \(grouped(nonTrainableParameters))"]
        return out.joined(separator: "\n")
    }
}

/// 25557032 → "25,557,032".
func grouped(_ n: Int) -> String {
    let digits = String(n.magnitude)
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + String(out.reversed())
}
