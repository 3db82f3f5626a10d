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
