import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import XCTest

/// Golden tests against PyTorch 1.13 (fixtures from `tools/fixtures/make_layers.py`): each layer loads
/// the reference `state_dict` strictly, then forward output, input gradient, parameter gradients and
/// (in training mode) updated buffers must match to 1e-5.
final class LayerTests: XCTestCase {
    // MARK: - Convolution

    func testConv2dPlain() throws {
        try checkLayer(Conv2d(3, 4, kernelSize: 3), "conv_plain")
    }

    func testConv2dStridedPadded() throws {
        try checkLayer(Conv2d(3, 4, kernelSize: (3, 5), stride: (2, 1), padding: .explicit(1, 2)),
                       "conv_strided_padded")
    }

    func testConv2dDilated() throws {
        try checkLayer(Conv2d(3, 2, kernelSize: 3, padding: 2, dilation: 2), "conv_dilated")
    }

    func testConv2dGrouped() throws {
        try checkLayer(Conv2d(4, 6, kernelSize: 3, padding: 1, groups: 2), "conv_grouped")
    }

    func testConv2dDepthwiseWithoutBias() throws {
        try checkLayer(Conv2d(4, 4, kernelSize: 3, stride: 2, padding: 1, groups: 4, bias: false), "conv_depthwise")
    }

    func testConv2dWithoutBias() throws {
        try checkLayer(Conv2d(3, 4, kernelSize: 1, bias: false), "conv_nobias")
    }

    func testConv2dTFSamePaddingOddInput() throws {
        try checkLayer(Conv2d(3, 4, kernelSize: 3, stride: 2, padding: .same), "conv_tfsame_odd")
    }

    func testConv2dTFSamePaddingEvenInputIsAsymmetric() throws {
        try checkLayer(Conv2d(3, 4, kernelSize: 3, stride: 2, padding: .same), "conv_tfsame_even")
    }

    func testConv2dTFSamePaddingDepthwiseNonSquareInput() throws {
        try checkLayer(Conv2d(4, 4, kernelSize: 5, stride: 2, padding: .same, groups: 4, bias: false),
                       "conv_tfsame_depthwise")
    }

    // MARK: - BatchNorm

    func testBatchNorm2dTrainingUpdatesRunningStatistics() throws {
        try checkLayer(BatchNorm2d(3), "bn_train", training: true)
    }

    func testBatchNorm2dCumulativeAverageWhenMomentumIsNil() throws {
        try checkLayer(BatchNorm2d(3, momentum: nil), "bn_train_cumulative", training: true)
    }

    func testBatchNorm2dEvalUsesRunningStatistics() throws {
        try checkLayer(BatchNorm2d(3), "bn_eval")
    }

    // MARK: - Linear

    func testLinear() throws {
        try checkLayer(Linear(5, 3), "linear")
    }

    func testLinearWithoutBiasOn3DInput() throws {
        try checkLayer(Linear(5, 3, bias: false), "linear_nobias")
    }

    // MARK: - Pooling

    func testMaxPool2d() throws {
        try checkLayer(MaxPool2d(kernelSize: 3, stride: 2, padding: 1), "maxpool")
    }

    func testMaxPool2dCeilMode() throws {
        try checkLayer(MaxPool2d(kernelSize: 3, stride: 2, ceilMode: true), "maxpool_ceil")
    }

    func testAvgPool2d() throws {
        try checkLayer(AvgPool2d(kernelSize: 3, stride: 2, padding: 1), "avgpool")
    }

    func testAvgPool2dCeilModeExcludingPadding() throws {
        try checkLayer(AvgPool2d(kernelSize: 2, stride: 2, padding: 1, ceilMode: true, countIncludePad: false),
                       "avgpool_ceil_nopad")
    }

    func testAdaptiveAvgPool2dGlobal() throws {
        try checkLayer(AdaptiveAvgPool2d(outputSize: 1), "adaptive_avgpool_1x1")
    }

    func testAdaptiveAvgPool2dNonSquare() throws {
        try checkLayer(AdaptiveAvgPool2d(outputSize: (2, 3)), "adaptive_avgpool_2x3")
    }

    func testAdaptiveMaxPool2dNonSquare() throws {
        try checkLayer(AdaptiveMaxPool2d(outputSize: (2, 3)), "adaptive_maxpool_2x3")
    }

    // MARK: - Activations, shape, dropout

    func testActivations() throws {
        let cases: [(String, Module)] = [
            ("relu", ReLU()), ("relu6", ReLU6()), ("silu", SiLU()), ("sigmoid", Sigmoid()), ("tanh", Tanh()),
            ("gelu", GELU()), ("gelu_tanh", GELU(approximateTanh: true)), ("hardswish", Hardswish()),
            ("hardsigmoid", Hardsigmoid()), ("leaky_relu", LeakyReLU(negativeSlope: 0.2)),
            ("softmax", Softmax(dim: 1)),
        ]
        for (name, layer) in cases { try checkLayer(layer, "act_\(name)") }
    }

    func testDropoutInEvalModeIsIdentity() throws {
        try checkLayer(Dropout(p: 0.5), "dropout_eval")
    }

    func testFlatten() throws {
        try checkLayer(Flatten(), "flatten")
        try checkLayer(Flatten(startDim: 1, endDim: 2), "flatten_1_2")
    }

    // MARK: - Sequential

    func testSequentialInTrainingMode() throws {
        try checkLayer(LayerTests.smallNetwork(), "sequential", training: true)
    }

