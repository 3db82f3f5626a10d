import Data
import Foundation

extension RunReport {
    /// The section ids of `html()`, in order.
    public static let sectionIDs = ["run", "curves", "confusion", "per-class", "most-confused", "top-losses",
                                    "grad-cam", "data-check"]

    /// How every report's `html()` begins.
    static let beginning = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>finetune report: "

    /// Whether `head` (a file's first bytes, as text) is the beginning of a report `html()` wrote: how
    /// `report --out` tells its own earlier file from a user's that merely mentions the words.
    public static func isReport(_ head: String) -> Bool { head.hasPrefix(beginning) }

    /// The report as one self-contained HTML page: inline SVG, PNGs as data URIs, no script, font,
    /// style sheet or anything else fetched from elsewhere.
    public func html() -> String {
        var out = Self.beginning + """
            \(h(config.architecture)) — \(h(runDirectory))</title>
            <style>
            body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
            h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
            table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
            th{background:#f3f3f3}td.l,th.l{text-align:left}
            .grid{display:flex;flex-wrap:wrap;gap:10px}
            figure{margin:0;border:1px solid #ddd;padding:4px;font-size:11px;width:170px;text-align:center}
            figure img{max-width:160px;image-rendering:auto}figure.wrong figcaption b{color:#b00}
            .curves svg{width:480px;height:300px}.note{color:#666;font-size:12px}
            </style></head><body>
            <h1>finetune report: \(h(config.architecture)) on \(h(data)) (\(h(split)))</h1>

            """
        out += runSection() + curvesSection() + confusionSection() + perClassSection() + confusedSection()
            + topLossesSection() + gradCAMSection() + dataCheckSection()
        out += "<p class=\"note\">Written by finetune from \(h(runDirectory)).</p>\n</body></html>\n"
        return out
    }

    // MARK: - Sections

    func runSection() -> String {
        let monitor = config.training.monitor ?? config.options.monitor.name(hasValidation: config.data.validationSamples > 0)
        let lowerIsBetter = MonitorMode.auto.resolved(for: monitor) == .min
        let best = history.epochs.compactMap { e in e.metrics[monitor].map { (e.number, $0) } }
            .min { lowerIsBetter ? $0.1 < $1.1 : $0.1 > $1.1 }
        let last = history.epochs.last?.metrics ?? [:]
        var rows: [(String, String)] = [
            ("architecture", config.architecture), ("weights", config.weights ?? "none (random initialisation)"),
            ("recipe", config.training.recipe ?? "custom"), ("classes", "\(config.classNames.count)"),
            ("data", config.data.path),
            ("images", "train \(config.data.trainSamples), validation \(config.data.validationSamples), "
                + "test \(config.data.testSamples)"),
            ("input", "\(config.preprocessing.cropSize)×\(config.preprocessing.cropSize) (resize \(config.preprocessing.resizeSize))"),
            ("epochs", "\(config.epochsCompleted) of \(config.options.epochs), status \(config.status)"),
            ("training time", Self.duration(history.seconds)),
            ("final metrics (epoch \(history.epochs.last?.number ?? 0))",
             last.keys.sorted().map { "\($0) \(Self.value(last[$0]!))" }.joined(separator: ", ")),
        ]
        if let best { rows.append(("best \(monitor)", "\(Self.value(best.1)) (epoch \(best.0))")) }
        if let weights = config.modelWeights {
            // A resumed run that has not finished: the evaluation below is of an earlier epoch's
            // model than the metrics and curves (the notice went to standard error only).
            rows.append(("model.safetensors", "\(weights) weights (epoch \(config.modelEpoch ?? config.epochsCompleted))"
                + (config.olderModelNotice(trainingProcess: nil).map { ". Note: " + $0 + "; the evaluation is of these weights" } ?? "")))
        }
        if let evaluatedCheckpoint {
            rows.append(("evaluated weights", "\(evaluatedCheckpoint): the run has not finished training (status "
                + "\(config.status)), and its model.safetensors is written when it does"))
        }
        rows.append(("evaluated", "\(evaluation.sampleCount) images of \(data) (\(split)): accuracy "
            + Self.percent(evaluation.accuracy) + (evaluation.loss.map { ", loss \(Self.value($0))" } ?? "")
            + (evaluation.macroAUC ?? evaluation.auc).map { ", AUC \(Self.number($0))" }.orEmpty
            + " (\(evaluationPrecision.rawValue))"))
        rows.append(("created", "\(config.createdAt) with finetune \(config.finetuneVersion), LibTorch \(config.libtorchVersion)"))
        var s = section("run", "Run")
        s += "<table>\n" + rows.map { "<tr><th class=\"l\">\(h($0.0))</th><td class=\"l\">\(h($0.1))</td></tr>" }
            .joined(separator: "\n") + "\n</table>\n"
        return s + "</section>\n"
    }

