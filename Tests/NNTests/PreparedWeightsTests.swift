import Foundation
@testable import NN
import TestSupport
import Torch
import XCTest

/// `PreparedWeights`: a convolution's folded (and bf16-cast) weights are made once for inference and
/// remade whenever anything they came from changes.
final class PreparedWeightsTests: XCTestCase {
    private func layers() throws -> (Conv2d, BatchNorm2d) {
        let conv = try Conv2d(4, 6, kernelSize: 3, padding: 1, bias: true)
        let bn = try BatchNorm2d(6)
        try withNoGrad {
            try bn.weight?.copy_(Tensor.randn([6]))
            try bn.bias?.copy_(Tensor.randn([6]))
            try bn.runningMean?.copy_(Tensor.randn([6]))
            try bn.runningVar?.copy_(Tensor.rand([6]) + 0.5)
        }
        bn.eval()
        return (conv, bn)
    }

    /// The folded pair against the two layers run apart.
    private func assertFoldedMatchesSeparate(_ conv: Conv2d, _ bn: BatchNorm2d, _ x: Tensor, _ message: String,
                                             file: StaticString = #filePath, line: UInt = #line) throws {
        let separate = try withNoGrad { try bn.forward(conv.forward(x)) }
        let folded = try withInferenceMode { try conv.forward(x, thenBatchNorm: bn) }
        assertClose(folded, separate, atol: 1e-5, message, file: file, line: line)
    }

    func testFoldedWeightsAreKeptAndRemadeWhenTheirSourcesChange() throws {
        Runtime.manualSeed(21)
        let (conv, bn) = try layers()
        let x = try Tensor.randn([2, 4, 7, 7])
        XCTAssertFalse(conv.preparedWeights.isHoldingWeights)
        try assertFoldedMatchesSeparate(conv, bn, x, "first call")
        XCTAssertTrue(conv.preparedWeights.isHoldingWeights, "inference keeps the folded weights")
        try assertFoldedMatchesSeparate(conv, bn, x, "kept weights")

        // In-place changes bump version counters: a loaded state, an optimizer step.
        try withNoGrad { try bn.runningMean?.copy_(Tensor.randn([6])) }
        try assertFoldedMatchesSeparate(conv, bn, x, "after new running mean")
        try withNoGrad { try conv.weight.mul_(0.5) }
        try assertFoldedMatchesSeparate(conv, bn, x, "after a weight update")
        try withNoGrad { try XCTUnwrap(bn.bias).add_(1) }
        try assertFoldedMatchesSeparate(conv, bn, x, "after a shift update")

        // Training-mode forward passes update the running statistics, which LibTorch 1.x does without
        // bumping their versions; the layer counts them.
        bn.train()
        for _ in 0..<3 { _ = try withNoGrad { try bn.forward(conv.forward(try Tensor.randn([8, 4, 7, 7]) * 3 + 1)) } }
        bn.eval()
        try assertFoldedMatchesSeparate(conv, bn, x, "after training-mode passes")

        // New storage for a parameter (a layout or device change uses setData, which bumps no version).
        try conv.to(memoryFormat: .channelsLast)
        try withNoGrad { try conv.weight.setData(conv.weight.clone() * 2) }
        try assertFoldedMatchesSeparate(conv, bn, x, "after setData")
    }

    func testWeightsKeptInInferenceModeServeAnInputThatWantsItsGradient() throws {
        Runtime.manualSeed(22)
        let (conv, bn) = try layers()
        for p in conv.parameters() + bn.parameters() { try p.setRequiresGrad(false) }
        let x = try Tensor.randn([2, 4, 7, 7])
        _ = try withInferenceMode { try conv.forward(x, thenBatchNorm: bn) }  // kept as inference tensors
        let input = try x.clone().setRequiresGrad()
        try conv.forward(input, thenBatchNorm: bn).sum().backward()  // needs a weight autograd can save
        let reference = try x.clone().setRequiresGrad()
        try bn.forward(conv.forward(reference)).sum().backward()
        assertClose(try XCTUnwrap(input.grad), try XCTUnwrap(reference.grad), atol: 1e-5)
    }

    func testBF16CastIsKeptForFrozenWeightsAndLeftToAutocastForLearningOnes() throws {
        Runtime.manualSeed(23)
        let conv = try Conv2d(8, 16, kernelSize: 1)
        let x = try Tensor.randn([2, 8, 5, 5])
        let policy = PrecisionPolicy(bf16: [.conv], inference: [.conv])
        // Autocast's own cast, for reference: a plain autocast region, no policy.
        let reference = try withNoGrad { try withAutocast { try Functional.conv2d(x, weight: conv.weight, bias: conv.bias) } }

        // Learning weights: autocast casts them, the gradient reaches them, nothing is kept.
        let learning = try PrecisionPolicy.with(policy) { try conv.forward(x) }
        XCTAssertEqual(learning.dtype, .bfloat16)
        try learning.to(.float32).sum().backward()
        XCTAssertNotNil(conv.weight.grad)
        XCTAssertFalse(conv.preparedWeights.isHoldingWeights)

        // Frozen weights: the cast is kept, and the output is bit for bit autocast's.
        for p in conv.parameters() { try p.setRequiresGrad(false) }
        for _ in 0..<2 {
            let frozen = try PrecisionPolicy.with(policy) { try conv.forward(x) }
            XCTAssertEqual(frozen.dtype, .bfloat16)
            XCTAssertEqual(try frozen.to(.float32).floats(), try reference.to(.float32).floats())
        }
        XCTAssertTrue(conv.preparedWeights.isHoldingWeights)
        try withNoGrad { try conv.weight.mul_(-1) }
        let flipped = try PrecisionPolicy.with(policy) { try conv.forward(x) }
        let expected = try withNoGrad { try withAutocast { try Functional.conv2d(x, weight: conv.weight, bias: conv.bias) } }
        XCTAssertEqual(try flipped.to(.float32).floats(), try expected.to(.float32).floats(), "a changed weight is cast anew")
    }
}