    /// The Swift twin of the fixture's `nn.Sequential(conv, bn, relu, pool, flatten, linear)`.
    static func smallNetwork() throws -> Sequential {
        Sequential(try Conv2d(3, 4, kernelSize: 3, padding: 1, bias: false), try BatchNorm2d(4), ReLU(),
                   AdaptiveAvgPool2d(outputSize: 1), Flatten(), try Linear(4, 3))
    }
}

// MARK: - Fixture driver

/// Loads `layers_<name>.safetensors` into `layer` strictly, runs forward and backward of
/// `(output * loss_weight).sum()` and compares everything the fixture recorded.
func checkLayer(_ layer: Module, _ name: String, training: Bool = false, atol: Double = 1e-5,
                file: StaticString = #filePath, line: UInt = #line) throws {
    let fixture = try Fixtures.load("layers_\(name).safetensors")
    let state = fixture.renamingKeys { $0.hasPrefix("state.") ? String($0.dropFirst("state.".count)) : nil }
    try layer.load(state, strict: true)
    layer.train(training)
    let before = try layer.namedBuffers().map { ($0.0, try $0.1.clone()) }

    let x = try Fixtures.tensor(fixture, "input").clone().setRequiresGrad()
    let out = try layer(x)
    assertClose(out, try Fixtures.tensor(fixture, "output"), atol: atol, "\(name): output", file: file, line: line)

    let loss = try (out * Fixtures.tensor(fixture, "loss_weight")).sum()
    try loss.backward()
    if let gx = x.grad {
        assertClose(gx, try Fixtures.tensor(fixture, "grad.input"), atol: atol, "\(name): input gradient",
                    file: file, line: line)
    } else {
        XCTFail("\(name): no input gradient", file: file, line: line)
    }
    let parameters = layer.namedParameters()
    for (key, p) in parameters {
        guard let g = p.grad else { XCTFail("\(name): no gradient for \(key)", file: file, line: line); continue }
        assertClose(g, try Fixtures.tensor(fixture, "grad.\(key)"), atol: atol, "\(name): gradient of \(key)",
                    file: file, line: line)
    }
    let gradKeys = Set(fixture.keys.filter { $0.hasPrefix("grad.") && $0 != "grad.input" })
    XCTAssertEqual(gradKeys, Set(parameters.map { "grad.\($0.0)" }), "\(name): parameter set", file: file, line: line)

    for ((key, buffer), (_, old)) in zip(layer.namedBuffers(), before) {
        let expected = training ? fixture["after.\(key)"] : old
        guard let expected else { XCTFail("\(name): fixture lacks after.\(key)", file: file, line: line); continue }
        XCTAssertEqual(buffer.dtype, expected.dtype, "\(name): dtype of \(key)", file: file, line: line)
        if buffer.dtype == .int64 {
            XCTAssertEqual(try buffer.itemInt(), try expected.itemInt(), "\(name): \(key)", file: file, line: line)
        } else {
            assertClose(buffer, expected, atol: atol, "\(name): buffer \(key)", file: file, line: line)
        }
    }
}

/// BatchNorm1d is BatchNorm2d over [N, C] (whose own outputs are checked against PyTorch's fixtures).
final class BatchNorm1dTests: XCTestCase {
    func testBatchNorm1dEqualsBatchNorm2dOnOneByOneMaps() throws {
        Runtime.manualSeed(3)
        let bn1 = try BatchNorm1d(6), bn2 = try BatchNorm2d(6)
        try withNoGrad { try bn1.weight?.copy_(Tensor.randn([6])); try bn1.bias?.copy_(Tensor.randn([6])) }
        try withNoGrad { try bn2.weight?.copy_(XCTUnwrap(bn1.weight)); try bn2.bias?.copy_(XCTUnwrap(bn1.bias)) }
        let x = try Tensor.randn([5, 6]) * 3 + 1
        for training in [true, true, false] {
            bn1.train(training)
            bn2.train(training)
            let y1 = try bn1(x)
            let y2 = try bn2(x.reshape([5, 6, 1, 1])).reshape([5, 6])
            assertClose(y1, y2, atol: 1e-6)
        }
        assertClose(try XCTUnwrap(bn1.runningVar), try XCTUnwrap(bn2.runningVar), atol: 1e-6)
        XCTAssertEqual(try bn1.numBatchesTracked?.itemInt(), 2)
        XCTAssertEqual(bn1.typeName, "BatchNorm1d")
        XCTAssertThrowsError(try bn1(Tensor.randn([2, 6, 1, 1]))) { XCTAssertTrue("\($0)".contains("BatchNorm1d"), "\($0)") }
        bn1.train()
        XCTAssertThrowsError(try bn1(Tensor.randn([1, 6]))) { XCTAssertTrue("\($0)".contains("more than 1 value"), "\($0)") }
    }
}

/// ReLU6 differentiates in bfloat16 (bf16 autocast training of MobileNetV2 needs it; LibTorch 1.13's
/// hardtanh backward has no bf16 CPU kernel, so the shim clamps bf16 tensors instead).
final class ReLU6BFloat16Tests: XCTestCase {
    func testReLU6ForwardAndBackwardInBFloat16() throws {
        let x = try Tensor([Float(-2), 0.5, 3, 7, 5.5], shape: [5]).to(.bfloat16)
        try x.setRequiresGrad(true)
        let y = try ReLU6()(x)
        XCTAssertEqual(y.dtype, .bfloat16)
        XCTAssertEqual(try y.to(.float32).floats(), [0, 0.5, 3, 6, 5.5])
        try y.sum().backward()
        XCTAssertEqual(try XCTUnwrap(x.grad).to(.float32).floats(), [0, 1, 1, 0, 1])
    }
}
