import Foundation
@testable import NN
import TestSupport
import Torch
import XCTest

/// Conv2d + BatchNorm2d folding and in-place activations: the same function as the separate layers,
/// used only where nothing (training, gradients, a summary) needs the layers apart.
final class InferenceFusionTests: XCTestCase {
    /// A convolution and a BatchNorm with non-trivial affine parameters and running statistics.
    private func pair(padding: Conv2dPadding, bias: Bool, groups: Int) throws -> (Conv2d, BatchNorm2d) {
        let conv = try Conv2d(4, 8, kernelSize: 3, stride: 2, padding: padding, groups: groups, bias: bias)
        let bn = try BatchNorm2d(8, eps: 1e-3)
        try withNoGrad {
            try bn.weight?.copy_(Tensor.randn([8]))
            try bn.bias?.copy_(Tensor.randn([8]))
            try bn.runningMean?.copy_(Tensor.randn([8]))
            try bn.runningVar?.copy_(Tensor.rand([8]) + 0.1)
        }
        return (conv, bn)
    }

    func testFoldedConvolutionEqualsConvolutionThenBatchNorm() throws {
        Runtime.manualSeed(11)
        for padding in [Conv2dPadding.explicit(1, 1), .same] {
            for bias in [true, false] {
                for groups in [1, 4] {
                    let (conv, bn) = try pair(padding: padding, bias: bias, groups: groups)
                    bn.eval()
                    let x = try Tensor.randn([2, 4, 9, 10])
                    let separate = try bn.forward(conv.forward(x))
                    let name = "padding \(padding), bias \(bias), groups \(groups)"
                    try withNoGrad {
                        XCTAssertTrue(conv.canFold(bn, input: x), name)
                        assertClose(try conv.forward(x, thenBatchNorm: bn), separate, atol: 1e-5, name)
                        // A Sequential folds adjacent pairs, and an in-place ReLU6 after them.
                        let sequential = Sequential(conv, bn, ReLU6(inplace: true))
                        sequential.eval()
                        assertClose(try sequential(x), try separate.relu6(), atol: 1e-5, name)
                    }
                    // Channels-last weights and input: the same.
                    try conv.to(memoryFormat: .channelsLast)
                    let xLast = try x.contiguous(.channelsLast)
                    try withInferenceMode {
                        assertClose(try conv.forward(xLast, thenBatchNorm: bn), separate, atol: 1e-5, name)
                    }
                }
            }
        }
    }

    func testFoldingStepsAsideWhereTheLayersMustRunApart() throws {
        Runtime.manualSeed(12)
        let (conv, bn) = try pair(padding: 1, bias: true, groups: 1)
        let x = try Tensor.randn([3, 4, 8, 8])

        // Training mode: batch statistics, running statistics updated.
        bn.train()
        XCTAssertFalse(withNoGrad { conv.canFold(bn, input: x) })
        let meanBefore = try XCTUnwrap(bn.runningMean).clone()
        _ = try withNoGrad { try conv.forward(x, thenBatchNorm: bn) }
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), 1)
        XCTAssertFalse(try XCTUnwrap(bn.runningMean).allClose(meanBefore))

        // Parameters that want gradients: the layers run apart and every parameter gets its gradient.
        bn.eval()
        XCTAssertFalse(conv.canFold(bn, input: x))
        try conv.forward(x, thenBatchNorm: bn).sum().backward()
        XCTAssertNotNil(conv.weight.grad)
        XCTAssertNotNil(bn.weight?.grad)

        // Frozen parameters, an input that wants its gradient: folded, and the input gradient is exact.
        for p in conv.parameters() + bn.parameters() { try p.setRequiresGrad(false) }
        let input = try x.clone().setRequiresGrad()
        XCTAssertTrue(conv.canFold(bn, input: input))
        let weights = try Tensor.randn([3, 8, 4, 4])
        try (conv.forward(input, thenBatchNorm: bn) * weights).sum().backward()
        let reference = try x.clone().setRequiresGrad()
        try (bn.forward(conv.forward(reference)) * weights).sum().backward()
        assertClose(try XCTUnwrap(input.grad), try XCTUnwrap(reference.grad), atol: 1e-5)

        // A summary records every layer's output, so nothing is folded or overwritten while it runs.
        let model = Sequential(conv, bn, ReLU(inplace: true))
        model.eval()
        let summary = try ModelSummary(model, inputShape: [1, 4, 8, 8])
        XCTAssertEqual(summary.rows.map(\.outputShape), [[1, 8, 4, 4], [1, 8, 4, 4], [1, 8, 4, 4]])
    }

    func testInPlaceActivationsOverwriteOnlyWhatNothingElseNeeds() throws {
        for layer in [ReLU(inplace: true), ReLU6(inplace: true)] as [Module] {
            let name = layer.typeName
            let values: [Float] = [-2, 0.5, 7, 3]
            let expected: [Float] = name == "ReLU" ? [0, 0.5, 7, 3] : [0, 0.5, 6, 3]

            // Inference mode: the input's memory holds the result.
            try withInferenceMode {
                let x = try Tensor(values, shape: [4])
                let y = try layer(x)
                XCTAssertEqual(try y.dataPointer(), try x.dataPointer(), name)
                XCTAssertEqual(try x.floats(), expected, name)
            }
            // Gradient mode, an input without a gradient (inside a frozen backbone): in place too.
            let plain = try Tensor(values, shape: [4])
            _ = try layer(plain)
            XCTAssertEqual(try plain.floats(), expected, name)
            // An input autograd records: a new tensor, the input intact, the gradient right.
            let recorded = try Tensor(values, shape: [4]).setRequiresGrad()
            let y = try layer(recorded)
            XCTAssertEqual(try recorded.floats(), values, name)
            try y.sum().backward()
            XCTAssertEqual(try XCTUnwrap(recorded.grad).floats(), name == "ReLU" ? [0, 1, 1, 1] : [0, 1, 0, 1], name)
            // A tensor made in inference mode, used outside it: cannot be overwritten, so it is not.
            let inferenceTensor = try withInferenceMode { try Tensor(values, shape: [4]) }
            XCTAssertTrue(inferenceTensor.isInference)
            XCTAssertEqual(try layer(inferenceTensor).floats(), expected, name)
            XCTAssertEqual(try inferenceTensor.floats(), values, name)
        }
        XCTAssertEqual(ReLU(inplace: true).description, "ReLU(inplace=True)")
        XCTAssertEqual(ReLU6().description, "ReLU6()")
        // A non-inplace layer never overwrites.
        let x = try Tensor([Float(-1), 2], shape: [2])
        _ = try withInferenceMode { try ReLU()(x) }
        XCTAssertEqual(try x.floats(), [-1, 2])
    }
}
