import NN
import Torch
import XCTest

final class SummaryTests: XCTestCase {
    func testSummaryListsShapesParametersAndTrainability() throws {
        let model = Sequential(
            try Conv2d(3, 8, kernelSize: 3, padding: 1, bias: false), try BatchNorm2d(8), ReLU(),
            AdaptiveAvgPool2d(outputSize: 1), Flatten(), try Linear(8, 4))
        try model.freeze(["0", "1"])
        let summary = try ModelSummary(model, inputShape: [2, 3, 16, 16])
        XCTAssertEqual(summary.outputShape, [2, 4])
        XCTAssertEqual(summary.rows.map(\.name), ["0", "1", "2", "3", "4", "5"])
        XCTAssertEqual(summary.rows.map(\.type), ["Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"])
        XCTAssertEqual(summary.rows[0].outputShape, [2, 8, 16, 16])
        XCTAssertEqual(summary.rows[3].outputShape, [2, 8, 1, 1])
        XCTAssertEqual(summary.rows.map(\.parameters), [216, 16, 0, 0, 0, 36])
        XCTAssertEqual(summary.rows.map(\.trainable), ["no", "no", nil, nil, nil, "yes"])
        XCTAssertEqual(summary.totalParameters, 268)
        XCTAssertEqual(summary.trainableParameters, 36)
        XCTAssertEqual(summary.nonTrainableParameters, 232)
        let text = summary.render()
        XCTAssertTrue(text.contains("Total params: 268"), text)
        XCTAssertTrue(text.contains("(2, 8, 16, 16)"), text)
        XCTAssertTrue(model.isTraining, "the summary restores the training mode")
    }

    func testCollapsedRowsCountTheirSubtreeSoRowsAddUpToTheTotal() throws {
        let block = Sequential(try Conv2d(3, 4, kernelSize: 1), try BatchNorm2d(4))
        let model = Sequential(block, Flatten(), try Linear(4 * 2 * 2, 2))
        try model.freeze(["0.1"])
        let top = try ModelSummary(model, inputShape: [1, 3, 2, 2], maxDepth: 1)
        XCTAssertEqual(top.rows.map(\.name), ["0", "1", "2"])
        XCTAssertEqual(top.rows.map(\.parameters), [16 + 8, 0, 34])
        XCTAssertEqual(top.rows[0].trainable, "partly")
        XCTAssertEqual(top.rows.map(\.parameters).reduce(0, +), top.totalParameters)
        let all = try ModelSummary(model, inputShape: [1, 3, 2, 2])
        XCTAssertEqual(all.rows.map(\.parameters).reduce(0, +), all.totalParameters)
    }
}
