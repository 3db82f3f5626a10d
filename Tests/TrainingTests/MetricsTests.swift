import Foundation
import Torch
import Training
import XCTest

/// Classification metrics on small hand-made cases; expected values are worked out by hand in the
/// comments and agree with scikit-learn (`roc_auc_score`, `precision_recall_fscore_support`,
/// `classification_report`, `confusion_matrix`, `top_k_accuracy_score`).
final class MetricsTests: XCTestCase {
    let eps = 1e-12

    func floats(_ rows: [[Float]]) throws -> Tensor {
        try Tensor(rows.flatMap { $0 }, shape: [rows.count, rows[0].count])
    }

    func labels(_ values: [Int64]) throws -> Tensor { try Tensor(values) }

    // MARK: - AUC

    func testRankAUCWithTies() {
        // sklearn docs: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [0.1, 0.4, 0.35, 0.8],
                                                    positives: [false, false, true, true])!, 0.75, accuracy: eps)
        // Ties count one half: positives {0.5, 0.5} vs negatives {0.2, 0.5}: each positive beats 0.2
        // and ties 0.5 → (1 + 0.5) * 2 / 4 = 0.75.
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [0.2, 0.5, 0.5, 0.5],
                                                    positives: [false, false, true, true])!, 0.75, accuracy: eps)
        // All tied: 0.5. Perfect and reversed: 1 and 0.
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [1, 1, 1, 1], positives: [true, false, true, false])!, 0.5)
        XCTAssertNil(ClassificationMetrics.rocAUC(scores: [0.1, 0.2], positives: [true]), "one label per score (it trapped)")
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [1, 2, 3], positives: [false, true, true])!, 1)
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [3, 2, 1], positives: [false, true, true])!, 0)
        // One class only: undefined.
        XCTAssertNil(ClassificationMetrics.rocAUC(scores: [1, 2], positives: [true, true]))
    }

    // MARK: - Binary

    func testBinaryProbabilitiesWithTiesAndZeroDivision() throws {
        // y = [0, 0, 1, 1], p(1) = [0.2, 0.5, 0.5, 0.5]; predictions p > 0.5 → all 0.
        var metrics = try ClassificationMetrics(classCount: 2, classNames: ["neg", "pos"])
        try metrics.update(probabilities: try Tensor([Float(0.2), 0.5, 0.5, 0.5]), labels: try labels([0, 0, 1, 1]),
                           loss: 0.5)
        let r = metrics.report()
        XCTAssertEqual(r.sampleCount, 4)
        XCTAssertEqual(r.auc!, 0.75, accuracy: eps)
        XCTAssertNil(r.macroAUC)
        XCTAssertEqual(r.confusionMatrix, [[2, 0], [2, 0]])
        XCTAssertEqual(r.accuracy, 0.5, accuracy: eps)
        XCTAssertEqual(r.loss!, 0.5, accuracy: eps)
        XCTAssertNil(r.topK)
        // neg: precision 2/4, recall 2/2, F1 = 2·2/(2·2 + 2 + 0) = 2/3.
        // pos: no predictions → precision 0/0 → 0 (zero division); recall 0/2 = 0; F1 = 0/(0 + 0 + 2) = 0.
        XCTAssertEqual(r.perClass[0].precision, 0.5, accuracy: eps)
        XCTAssertEqual(r.perClass[0].recall, 1, accuracy: eps)
        XCTAssertEqual(r.perClass[0].f1, 2.0 / 3, accuracy: eps)
        XCTAssertEqual(r.perClass[1].precision, 0)
        XCTAssertEqual(r.perClass[1].recall, 0)
        XCTAssertEqual(r.perClass[1].f1, 0)
        XCTAssertEqual(r.perClass.map(\.support), [2, 2])
        XCTAssertTrue(r.zeroDivision)
        XCTAssertTrue(r.notes.contains { $0.contains("precision is ill-defined") && $0.contains("pos") }, "\(r.notes)")
        // Macro: P (0.5 + 0)/2, R (1 + 0)/2, F1 (2/3 + 0)/2; weighted equal here (equal supports).
        XCTAssertEqual(r.macroAverage.precision, 0.25, accuracy: eps)
        XCTAssertEqual(r.macroAverage.recall, 0.5, accuracy: eps)
        XCTAssertEqual(r.macroAverage.f1, 1.0 / 3, accuracy: eps)
        XCTAssertEqual(r.weightedAverage.f1, 1.0 / 3, accuracy: eps)
        XCTAssertEqual(r.weightedAverage.support, 4)
    }

    func testBinarySingleLogitMatchesTwoColumnLogits() throws {
        // Two logits [0, d] give p(1) = sigmoid(d): d = [1, -1, 2, 0], y = [1, 0, 0, 1].
        // Positives score {1, 0}, negatives {-1, 2}: 1 beats -1; 0 beats -1 → AUC 2/4 = 0.5.
        // Predictions: two columns → argmax (first on ties) [1, 0, 1, 0]; one logit → d > 0: the same.
        var two = try ClassificationMetrics(classCount: 2)
        try two.update(logits: try floats([[0, 1], [0, -1], [0, 2], [0, 0]]), labels: try labels([1, 0, 0, 1]))
        var one = try ClassificationMetrics(classCount: 2)
        try one.update(logits: try Tensor([Float(1), -1, 2, 0], shape: [4, 1]), labels: try labels([1, 0, 0, 1]))
        for r in [two.report(), one.report()] {
            XCTAssertEqual(r.auc!, 0.5, accuracy: eps)
            XCTAssertEqual(r.confusionMatrix, [[1, 1], [1, 1]])
            XCTAssertEqual(r.accuracy, 0.5, accuracy: eps)
            XCTAssertEqual(r.perClass[0].auc!, 0.5, accuracy: eps)
        }
        // Mixing forms is refused (stored scores would not be comparable).
        XCTAssertThrowsError(try one.update(probabilities: try Tensor([Float(0.3)]), labels: try labels([0])))
        XCTAssertThrowsError(try two.update(logits: try Tensor([Float(0.3)]), labels: try labels([0])))
    }

    // MARK: - Multi-class

    /// y and probabilities for three classes:
    ///
    ///     sample  y   p0   p1   p2   argmax
    ///     s0      0  0.7  0.2  0.1   0
    ///     s1      1  0.3  0.4  0.3   1
    ///     s2      2  0.2  0.3  0.5   2
    ///     s3      2  0.1  0.6  0.3   1
    ///     s4      1  0.5  0.3  0.2   0
    ///     s5      0  0.6  0.3  0.1   0
    let probabilities: [[Float]] = [[0.7, 0.2, 0.1], [0.3, 0.4, 0.3], [0.2, 0.3, 0.5],
                                    [0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.6, 0.3, 0.1]]
    let y: [Int64] = [0, 1, 2, 2, 1, 0]

    func testMultiClassReport() throws {
        var metrics = try ClassificationMetrics(classCount: 3, classNames: ["cat", "dog", "owl"])
        // Two batches: the accumulator must not care how the data is split.
        try metrics.update(probabilities: try floats(Array(probabilities[0..<4])), labels: try labels(Array(y[0..<4])),
                           loss: 1.0)
        try metrics.update(probabilities: try floats(Array(probabilities[4...])), labels: try labels(Array(y[4...])),
                           loss: 0.4)
        let r = metrics.report()
        // Mean loss per sample: (4·1.0 + 2·0.4) / 6 = 0.8.
        XCTAssertEqual(r.loss!, 0.8, accuracy: eps)
        // Rows true, columns predicted.
        XCTAssertEqual(r.confusionMatrix, [[2, 0, 0], [1, 1, 0], [0, 1, 1]])
        XCTAssertEqual(r.accuracy, 4.0 / 6, accuracy: eps)
        // cat: tp 2, predicted 3, support 2 → P 2/3, R 1, F1 4/5.
        // dog: tp 1, predicted 2, support 2 → P 1/2, R 1/2, F1 2/4.
        // owl: tp 1, predicted 1, support 2 → P 1, R 1/2, F1 2/3.
        let expected: [(Double, Double, Double)] = [(2.0 / 3, 1, 0.8), (0.5, 0.5, 0.5), (1, 0.5, 2.0 / 3)]
        for (row, e) in zip(r.perClass, expected) {
            XCTAssertEqual(row.precision, e.0, accuracy: eps, row.name)
            XCTAssertEqual(row.recall, e.1, accuracy: eps, row.name)
            XCTAssertEqual(row.f1, e.2, accuracy: eps, row.name)
            XCTAssertEqual(row.support, 2)
        }
        XCTAssertEqual(r.macroAverage.precision, (2.0 / 3 + 0.5 + 1) / 3, accuracy: eps)
        XCTAssertEqual(r.macroAverage.recall, 2.0 / 3, accuracy: eps)
        XCTAssertEqual(r.macroAverage.f1, (0.8 + 0.5 + 2.0 / 3) / 3, accuracy: eps)
        XCTAssertEqual(r.weightedAverage.f1, (0.8 + 0.5 + 2.0 / 3) / 3, accuracy: eps)  // equal supports
        XCTAssertFalse(r.zeroDivision)
        // One-vs-rest AUC:
        // cat: positives {0.7, 0.6} above all negatives {0.3, 0.2, 0.1, 0.5} → 1.
        // dog: positives {0.4, 0.3} vs negatives {0.2, 0.3, 0.6, 0.3}: 0.4 beats three (3);
        //      0.3 beats 0.2 and ties two 0.3 (1 + 0.5 + 0.5 = 2) → 5/8.
        // owl: positives {0.5, 0.3} vs negatives {0.1, 0.3, 0.2, 0.1}: 0.5 beats all (4); 0.3 beats
        //      three and ties one (3.5) → 7.5/8.
        XCTAssertEqual(r.perClass[0].auc!, 1, accuracy: eps)
        XCTAssertEqual(r.perClass[1].auc!, 0.625, accuracy: eps)
        XCTAssertEqual(r.perClass[2].auc!, 0.9375, accuracy: eps)
        XCTAssertEqual(r.macroAUC!, (1 + 0.625 + 0.9375) / 3, accuracy: eps)
        XCTAssertNil(r.auc)
        XCTAssertEqual(r.scalars["macro_auc"]!, (1 + 0.625 + 0.9375) / 3, accuracy: eps)
        XCTAssertEqual(r.scalars["accuracy"]!, 4.0 / 6, accuracy: eps)

        // Log-probabilities as logits: softmax gives the probabilities back up to float32 rounding
        // (which may break the exact ties above, so only the tie-free class is compared).
        var fromLogits = try ClassificationMetrics(classCount: 3, classNames: ["cat", "dog", "owl"])
        try fromLogits.update(logits: try floats(probabilities).log(), labels: try labels(y))
        let l = fromLogits.report()
        XCTAssertEqual(l.confusionMatrix, r.confusionMatrix)
        XCTAssertEqual(l.perClass[0].auc!, 1, accuracy: eps)
        XCTAssertNil(l.loss)
    }

    func testAbsentClassIsSkippedForAUCAndAverages() throws {
        // The same data as a 4-class problem where class 3 never occurs and is never predicted.
        var metrics = try ClassificationMetrics(classCount: 4, topK: 0)
        try metrics.update(probabilities: try floats(probabilities.map { $0 + [0] }), labels: try labels(y))
        let r = metrics.report()
        XCTAssertNil(r.topK)
        XCTAssertEqual(r.macroAUC!, (1 + 0.625 + 0.9375) / 3, accuracy: eps)
        XCTAssertNil(r.perClass[3].auc)
        XCTAssertEqual(r.perClass[3].support, 0)
        XCTAssertTrue(r.notes.contains { $0.contains("AUC skipped") && $0.hasSuffix(": 3") }, "\(r.notes)")
        XCTAssertTrue(r.notes.contains { $0.contains("left out of the averages") }, "\(r.notes)")
        // Averages as for three classes (sklearn's default labels: those in y_true ∪ y_pred).
        XCTAssertEqual(r.macroAverage.recall, 2.0 / 3, accuracy: eps)
        XCTAssertEqual(r.macroAverage.f1, (0.8 + 0.5 + 2.0 / 3) / 3, accuracy: eps)
        XCTAssertFalse(r.zeroDivision)
        XCTAssertEqual(r.confusionMatrix.count, 4)
    }

    /// A confident model's probabilities round to 1 in float32: AUC ranked those ties and disagreed
    /// with the probabilities `evaluate --per-sample` prints (probe AJ: macro AUC 0.915 against 0.920).
    /// Here class 0's probabilities are 1 − 2e-13, 1 − 1.4e-12 and 1 − 2.8e-11, in that order: exactly
    /// ranked, its two samples come before every other (AUC 1); tied, the confident wrong one ties
    /// with them (5/6).
    func testAUCRanksProbabilitiesThatRoundToOneInFloat32() throws {
        let rows: [[Float]] = [[30, 0, 0], [28, 0, 0], [25, 0, 0], [0, 5, 0], [0, 0, 5]]
        for asProbabilities in [false, true] {
            var metrics = try ClassificationMetrics(classCount: 3)
            if asProbabilities {
                try metrics.update(probabilities: try Functional.softmax(try floats(rows).to(dtype: .float64, device: .cpu), dim: 1),
                                   labels: try labels([0, 0, 1, 1, 2]))
            } else {
                try metrics.update(logits: try floats(rows), labels: try labels([0, 0, 1, 1, 2]))
            }
            let r = metrics.report()
            XCTAssertEqual(r.perClass[0].auc ?? .nan, 1, accuracy: 1e-12, "probabilities: \(asProbabilities)")
        }
    }

    /// Logits of +∞ (a model whose weights overflowed) have no softmax (∞ − ∞): AUC ranked their
    /// NaN scores into a number (a macro AUC of 0.5); it is left out with the NaN note now. Such a
    /// sample's probabilities and loss are `null` in JSON, where encoding it failed the whole output.
    func testInfiniteLogitsLeaveAUCOutAndEncodeAsNull() throws {
        var metrics = try ClassificationMetrics(classCount: 3)
        try metrics.update(logits: try floats([[.infinity, 0, -.infinity], [0, 1, 2], [-.infinity, .infinity, 0], [3, 0, 0]]),
                           labels: try labels([0, 2, 1, 0]))
        let r = metrics.report()
        XCTAssertEqual(r.accuracy, 1)
        XCTAssertNil(r.macroAUC)
        XCTAssertTrue(r.perClass.allSatisfy { $0.auc == nil }, "\(r.perClass)")
        XCTAssertTrue(r.notes.contains("AUC is not computed: some scores are NaN"), "\(r.notes)")

        let json = #"{"index":0,"label":0,"loss":null,"predicted":0,"probabilities":[null,0.25,0.75]}"#
        let sample = try JSONDecoder().decode(SamplePrediction.self, from: Data(json.utf8))
        XCTAssertTrue(sample.loss.isNaN && sample.probabilities[0].isNaN)
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        XCTAssertEqual(String(decoding: try encoder.encode(sample), as: UTF8.self), json)
    }

    func testPredictedClassWithoutSamplesHasIllDefinedRecall() throws {
        // y = [0, 0, 1], predictions [0, 2, 1]: owl is predicted once but never true.
        // owl: P 0/1 = 0 (defined), R 0/0 → 0 (warning), F1 0/(0 + 1 + 0) = 0; it counts in the
        // macro average (sklearn: labels = y_true ∪ y_pred): R = (1/2 + 1 + 0) / 3 = 1/2.
        var metrics = try ClassificationMetrics(classCount: 3, classNames: ["cat", "dog", "owl"])
        try metrics.update(logits: try floats([[5, 0, 0], [0, 0, 5], [0, 5, 0]]), labels: try labels([0, 0, 1]))
        let r = metrics.report()
        XCTAssertEqual(r.confusionMatrix, [[1, 0, 1], [0, 1, 0], [0, 0, 0]])
        XCTAssertEqual(r.perClass[2].recall, 0)
        XCTAssertEqual(r.perClass[2].precision, 0)
        XCTAssertTrue(r.zeroDivision)
        XCTAssertTrue(r.notes.contains { $0.contains("recall is ill-defined") && $0.contains("owl") }, "\(r.notes)")
        XCTAssertEqual(r.macroAverage.recall, 0.5, accuracy: eps)
        // P: cat 1/1, dog 1/1, owl 0 → 2/3; weighted by support (2, 1, 0): (2·1 + 1·1)/3 = 1.
        XCTAssertEqual(r.macroAverage.precision, 2.0 / 3, accuracy: eps)
        XCTAssertEqual(r.weightedAverage.precision, 1, accuracy: eps)
        // AUC: owl has no positives → skipped; cat: positives {p(s0), p(s1)} vs s2; dog: s2 vs two.
        XCTAssertNil(r.perClass[2].auc)
        XCTAssertTrue(r.notes.contains { $0.contains("AUC skipped") && $0.contains("owl") })
    }

    func testTopK() throws {
        // 7 classes → top-5 by default. A sample is a hit when its true class ranks among the first 5,
        // ties going to the lower class index (as the top-1 class does: a stable sort):
        //   logits 0…6, label 0: 6 higher → miss; label 2: 4 higher → hit; label 1: 5 higher → miss;
        //   all zeros, label 3: classes 0, 1, 2 first → hit; all zeros, label 6: six first → miss (a tie
        //   counted as a hit made a constant model's top-5 accuracy 100%).
        var metrics = try ClassificationMetrics(classCount: 7)
        XCTAssertEqual(metrics.topK, 5)
        let ramp: [Float] = [0, 1, 2, 3, 4, 5, 6], zeros = [Float](repeating: 0, count: 7)
        try metrics.update(logits: try floats([ramp, ramp, ramp, zeros, zeros]), labels: try labels([0, 2, 1, 3, 6]))
        let r = metrics.report()
        XCTAssertEqual(r.topKAccuracy!, 0.4, accuracy: eps)
        XCTAssertEqual(r.scalars["top5_accuracy"]!, 0.4, accuracy: eps)
        // Top-1: argmax 6, 6, 6, 0 and 0 (first maximum) → no hit.
        XCTAssertEqual(r.accuracy, 0)
        XCTAssertEqual(r.confusionMatrix[3][0], 1)
        // k = 2 explicitly: ramp label 5 (1 higher) hit, label 4 (2 higher) miss.
        var two = try ClassificationMetrics(classCount: 7, topK: 2)
        try two.update(logits: try floats([ramp, ramp]), labels: try labels([5, 4]))
        XCTAssertEqual(two.report().topKAccuracy!, 0.5, accuracy: eps)
        // Few classes: no top-k by default.
        XCTAssertNil(try ClassificationMetrics(classCount: 5).topK)
        // k at least the classes: every sample is a hit, which the report says (as sklearn warns); it
        // gave 1.0 without a word.
        var all = try ClassificationMetrics(classCount: 3, topK: 3)
        try all.update(logits: try floats([[0, 1, 2]]), labels: try labels([0]))
        XCTAssertEqual(all.report().topKAccuracy, 1)
        XCTAssertTrue(all.report().notes.contains("top-3 accuracy is 1 whatever the scores: k is at least the number "
            + "of classes (3)"), "\(all.report().notes)")
        XCTAssertFalse(two.report().notes.contains { $0.hasPrefix("top-") })
        XCTAssertFalse(try ClassificationMetrics(classCount: 3, topK: 3).report().notes.contains { $0.hasPrefix("top-") },
                       "no sample: no top-k accuracy to speak of")
        // NaN ranks first, in top-k as in the top-1 class (probe AD: a NaN true score was a top-2 miss while
        // the top-1 class, the first NaN, was a hit: accuracy 1.0, top-2 0.5).
        var nan = try ClassificationMetrics(classCount: 3, topK: 2)
        try nan.update(logits: try floats([[.nan, 1, 2], [1, .nan, .nan], [.nan, .nan, 5], [0, 1, 2]]),
                       labels: try labels([0, 2, 1, 0]))
        let nanReport = nan.report()
        XCTAssertEqual(nanReport.accuracy, 0.25, accuracy: eps)  // only the first: argmax is its NaN
        // Ranks of the true class: 0 (the first NaN); 1 (NaN at 1 first); 1 (NaN at 0 first); 2 → 3 of 4.
        XCTAssertEqual(nanReport.topKAccuracy!, 0.75, accuracy: eps)
        // Said in the notes, as `predict` warns (probe AF: evaluate and report gave accuracy, top-5 and a
        // confusion matrix of a model whose outputs were all NaN, noting only that AUC was left out).
        XCTAssertTrue(nanReport.notes.contains { $0.hasPrefix("the model's outputs for 3 of 4 samples are NaN") },
                      "\(nanReport.notes)")
        XCTAssertFalse(two.report().notes.contains { $0.contains("are NaN") })
        var binary = try ClassificationMetrics(classCount: 2)
        try binary.update(logits: try Tensor([Float.nan, 1]), labels: try labels([0, 1]))
        XCTAssertTrue(binary.report().notes.contains { $0.hasPrefix("the model's outputs for 1 of 2 samples are NaN") },
                      "\(binary.report().notes)")
    }

    func testValidationAndReset() throws {
        var metrics = try ClassificationMetrics(classCount: 3)
        XCTAssertThrowsError(try metrics.update(logits: try floats([[1, 2]]), labels: try labels([0])))
        XCTAssertThrowsError(try metrics.update(logits: try floats([[1, 2, 3]]), labels: try labels([3])))
        XCTAssertThrowsError(try metrics.update(logits: try floats([[1, 2, 3]]), labels: try labels([0, 1])))
        XCTAssertThrowsError(try metrics.update(logits: try Tensor([Float(1)]), labels: try labels([0])))
        XCTAssertThrowsError(try ClassificationMetrics(classCount: 1))
        XCTAssertThrowsError(try ClassificationMetrics(classCount: 2, classNames: ["a"]))
        try metrics.update(logits: try floats([[1, 2, 3]]), labels: try labels([2]))
        XCTAssertEqual(metrics.sampleCount, 1)
        metrics.reset()
        XCTAssertEqual(metrics.sampleCount, 0)
        let empty = metrics.report()
        XCTAssertEqual(empty.accuracy, 0)
        XCTAssertTrue(empty.notes.contains("no samples were evaluated"))
        // AUC is skipped above the class limit, without keeping scores.
        var many = try ClassificationMetrics(classCount: 3, aucClassLimit: 2)
        try many.update(probabilities: try floats(probabilities), labels: try labels(y))
        XCTAssertNil(many.report().macroAUC)
        XCTAssertTrue(many.report().notes.contains { $0.contains("aucClassLimit") })
    }

    /// With more classes than `renderedMatrixClassLimit` the text report lists the most confused pairs
    /// instead of the matrix, and a note names at most `namesPerNote` classes: with 3,000 classes
    /// `evaluate` printed 54 MB (a matrix line of 18 kB per class, a note of 24 kB).
    func testManyClassesPrintTheMostConfusedPairsAndShortNotes() throws {
        let n = 40
        var metrics = try ClassificationMetrics(classCount: n, classNames: (0..<n).map { "class\($0)" })
        // Every sample of class i is predicted as class (i + 1) % n, and class 3's twice as often.
        var labels: [Int64] = [], logits: [Float] = []
        for i in 0..<n {
            for _ in 0..<(i == 3 ? 2 : 1) {
                labels.append(Int64(i))
                logits += (0..<n).map { $0 == (i + 1) % n ? 5 : 0 }
            }
        }
        try metrics.update(logits: try Tensor(logits, shape: [labels.count, n]), labels: try Tensor(labels))
        let report = metrics.report()
        XCTAssertEqual(report.mostConfused.first.map { [$0.actual, $0.predicted, $0.count] }, [3, 4, 2])
        XCTAssertEqual(report.mostConfused.count, n)
        let text = report.rendered()
        XCTAssertFalse(text.contains("confusion matrix (rows"), text)
        XCTAssertTrue(text.contains("most confused pairs (40 classes are too many to print the confusion matrix)\n"), text)
        XCTAssertTrue(text.contains("\nclass3   class4             2\n"), text)
        XCTAssertEqual(text.components(separatedBy: "\n").filter { $0.hasPrefix("class") && $0.hasSuffix("      1") }.count, 19)
        // Everything predicted as class 0: 39 classes were never predicted.
        var constant = try ClassificationMetrics(classCount: n, classNames: (0..<n).map { "class\($0)" })
        try constant.update(logits: try Tensor((0..<n).flatMap { _ in (0..<n).map { Float($0 == 0 ? 5 : 0) } }, shape: [n, n]),
                            labels: try Tensor((0..<n).map { Int64($0) }))
        let note = try XCTUnwrap(constant.report().notes.first { $0.hasPrefix("precision is ill-defined") })
        XCTAssertTrue(note.hasSuffix(": class1, class2, class3, class4, class5, class6, class7, class8, class9, class10, class11, "
                                     + "class12, class13, class14, class15, class16, class17, class18, class19, class20 … and 19 more"), note)
    }

    func testReportCodableAndRendering() throws {
        var metrics = try ClassificationMetrics(classCount: 3, classNames: ["cat", "dog", "owl"])
        try metrics.update(probabilities: try floats(probabilities), labels: try labels(y), loss: 0.25)
        let report = metrics.report()
        let data = try JSONEncoder().encode(report)
        XCTAssertEqual(try JSONDecoder().decode(EvaluationReport.self, from: data), report)

        let text = report.rendered(digits: 2)
        // sklearn's classification_report for this data (digits=2):
        //                   precision    recall  f1-score   support
        //
        //              cat       0.67      1.00      0.80         2
        //              dog       0.50      0.50      0.50         2
        //              owl       1.00      0.50      0.67         2
        //
        //         accuracy                           0.67         6
        //        macro avg       0.72      0.67      0.66         6
        //     weighted avg       0.72      0.67      0.66         6
        let expectedLines = [
            "         cat       0.67      1.00      0.80         2",
            "         dog       0.50      0.50      0.50         2",
            "         owl       1.00      0.50      0.67         2",
            "    accuracy                           0.67         6",
            "   macro avg       0.72      0.67      0.66         6",
            "weighted avg       0.72      0.67      0.66         6",
        ]
        for line in expectedLines {
            XCTAssertTrue(text.contains(line + "\n"), "missing '\(line)' in\n\(text)")
        }
        XCTAssertTrue(text.contains("precision    recall  f1-score   support"), text)
        XCTAssertTrue(text.contains("confusion matrix (rows: true, columns: predicted)"))
        XCTAssertTrue(text.contains(" cat   2   0   0\n"), text)
        XCTAssertTrue(text.contains("macro AUC (one-vs-rest): 0.85"), text)
        XCTAssertTrue(text.contains("loss: 0.25"), text)
    }
}
