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
        XCTAssertEqual(summary.rows.map(\.trainable), [false, false, nil, nil, nil, true])
        XCTAssertEqual(summary.totalParameters, 268)
        XCTAssertEqual(summary.trainableParameters, 36)
        XCTAssertEqual(summary.nonTrainableParameters, 232)
        let text = summary.render()
        XCTAssertTrue(text.contains("Total params: 268"), text)
        XCTAssertTrue(text.contains("(2, 8, 16, 16)"), text)
        XCTAssertTrue(model.isTraining, "the summary restores the training mode")
    }
}
