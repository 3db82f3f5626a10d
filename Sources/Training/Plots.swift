import Foundation

/// A named line of (x, y) points. Non-finite y values leave a gap.
public struct PlotSeries {
    /// The legend label, e.g. "loss" or "val_loss".
    public var name: String
    /// The points in drawing order; a non-finite y breaks the line.
    public var points: [(x: Double, y: Double)]

    /// A series of explicit points.
    public init(name: String, points: [(x: Double, y: Double)]) {
        self.name = name
        self.points = points
    }

    /// Values at x = 1, 2, 3, … (epochs).
    public init(name: String, values: [Double]) {
        self.init(name: name, points: values.enumerated().map { (Double($0.offset + 1), $0.element) })
    }
}

/// Dependency-free SVG charts: learning curves and confusion-matrix heat maps.
public enum Plots {
    static let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]

    // MARK: - Line charts

    /// A line chart with axes, ticks, grid lines and a legend (one entry per series). Each of
    /// `markers` is a dashed vertical line at its x, labelled at the top (e.g. where phase 2 starts).
    public static func lineChart(title: String, xLabel: String = "epoch", yLabel: String, series: [PlotSeries],
                                 markers: [(x: Double, label: String)] = [],
                                 width: Int = 640, height: Int = 400) -> String {
        let left = 70.0, right = 20.0, top = 40.0, bottom = 55.0
        let plotWidth = Double(width) - left - right, plotHeight = Double(height) - top - bottom
        let finite = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        var (xMin, xMax) = (finite.map(\.x).min() ?? 0, finite.map(\.x).max() ?? 1)
        var (yMin, yMax) = (finite.map(\.y).min() ?? 0, finite.map(\.y).max() ?? 1)
        if xMin == xMax { xMin -= 1; xMax += 1 }
        if yMin == yMax {
            let pad = yMin == 0 ? 1 : Swift.abs(yMin) * 0.1
            yMin -= pad; yMax += pad
        }
        let integralX = finite.allSatisfy { $0.x.rounded() == $0.x }
        let xTicks = ticks(xMin, xMax, integral: integralX)
        let yTicks = ticks(yMin, yMax, integral: false)
        xMin = Swift.min(xMin, xTicks.first ?? xMin); xMax = Swift.max(xMax, xTicks.last ?? xMax)
        yMin = Swift.min(yMin, yTicks.first ?? yMin); yMax = Swift.max(yMax, yTicks.last ?? yMax)
        func px(_ x: Double) -> Double { left + (x - xMin) / (xMax - xMin) * plotWidth }
        func py(_ y: Double) -> Double { top + (1 - (y - yMin) / (yMax - yMin)) * plotHeight }

        var svg = header(width: width, height: height, title: title)
        svg += text(Double(width) / 2, 24, title, size: 16, anchor: "middle", weight: "bold")
        // Grid, ticks and tick labels.
        svg += "<g class=\"axes\" stroke=\"#dddddd\" stroke-width=\"1\">\n"
        for t in yTicks {
            svg += line(left, py(t), left + plotWidth, py(t))
        }
        for t in xTicks {
            svg += line(px(t), top, px(t), top + plotHeight)
        }
        svg += "</g>\n"
        svg += "<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotWidth))\" height=\"\(f(plotHeight))\" "
            + "fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>\n"
        let yDecimals = decimals(yTicks), xDecimals = integralX ? 0 : decimals(xTicks)
        svg += "<g class=\"tick-labels\">\n"
        for t in yTicks {
            svg += line(left - 5, py(t), left, py(t), stroke: "#333333")
            svg += text(left - 8, py(t) + 4, String(format: "%.\(yDecimals)f", t), anchor: "end")
        }
        for t in xTicks {
            svg += line(px(t), top + plotHeight, px(t), top + plotHeight + 5, stroke: "#333333")
            svg += text(px(t), top + plotHeight + 18, String(format: "%.\(xDecimals)f", t), anchor: "middle")
        }
        svg += "</g>\n"
        svg += text(left + plotWidth / 2, Double(height) - 12, xLabel, size: 13, anchor: "middle")
        svg += "<text x=\"16\" y=\"\(f(top + plotHeight / 2))\" font-size=\"13\" text-anchor=\"middle\" "
            + "transform=\"rotate(-90 16 \(f(top + plotHeight / 2)))\">\(escape(yLabel))</text>\n"

        for marker in markers where marker.x >= xMin && marker.x <= xMax {
            svg += "<g class=\"marker\">\n"
            svg += "<line x1=\"\(f(px(marker.x)))\" y1=\"\(f(top))\" x2=\"\(f(px(marker.x)))\" y2=\"\(f(top + plotHeight))\" "
                + "stroke=\"#555555\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n"
            svg += text(px(marker.x) + 4, top + 14, marker.label, size: 11, fill: "#555555")
            svg += "</g>\n"
        }

        // Series: polylines broken at non-finite values, with markers when there are few points.
        for (i, s) in series.enumerated() {
            let color = palette[i % palette.count]
            svg += "<g class=\"series\" data-name=\"\(escape(s.name))\" stroke=\"\(color)\" fill=\"\(color)\">\n"
            svg += "<title>\(escape(s.name))</title>\n"
            var segments: [[(x: Double, y: Double)]] = [[]]
            for p in s.points {
                if p.x.isFinite && p.y.isFinite { segments[segments.count - 1].append(p) } else { segments.append([]) }
            }
            for segment in segments where segment.count > 1 {
                let coordinates = segment.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
                svg += "<polyline fill=\"none\" stroke-width=\"2\" points=\"\(coordinates)\"/>\n"
            }
            let markers = segments.joined()
            if markers.count <= 60 {
                for p in markers {
                    svg += "<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"3\" stroke=\"none\"/>\n"
                }
            }
            svg += "</g>\n"
        }

        // Legend, top right inside the plot.
        if !series.isEmpty {
            let entryHeight = 18.0
            let legendWidth = Double(series.map(\.name.count).max() ?? 0) * 7 + 40
            let x0 = left + plotWidth - legendWidth - 8, y0 = top + 8
            svg += "<g class=\"legend\">\n"
            svg += "<rect x=\"\(f(x0))\" y=\"\(f(y0))\" width=\"\(f(legendWidth))\" "
                + "height=\"\(f(Double(series.count) * entryHeight + 8))\" fill=\"#ffffff\" fill-opacity=\"0.85\" "
                + "stroke=\"#999999\"/>\n"
            for (i, s) in series.enumerated() {
                let y = y0 + 4 + Double(i) * entryHeight + entryHeight / 2
                svg += line(x0 + 8, y, x0 + 28, y, stroke: palette[i % palette.count], width: 2)
                svg += text(x0 + 34, y + 4, s.name)
            }
            svg += "</g>\n"
        }
        return svg + "</svg>\n"
    }

    /// Learning curves of one metric: a `train` and a `validation` series from per-epoch values
    /// (either may be empty). nil when neither has a value for the metric.
    public static func learningCurve(metric: String, train: [Int: [String: Double]],
                                     validation: [Int: [String: Double]], title: String? = nil,
                                     markers: [(x: Double, label: String)] = []) -> String? {
        func series(_ name: String, _ history: [Int: [String: Double]]) -> PlotSeries? {
            let points = history.keys.sorted().compactMap { epoch in history[epoch]![metric].map { (Double(epoch), $0) } }
            return points.isEmpty ? nil : PlotSeries(name: name, points: points)
        }
        let lines = [series("train", train), series("validation", validation)].compactMap { $0 }
        guard !lines.isEmpty else { return nil }
        return lineChart(title: title ?? metric, xLabel: "epoch", yLabel: metric, series: lines, markers: markers)
    }

    /// Writes `<metric>.svg` in `directory` for each metric that has values (loss, accuracy and
    /// AUC curves by default), atomically. Returns the paths written.
    @discardableResult
    public static func writeLearningCurves(train: [Int: [String: Double]], validation: [Int: [String: Double]],
                                           metrics: [String] = ["loss", "accuracy", "auc", "macro_auc"],
                                           directory: String) throws -> [String] {
        var written: [String] = []
        for metric in metrics {
            guard let svg = learningCurve(metric: metric, train: train, validation: validation) else { continue }
            let safe = String(metric.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
            let path = "\(directory)/\(safe).svg"
            try write(svg, to: path)
            written.append(path)
        }
        return written
    }

    // MARK: - Confusion matrix

    /// The most classes `confusionMatrix` draws as a matrix. A cell is at least 4 px, so 1,000 classes
    /// made a 4,000 px square of a million cells (150 MB of SVG); 3,000 classes 1.1 GB, and 8 GB of
    /// memory to make it (2026-12-07).
    public static let matrixClassLimit = 100

    /// A heat map of a confusion matrix (rows: true class, columns: predicted class). Cells are
    /// shaded by the fraction of their row (per-class recall) and show the counts when large enough.
    /// Above `matrixClassLimit` classes, a bar chart of its 20 most confused (true, predicted) pairs.
    public static func confusionMatrix(_ matrix: [[Int]], classNames: [String],
                                       title: String = "Confusion matrix") -> String {
        let n = matrix.count
        guard n <= matrixClassLimit else { return mostConfused(matrix, classNames: classNames, title: title) }
        let names = classNames.count == n ? classNames : (0..<n).map(String.init)
        let cell = Swift.min(60, Swift.max(4, 600 / Double(Swift.max(n, 1)))).rounded(.down)
        let showCounts = cell >= 18, showLabels = cell >= 10
        let labelSpace = showLabels ? Double(names.map(\.count).max() ?? 1) * 7 + 16 : 16
        let left = labelSpace + 24, top = 50.0
        let gridSize = cell * Double(n)
        let width = Int(left + gridSize + 20), height = Int(top + gridSize + labelSpace + 30)
        var svg = header(width: width, height: height, title: title)
        svg += text(Double(width) / 2, 24, title, size: 16, anchor: "middle", weight: "bold")
        svg += "<g class=\"cells\" stroke=\"#ffffff\" stroke-width=\"1\">\n"
        for (i, row) in matrix.enumerated() {
            let total = row.reduce(0, +)
            for (j, count) in row.enumerated() {
                let fraction = total > 0 ? Double(count) / Double(total) : 0
                let x = left + Double(j) * cell, y = top + Double(i) * cell
                svg += "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(cell))\" height=\"\(f(cell))\" "
                    + "fill=\"\(blues(fraction))\"><title>true \(escape(names[i])), predicted \(escape(names[j])): "
                    + "\(count)</title></rect>\n"
                if showCounts {
                    svg += text(x + cell / 2, y + cell / 2 + 4, "\(count)", size: cell >= 36 ? 12 : 9, anchor: "middle",
                                fill: fraction > 0.5 ? "#ffffff" : "#000000")
                }
            }
        }
        svg += "</g>\n"
        if showLabels {
            svg += "<g class=\"labels\">\n"
            for (i, name) in names.enumerated() {
                // True classes down the left, predicted classes under the grid (rotated).
                svg += text(left - 6, top + Double(i) * cell + cell / 2 + 4, name, anchor: "end")
                let x = left + Double(i) * cell + cell / 2, y = top + gridSize + 10
                svg += "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"11\" text-anchor=\"end\" "
                    + "transform=\"rotate(-45 \(f(x)) \(f(y)))\">\(escape(name))</text>\n"
            }
            svg += "</g>\n"
        }
        svg += text(left + gridSize / 2, Double(height) - 8, "predicted", size: 13, anchor: "middle")
        let midY = top + gridSize / 2
        svg += "<text x=\"14\" y=\"\(f(midY))\" font-size=\"13\" text-anchor=\"middle\" "
            + "transform=\"rotate(-90 14 \(f(midY)))\">true</text>\n"
        return svg + "</svg>\n"
    }

    // MARK: - Writing

    /// Writes an SVG document atomically (temporary file, fsync, rename), creating the folder.
    public static func write(_ svg: String, to path: String) throws {
        try LogFiles.writeAtomically(Data(svg.utf8), to: path)
    }

    // MARK: - Helpers

    /// About five "nice" ticks (1, 2 or 5 × 10^k apart) covering lo...hi.
    static func ticks(_ lo: Double, _ hi: Double, integral: Bool) -> [Double] {
        // A span beyond Double (-1e308 to 1e308, a damaged log) gets its two ends: the arithmetic below
        // would reach infinity, which no Int holds.
        guard lo.isFinite, hi.isFinite, hi > lo else { return [lo] }
        guard (hi - lo).isFinite, (hi / 2 - lo / 2) * 4 < .greatestFiniteMagnitude / 2 else { return [lo, hi] }
        var step = niceNumber((hi - lo) / 4, round: true)
        if integral { step = Swift.max(1, step.rounded()) }
        let first = (lo / step).rounded(.down) * step, last = (hi / step).rounded(.up) * step
        let span = ((last - first) / step).rounded()
        guard span.isFinite, span < 1e6 else { return [lo, hi] }
        let count = Int(span) + 1
        return (0..<Swift.min(count, 50)).map { first + Double($0) * step }
    }

    static func niceNumber(_ x: Double, round: Bool) -> Double {
        let exponent = Foundation.floor(Foundation.log10(x))
        let fraction = x / Foundation.pow(10, exponent)
        let nice: Double
        if round {
            nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        } else {
            nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        }
        return nice * Foundation.pow(10, exponent)
    }

    /// Decimals needed to tell the ticks apart.
    static func decimals(_ ticks: [Double]) -> Int {
        guard ticks.count > 1 else { return 2 }
        let step = ticks[1] - ticks[0]
        guard step.isFinite, step > 0 else { return 2 }  // ends beyond Double's range apart
        return Swift.max(0, Swift.min(10, Int(-Foundation.floor(Foundation.log10(step) + 1e-9))))
    }

    /// White to dark blue (matplotlib's "Blues" end points).
    static func blues(_ t: Double) -> String {
        let t = Swift.max(0, Swift.min(1, t))
        let from = (247.0, 251.0, 255.0), to = (8.0, 48.0, 107.0)
        let r = Int((from.0 + (to.0 - from.0) * t).rounded())
        let g = Int((from.1 + (to.1 - from.1) * t).rounded())
        let b = Int((from.2 + (to.2 - from.2) * t).rounded())
        return "#" + [r, g, b].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }

    /// How every SVG finetune writes begins, up to its width.
    static let prologue = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\""

    /// Whether `head` (a file's first bytes, as text) begins as an SVG finetune wrote (`header`) with
    /// `title` (nil: any), followed by `following`: how an output flag tells its own earlier file from
    /// a user's that merely mentions the words.
    public static func isOwnSVG(_ head: String, title: String? = nil, following: String = "") -> Bool {
        let lines = head.split(separator: "\n", maxSplits: 4, omittingEmptySubsequences: false)
        guard head.hasPrefix(prologue), lines.count == 5, lines[2].hasPrefix("<title>"), lines[2].hasSuffix("</title>"),
              lines[3] == "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>", lines[4].hasPrefix(following) else { return false }
        return title.map { lines[2] == "<title>\(escape($0))</title>" } ?? true
    }

    /// The 20 largest off-diagonal cells of a confusion matrix as horizontal bars, "true → predicted",
    /// with each count and its share of the true class's images.
    static func mostConfused(_ matrix: [[Int]], classNames: [String], title: String) -> String {
        let shown = EvaluationReport.mostConfused(in: matrix).prefix(20)
        let names = classNames.count == matrix.count ? classNames : (0..<matrix.count).map(String.init)
        let labels = shown.map { "\(names[$0.actual]) → \(names[$0.predicted])" }
        let labelSpace = Double(min(60, labels.map(\.count).max() ?? 10)) * 6.5 + 16
        let barSpace = 320.0, rowHeight = 20.0, top = 66.0
        let width = Int(labelSpace + barSpace + 110), height = Int(top + rowHeight * Double(max(1, shown.count)) + 20)
        var svg = header(width: width, height: height, title: title)
        svg += text(Double(width) / 2, 24, title, size: 16, anchor: "middle", weight: "bold")
        svg += text(Double(width) / 2, 44, "\(matrix.count) classes: the \(shown.count) most confused pairs (true → predicted)",
                    anchor: "middle", fill: "#555555")
        let most = Double(shown.first?.count ?? 1)
        for (k, (pair, label)) in zip(shown, labels).enumerated() {
            let y = top + Double(k) * rowHeight
            let support = max(1, matrix[pair.actual].reduce(0, +))
            let length = max(1, barSpace * Double(pair.count) / most)
            let shortened = label.count > 60 ? String(label.prefix(59)) + "…" : label
            svg += text(labelSpace - 8, y + 14, shortened, anchor: "end")
            svg += "<rect x=\"\(f(labelSpace))\" y=\"\(f(y + 3))\" width=\"\(f(length))\" height=\"\(f(rowHeight - 6))\" "
                + "fill=\"\(blues(0.35 + 0.65 * Double(pair.count) / most))\"/>\n"
            svg += text(labelSpace + length + 6, y + 14,
                        "\(pair.count) (\(String(format: "%.1f", 100 * Double(pair.count) / Double(support)))% of \(names[pair.actual]))",
                        size: 10)
        }
        if shown.isEmpty { svg += text(labelSpace, top + 14, "No image was misclassified.") }
        return svg + "</svg>\n"
    }

    static func header(width: Int, height: Int, title: String) -> String {
        prologue + "\(width)\" height=\"\(height)\" "
            + "viewBox=\"0 0 \(width) \(height)\" font-family=\"sans-serif\">\n"
            + "<title>\(escape(title))</title>\n"
            + "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
    }

    static func text(_ x: Double, _ y: Double, _ content: String, size: Int = 11, anchor: String = "start",
                     weight: String? = nil, fill: String = "#000000") -> String {
        "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" text-anchor=\"\(anchor)\" fill=\"\(fill)\""
            + (weight.map { " font-weight=\"\($0)\"" } ?? "") + ">\(escape(content))</text>\n"
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String? = nil,
                     width: Double? = nil) -> String {
        "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\""
            + (stroke.map { " stroke=\"\($0)\"" } ?? "") + (width.map { " stroke-width=\"\(f($0))\"" } ?? "") + "/>\n"
    }

    static func f(_ x: Double) -> String { String(format: "%.2f", x) }

    /// XML-escapes text and attribute values.
    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default:
                // Control characters other than tab/newline are not allowed in XML 1.0.
                if c.value < 0x20 && c != "\t" && c != "\n" { out += " " } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}
