import Foundation
import Optim
@testable import Training
import XCTest

extension TrainingRunTests {
    /// Runs `spec` to its end: the warnings it gave that contain `containing`, and its optimizer steps.
    func runWarnings(_ spec: TrainingRun.Specification, containing: String) throws -> (warnings: [String], steps: Int) {
        var warnings: [String] = []
        let run = try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } })
        run.signalStop = SignalStop(signals: [])
        let summary = try run.run()
        XCTAssertEqual(summary.status, "completed")
        return (warnings.filter { $0.contains(containing) }, summary.globalStep)
    }

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
            return try runWarnings(spec, containing: "--ema ")
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

    /// A warmup that takes every step of a run (or of a phase) is warned as the run starts: the rate
    /// never reaches the one asked for (`--warmup 500` on 6 steps trained at 1% of `--lr`, stop 52).
    func testAWarmupLongerThanTheRunIsWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func warnings(_ name: String, warmup: Int, twoPhase: Bool = false) throws -> (warnings: [String], steps: Int) {
            var spec = specification(data: data, out: runs + "/" + name, epochs: 2)
            spec.recipe.warmupSteps = warmup
            spec.recipe.schedule = .fixed
            if twoPhase {
                spec.recipe.recipe = .twoPhase
                spec.recipe.phaseOneEpochs = 1
            }
            return try runWarnings(spec, containing: "warmup")
        }
        let (long, steps) = try warnings("long", warmup: 500)
        let peak = String(format: "%.1f", Double(steps - 1) / 500 * 100)
        XCTAssertEqual(long, ["a warmup of 500 steps (--warmup) takes all of the run's \(steps) optimizer steps, so the "
            + "learning rate peaks at \(peak)% of the one asked for (--lr): shorten the warmup to a small part of the "
            + "\(steps) steps"])
        XCTAssertEqual(try warnings("short", warmup: 2).warnings, [])
        // Two phases of one epoch each (of at most the plain run's steps): the warmup starts again in phase 2.
        let phases = try warnings("phases", warmup: steps, twoPhase: true)
        XCTAssertEqual(phases.warnings.count, 2, "\(phases.warnings)")
        XCTAssertTrue(phases.warnings.first?.hasPrefix("a warmup of \(steps) steps (--warmup) takes all of phase 1's ") == true,
                      "\(phases.warnings)")
        let phaseTwo = phases.warnings.last ?? ""
        XCTAssertTrue(phaseTwo.contains("takes all of phase 2's ") && phaseTwo.contains("(--phase2-lr)"), phaseTwo)
    }

    /// A layer decay above 1 or a learning-rate factor below 1 (the backbone then trains faster than the
    /// head, which reads like "halve per group" given as 2) is warned as the run is made; both were taken
    /// without a word until stop 52.
    func testABackboneFasterThanTheHeadIsWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func warnings(_ set: (inout RecipeOptions) -> Void) throws -> [String] {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString, epochs: 1)
            spec.recipe.recipe = .discriminative
            set(&spec.recipe)
            var warnings: [String] = []
            try TrainingRun.create(spec, notify: { if case .warning(let text) = $0 { warnings.append(text) } }).release()
            return warnings.filter { $0.contains("--layer-decay") || $0.contains("--lr-factor") }
        }
        XCTAssertEqual(try warnings { $0.layerDecay = 2 }, ["--layer-decay 2.0 raises the learning rate of each layer group "
            + "below the head (lr × 2.0^d, d groups down): a decay below 1 lowers it (0.75 is usual)"])
        XCTAssertEqual(try warnings { $0.learningRateFactor = 0.5 }, ["--lr-factor 0.5 gives the backbone a higher learning "
            + "rate than the head (lr / 0.5): a factor above 1 lowers it (10 is usual)"])
        XCTAssertEqual(try warnings { $0.layerDecay = 0.75 }, [])
        XCTAssertEqual(try warnings { $0.learningRateFactor = 10 }, [])
    }

    /// A resume that lengthens a run re-stretches its schedule over the new length, as timm's does: a
    /// cosine that had decayed near 0 goes back up, a warm restart that went on without a word (stop
    /// 53). The warning gives both rates; a constant schedule, or a resume to the same length, is quiet.
    func testAResumeThatSendsTheRateBackUpIsWarned() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        func resumeWarnings(_ schedule: ScheduleConfig, from epochs: Int, to more: Int?) throws -> (warnings: [String], steps: Int) {
            var spec = specification(data: data, out: runs + "/" + UUID().uuidString, epochs: epochs)
            spec.recipe.schedule = schedule
            let steps = try runWarnings(spec, containing: "").steps
            var warnings: [String] = []
            let resumed = try TrainingRun.resume(spec.runDirectory, changes: .init(epochs: more), notify: {
                if case .warning(let text) = $0 { warnings.append(text) }
            })
            resumed.signalStop = SignalStop(signals: [])
            XCTAssertEqual(try resumed.run().status, "completed")
            return (warnings.filter { $0.contains("--epochs") }, steps)
        }
        let cosine = ScheduleConfig.cosine(etaMin: 0, periodSteps: nil)
        let (warnings, steps) = try resumeWarnings(cosine, from: 2, to: 4)
        XCTAssertEqual(warnings.count, 1, "\(warnings)")
        // The cosine's last rate over the 2 epochs' steps, and its next over twice as many.
        let last = cosine.schedule.learningRate(base: 0.01, step: steps - 1, totalSteps: steps)
        let next = cosine.schedule.learningRate(base: 0.01, step: steps, totalSteps: 2 * steps)
        XCTAssertGreaterThan(next, 2 * last)
        XCTAssertEqual(warnings.first, "--epochs 4 lengthens the run from 2 epochs, and its learning-rate schedule now spans "
            + "the new length: the rate goes from \(String(format: "%.3g", last)) at step \(steps), the last trained, up to "
            + "\(String(format: "%.3g", next)) at step \(steps + 1), a warm restart. To train on at a low rate instead, start a new run "
            + "from this one's weights (--checkpoint-path RUN_DIR/model.safetensors) with a lower --lr")
        XCTAssertEqual(try resumeWarnings(.fixed, from: 2, to: 4).warnings, [])
        XCTAssertEqual(try resumeWarnings(cosine, from: 2, to: nil).warnings, [])
    }

    /// A schedule whose step counts were meant as epochs is warned as the run starts: a cosine whose
    /// `t_max` is shorter than the run goes back up (PyTorch's `CosineAnnealingLR` is periodic), and a step
    /// or exponential decay brings the rate to nothing before half of the run (stop 52).
    func testAScheduleCountedInEpochsIsWarned() throws {
        func warning(_ text: String, steps: Int = 1500, perEpoch: Int = 30) throws -> String? {
            RunLengthCheck.scheduleShapeWarning(try ScheduleConfig(parsing: text), phaseSteps: steps, stepsPerEpoch: perEpoch,
                                                phase: nil)
        }
        XCTAssertEqual(try warning("cosine:t_max=50"), "the learning-rate schedule cosine:eta_min=0.0,t_max=50 goes back up "
            + "after step 50 of the run's 1500 optimizer steps (its period is shorter than the run, and a cosine rises again "
            + "after it): its step counts are optimizer steps, not epochs (an epoch here is 30 steps)")
        XCTAssertEqual(try warning("step:step_size=30,gamma=0.1")?.contains("below 1/10,000 of its peak by step 150 of"), true)
        XCTAssertEqual(try warning("exponential:decay_steps=1,rate=0.94")?.contains("by step 149 of"), true)
        for fine in ["fixed", "cosine", "onecycle", "step:step_size=500,gamma=0.1", "polynomial",
                     "polynomial:decay_steps=100,cycle=true", "cosine:warmup_steps=100"] {
            XCTAssertNil(try warning(fine), fine)
        }
        // Through a run: 2 epochs of 3 or 4 steps, a period of 2.
        let data = try makeData()
        var spec = specification(data: data, out: try TRData.temporaryDirectory(self) + "/cosine", epochs: 2)
        spec.recipe.schedule = .cosine(etaMin: 0, periodSteps: 2)
        let (warnings, steps) = try runWarnings(spec, containing: "learning-rate schedule")
        XCTAssertEqual(warnings.count, 1, "\(warnings)")
        XCTAssertTrue(warnings.first?.hasPrefix("the learning-rate schedule cosine:eta_min=0.0,t_max=2 goes back up after step 2 "
                                                + "of the run's \(steps) optimizer steps") == true, "\(warnings)")
    }

    func testTheEMAWarningsShareAndSuggestedDecay() {
        XCTAssertEqual(EMAConfig(decay: 0.99).shareOfFirstUpdate(afterSteps: 30), Foundation.pow(0.99, 29), accuracy: 1e-12)
        XCTAssertEqual(EMAConfig(decay: 0.99).shareOfFirstUpdate(afterSteps: 1), 1)
        XCTAssertEqual(EMAConfig(decay: 0.99, warmup: true).shareOfFirstUpdate(afterSteps: 3),
                       (1 - Foundation.pow(2, -2.0 / 3)) * (1 - Foundation.pow(3, -2.0 / 3)), accuracy: 1e-12, "timm's warmup")
        XCTAssertLessThan(EMAConfig(decay: 0.99, warmup: true).shareOfFirstUpdate(afterSteps: 30), 0.001)
        XCTAssertTrue(RunLengthCheck.emaWarning(EMAConfig(decay: 0.99), steps: 30)?.contains("holds 75% of") == true)
        XCTAssertTrue(RunLengthCheck.emaWarning(EMAConfig(decay: 0.99), steps: 30)?.hasSuffix("lower --ema to 0.85 or less") == true)
        XCTAssertTrue(RunLengthCheck.emaWarning(EMAConfig(decay: 0.9999), steps: 1000)?.hasSuffix("--ema to 0.995 or less") == true)
        XCTAssertNil(RunLengthCheck.emaWarning(EMAConfig(decay: 0.99), steps: 300), "0.99^299: 5%")
        XCTAssertNil(RunLengthCheck.emaWarning(EMAConfig(decay: 0.5), steps: 8))
        XCTAssertNil(RunLengthCheck.emaWarning(EMAConfig(decay: 0.99), steps: 1), "one step: the average is the weights")
        XCTAssertEqual(RunLengthCheck.emaWarning(EMAConfig(decay: 0.999, warmup: true), steps: 3)?
            .hasSuffix("(model.safetensors, checkpoints/best): lower --ema to 0.1 or less"), true, "no warmup to add")
        XCTAssertNil(RunLengthCheck.emaWarning(EMAConfig(decay: 0.999, warmup: true), steps: Int.max))
        XCTAssertEqual(RunLengthCheck.warmupWarning(.warmup(steps: 10, startFactor: 0.5, then: .cosine(etaMin: 0, periodSteps: nil)),
                                                    phaseSteps: 10, phase: nil)?.contains("peaks at 95% of"), true)
        XCTAssertNil(RunLengthCheck.warmupWarning(.warmup(steps: 10, startFactor: 0, then: .fixed), phaseSteps: 11, phase: nil))
        XCTAssertNil(RunLengthCheck.warmupWarning(.fixed, phaseSteps: 1, phase: nil))
    }
}
