import Data
import Foundation
import NN
import TestSupport
import Torch
import Training
import XCTest

/// The LR range test: fastai's schedule and `valley` suggestion (Tests/Fixtures/lr_find_fastai.json,
/// tools/fixtures/make_lr_find.py), and a real run that leaves the model and generator untouched.
final class LRFinderTests: XCTestCase {
    func testScheduleAndSuggestionEqualFastai() throws {
        let url = URL(fileURLWithPath: Fixtures.path("lr_find_fastai.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let steps = try XCTUnwrap(json["num_it"] as? Int)
        let cases = try XCTUnwrap(json["cases"] as? [[String: Any]])
        XCTAssertEqual(cases.count, 4)
        let finder = LRFinder()
        for c in cases {
            let name = c["name"] as? String ?? "?"
            let lrs = try XCTUnwrap(c["lrs"] as? [Double])
            for (i, lr) in lrs.enumerated() { XCTAssertEqual(finder.learningRate(step: i), lr, accuracy: lr * 1e-12, name) }
            // fastai holds the losses as float32 tensors: compare on the same values.
            let losses = try XCTUnwrap(c["losses"] as? [Any]).map { ($0 as? Double).map { Double(Float($0)) } ?? .nan }
            let expected = try XCTUnwrap(c["suggestion"] as? Double)
            let index = try XCTUnwrap(LRFinder.suggestion(learningRates: lrs, losses: losses, steps: steps), name)
            // fastai returns the learning rate as float32.
            XCTAssertEqual(Double(Float(lrs[index])), expected, accuracy: expected * 1e-6, name)
        }
        XCTAssertNil(LRFinder.suggestion(learningRates: [1, 2, 3], losses: [3, 2, 1], steps: 100), "too few points")
    }

    /// `lr-find --json` has every documented key: no suggestion is `null`, not a missing key. A range
    /// whose end / start overflows is refused (its learning rates were infinite).
    func testNoSuggestionEncodesAsNullAndAnOverflowingRangeIsRefused() throws {
        let result = LRFinder.Result(learningRates: [1e-7, 1e-3], losses: [1.2, 1.1], suggestion: nil,
                                     suggestionIndex: nil, stoppedEarly: false)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: encoder.encode(result)) as? [String: Any])
        XCTAssertEqual(Set(object.keys), ["learning_rates", "losses", "suggestion", "suggestion_index", "stopped_early"])
        XCTAssertTrue(object["suggestion"] is NSNull)
        XCTAssertEqual(try JSONDecoder().decode(LRFinder.Result.self, from: JSONEncoder().encode(result)), result)

        var finder = LRFinder()
        finder.startLearningRate = 1e-300
        finder.endLearningRate = 1e300
        XCTAssertThrowsError(try finder.run(Trainer(model: TRTinyNet()), on: TRData.loader(TRData.dataset())))
    }

    func testRangeTestLeavesModelAndGeneratorUntouched() throws {
        let data = try TRData.dataset()
        Runtime.manualSeed(4)
        let trainer = try Trainer(model: TRTinyNet(), configuration: TrainingConfiguration(optimizer: .sgd(learningRate: 0.1)))
        let before = try TRData.snapshot(trainer.model.stateDict())
        let rng = try TRData.bytes(Runtime.cpuRNGState())
        var finder = LRFinder()
        finder.steps = 30
        finder.endLearningRate = 100
        let result = try finder.run(trainer, on: TRData.loader(data))
        XCTAssertEqual(try TRData.snapshot(trainer.model.stateDict()), before, "the weights are restored")
        XCTAssertEqual(try TRData.bytes(Runtime.cpuRNGState()), rng, "the generator is restored")
        XCTAssertEqual(trainer.state.globalStep, 0)
        XCTAssertGreaterThan(result.learningRates.count, 5)
        XCTAssertLessThanOrEqual(result.learningRates.count, 30)
        XCTAssertEqual(result.learningRates, result.learningRates.sorted())
        XCTAssertEqual(result.learningRates.first, 1e-7)
        XCTAssertEqual(result.losses.count, result.learningRates.count)
        // A learning rate of 100 diverges: the test stops early once the loss exceeds 4× its minimum.
        XCTAssertTrue(result.stoppedEarly)
        let svg = LRFinder.plot(result)
        XCTAssertTrue(svg.hasPrefix("<svg") || svg.contains("<svg"))
        XCTAssertEqual(LRFinder.csv(result).split(separator: "\n").count, result.losses.count + 1)
        // lr-find replaces only these files of its own: a user's lr_find.csv or .svg was replaced.
        XCTAssertTrue(LRFinder.isOwnOutput(svg, svg: true))
        XCTAssertTrue(LRFinder.isOwnOutput(LRFinder.csv(result), svg: false))
        XCTAssertFalse(LRFinder.isOwnOutput("mine\n", svg: false))
        // Its first 4 KiB, cut inside a row (a test of 100 steps or more was refused).
        var long = "step,lr,loss\n"
        for i in 0..<200 { long += "\(i),\(1e-7 * Double(i + 1)),\(2.0 / Double(i + 1))\n" }
        XCTAssertTrue(LRFinder.isOwnOutput(String(long.prefix(4096)), svg: false))
        XCTAssertFalse(LRFinder.isOwnOutput("step,lr,loss\n1,my note,2\n", svg: false))
        XCTAssertFalse(LRFinder.isOwnOutput("<svg>mine</svg>\n", svg: true))
        XCTAssertFalse(LRFinder.isOwnOutput(Plots.architecture(title: "x", inputShape: [1], outputShape: [1], boxes: [],
                                                               totalParameters: 0, trainableParameters: 0), svg: true))
        XCTAssertFalse(Plots.isArchitecturePlot(svg))
        XCTAssertFalse(Plots.isArchitecturePlot("# Notes\nregenerate the finetune architecture plot\n"))
    }
}
