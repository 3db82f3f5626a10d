import Data
import Foundation
import TestSupport
import Torch
@testable import Training
import XCTest

/// `--class-weights`: "auto" equals scikit-learn's `compute_class_weight("balanced")`
/// (Tests/Fixtures/class_weights_balanced.json, tools/fixtures/make_class_weights.py); files give
/// weights in class order or by class name, and bad ones are refused naming the setting.
final class ClassBalanceTests: XCTestCase {
    func dataset(_ labels: [Int], classes: Int) -> LabeledDataset {
        LabeledDataset(samples: labels.enumerated().map { LabeledSample(source: .file("/img/\($0.offset).png"), label: $0.element) },
                       classNames: (0..<classes).map { "c\($0)" })
    }

    func testAutoClassWeightsEqualScikitLearnBalanced() throws {
        let url = URL(fileURLWithPath: Fixtures.path("class_weights_balanced.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let labels = try XCTUnwrap(c["labels"] as? [Int])
            let expected = try XCTUnwrap(c["weights"] as? [Double])
            let weights = try XCTUnwrap(try TrainingRun.resolveClassWeights("auto", train: dataset(labels, classes: expected.count)))
            XCTAssertEqual(weights.count, expected.count)
            for (w, e) in zip(weights, expected) { XCTAssertEqual(w, e, accuracy: 1e-12 * Swift.max(1, e)) }
        }
    }

    func testClassWeightFilesAndErrors() throws {
        let data = dataset([0, 1, 1, 2], classes: 3)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("cw-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        func file(_ text: String) throws -> String {
            let path = folder + "/\(UUID().uuidString).json"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }
        XCTAssertNil(try TrainingRun.resolveClassWeights(nil, train: data))
        XCTAssertNil(try TrainingRun.resolveClassWeights("none", train: data))
        XCTAssertEqual(try TrainingRun.resolveClassWeights(file("[1, 2.5, 0]"), train: data), [1, 2.5, 0])
        XCTAssertEqual(try TrainingRun.resolveClassWeights(file(#"{"c2": 3, "c0": 1, "c1": 0.5}"#), train: data), [1, 0.5, 3])
        for bad in [try file("[1, 2]"), try file(#"{"c0": 1, "c1": 1}"#), try file(#"{"c0": 1, "c1": 1, "c2": 1, "dog": 2}"#),
                    try file("[1, -1, 2]"), try file("not json"), folder + "/missing.json", try file(#"[1, "x", 2]"#),
                    try file(#"{"c0": 1, "c1": "x", "c2": 1}"#), try file("[0, 0, 0]"), try file("[1, 1e39, 1]")] {
            XCTAssertThrowsError(try TrainingRun.resolveClassWeights(bad, train: data)) { error in
                guard case RunError.invalidSetting(let setting, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(setting, "classWeights")
            }
        }
        let messages = try [#"[1, "x", 2]"#, #"{"c0": 1, "c1": "x", "c2": 1}"#, "[0, 0, 0]", "[1, 1e39, 1]", "[1, 1e400, 1]"].map { text in
            let path = try file(text)
            do { _ = try TrainingRun.resolveClassWeights(path, train: data); return "" } catch { return "\(error)" }
        }
        for (message, expected) in zip(messages, ["entry 2 (x) is not a number", "class 'c1' (x) is not a number",
                                                  "every weight is 0", "float32's range",
                                                  // It said only "is not JSON" (probe: stop 39's list).
                                                  "is not JSON (Number 1e400 is not representable in Swift.)"]) {
            XCTAssertTrue(message.contains(expected), message)
        }
    }
}

/// The evaluation loss (`val_loss`, the test loss, `finetune evaluate`) is the plain cross-entropy of
/// the model's predictions. With class weights it was the weighted mean of each batch, so it changed
/// with the batch size (1.42 at batch 8, 1.11 over the whole set, 1.49 at batch 1 in the probe) and
/// differed from `finetune evaluate`'s on the same weights.
final class EvaluationLossTests: XCTestCase {
    func testTheEvaluationLossIgnoresClassWeightsAndSmoothingAndTheBatchSize() throws {
        Runtime.manualSeed(3)
        let model = try TRTinyNet(dropout: 0)
        var objective = TrainingConfiguration(optimizer: .sgd(learningRate: 0.1), labelSmoothing: 0.3, classWeights: [1, 2, 4])
        objective.seed = 1
        let weighted = try Trainer(model: model, configuration: objective)
        let plain = try Trainer(model: model, configuration: TrainingConfiguration())
        let data = try TRData.dataset(count: 21)
        var losses: [Double] = []
        for batchSize in [1, 4, 21] {
            let loader = try TRData.loader(data, batchSize: batchSize, shuffle: false)
            losses.append(try XCTUnwrap(weighted.evaluate(loader).loss))
        }
        let reference = try XCTUnwrap(plain.evaluate(TRData.loader(data, batchSize: 5, shuffle: false)).loss)
        for loss in losses { XCTAssertEqual(loss, reference, accuracy: 1e-5) }
    }
}

extension TrainingRunTests {
    /// `--class-weights auto` with `--sampler balanced` corrects an imbalance twice: the sampler draws
    /// every class equally often, and the weights then make the smallest class count (largest /
    /// smallest count) times the largest. That trained without a word, under a data-check line that
    /// still suggested both (stop 53). Either one alone is quiet, and the line says what corrects.
    func testAnImbalanceCorrectedTwiceIsWarned() throws {
        let data = try makeData()
        for i in 2..<6 { try FileManager.default.removeItem(atPath: "\(data)/train/red/\(i).png") }
        let runs = try TRData.temporaryDirectory(self)
        func notices(weights: String?, sampler: SamplerKind?) throws -> (dataCheck: String, warnings: [String]) {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString, epochs: 1)
            spec.options.classWeights = weights
            spec.options.sampler = sampler
            var info: [String] = []
            var warnings: [String] = []
            try TrainingRun.create(spec, notify: {
                switch $0 {
                case .info(let text): info.append(text)
                case .warning(let text): warnings.append(text)
                }
            }).release()
            return (info.first { $0.hasPrefix("Data check:") } ?? "none", warnings.filter { $0.contains("--sampler") })
        }
        let both = try notices(weights: "auto", sampler: .balanced)
        XCTAssertEqual(both.warnings.count, 1, "\(both.warnings)")
        // 6, 6 and 2 images, a quarter of each held out: the weights tilt by the training counts' ratio.
        let counts = try ImageFolderDataset(root: data + "/train").stratifiedSplit(validationFraction: 0.25, seed: 3).train.classCounts
        let tilt = Double(counts.max()!) / Double(counts.min()!)
        XCTAssertGreaterThanOrEqual(tilt, 2)
        XCTAssertEqual(both.warnings.first, "--class-weights auto with --sampler balanced corrects the class imbalance twice: "
            + "the sampler already draws each class equally often, so the weights then make 'red' count "
            + String(format: "%.1f", tilt) + "× as much as 'blue'; use one of the two")
        XCTAssertTrue(both.dataCheck.contains(" — imbalanced, corrected by --class-weights auto and --sampler balanced;"),
                      both.dataCheck)

        let sampler = try notices(weights: nil, sampler: .balanced)
        XCTAssertEqual(sampler.warnings, [])
        XCTAssertTrue(sampler.dataCheck.contains(" — imbalanced, corrected by --sampler balanced;"), sampler.dataCheck)
        let weights = try notices(weights: "auto", sampler: nil)
        XCTAssertEqual(weights.warnings, [])
        XCTAssertTrue(weights.dataCheck.contains(" — imbalanced, corrected by --class-weights auto;"), weights.dataCheck)
        let neither = try notices(weights: "none", sampler: .shuffle)
        XCTAssertEqual(neither.warnings, [])
        XCTAssertTrue(neither.dataCheck.contains(" — imbalanced: consider --class-weights auto or --sampler balanced;"),
                      neither.dataCheck)
    }
}
