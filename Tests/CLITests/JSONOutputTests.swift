@testable import finetune
import Foundation
import NN
import Training
import XCTest

/// The `--json` encoding rules that the command-line runs of `JSONKeysCLITests` cannot reach: a
/// non-finite number is `null` (JSON has no NaN), a missing optional keeps its key as `null` where the
/// output says so, and field names become snake_case keys.
final class JSONOutputTests: XCTestCase {
    func encoded<T: Encodable>(_ value: T) throws -> [String: Any] {
        let data = try jsonOutputEncoder().encode(value)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testNonFiniteNumbersAndMissingValuesAreNull() throws {
        let loader = try encoded(BenchCommand.LoaderBench.Output(images: 0, seconds: 0, imagesPerSecond: .nan,
                                                                 workers: 1, batchSize: 2, size: 32, augment: "eval",
                                                                 dctScaling: false))
        XCTAssertEqual(loader["seconds"] as? Double, 0)
        XCTAssertTrue(loader["images_per_second"] is NSNull, "\(loader)")
        XCTAssertEqual(loader["batch_size"] as? Int, 2)
        XCTAssertEqual(loader["dct_scaling"] as? Bool, false)

        let ranked = try encoded(RankedClass(index: 3, className: "cat", probability: .infinity))
        XCTAssertEqual(ranked["class"] as? String, "cat")
        XCTAssertTrue(ranked["probability"] is NSNull, "\(ranked)")

        let row = #"{"name": "fc", "type": "Linear", "parameters": 10, "trainableParameters": 0}"#
        let layer = try encoded(SummaryCommand.Output.Layer(
            try JSONDecoder().decode(ModelSummary.Row.self, from: Foundation.Data(row.utf8))))
        XCTAssertTrue(layer["output_shape"] is NSNull, "\(layer)")
        XCTAssertEqual(layer["trainable_parameters"] as? Int, 0)
    }

    /// `evaluate --json` is the report's own keys plus the run's: a diverged model's loss is `null`,
    /// a report without losses has no `loss` key, and both are otherwise the same object.
    func testEvaluateOutputKeepsTheReportsKeysAndNullsANonFiniteLoss() throws {
        let reportJSON = """
            {"sampleCount": 2, "classNames": ["a", "b"], "loss": 0.5, "accuracy": 1, "topK": null,
             "topKAccuracy": null, "auc": 1, "macroAUC": null,
             "perClass": [{"name": "a", "precision": 1, "recall": 1, "f1": 1, "support": 1, "auc": 1},
                          {"name": "b", "precision": 1, "recall": 1, "f1": 1, "support": 1}],
             "macroAverage": {"precision": 1, "recall": 1, "f1": 1, "support": 2},
             "weightedAverage": {"precision": 1, "recall": 1, "f1": 1, "support": 2},
             "confusionMatrix": [[1, 0], [0, 1]], "zeroDivision": false, "notes": []}
            """
        var report = try JSONDecoder().decode(EvaluationReport.self, from: Foundation.Data(reportJSON.utf8))
        func output() throws -> [String: Any] {
            try encoded(EvaluateCommand.Output(subject: .init(runDir: "runs/x", data: "data", split: "test",
                                                                     architecture: "resnet18",
                                                                     weightsUsed: "model.safetensors", tta: "off"),
                                               report: report))
        }
        let plain = try output()
        XCTAssertEqual(plain["loss"] as? Double, 0.5)
        XCTAssertEqual(plain["run_dir"] as? String, "runs/x")
        XCTAssertEqual(plain["sample_count"] as? Int, 2)
        XCTAssertNil(plain["macro_auc"])
        XCTAssertNil(plain["top_k"])
        let perClass = try XCTUnwrap(plain["per_class"] as? [[String: Any]])
        XCTAssertEqual(perClass[0]["auc"] as? Double, 1)
        XCTAssertNil(perClass[1]["auc"])

        report.loss = .nan
        let diverged = try output()
        XCTAssertTrue(diverged["loss"] is NSNull, "\(diverged)")
        XCTAssertEqual(Set(diverged.keys), Set(plain.keys))

        report.loss = nil
        let withoutLoss = try output()
        XCTAssertNil(withoutLoss["loss"])
        XCTAssertEqual(Set(withoutLoss.keys), Set(plain.keys).subtracting(["loss"]))
    }
}
