import Data
import Foundation
import NN
import TestSupport
import Torch
import Training
import XCTest

/// MixUp and CutMix against timm's `Mixup` (Tests/Fixtures/mixup_timm.safetensors,
/// tools/fixtures/make_mixup.py): with the same λ and box, the same batch and targets.
final class MixingTests: XCTestCase {
    func testMixUpAndCutMixEqualTimm() throws {
        let fixture = try Fixtures.load("mixup_timm.safetensors")
        let x = try Fixtures.tensor(fixture, "x")
        let labels = try Fixtures.tensor(fixture, "target").toArray(Int64.self).map { Int($0) }

        let mixup = MixDraw(lambda: 0.7, box: nil)
        assertClose(try BatchMixing.mix(x, mixup), try Fixtures.tensor(fixture, "mixup.x"), atol: 1e-6, "mixup batch")
        assertClose(try BatchMixing.targets(labels, classes: 4, lambda: 0.7, smoothing: 0.1),
                    try Fixtures.tensor(fixture, "mixup.target"), atol: 1e-7, "mixup targets")

        let centre = try Fixtures.tensor(fixture, "cutmix.centre").toArray(Int64.self).map { Int($0) }
        let (box, lambda) = CutMixBox.around(centreY: centre[0], centreX: centre[1], lambda: 0.6, height: 12, width: 10)
        let expectedBox = try Fixtures.tensor(fixture, "cutmix.box").toArray(Int64.self).map { Int($0) }
        XCTAssertEqual([box.top, box.bottom, box.left, box.right], expectedBox)
        XCTAssertEqual(lambda, try Fixtures.tensor(fixture, "cutmix.lam").toArray(Double.self)[0], accuracy: 1e-12)
        let cutmix = MixDraw(lambda: lambda, box: box)
        assertClose(try BatchMixing.mix(x, cutmix), try Fixtures.tensor(fixture, "cutmix.x"), atol: 0, "cutmix batch")
        assertClose(try BatchMixing.targets(labels, classes: 4, lambda: lambda, smoothing: 0.1),
                    try Fixtures.tensor(fixture, "cutmix.target"), atol: 1e-7, "cutmix targets")
        // Control: the mixed batches differ from the input.
        XCTAssertFalse(try BatchMixing.mix(x, cutmix).allClose(x, rtol: 0, atol: 1e-3))
    }

    /// The draws: λ ~ Beta(α, α) (mean 1/2, variance 1/(4(2α + 1))), both modes with switch 0.5,
    /// none with probability 0 or after the off epoch, and the same draw for the same (epoch, batch).
    func testDrawsFollowTimmsRules() throws {
        let both = MixConfig(mixupAlpha: 1, cutmixAlpha: 1, seed: 3)
        var lambdas: [Double] = [], cutmixes = 0
        for batch in 0..<4000 {
            let draw = both.draw(epoch: 0, batch: batch, height: 32, width: 32)
            if draw.box != nil { cutmixes += 1 } else { lambdas.append(draw.lambda) }
        }
        XCTAssertEqual(Double(cutmixes) / 4000, 0.5, accuracy: 0.03)
        let mean = lambdas.reduce(0, +) / Double(lambdas.count)
        let variance = lambdas.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(lambdas.count)
        XCTAssertEqual(mean, 0.5, accuracy: 0.02)
        XCTAssertEqual(variance, 1.0 / 12, accuracy: 0.01)
        let small = MixConfig(mixupAlpha: 0.2, cutmixAlpha: 0, seed: 3)
        let smallLambdas = (0..<4000).map { small.draw(epoch: 1, batch: $0, height: 8, width: 8).lambda }
        let smallMean = smallLambdas.reduce(0, +) / 4000
        let smallVariance = smallLambdas.map { ($0 - smallMean) * ($0 - smallMean) }.reduce(0, +) / 4000
        XCTAssertEqual(smallVariance, 1 / (4 * 1.4), accuracy: 0.02)
        XCTAssertEqual(both.draw(epoch: 2, batch: 5, height: 32, width: 32), both.draw(epoch: 2, batch: 5, height: 32, width: 32))
        XCTAssertEqual(MixConfig(mixupAlpha: 1, cutmixAlpha: 0, probability: 0).draw(epoch: 0, batch: 0, height: 4, width: 4).lambda, 1)
        let off = MixConfig(mixupAlpha: 1, cutmixAlpha: 0, offEpoch: 2)
        XCTAssertTrue(off.isActive(epoch: 1))
        XCTAssertFalse(off.isActive(epoch: 2))
    }

    /// A mixed run stopped mid-epoch and resumed ends bit-identical to an uninterrupted one.
    func testMixedRunResumesBitIdentically() throws {
        let data = try TRData.dataset()
        let directory = try TRData.temporaryDirectory(self)
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), labelSmoothing: 0.1)
        config.mix = MixConfig(mixupAlpha: 0.4, cutmixAlpha: 1, switchProbability: 0.5, seed: 11)
        func fresh() throws -> TRTinyNet {
            Runtime.manualSeed(42)
            return try TRTinyNet()
        }
        let reference = try Trainer(model: fresh(), configuration: config)
        try reference.fit(train: TRData.loader(data), epochs: 2)
        let first = try Trainer(model: fresh(), configuration: config,
                                callbacks: [ModelCheckpoint(directory: directory, everySteps: 4), TRStopper(step: 8)])
        try first.fit(train: TRData.loader(data), epochs: 2)
        Runtime.manualSeed(999)
        let resumed = try Trainer.resume(from: directory + "/last", model: TRTinyNet())
        try resumed.fit(train: TRData.loader(data), epochs: 2)
        try TRData.assertIdentical(reference.model.stateDict(), resumed.model.stateDict(), "model")
        // Control: without mixing the run ends elsewhere.
        config.mix = nil
        let plain = try Trainer(model: fresh(), configuration: config)
        try plain.fit(train: TRData.loader(data), epochs: 2)
        XCTAssertNotEqual(try TRData.snapshot(plain.model.stateDict()), try TRData.snapshot(reference.model.stateDict()))
    }
}
