import Foundation
import Torch

/// Errors from metric accumulation.
public struct MetricsError: Error, CustomStringConvertible {
    /// What was wrong, e.g. "label 7 of sample 3 is outside 0..<5".
    public let message: String
    /// An error saying `message`.
    public init(_ message: String) { self.message = message }
    /// The message.
    public var description: String { message }
}

/// Accumulates classification results over batches and computes an `EvaluationReport`, following
/// scikit-learn's definitions.
///
/// Inputs per batch: logits or probabilities `[N, C]` (`C` = `classCount`), or for binary
/// problems (`classCount == 2`) also a single logit/probability per sample (`[N]` or `[N, 1]`,
/// sigmoid, the positive class being 1), plus integer labels `[N]` (any dtype or device).
/// Predictions are the arg-max (first maximum), or for a single score `p > 0.5` (logit > 0).
///
/// Memory: the confusion matrix, counters, and — for AUC — one float32 score per sample
/// (binary) or `C` per sample (multi-class, only while `C <= aucClassLimit`) plus the labels:
/// about 4·(C+1) bytes per sample, 40 MB for 100k samples of 100 classes.
public struct ClassificationMetrics {
    /// Number of classes (at least 2): the width of the logits and of the confusion matrix.
    public let classCount: Int
    /// Names of the classes for the report ("0", "1", … when none were given).
    public let classNames: [String]
    /// k of the top-k accuracy, or nil.
    public let topK: Int?
    /// Per-sample scores are kept for AUC only up to this many classes.
    public let aucClassLimit: Int

    public private(set) var sampleCount = 0
    /// Row-major `classCount × classCount`: rows are true classes, columns predictions.
    private var confusion: [Int]
    private var topKCorrect = 0
    private var lossSum = 0.0
    private var lossSamples = 0
    /// One score per sample: the logit or probability as given (ranks are what AUC needs, and
    /// logits do not saturate in float32); one per class: the log-probabilities, `classCount` per
    /// sample (ranked as the probabilities are: float32 probabilities of a confident model round to 1,
    /// and their ties made AUC 0.915 where `--per-sample`'s own probabilities give 0.920, probe AJ).
    private var scores: [Float] = []
    private var labels: [Int32] = []
    private var sawNaN = false
    /// Samples whose scores hold a NaN: their predicted class means nothing (a diverged model).
    private var nanSamples = 0
    /// The form of the first batch (one score per sample or one per class; logits or probabilities):
    /// later batches must match, so stored scores stay comparable.
    private var inputForm: (single: Bool, probabilities: Bool)?

    /// - Parameters:
    ///   - topK: the k of top-k accuracy; nil means 5 when there are more than 5 classes (else none);
    ///     0 turns it off.
    ///   - aucClassLimit: AUC is skipped (with a note) for more classes than this, bounding memory.
    public init(classCount: Int, classNames: [String]? = nil, topK: Int? = nil, aucClassLimit: Int = 100) throws {
        guard classCount >= 2 else { throw MetricsError("a classifier needs at least 2 classes, got \(classCount)") }
        if let names = classNames, names.count != classCount {
            throw MetricsError("\(names.count) class names for \(classCount) classes")
        }
        if let k = topK, k < 0 { throw MetricsError("top-k with k = \(k)") }
        self.classCount = classCount
        self.classNames = classNames ?? (0..<classCount).map(String.init)
        self.topK = topK.map { $0 == 0 ? nil : $0 } ?? (classCount > 5 ? 5 : nil)
        self.aucClassLimit = aucClassLimit
        confusion = Array(repeating: 0, count: classCount * classCount)
    }

    var keepsScores: Bool { classCount == 2 || classCount <= aucClassLimit }

    /// Adds a batch of logits (softmax, or sigmoid for one column). `loss` is the batch's mean loss;
    /// the report's loss is the mean over samples.
    public mutating func update(logits: Tensor, labels: Tensor, loss: Double? = nil) throws {
        try update(scores: logits, labels: labels, loss: loss, areProbabilities: false)
    }

    /// Adds a batch of probabilities (rows summing to 1, or P(class 1) for one column).
    public mutating func update(probabilities: Tensor, labels: Tensor, loss: Double? = nil) throws {
        try update(scores: probabilities, labels: labels, loss: loss, areProbabilities: true)
    }

