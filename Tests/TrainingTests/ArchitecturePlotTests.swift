import Foundation
import NN
import Training
import Vision
import XCTest

/// `Plots.architecture` (`summary --plot`) for every zoo architecture: a well-formed SVG with one box per
/// layer group carrying its output shape, and Grad-CAM's `featureLayer` naming a real module.
extension PlotTests {
    func testEveryZooArchitectureDrawsAValidSVG() throws {
        for architecture in ModelZoo.architectures {
            let model = try ModelZoo.make(architecture, options: ModelOptions(numClasses: 7))
            try model.freeze(model.backboneGroups)
            // 96 px: large enough for every architecture (Inception v3 needs 75), small enough to be quick.
            let summary = try ModelSummary(model, inputShape: [1, 3, 96, 96])
            let boxes = Plots.layerBoxes(model, summary: summary, groups: model.layerGroups)
            XCTAssertEqual(boxes.map(\.name), model.layerGroups, architecture)
            XCTAssertEqual(boxes.map(\.parameters).reduce(0, +), summary.totalParameters, "\(architecture): groups cover the model")
            let svg = Plots.architecture(title: architecture, inputShape: summary.inputShape, outputShape: summary.outputShape,
                                         boxes: boxes, totalParameters: summary.totalParameters,
                                         trainableParameters: summary.trainableParameters)
            let xml = parse(svg)
            let layers = zip(xml.elements, xml.attributes).filter { $0.0 == "g" && $0.1["class"] == "layer" }
            XCTAssertEqual(layers.count, model.layerGroups.count + 2, architecture)
            XCTAssertTrue(xml.text.contains("|(1, 7)|"), "\(architecture): output shape")
            XCTAssertTrue(xml.text.contains("frozen"), "\(architecture): the frozen backbone is marked")
            XCTAssertNotNil(model.module(at: model.featureLayer), "\(architecture): Grad-CAM layer \(model.featureLayer)")
        }
    }
}
