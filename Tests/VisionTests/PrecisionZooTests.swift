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
    /// The layer type of a module the policy governs, or nil.
    func kind(_ module: Module) -> PrecisionLayerKind? {
        switch module {
        case let conv as Conv2d:
            return .convolution(inChannels: conv.inChannels, groups: conv.groups, kernelSize: conv.kernelSize, stride: conv.stride)
        case is Linear: return .linear
        case is BatchNorm: return .batchNorm
        case let activation as Activation: return activation.precisionKind
        default: return nil
        }
    }

    /// Every governed layer's output dtype under the standard policy, in training (autograd records
    /// every layer) and in inference; `expectedKinds` must each have been seen.
    func checkLayerDTypes(_ architecture: String, expectedKinds: Set<PrecisionLayerKind>) throws {
        let model = try ModelZoo.make(architecture, weights: nil).model
        let modules = Dictionary(uniqueKeysWithValues: model.namedModules())
        for recorded in [true, false] {
            let summary = try ModelSummary(model, inputShape: [1, 3, 64, 64], precision: .standard,
                                           recordingGradients: recorded)
            var checked: [PrecisionLayerKind: Int] = [:]
            for row in summary.rows {
                guard let module = modules[row.name], let kind = kind(module) else { continue }
                let expected = PrecisionPolicy.standard.dtype(for: kind, recorded: recorded) == .bfloat16 ? "bfloat16" : "float32"
                XCTAssertEqual(row.outputDType, expected, "\(architecture) \(row.name) (\(row.type)), recorded: \(recorded)")
                checked[kind, default: 0] += 1
            }
            XCTAssertEqual(Set(checked.keys), expectedKinds, "\(architecture): layer types checked \(checked)")
            XCTAssertEqual(summary.outputShape, [1, 1000])
        }
    }

    func testMobileNetV2LayersRunInThePolicysDTypes() throws {
        try checkLayerDTypes("mobilenet_v2", expectedKinds: [.conv, .depthwiseConv, .stridedDepthwiseConv, .batchNorm, .relu6, .linear])
    }

    func testEfficientNetB0LayersRunInThePolicysDTypes() throws {
        try checkLayerDTypes("efficientnet_b0", expectedKinds: [.conv, .depthwiseConv, .stridedDepthwiseConv, .largeDepthwiseConv, .batchNorm,
                                                               .silu, .activation, .linear])
    }

    func testResNet18LayersRunInThePolicysDTypes() throws {
        try checkLayerDTypes("resnet18", expectedKinds: [.conv, .batchNorm, .relu, .linear])
    }

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