    private mutating func update(scores input: Tensor, labels labelTensor: Tensor, loss: Double?,
                                 areProbabilities: Bool) throws {
        let shape = input.shape
        let n: Int, single: Bool
        switch shape.count {
        case 1: n = shape[0]; single = true
        case 2 where shape[1] == 1: n = shape[0]; single = true
        case 2 where shape[1] == classCount: n = shape[0]; single = false
        default:
            throw MetricsError("scores of shape \(shape) for \(classCount) classes (expected [N, \(classCount)]"
                + (classCount == 2 ? ", [N] or [N, 1])" : ")"))
        }
        if single && classCount != 2 {
            throw MetricsError("one score per sample is only for binary problems, this one has \(classCount) classes")
        }
        if let form = inputForm, form != (single, areProbabilities) {
            throw MetricsError("this batch has \(single ? "one score per sample" : "one score per class") as "
                + "\(areProbabilities ? "probabilities" : "logits"), earlier batches had "
                + "\(form.single ? "one score per sample" : "one score per class") as "
                + "\(form.probabilities ? "probabilities" : "logits")")
        }
        guard labelTensor.count == n else {
            throw MetricsError("\(labelTensor.count) labels for \(n) samples")
        }
        // Float labels were truncated (1.7 counted as class 1).
        guard !labelTensor.dtype.isFloatingPoint else {
            throw MetricsError("labels must be class indices (an integer dtype), got \(labelTensor.dtype)")
        }
        let values = try input.to(dtype: .float64, device: .cpu).contiguous().toArray(Double.self)
        let trueClasses = try labelTensor.to(dtype: .int64, device: .cpu).contiguous().toArray(Int64.self)
        for (i, label) in trueClasses.enumerated() where label < 0 || label >= Int64(classCount) {
            throw MetricsError("label \(label) of sample \(i) is outside 0..<\(classCount)")
        }
        inputForm = (single, areProbabilities)  // after the checks: a refused batch fixed no form
        if let loss {
            lossSum += loss * Double(n)
            lossSamples += n
        }
        let c = classCount
        for i in 0..<n {
            let label = Int(trueClasses[i])
            if single {
                let v = values[i]
                if v.isNaN { sawNaN = true; nanSamples += 1 }
                let predicted = (areProbabilities ? v > 0.5 : v > 0) ? 1 : 0
                confusion[label * c + predicted] += 1
                scores.append(Float(v))
                labels.append(Int32(label))
                continue
            }
            let row = values[(i * c)..<(i * c + c)]
            var best = row.startIndex, maximum = -Double.infinity
            for j in row.indices where row[j] > maximum || (row[j].isNaN && !maximum.isNaN) {
                maximum = row[j]
                best = j
                if maximum.isNaN { sawNaN = true; nanSamples += 1; break }
            }
            confusion[label * c + (best - row.startIndex)] += 1
            if let k = topK {
                // The true class's rank, ties going to the lower class index as for the top-1 class
                // (a tie counted as a hit made a constant model's top-5 of 6 classes 100%). NaN ranks
                // above every number, as in the top-1 class above and `torch.topk` (a NaN true score
                // was a miss, so top-1 could exceed top-2: probe AD).
                let t = row.startIndex + label, target = row[t]
                var rank = 0
                for j in row.indices where target.isNaN ? (row[j].isNaN && j < t)
                    : (row[j].isNaN || row[j] > target || (row[j] == target && j < t)) { rank += 1 }
                if rank < k { topKCorrect += 1 }
            }
            if keepsScores {
                labels.append(Int32(label))
                if areProbabilities {
                    scores.append(contentsOf: row.map { Float(Foundation.log($0)) })
                } else {
                    // Logits of +∞ have no softmax (∞ − ∞): their scores are NaN, and AUC is left out
                    // as for NaN logits (it ranked the NaN scores into a number).
                    if maximum == .infinity { sawNaN = true }
                    let logTotal = Foundation.log(row.reduce(0) { $0 + Foundation.exp($1 - maximum) })
                    scores.append(contentsOf: row.map { Float($0 - maximum - logTotal) })
                }
            }
        }
        sampleCount += n
    }

