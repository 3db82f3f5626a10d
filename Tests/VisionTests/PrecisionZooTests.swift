import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import Vision
import XCTest

/// The precision policy on the zoo's depthwise networks: each layer's output dtype as `ModelSummary`
/// sees it, and ImageNet logits under the policy against fp32 (real weights, the 20 foolbox photos).
final class PrecisionZooTests: XCTestCase {
    /// The dtype the standard policy gives a module's output, or nil for a module it does not govern.
    func expectedDType(_ module: Module) -> String? {
        switch module {
        case let conv as Conv2d: return conv.groups > 1 && conv.groups == conv.inChannels ? "float32" : "bfloat16"
        case is Linear: return "bfloat16"
        case is BatchNorm, is Activation: return "float32"
        default: return nil
        }
    }

    func checkLayerDTypes(_ architecture: String) throws {
        let model = try ModelZoo.make(architecture, weights: nil).model
        let summary = try ModelSummary(model, inputShape: [1, 3, 64, 64], precision: .standard)
        let modules = Dictionary(uniqueKeysWithValues: model.namedModules())
        var checked: [String: Int] = [:]
        for row in summary.rows {
            guard let module = modules[row.name], let expected = expectedDType(module) else { continue }
            XCTAssertEqual(row.outputDType, expected, "\(architecture) \(row.name) (\(row.type))")
            checked[row.type + (expected == "float32" && module is Conv2d ? " depthwise" : ""), default: 0] += 1
        }
        for type in ["Conv2d", "Conv2d depthwise", "BatchNorm2d", "Linear"] {
            XCTAssertGreaterThan(checked[type] ?? 0, 0, "\(architecture): no \(type) row checked: \(checked)")
        }
        XCTAssertEqual(summary.outputShape, [1, 1000])
    }

    func testMobileNetV2LayersRunInThePolicysDTypes() throws { try checkLayerDTypes("mobilenet_v2") }

    func testEfficientNetB0LayersRunInThePolicysDTypes() throws { try checkLayerDTypes("efficientnet_b0") }

    /// bf16 keeps 8 significant bits; through MobileNetV2's 53 layers the logits move by a few per cent of
    /// their range (measured: max 1.9 of a range of 39.5 over the 20 photos), and the predicted
    /// class stays where fp32's top-1 margin is wider than the largest change. The first 8 photos keep it short.
    func testPretrainedMobileNetV2LogitsUnderThePolicyAgreeWithFloat32() throws {
        let path = try PretrainedWeightsTests.locate(PretrainedWeightsTests.mobileNetV2)
        let model = try MobileNetV2.make()
        XCTAssertTrue(try model.load(PthImport.load(path), strict: true).isClean)
        model.eval()
        let fixture = try SafeTensors.read(Fixtures.path(PretrainedWeightsTests.inputsFixture))
        let x = try PretrainedWeightsTests.normalisedInputs(metadataOf: fixture).slice(dim: 0, start: 0, end: 8)
        let (reference, logits) = try withInferenceMode {
            (try model(x), try withPrecision(.bf16) { try model(x).to(.float32) })
        }
        let scale = try reference.max().item() - reference.min().item()
        let difference = try (logits - reference).abs().max().item()
        let meanDifference = try (logits - reference).abs().mean().item()
        let top1 = try reference.argmax(dim: 1).toArray(Int64.self), policyTop1 = try logits.argmax(dim: 1).toArray(Int64.self)
        let sorted = try reference.sort(dim: 1, descending: true).values
        let margins = try (sorted.select(dim: 1, index: 0) - sorted.select(dim: 1, index: 1)).toArray(Float.self)
        print("mobilenet_v2 under \(PrecisionPolicy.standard): max |logit - fp32| = \(difference), mean \(meanDifference) "
              + "(logit range \(scale)); top-1 agrees on \(zip(top1, policyTop1).filter { $0 == $1 }.count)/\(top1.count)")
        XCTAssertGreaterThan(difference, 0, "the policy ran nothing in bf16")
        XCTAssertLessThan(difference, 0.1 * scale)
        XCTAssertLessThan(meanDifference, 0.01 * scale)
        for i in top1.indices where Double(margins[i]) > 2 * difference {
            XCTAssertEqual(policyTop1[i], top1[i], "photo \(i): fp32 margin \(margins[i])")
        }
    }
}
