import Data
import Foundation
import TestSupport
import Training
import Vision
import XCTest

// The article "Fine-tune a model in 20 lines of Swift" (Sources/Training/Training.docc). Its code
// is this function, verbatim: `testTheArticleShowsThisCode` fails when the two drift apart, and
// `testTheArticlesCodeFineTunesARealModel` runs it.

// ARTICLE BEGIN
func fineTune(photos: String, runs: String) throws -> Double? {
    var spec = TrainingRun.Specification(data: photos, architecture: "mobilenet_v2", weights: "imagenet",
                                         runDirectory: runs + "/photos")
    spec.recipe.recipe = .twoPhase        // the new head first, then the whole network
    spec.recipe.phaseOneEpochs = 2
    spec.options.epochs = 4
    spec.options.batchSize = 16
    spec.options.valSplit = 0.25          // hold out a quarter of each class for validation
    spec.overwrite = true                 // replace an earlier run of this example

    let run = try TrainingRun.create(spec)
    let summary = try run.run()           // checkpoints, history.csv, TensorBoard logs, plots
    print("best \(summary.monitor ?? "metric"): \(summary.bestValue ?? .nan), epoch \(summary.bestEpoch ?? 0)")

    let directory = RunDirectory(summary.run)
    let model = try directory.loadModel(try directory.readConfig())   // ready for inference
    print(model.architecture, "with", model.numClasses ?? 0, "classes")
    return summary.testReport?.accuracy
}
// ARTICLE END

final class DocumentationArticleTests: XCTestCase {
    static let article = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Sources/Training/Training.docc/FineTuneIn20Lines.md")

    func testTheArticleShowsThisCode() throws {
        let markdown = try String(contentsOf: Self.article, encoding: .utf8)
        let block = try XCTUnwrap(markdown.components(separatedBy: "```swift\n").dropFirst().first?
            .components(separatedBy: "```").first)
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let function = try XCTUnwrap(source.components(separatedBy: "// ARTICLE BEGIN\n").dropFirst().first?
            .components(separatedBy: "// ARTICLE END").first)
        XCTAssertEqual(block, "import Training\nimport Vision\n\n" + function)
        let lines = function.split(separator: "\n", omittingEmptySubsequences: true).count
        XCTAssertLessThanOrEqual(lines, 20, "the article promises 20 lines")
    }

    func testTheArticlesCodeFineTunesARealModel() throws {
        guard RealAssets.mobileNetV2 != nil else {
            throw XCTSkip("MobileNetV2's ImageNet weights are not in the cache: run scripts/setup")
        }
        let photos = try TRData.temporaryDirectory(self) + "/photos"
        var state: UInt32 = 11
        for (split, count) in [("train", 8), ("test", 2)] {
            for (c, name) in ["blue", "green", "red"].enumerated() {
                let folder = "\(photos)/\(split)/\(name)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    var rgb: [UInt8] = []
                    for _ in 0..<(40 * 40) {
                        for channel in 0..<3 {
                            state = state &* 1_664_525 &+ 1_013_904_223
                            rgb.append((channel == 2 - c ? 180 : 0) &+ UInt8(state >> 27))
                        }
                    }
                    try Image(rgb: rgb, width: 40, height: 40).pngData().write(to: URL(fileURLWithPath: "\(folder)/\(i).png"))
                }
            }
        }
        let runs = try TRData.temporaryDirectory(self)
        let accuracy = try XCTUnwrap(try fineTune(photos: photos, runs: runs))
        XCTAssertTrue((0...1).contains(accuracy))
        let config = try RunDirectory(runs + "/photos").readConfig()
        XCTAssertEqual(config.status, "completed")
        XCTAssertEqual(config.epochsCompleted, 4)
        XCTAssertEqual(config.weights, "imagenet")
    }
}