    /// Merges the metrics of every rank of a data-parallel evaluation, each of which saw its own
    /// shard of the data, so the report is that of all samples once: `sum` adds a list of numbers
    /// element-wise across ranks; `gather` concatenates every rank's list in rank order (AUC scores).
    public mutating func combine(sum: ([Double]) throws -> [Double], gather: ([Float]) throws -> [Float]) throws {
        let counts = try sum([Double(sampleCount), Double(topKCorrect), lossSum, Double(lossSamples), sawNaN ? 1 : 0,
                              Double(nanSamples)] + confusion.map(Double.init))
        sampleCount = Int(counts[0])
        topKCorrect = Int(counts[1])
        lossSum = counts[2]
        lossSamples = Int(counts[3])
        sawNaN = counts[4] > 0
        nanSamples = Int(counts[5])
        confusion = counts[6...].map { Int($0) }
        scores = try gather(scores)
        labels = try gather(labels.map(Float.init)).map { Int32($0) }
    }

    /// Clears the counts and scores (for the next evaluation).
    public mutating func reset() {
        sampleCount = 0
        confusion = Array(repeating: 0, count: classCount * classCount)
        topKCorrect = 0
        lossSum = 0
        lossSamples = 0
        scores = []
        labels = []
        sawNaN = false
        nanSamples = 0
        inputForm = nil
    }

    /// The most class names a note lists; the rest are counted ("… and 2,990 more"). With thousands of
    /// classes a note listed every one of them, on one line of tens of kilobytes.
    public static let namesPerNote = 20

    /// `names` joined with commas, at most `namesPerNote` of them.
    static func list(_ names: [String]) -> String {
        guard names.count > namesPerNote else { return names.joined(separator: ", ") }
        return names.prefix(namesPerNote).joined(separator: ", ") + " … and \(names.count - namesPerNote) more"
    }

    /// The confusion matrix so far (rows true, columns predicted).
    public var confusionMatrix: [[Int]] {
        (0..<classCount).map { Array(confusion[($0 * classCount)..<($0 * classCount + classCount)]) }
    }

    // MARK: - Report

