import Data
import Foundation
import TestSupport
import Torch
import Vision
import XCTest

/// Grad-CAM against PyTorch: `Tests/Fixtures/gradcam.safetensors` (tools/fixtures/make_gradcam.py) holds,
/// for torchvision's resnet18 and mobilenet_v2 with formula weights on a 112×112 photo, the map and
/// heat map that forward/tensor hooks on `layer4` and `features.18` give, for the predicted class and
/// the runner-up.
final class GradCAMTests: XCTestCase {
    /// The fixture photo as the scripts normalise it: float / 255, ImageNet mean and std, [1, 3, 112, 112].
    func input() throws -> Tensor {
        let image = try Image(contentsOfFile: Fixtures.path("images/gradcam_photo.png"))
        let x = try image.toTensor().to(.float32) / 255
        let mean = try Tensor([Float(0.485), 0.456, 0.406], shape: [3, 1, 1])
        let std = try Tensor([Float(0.229), 0.224, 0.225], shape: [3, 1, 1])
        return try ((x - mean) / std).unsqueeze(dim: 0)
    }

    func check(_ architecture: String, layer: String) throws {
        let fixture = try Fixtures.load("gradcam.safetensors")
        let model = try ModelZoo.make(architecture, options: ModelOptions(numClasses: 5))
        try DeterministicWeights.fill(model)
        XCTAssertEqual(model.featureLayer, layer)
        let x = try input()
        for (name, rank) in [("pred", 0), ("second", 1)] {
            let key = "\(architecture).\(name)"
            let expectedClass = try Fixtures.tensor(fixture, key + ".class").itemInt()
            // The predicted class is found by Grad-CAM itself; the runner-up is asked for.
            let cam = try GradCAM.compute(model, input: x, classIndex: rank == 0 ? nil : expectedClass)
            XCTAssertEqual(cam.classIndex, expectedClass, key)
            XCTAssertEqual(cam.layer, layer)
            assertClose(cam.logits, try Fixtures.tensor(fixture, key + ".logits"), atol: 1e-4, relativeToScale: 1e-5, key)
            let expectedMap = try Fixtures.tensor(fixture, key + ".map")
            XCTAssertGreaterThan(try expectedMap.max().item(), 0, "\(key): a trivial (all-zero) reference")
            assertClose(cam.map, expectedMap, atol: 1e-4, relativeToScale: 1e-5, "\(key) map")
            assertClose(cam.heatmap, try Fixtures.tensor(fixture, key + ".heatmap"), atol: 1e-4, "\(key) heatmap")
        }
        // No parameter's gradient was touched, and the model's mode is restored.
        XCTAssertTrue(model.parameters().allSatisfy { $0.grad == nil })
        XCTAssertTrue(model.isTraining)
    }

    func testResNet18MatchesPyTorchHooksOnLayer4() throws { try check("resnet18", layer: "layer4") }

    func testMobileNetV2MatchesPyTorchHooksOnFeatures18() throws { try check("mobilenet_v2", layer: "features.18") }
}