    func curvesSection() -> String {
        var s = section("curves", "Learning curves")
        if !history.phaseStarts.isEmpty {
            s += "<p class=\"note\">The dashed line marks where phase 2 (fine-tuning) starts: epoch "
                + history.phaseStarts.map(String.init).joined(separator: ", ") + ".</p>\n"
        }
        s += "<div class=\"grid curves\">\n"
        let charts = [("loss", "Loss"), ("accuracy", "Accuracy"), ("auc", "AUC"), ("lr", "Learning rate")]
            .compactMap { history.curve($0.0, title: $0.1) }
        s += charts.isEmpty ? "<p>No epoch was logged (events.jsonl).</p>\n" : charts.map(Self.inline).joined()
        return s + "</div>\n</section>\n"
    }

    func confusionSection() -> String {
        section("confusion", "Confusion matrix")
            + "<p class=\"note\">Rows: true class; columns: predicted class. Cells show counts, shaded by the "
            + "fraction of their row (recall).</p>\n"
            + Self.inline(Plots.confusionMatrix(evaluation.confusionMatrix, classNames: evaluation.classNames,
                                               title: "Confusion matrix (\(split))"))
            + "</section>\n"
    }

    func perClassSection() -> String {
        var s = section("per-class", "Per-class metrics")
        s += "<table>\n<tr><th class=\"l\">class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
            + "<th>AUC</th></tr>\n"
        for r in evaluation.perClass {
            s += "<tr><td class=\"l\">\(h(r.name))</td><td>\(Self.number(r.precision))</td><td>\(Self.number(r.recall))</td>"
                + "<td>\(Self.number(r.f1))</td><td>\(r.support)</td><td>\(r.auc.map(Self.number) ?? "–")</td></tr>\n"
        }
        for (name, a) in [("macro average", evaluation.macroAverage), ("weighted average", evaluation.weightedAverage)] {
            s += "<tr><th class=\"l\">\(name)</th><td>\(Self.number(a.precision))</td><td>\(Self.number(a.recall))</td>"
                + "<td>\(Self.number(a.f1))</td><td>\(a.support)</td><td>"
                + (name == "macro average" ? (evaluation.macroAUC ?? evaluation.auc).map(Self.number) ?? "–" : "")
                + "</td></tr>\n"
        }
        // What `evaluate` notes beside its report (AUC left out, ill-defined recall, …).
        return s + "</table>\n" + evaluation.notes.map { "<p class=\"note\">\(h($0))</p>\n" }.joined() + "</section>\n"
    }

    func confusedSection() -> String {
        var s = section("most-confused", "Most confused")
        let pairs = evaluation.mostConfused.prefix(10)
        if pairs.isEmpty { return s + "<p>No image was misclassified.</p>\n</section>\n" }
        s += "<table>\n<tr><th class=\"l\">true</th><th class=\"l\">predicted as</th><th>images</th><th>of the class</th></tr>\n"
        let names = evaluation.classNames
        for p in pairs {
            let support = evaluation.confusionMatrix[p.actual].reduce(0, +)
            s += "<tr><td class=\"l\">\(h(names[p.actual]))</td><td class=\"l\">\(h(names[p.predicted]))</td>"
                + "<td>\(p.count)</td><td>\(Self.percent(Double(p.count) / Double(max(1, support))))</td></tr>\n"
        }
        return s + "</table>\n</section>\n"
    }

    func topLossesSection() -> String {
        var s = section("top-losses", "Top losses")
        s += "<p class=\"note\">The \(topLosses.count) images with the largest loss, largest first "
            + "(predicted / true / probability of the prediction / loss), as fastai's plot_top_losses.</p>\n"
        s += "<div class=\"grid\">\n" + topLosses.map { figure($0, kind: "top-loss") }.joined() + "</div>\n"
        return s + "</section>\n"
    }

    func gradCAMSection() -> String {
        var s = section("grad-cam", "Grad-CAM")
        s += "<p class=\"note\">Heat maps of the evidence for the predicted class at layer <code>\(h(gradCAMLayer))</code>, "
            + "the last convolutional stage of \(h(config.architecture)) (red: strongest), over the model's input crop.</p>\n"
        s += "<h3>Top losses</h3>\n<div class=\"grid\">\n" + gradCAMLosses.map { figure($0, kind: "grad-cam-loss") }.joined()
            + "</div>\n"
        s += "<h3>Confident correct predictions</h3>\n<div class=\"grid\">\n"
            + gradCAMCorrect.map { figure($0, kind: "grad-cam-correct") }.joined() + "</div>\n"
        return s + "</section>\n"
    }

