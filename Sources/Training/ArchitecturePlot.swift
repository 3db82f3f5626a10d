import Foundation
import NN

extension Plots {
    /// One box of an architecture drawing: a layer group with its output shape and parameters.
    public struct LayerBox: Equatable, Sendable {
        /// The group's dotted path, e.g. `layer4`, `features.18`.
        public var name: String
        /// Its module's `typeName`.
        public var type: String
        /// Its output shape in the sample forward pass (nil: not called).
        public var outputShape: [Int]?
        /// Parameter elements in the group's subtree.
        public var parameters: Int
        /// How many of those are trainable.
        public var trainableParameters: Int

        /// A box from its parts.
        public init(name: String, type: String, outputShape: [Int]?, parameters: Int, trainableParameters: Int) {
            self.name = name
            self.type = type
            self.outputShape = outputShape
            self.parameters = parameters
            self.trainableParameters = trainableParameters
        }
    }

    /// The boxes of `groups` (dotted module paths, e.g. a model's `layerGroups`), in order, with output
    /// shapes from `summary` (a summary of `model` with every module listed) and each group's parameters.
    public static func layerBoxes(_ model: Module, summary: ModelSummary, groups: [String]) -> [LayerBox] {
        let rows = Dictionary(summary.rows.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        return groups.compactMap { name in
            guard let module = model.module(at: name) else { return nil }
            let parameters = module.parameters()
            return LayerBox(name: name, type: module.typeName, outputShape: rows[name]?.outputShape,
                            parameters: parameters.reduce(0) { $0 + $1.count },
                            trainableParameters: parameters.filter(\.requiresGrad).reduce(0) { $0 + $1.count })
        }
    }

    /// Keras' `plot_model` at layer-group level: the input, one box per group (name, type, output
    /// shape, parameters; frozen groups grey) joined by arrows, then the output and the totals.
    public static func architecture(title: String, inputShape: [Int], outputShape: [Int], boxes: [LayerBox],
                                    totalParameters: Int, trainableParameters: Int) -> String {
        let boxWidth = 460.0, boxHeight = 44.0, gap = 22.0, left = 40.0, top = 50.0
        let count = Double(boxes.count + 2)
        let width = Int(left * 2 + boxWidth), height = Int(top + count * (boxHeight + gap) + 30)
        func shape(_ s: [Int]?) -> String { s.map { "(" + $0.map(String.init).joined(separator: ", ") + ")" } ?? "-" }
        var svg = header(width: width, height: height, title: title)
        svg += "<desc>\(architectureMarker)</desc>\n"
        svg += text(Double(width) / 2, 26, title, size: 16, anchor: "middle", weight: "bold")
        svg += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" "
            + "orient=\"auto\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#555555\"/></marker></defs>\n"
        var entries: [(title: String, detail: String, fill: String)] = [("Input", shape(inputShape), "#e8f0fe")]
        for b in boxes {
            let frozen = b.parameters > 0 && b.trainableParameters == 0
            let params = "\(grouped(b.parameters)) params" + (frozen ? ", frozen"
                : b.trainableParameters < b.parameters ? ", \(grouped(b.trainableParameters)) trainable" : "")
            entries.append(("\(b.name) (\(b.type))", "\(shape(b.outputShape)) · \(params)", frozen ? "#eeeeee" : "#fff4e0"))
        }
        entries.append(("Output", shape(outputShape), "#e8f0fe"))
        for (i, e) in entries.enumerated() {
            let y = top + Double(i) * (boxHeight + gap)
            svg += "<g class=\"layer\">\n<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(boxWidth))\" height=\"\(f(boxHeight))\" "
                + "rx=\"6\" fill=\"\(e.fill)\" stroke=\"#555555\"/>\n"
            svg += text(left + boxWidth / 2, y + 18, e.title, size: 13, anchor: "middle", weight: "bold")
            svg += text(left + boxWidth / 2, y + 35, e.detail, size: 11, anchor: "middle")
            svg += "</g>\n"
            if i + 1 < entries.count {
                let x = left + boxWidth / 2
                svg += "<line x1=\"\(f(x))\" y1=\"\(f(y + boxHeight))\" x2=\"\(f(x))\" y2=\"\(f(y + boxHeight + gap - 1))\" "
                    + "stroke=\"#555555\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>\n"
            }
        }
        svg += text(Double(width) / 2, Double(height) - 14, "Total params: \(grouped(totalParameters)) · trainable: "
                    + "\(grouped(trainableParameters)) · non-trainable: \(grouped(totalParameters - trainableParameters))",
                    size: 12, anchor: "middle")
        return svg + "</svg>\n"
    }

    /// The `<desc>` of every architecture drawing: how `summary --plot` recognises a file it may replace.
    public static let architectureMarker = "finetune architecture plot"

    /// Whether `head` (a file's first bytes, as text) is the beginning of an architecture drawing
    /// `architecture` wrote.
    public static func isArchitecturePlot(_ head: String) -> Bool {
        isOwnSVG(head, following: "<desc>\(architectureMarker)</desc>\n")
    }

    /// 1,234,567.
    static func grouped(_ n: Int) -> String {
        let digits = String(n)
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0 && i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }
}