    /// Computes every metric from what has been accumulated.
    public func report() -> EvaluationReport {
        let c = classCount
        var notes: [String] = []
        let matrix = confusionMatrix
        let support = matrix.map { $0.reduce(0, +) }
        let predicted = (0..<c).map { j in matrix.reduce(0) { $0 + $1[j] } }
        let correct = (0..<c).reduce(0) { $0 + matrix[$1][$1] }
        if sampleCount == 0 { notes.append("no samples were evaluated") }
        // As `predict` warns: these metrics counted NaN rows as predictions of their first NaN class.
        if nanSamples > 0 {
            notes.append("the model's outputs for \(nanSamples) of \(sampleCount) samples are NaN: their predicted class "
                + "(the first NaN one) means nothing, and the metrics count it; the weights may have diverged")
        }
        if let k = topK, k >= c, sampleCount > 0 {  // sklearn's top_k_accuracy_score warns of the same
            notes.append("top-\(k) accuracy is 1 whatever the scores: k is at least the number of classes (\(c))")
        }

        // Per-class precision, recall, F1 (sklearn: zero_division="warn" → 0 with a warning).
        var perClass: [ClassReport] = []
        var precisionUndefined: [String] = [], recallUndefined: [String] = [], fUndefined: [String] = []
        // sklearn's default labels: classes present in the labels or the predictions.
        let included = (0..<c).filter { support[$0] > 0 || predicted[$0] > 0 }
        for k in 0..<c {
            let tp = matrix[k][k], fp = predicted[k] - tp, fn = support[k] - tp
            let precision = tp + fp > 0 ? Double(tp) / Double(tp + fp) : 0
            let recall = tp + fn > 0 ? Double(tp) / Double(tp + fn) : 0
            let f1 = 2 * tp + fp + fn > 0 ? Double(2 * tp) / Double(2 * tp + fp + fn) : 0
            if included.contains(k) {
                if tp + fp == 0 { precisionUndefined.append(classNames[k]) }
                if tp + fn == 0 { recallUndefined.append(classNames[k]) }
                if 2 * tp + fp + fn == 0 { fUndefined.append(classNames[k]) }
            }
            perClass.append(ClassReport(name: classNames[k], precision: precision, recall: recall, f1: f1,
                                        support: support[k], auc: nil))
        }
        if !precisionUndefined.isEmpty {
            notes.append("precision is ill-defined and set to 0 for classes with no predicted samples: "
                + Self.list(precisionUndefined))
        }
        if !recallUndefined.isEmpty {
            notes.append("recall is ill-defined and set to 0 for classes with no true samples: "
                + Self.list(recallUndefined))
        }
        let excluded = (0..<c).filter { !included.contains($0) }
        if !excluded.isEmpty && sampleCount > 0 {
            notes.append("classes absent from both labels and predictions are left out of the averages: "
                + Self.list(excluded.map { classNames[$0] }))
        }

        func average(weighted: Bool) -> AverageReport {
            let total = included.reduce(0) { $0 + support[$1] }
            func mean(_ value: (ClassReport) -> Double) -> Double {
                guard !included.isEmpty else { return 0 }
                if weighted {
                    guard total > 0 else { return 0 }
                    return included.reduce(0.0) { $0 + value(perClass[$1]) * Double(support[$1]) } / Double(total)
                }
                return included.reduce(0.0) { $0 + value(perClass[$1]) } / Double(included.count)
            }
            return AverageReport(precision: mean(\.precision), recall: mean(\.recall), f1: mean(\.f1), support: total)
        }

        // AUC.
        var auc: Double?, macroAUC: Double?
        if sampleCount > 0 {
            if sawNaN {
                notes.append("AUC is not computed: some scores are NaN")
            } else if !keepsScores {
                notes.append("AUC is not computed for more than \(aucClassLimit) classes (aucClassLimit)")
            } else if c == 2 {
                let binaryScores: [Float]
                if scores.count == labels.count {
                    binaryScores = scores
                } else {
                    binaryScores = (0..<labels.count).map { scores[$0 * 2 + 1] }
                }
                auc = Self.rocAUC(scores: binaryScores, positives: labels.map { $0 == 1 })
                if auc == nil { notes.append("AUC is undefined: the labels contain only one class") }
                perClass[0].auc = auc
                perClass[1].auc = auc
            } else {
                var skipped: [String] = [], values: [Double] = []
                for k in 0..<c {
                    let column = (0..<labels.count).map { scores[$0 * c + k] }
                    if let a = Self.rocAUC(scores: column, positives: labels.map { $0 == Int32(k) }) {
                        perClass[k].auc = a
                        values.append(a)
                    } else {
                        skipped.append(classNames[k])
                    }
                }
                if !values.isEmpty { macroAUC = values.reduce(0, +) / Double(values.count) }
                if !skipped.isEmpty {
                    notes.append("one-vs-rest AUC skipped for classes "
                        + (values.isEmpty ? "(all) " : "")
                        + "absent from the labels (or the only class present): " + skipped.joined(separator: ", "))
                }
            }
        }

        return EvaluationReport(
            sampleCount: sampleCount, classNames: classNames,
            loss: lossSamples > 0 ? lossSum / Double(lossSamples) : nil,
            accuracy: sampleCount > 0 ? Double(correct) / Double(sampleCount) : 0,
            topK: topK, topKAccuracy: topK != nil && sampleCount > 0 ? Double(topKCorrect) / Double(sampleCount) : nil,
            auc: auc, macroAUC: macroAUC, perClass: perClass,
            macroAverage: average(weighted: false), weightedAverage: average(weighted: true),
            confusionMatrix: matrix,
            zeroDivision: !(precisionUndefined.isEmpty && recallUndefined.isEmpty && fUndefined.isEmpty),
            notes: notes)
    }

    /// ROC AUC from ranks (Mann–Whitney U with average ranks for ties), which equals the area under
    /// the trapezoidal ROC curve that sklearn's `roc_auc_score` computes. nil when either class is
    /// missing, when the lists differ in length (there must be one label per score), or when a score
    /// is NaN (sklearn refuses those; ranking them gave a number, 0.667 for one NaN among three).
    public static func rocAUC(scores: [Float], positives: [Bool]) -> Double? {
        guard scores.count == positives.count else { return nil }  // it trapped
        guard !scores.contains(where: \.isNaN) else { return nil }
        let nPositive = positives.reduce(0) { $0 + ($1 ? 1 : 0) }
        let nNegative = positives.count - nPositive
        guard nPositive > 0, nNegative > 0 else { return nil }
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        var rankSum = 0.0, start = 0
        while start < order.count {
            var end = start + 1
            while end < order.count && scores[order[end]] == scores[order[start]] { end += 1 }
            // Ranks start+1 ... end (1-based) share their average.
            let averageRank = Double(start + 1 + end) / 2
            for i in start..<end where positives[order[i]] { rankSum += averageRank }
            start = end
        }
        let u = rankSum - Double(nPositive) * Double(nPositive + 1) / 2
        return u / (Double(nPositive) * Double(nNegative))
    }
}

