import Foundation
@testable import NN
import TestSupport
import Torch
import XCTest

/// SyncBatchNorm (`BatchNorm.processGroup`) across two processes: this test is rank 0 and a second
/// copy of the test binary, running `testPeerRole`, is rank 1. The ranks normalise unequal shares of
/// one batch (4 and 2 samples); each rank's outputs and input gradients, the weight and bias gradients
/// summed over the ranks, and the running statistics must equal those of one `BatchNorm2d` over the
/// whole batch in one process — which a per-rank BatchNorm does not give.
final class SyncBatchNormTests: XCTestCase {
    static let portVariable = "FINETUNE_TEST_SYNC_BN_PORT"
    static let shape = [6, 3, 4, 4]
    static let shares = [0..<4, 4..<6]
    nonisolated(unsafe) static var layout = MemoryFormat.channelsLast

    override func setUpWithError() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
    }

    /// A fixed, uneven pattern of `shape`'s size (no generator involved).
    static func pattern(_ scale: Float, _ phase: Float, _ offset: Float) throws -> Tensor {
        let count = shape.reduce(1, *)
        let values = (0..<count).map { i in sin(Float(i) * 0.37 + phase) * scale + Float(i % 7) * 0.2 + offset }
        return try Tensor(values, shape: shape)
    }

    struct Outcome {
        var output: Tensor, inputGradient: Tensor, weightGradient: Tensor, biasGradient: Tensor
        var runningMean: Tensor, runningVar: Tensor
    }

    /// One training step of a BatchNorm2d (weight and bias not 1 and 0) on samples `share` of the batch,
    /// with the loss sum(y * upstream): over `group` when given, else alone.
    static func step(_ share: Range<Int>, group: ProcessGroup?) throws -> Outcome {
        let norm = try BatchNorm2d(3)
        try withNoGrad {
            try norm.weight!.copy_(try Tensor([Float(1.5), 0.5, -2]))
            try norm.bias!.copy_(try Tensor([Float(0.25), -1, 3]))
        }
        norm.processGroup = group
        let x = try pattern(2, 0.1, 1).slice(dim: 0, start: share.lowerBound, end: share.upperBound)
            .contiguous(Self.layout).setRequiresGrad()
        let upstream = try pattern(1, 1.3, -0.3).slice(dim: 0, start: share.lowerBound, end: share.upperBound)
        let y = try norm(x)
        try (y * upstream).sum().backward()
        return Outcome(output: try y.detach(), inputGradient: try XCTUnwrap(x.grad),
                       weightGradient: try XCTUnwrap(norm.weight?.grad), biasGradient: try XCTUnwrap(norm.bias?.grad),
                       runningMean: norm.runningMean!, runningVar: norm.runningVar!)
    }

    /// conv → BatchNorm → ReLU6 → conv → BatchNorm, weights from the generator seeded with 5, one
    /// training step's output and input gradient on samples `share`.
    static func stackStep(_ share: Range<Int>, group: ProcessGroup?) throws -> (Tensor, Tensor) {
        Runtime.manualSeed(5)
        let stack = Sequential([try Conv2d(3, 8, kernelSize: (3, 3), padding: 1), try BatchNorm2d(8), ReLU6(inplace: true),
                                try Conv2d(8, 8, kernelSize: (3, 3), padding: 1, groups: 8, bias: false), try BatchNorm2d(8), ReLU6(inplace: true),
                                try Conv2d(8, 3, kernelSize: (3, 3), stride: (2, 2), padding: 1), try BatchNorm2d(3)])
        stack.synchronizeBatchNorm(over: group)
        let x = try pattern(2, 0.1, 1).slice(dim: 0, start: share.lowerBound, end: share.upperBound)
            .contiguous(layout).setRequiresGrad()
        let y = try stack(x)
        let upstream = try pattern(1, 1.3, -0.3).slice(dim: 0, start: share.lowerBound, end: share.upperBound)
            .slice(dim: 2, start: 0, end: 2).slice(dim: 3, start: 0, end: 2)
        try (y * upstream).sum().backward()
        return (try y.detach(), try XCTUnwrap(x.grad))
    }

    /// Each rank checks its share against the one-process BatchNorm over the whole batch.
    static func check(_ group: ProcessGroup) throws {
        let (stacked, stackedGradient) = try stackStep(shares[group.rank], group: group)
        let (stackWhole, stackWholeGradient) = try stackStep(0..<shape[0], group: nil)
        let part = { (t: Tensor) in try t.slice(dim: 0, start: shares[group.rank].lowerBound, end: shares[group.rank].upperBound) }
        assertClose(stacked, try part(stackWhole), atol: 1e-5, rtol: 1e-5, "stack output")
        assertClose(stackedGradient, try part(stackWholeGradient), atol: 1e-5, rtol: 1e-5, "stack input gradient")

        let share = shares[group.rank]
        let synced = try step(share, group: group)
        let whole = try step(0..<shape[0], group: nil)
        let mine = { (t: Tensor) in try t.slice(dim: 0, start: share.lowerBound, end: share.upperBound) }
        assertClose(synced.output, try mine(whole.output), atol: 1e-5, rtol: 1e-5)
        assertClose(synced.inputGradient, try mine(whole.inputGradient), atol: 1e-5, rtol: 1e-5)
        assertClose(synced.runningMean, whole.runningMean, atol: 1e-6, rtol: 1e-6)
        assertClose(synced.runningVar, whole.runningVar, atol: 1e-6, rtol: 1e-6)
        // Weight and bias gradients stay per rank (data-parallel training averages them): their sum is the whole's.
        try group.allReduceSum([synced.weightGradient, synced.biasGradient])
        assertClose(synced.weightGradient, whole.weightGradient, atol: 1e-4, rtol: 1e-5)
        assertClose(synced.biasGradient, whole.biasGradient, atol: 1e-4, rtol: 1e-5)
        // Without the group, a rank's statistics are its own share's: a different output.
        let alone = try step(share, group: nil)
        XCTAssertGreaterThan(try (alone.output - mine(whole.output)).abs().max().item(), 1e-2)
    }

    /// Rank 1 of `testStatisticsAndGradientsAreThoseOfTheWholeBatch`, run in a child process; a no-op otherwise.
    func testPeerRole() throws {
        guard let text = ProcessInfo.processInfo.environment[Self.portVariable], let port = Int(text) else { return }
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: false, timeout: 30)
        try Self.check(try ProcessGroup(store: store, rank: 1, worldSize: 2, timeout: 30))
    }

    func testStatisticsAndGradientsAreThoseOfTheWholeBatch() throws {
        let port = try FreePort.make()
        let store = try TCPStore(host: "127.0.0.1", port: port, worldSize: 2, isServer: true, timeout: 30)
        let peer = try PeerTest("NNTests.SyncBatchNormTests/testPeerRole", environment: [Self.portVariable: String(port)])
        try Self.check(try ProcessGroup(store: store, rank: 0, worldSize: 2, timeout: 30))
        peer.assertPassed()
    }
}
