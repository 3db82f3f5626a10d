import Foundation
@testable import Training
import XCTest

extension TrainingRunTests {
    /// A run with too few optimizer steps for its EMA's decay is warned as it starts: it ends with the
    /// average, which would still be mostly the weights after the first step. `--ema 0.99` on 30 steps
    /// ended with 75% of them, at 26% validation accuracy where the raw weights had 60%, without a word
    /// (stop 52). With the decay's warmup (timm's) there is nothing to say.
    func testARunTooShortForItsEMAsDecayIsWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func warnings(warmup: Bool) throws -> (warnings: [String], steps: Int) {
            var spec = specification(data: data, out: runs + (warmup ? "/warmup" : "/plain"), epochs: 2)
            spec.recipe.emaDecay = 0.99
            spec.recipe.emaWarmup = warmup
            var warnings: [String] = []
            let run = try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } })
            run.signalStop = SignalStop(signals: [])
            let summary = try run.run()
            XCTAssertEqual(summary.status, "completed")
            return (warnings.filter { $0.hasPrefix("--ema ") }, summary.globalStep)
        }
        let (plain, steps) = try warnings(warmup: false)
        XCTAssertEqual(plain.count, 1, "\(plain)")
        XCTAssertGreaterThan(steps, 4)
        // The run's steps (2 epochs of 3 or 4 batches), and the share 0.99^(steps − 1) in percent.
        let percent = Int((Foundation.pow(0.99, Double(steps - 1)) * 100).rounded())
        XCTAssertTrue(plain.first?.hasPrefix("--ema 0.99: after this run's \(steps) optimizer steps the average still holds "
            + "\(percent)% of the weights after its first step (it averages about 100 steps), and the run ends with the "
            + "average (model.safetensors, checkpoints/best): add --ema-warmup, or lower --ema to 0.") == true, "\(plain)")
        XCTAssertEqual(try warnings(warmup: true).warnings, [], "the warmup's decay starts at 0")
    }

    func testTheEMAWarningsShareAndSuggestedDecay() {
        XCTAssertEqual(EMAConfig(decay: 0.99).shareOfFirstUpdate(afterSteps: 30), Foundation.pow(0.99, 29), accuracy: 1e-12)
        XCTAssertEqual(EMAConfig(decay: 0.99).shareOfFirstUpdate(afterSteps: 1), 1)
        XCTAssertEqual(EMAConfig(decay: 0.99, warmup: true).shareOfFirstUpdate(afterSteps: 3),
                       (1 - Foundation.pow(2, -2.0 / 3)) * (1 - Foundation.pow(3, -2.0 / 3)), accuracy: 1e-12, "timm's warmup")
        XCTAssertLessThan(EMAConfig(decay: 0.99, warmup: true).shareOfFirstUpdate(afterSteps: 30), 0.001)
        XCTAssertTrue(EMAHorizonCheck.warning(EMAConfig(decay: 0.99), steps: 30)?.contains("holds 75% of") == true)
        XCTAssertTrue(EMAHorizonCheck.warning(EMAConfig(decay: 0.99), steps: 30)?.hasSuffix("lower --ema to 0.85 or less") == true)
        XCTAssertTrue(EMAHorizonCheck.warning(EMAConfig(decay: 0.9999), steps: 1000)?.hasSuffix("--ema to 0.995 or less") == true)
        XCTAssertNil(EMAHorizonCheck.warning(EMAConfig(decay: 0.99), steps: 300), "0.99^299: 5%")
        XCTAssertNil(EMAHorizonCheck.warning(EMAConfig(decay: 0.5), steps: 8))
    }
}