/// One class's row of the report.
public struct ClassReport: Codable, Equatable {
    /// The class's name.
    public var name: String
    /// Of the samples predicted as this class, the fraction that are (0 when none was predicted).
    public var precision: Double
    /// Of the samples of this class, the fraction predicted as it (0 when it has none).
    public var recall: Double
    /// The harmonic mean of precision and recall.
    public var f1: Double
    /// The number of samples of this class.
    public var support: Int
    /// One-vs-rest ROC AUC (binary: the AUC), nil when not computed or undefined.
    public var auc: Double?
}

/// Macro or support-weighted averages over the classes present in labels or predictions.
public struct AverageReport: Codable, Equatable {
    /// Mean precision over the classes (macro), or weighted by support.
    public var precision: Double
    /// Mean recall over the classes (macro), or weighted by support.
    public var recall: Double
    /// Mean F1 over the classes (macro), or weighted by support.
    public var f1: Double
    /// Samples counted (the sum of the classes' supports).
    public var support: Int
}

/// Every metric of an evaluation, as computed by `ClassificationMetrics.report()`.
public struct EvaluationReport: Codable, Equatable {
    /// Samples evaluated.
    public var sampleCount: Int
    /// Names of the classes, in label order (the rows of `perClass` and `confusionMatrix`).
    public var classNames: [String]
    /// Mean loss per sample, when losses were given.
    public var loss: Double?
    /// Fraction of samples whose prediction is the label, in [0, 1].
    public var accuracy: Double
    /// The k of `topKAccuracy` (5 with more than 5 classes by default); nil when not computed.
    public var topK: Int?
    /// Fraction of samples whose label is among the k highest scores.
    public var topKAccuracy: Double?
    /// Binary problems: ROC AUC of the positive class (sklearn `roc_auc_score`).
    public var auc: Double?
    /// Multi-class: macro one-vs-rest ROC AUC over the classes present in the labels
    /// (sklearn `roc_auc_score(multi_class="ovr", average="macro")`).
    public var macroAUC: Double?
    /// One row per class, in label order (scikit-learn's `classification_report`).
    public var perClass: [ClassReport]
    /// Unweighted means over the classes (`average="macro"`).
    public var macroAverage: AverageReport
    /// Means weighted by each class's support (`average="weighted"`).
    public var weightedAverage: AverageReport
    /// Rows are true classes, columns predicted classes.
    public var confusionMatrix: [[Int]]
    /// Some precision, recall or F1 was 0/0 and reported as 0 (sklearn's UndefinedMetricWarning).
    public var zeroDivision: Bool
    /// Warnings and skipped computations, in words.
    public var notes: [String]

    /// The most classes whose confusion matrix `rendered` prints whole (numpy elides arrays of more than
    /// 1,000 entries, about 31 × 31); above it prints the most confused pairs. `confusionMatrix` is
    /// always whole.
    public static let renderedMatrixClassLimit = 30

    /// The off-diagonal cells of `confusionMatrix` that are not 0, as (true, predicted) class indices,
    /// most frequent first (ties: by class order): fastai's `most_confused`.
    public var mostConfused: [(actual: Int, predicted: Int, count: Int)] { Self.mostConfused(in: confusionMatrix) }

    /// `mostConfused` of any confusion matrix (rows true, columns predicted).
    public static func mostConfused(in matrix: [[Int]]) -> [(actual: Int, predicted: Int, count: Int)] {
        var pairs: [(actual: Int, predicted: Int, count: Int)] = []
        for (i, row) in matrix.enumerated() {
            for (j, n) in row.enumerated() where i != j && n > 0 { pairs.append((i, j, n)) }
        }
        return pairs.sorted { $0.count != $1.count ? $0.count > $1.count : ($0.actual, $0.predicted) < ($1.actual, $1.predicted) }
    }