    func dataCheckSection() -> String {
        var s = section("data-check", "Data check")
        guard let c = dataCheck else {
            return s + "<p>Not run\(dataCheckNotRun.map { ": " + h($0) } ?? "").</p>\n</section>\n"
        }
        s += "<p>\(h(c.summaryLine)).</p>\n"
        s += "<table>\n<tr><th class=\"l\">class</th>" + c.splits.map { "<th>\(h($0.name))</th>" }.joined() + "</tr>\n"
        for (i, name) in c.classNames.enumerated() {
            s += "<tr><td class=\"l\">\(h(name))</td>" + c.splits.map { "<td>\($0.classCounts[i])</td>" }.joined() + "</tr>\n"
        }
        s += "</table>\n"
        s += "<p>Modes: " + h(c.modes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            + (c.sizeRange.map { h("; sizes \($0[0])×\($0[1]) to \($0[2])×\($0[3])") } ?? "") + ".</p>\n"
        func list(_ title: String, _ items: [String]) {
            guard !items.isEmpty else { return }
            s += "<h3>\(h(title)) (\(items.count))</h3>\n<ul>\n" + items.prefix(20).map { "<li>\(h($0))</li>\n" }.joined()
                + (items.count > 20 ? "<li>… and \(items.count - 20) more</li>\n" : "") + "</ul>\n"
        }
        list("Unreadable files", c.unreadable.map { "\($0.path): \($0.reason)" })
        list("Damaged files (decoded with part of the picture made up)", c.damaged.map { "\($0.path): \($0.reason)" })
        list("Exact duplicates", c.exactDuplicates.map { $0.map(\.path).joined(separator: " = ") })
        if !c.nearDuplicateMethod.isEmpty { s += "<p>Near-duplicates searched by \(h(c.nearDuplicateMethod)).</p>\n" }
        list("Near-duplicates across splits", c.nearDuplicates.map(\.summary))
        if !c.hints.isEmpty { s += "<ul>\n" + c.hints.map { "<li>hint: \(h($0))</li>\n" }.joined() + "</ul>\n" }
        return s + "</section>\n"
    }

    // MARK: - Pieces

    func section(_ id: String, _ title: String) -> String { "<section id=\"\(id)\">\n<h2>\(h(title))</h2>\n" }

    func figure(_ p: Picture, kind: String) -> String {
        let names = evaluation.classNames
        let sample = p.sample
        let wrong = sample.predicted != sample.label
        return "<figure class=\"\(kind)\(wrong ? " wrong" : "")\" data-index=\"\(sample.index)\" data-path=\"\(h(sample.path ?? ""))\">"
            + "<img src=\"\(p.dataURI)\" alt=\"\(h((sample.path as NSString?)?.lastPathComponent ?? "image \(sample.index)"))\">"
            + "<figcaption><b>\(h(names[sample.predicted]))</b> / \(h(names[sample.label]))<br>"
            + "\(String(format: "%.2f", sample.confidence)) / \(String(format: "%.2f", sample.loss))</figcaption></figure>\n"
    }

    /// An SVG document from `Plots` as inline SVG: the XML declaration and the namespace attribute
    /// (which HTML does not need) removed.
    static func inline(_ svg: String) -> String {
        svg.replacingOccurrences(of: "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", with: "")
            .replacingOccurrences(of: " xmlns=\"http://www.w3.org/2000/svg\"", with: "")
    }

    func h(_ text: String) -> String { Plots.escape(text) }

    /// A score in [0, 1] (precision, recall, AUC) to 4 decimals.
    static func number(_ x: Double) -> String { x.isFinite ? String(format: "%.4f", x) : "\(x)" }
    /// A value of any size (a loss, a learning rate) to 4 significant digits: `%.4f` wrote an lr of
    /// 1e-5 as 0.0000.
    static func value(_ x: Double) -> String { x.isFinite ? String(format: "%.4g", x) : "\(x)" }
    static func percent(_ x: Double) -> String { String(format: "%.2f%%", x * 100) }
    static func duration(_ seconds: Double) -> String {
        seconds < 60 ? String(format: "%.1f s", seconds) : String(format: "%d min %02d s", Int(seconds) / 60, Int(seconds) % 60)
    }
}

private extension Optional where Wrapped == String {
    var orEmpty: String { self ?? "" }
}
