import Foundation
import XCTest
@testable import Torch

/// Runs many forward/backward/update steps of a small convnet and checks that the process's
/// resident memory stays flat: every Swift `Tensor` must free its LibTorch handle.
final class MemoryTests: XCTestCase {
    static func residentBytes() -> Int {
        // /proc/self/statm: size resident shared … (in pages)
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return -1 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return -1 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func testTenThousandTrainingStepsKeepResidentMemoryFlat() throws {
        #if !os(Linux)
        throw XCTSkip("reads /proc/self/statm")
        #endif
        Runtime.manualSeed(0)
        let conv = try (Tensor.randn([8, 1, 3, 3]) * 0.3).setRequiresGrad()
        let convBias = try Tensor.zeros([8]).setRequiresGrad()
        let fc = try (Tensor.randn([10, 8 * 4 * 4]) * 0.05).setRequiresGrad()
        let fcBias = try Tensor.zeros([10]).setRequiresGrad()
        let runningMean = try Tensor.zeros([8]), runningVar = try Tensor.ones([8])
        let params = [conv, convBias, fc, fcBias]
        let x = try Tensor.randn([16, 1, 8, 8])
        let y = try Tensor([Int64](repeating: 3, count: 16))

        func step() throws -> Double {
            var h = try Functional.conv2d(x, weight: conv, bias: convBias, padding: (1, 1))
            h = try Functional.batchNorm(h, runningMean: runningMean, runningVar: runningVar, training: true)
            h = try Functional.maxPool2d(h.relu(), kernelSize: (2, 2)).flatten(from: 1)
            let logits = try Functional.linear(h, weight: fc, bias: fcBias)
            let loss = try Functional.crossEntropy(logits, target: y, labelSmoothing: 0.1)
            try loss.backward()
            try withNoGrad {
                for p in params {
                    if let g = p.grad { try p.add_(g, alpha: -0.01) }
                    try p.setGrad(nil)
                }
            }
            return try loss.item()
        }

        let warmup = 1_000, total = 10_000
        for _ in 0..<warmup { _ = try step() }
        let before = Self.residentBytes()
        var lastLoss = 0.0
        for _ in warmup..<total { lastLoss = try step() }
        let after = Self.residentBytes()
        let growthMB = Double(after - before) / 1_048_576
        print("memory: RSS after \(warmup) steps \(before / 1_048_576) MB, after \(total) steps " +
              "\(after / 1_048_576) MB (growth \(String(format: "%.2f", growthMB)) MB), final loss \(lastLoss)")
        XCTAssertGreaterThan(before, 0)
        // A leaked handle per op would cost well over 100 MB across 9,000 steps (~15 tensors each).
        XCTAssertLessThan(growthMB, 8, "resident memory grew by \(growthMB) MB over \(total - warmup) steps")
        XCTAssertLessThan(lastLoss, 1.0, "training on a constant target should drive the loss down")
    }
}