    /// The headline numbers under stable names, for loggers: `loss`, `accuracy`, `top5_accuracy`,
    /// `auc` (binary) or `macro_auc`, `macro_precision`, `macro_recall`, `macro_f1`, `weighted_f1`.
    public var scalars: [String: Double] {
        var s: [String: Double] = [
            "accuracy": accuracy,
            "macro_precision": macroAverage.precision,
            "macro_recall": macroAverage.recall,
            "macro_f1": macroAverage.f1,
            "weighted_f1": weightedAverage.f1,
        ]
        if let loss { s["loss"] = loss }
        if let k = topK, let a = topKAccuracy { s["top\(k)_accuracy"] = a }
        if let auc { s["auc"] = auc }
        if let macroAUC { s["macro_auc"] = macroAUC }
        return s
    }

    /// A plain-text report: headline metrics, a scikit-learn style classification report, the
    /// confusion matrix and the notes.
    public func rendered(digits: Int = 4) -> String {
        let digits = Swift.min(Swift.max(digits, 0), 17)  // -2 printed "%.0-2f" in every cell
        func f(_ x: Double) -> String { String(format: "%.\(digits)f", x) }
        func pad(_ s: String, _ width: Int, right: Bool = true) -> String {
            let gap = String(repeating: " ", count: Swift.max(0, width - s.count))
            return right ? gap + s : s + gap
        }
        var out = "samples: \(sampleCount)\n"
        if let loss { out += "loss: \(f(loss))\n" }
        out += "accuracy: \(f(accuracy))\n"
        if let k = topK, let a = topKAccuracy { out += "top-\(k) accuracy: \(f(a))\n" }
        if let auc { out += "AUC: \(f(auc))\n" }
        if let macroAUC { out += "macro AUC (one-vs-rest): \(f(macroAUC))\n" }
        out += "\n"

        // sklearn.metrics.classification_report layout.
        let width = Swift.max(classNames.map(\.count).max() ?? 0, "weighted avg".count, digits)
        let column = Swift.max(9, digits + 3)
        out += pad("", width) + " " + ["precision", "recall", "f1-score", "support"].map { " " + pad($0, column) }.joined()
            + "\n\n"
        for row in perClass {
            out += pad(row.name, width) + " " + [row.precision, row.recall, row.f1].map { " " + pad(f($0), column) }.joined()
                + " " + pad("\(row.support)", column) + "\n"
        }
        out += "\n"
        out += pad("accuracy", width) + " " + " " + pad("", column) + " " + pad("", column) + " "
            + pad(f(accuracy), column) + " " + pad("\(sampleCount)", column) + "\n"
        for (name, avg) in [("macro avg", macroAverage), ("weighted avg", weightedAverage)] {
            out += pad(name, width) + " " + [avg.precision, avg.recall, avg.f1].map { " " + pad(f($0), column) }.joined()
                + " " + pad("\(avg.support)", column) + "\n"
        }

        // Confusion matrix: whole up to `renderedMatrixClassLimit` classes, else its largest off-diagonal cells.
        if classNames.count > Self.renderedMatrixClassLimit {
            let pairs = mostConfused.prefix(20)
            out += "\nmost confused pairs (\(classNames.count) classes are too many to print the confusion matrix)\n"
            let trueWidth = Swift.max(pairs.map { classNames[$0.actual].count }.max() ?? 0, "true".count)
            let predictedWidth = Swift.max(pairs.map { classNames[$0.predicted].count }.max() ?? 0, "predicted as".count)
            out += pad("true", trueWidth, right: false) + "  " + pad("predicted as", predictedWidth, right: false) + "  images\n"
            for p in pairs {
                out += pad(classNames[p.actual], trueWidth, right: false) + "  "
                    + pad(classNames[p.predicted], predictedWidth, right: false) + "  " + pad("\(p.count)", "images".count) + "\n"
            }
            if pairs.isEmpty { out += "(none: no sample was misclassified)\n" }
        } else {
            out += "\nconfusion matrix (rows: true, columns: predicted)\n"
            let cellWidth = Swift.max(classNames.map(\.count).max() ?? 1,
                                      confusionMatrix.joined().map { "\($0)".count }.max() ?? 1)
            let labelWidth = Swift.max(classNames.map(\.count).max() ?? 1, 4)
            out += pad("", labelWidth) + classNames.map { " " + pad($0, cellWidth) }.joined() + "\n"
            for (name, row) in zip(classNames, confusionMatrix) {
                out += pad(name, labelWidth) + row.map { " " + pad("\($0)", cellWidth) }.joined() + "\n"
            }
        }
        if !notes.isEmpty {
            out += "\nnotes:\n" + notes.map { "- \($0)\n" }.joined()
        }
        return out
    }
}
