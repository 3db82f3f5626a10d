import Foundation
import Optim
import Torch
import XCTest

/// Learning-rate schedules against PyTorch's schedulers and TF's decay formulas.
///
/// PyTorch values were printed by torch 1.13 (`.venv-fixtures`) stepping the scheduler once per
/// `optimizer.step()` and reading `param_groups[i]['lr']` before each step; TF values are the
/// documented formulas evaluated in Python (float64).
final class ScheduleTests: XCTestCase {
    let tolerance = 1e-12

    func assertRates(_ schedule: any LearningRateSchedule, base: Double = 0.1, total: Int,
                     _ expected: [(Int, Double)], file: StaticString = #filePath, line: UInt = #line) {
        for (step, value) in expected {
            XCTAssertEqual(schedule.learningRate(base: base, step: step, totalSteps: total), value,
                           accuracy: tolerance, "step \(step)", file: file, line: line)
        }
    }

    func testFixed() {
        assertRates(FixedSchedule(), total: 10, [(0, 0.1), (5, 0.1), (9, 0.1), (100, 0.1)])
        XCTAssertEqual(FixedSchedule().multiplier(step: 3, totalSteps: 10), 1)
    }

    func testExponentialDecay() {
        // tf.train.exponential_decay(0.1, step, decay_steps=1000, decay_rate=0.94): 0.1 * 0.94^(step/1000)
        assertRates(ExponentialDecay(decaySteps: 1000, rate: 0.94), total: 5000, [
            (0, 0.1), (500, 0.09695359714832658), (1000, 0.094), (1500, 0.09113638131942697),
            (2500, 0.08566819844026136),
        ])
        // staircase: 0.1 * 0.94^floor(step/1000)
        assertRates(ExponentialDecay(decaySteps: 1000, rate: 0.94, staircase: true), total: 5000, [
            (0, 0.1), (500, 0.1), (999, 0.1), (1000, 0.094), (1500, 0.094), (2500, 0.08836),
        ])
    }

    func testPolynomialDecay() {
        // tf.train.polynomial_decay(0.1, step, 1000, end_learning_rate=0.0001, power=2):
        // (0.1 - 0.0001) * (1 - min(step, 1000)/1000)^2 + 0.0001
        assertRates(PolynomialDecay(decaySteps: 1000, endLearningRate: 0.0001, power: 2), total: 2000, [
            (0, 0.1), (250, 0.056293750000000004), (500, 0.025075), (1000, 0.0001), (1200, 0.0001),
        ])
        // cycle=True, power 1: decay_steps * ceil(step / decay_steps) (1 at step 0)
        assertRates(PolynomialDecay(decaySteps: 1000, endLearningRate: 0.0001, power: 1, cycle: true),
                    total: 3000, [
            (0, 0.1), (1000, 0.0001), (1001, 0.05000005000000001), (2500, 0.016749999999999998),
        ])
        // decay_steps defaults to the whole run: linear to end_lr at totalSteps
        assertRates(PolynomialDecay(endLearningRate: 0), total: 200, [(0, 0.1), (50, 0.075), (200, 0)])
    }

    func testStepDecayMatchesStepLRWithDiscriminativeGroups() throws {
        // torch.optim.lr_scheduler.StepLR(step_size=30, gamma=0.1), groups with lr 0.1 and 0.01
        let expected: [(Int, [Double])] = [
            (0, [0.1, 0.01]), (29, [0.1, 0.01]), (30, [0.010000000000000002, 0.001]),
            (59, [0.010000000000000002, 0.001]), (60, [0.0010000000000000002, 0.0001]),
            (99, [0.00010000000000000003, 1e-05]),
        ]
        let optimizer = try SGD([
            ParameterGroup(parameters: [("a", try Tensor.zeros([1]).setRequiresGrad())], learningRate: 0.1),
            ParameterGroup(parameters: [("b", try Tensor.zeros([1]).setRequiresGrad())], learningRate: 0.01),
        ], learningRate: 0.1)
        let scheduler = LearningRateScheduler(StepDecay(stepSize: 30, gamma: 0.1), optimizer: optimizer)
        XCTAssertEqual(scheduler.baseLearningRates, [0.1, 0.01])
        for (step, rates) in expected {
            try scheduler.apply(to: optimizer, step: step, totalSteps: 100)
            for (actual, want) in zip(optimizer.learningRates, rates) {
                XCTAssertEqual(actual, want, accuracy: tolerance, "step \(step)")
            }
        }
        // Resuming: a fresh scheduler from the saved base rates gives the same rates at any step.
        let resumed = LearningRateScheduler(StepDecay(stepSize: 30, gamma: 0.1),
                                            baseLearningRates: scheduler.baseLearningRates)
        try resumed.apply(to: optimizer, step: 60, totalSteps: 100)
        XCTAssertEqual(optimizer.learningRates[0], 0.0010000000000000002, accuracy: tolerance)
        XCTAssertEqual(optimizer.learningRates[1], 0.0001, accuracy: tolerance)
        // A group added later is adopted at its rate.
        try optimizer.addParameterGroup(ParameterGroup(parameters: [("c", try Tensor.zeros([1]))], learningRate: 1))
        try resumed.apply(to: optimizer, step: 30, totalSteps: 100)
        XCTAssertEqual(resumed.baseLearningRates, [0.1, 0.01, 1])
        XCTAssertEqual(optimizer.learningRates[2], 0.1, accuracy: tolerance)
        // Fewer groups than remembered is an error.
        let small = try SGD([("x", try Tensor.zeros([1]))], learningRate: 0.1)
        XCTAssertThrowsError(try resumed.apply(to: small, step: 0, totalSteps: 100)) { error in
            XCTAssertEqual(error as? ScheduleError, .groupCountMismatch(expected: 3, found: 1))
        }
    }

    func testCosineMatchesCosineAnnealingLR() {
        // torch CosineAnnealingLR(T_max=100, eta_min=0.001), base 0.1
        assertRates(CosineAnnealing(etaMin: 0.001), total: 100, [
            (0, 0.1), (1, 0.09997557473810371), (25, 0.08550178566873408), (50, 0.050499999999999975),
            (75, 0.015498214331265893), (99, 0.0010244252618962857), (100, 0.001),
        ])
        // An explicit period: half-way at step 10 of a 20-step period.
        assertRates(CosineAnnealing(periodSteps: 20), total: 1000, [(0, 0.1), (10, 0.05), (20, 0)])
    }

    func testOneCycleMatchesOneCycleLR() {
        // torch OneCycleLR(max_lr=0.1, total_steps=100) with its defaults: pct_start 0.3,
        // div_factor 25, final_div_factor 1e4, anneal 'cos'. Documented landmarks: starts at
        // max_lr/div_factor = 0.004, peaks at max_lr at step pct_start*total - 1 = 29, ends at
        // initial_lr/final_div_factor = 4e-7 on the last step.
        let schedule = OneCycle()
        assertRates(schedule, total: 100, [
            (0, 0.0040000000000000036), (1, 0.004281378056590748), (15, 0.05459866761210004), (29, 0.1),
            (30, 0.09994965352845243), (50, 0.0793893450575732), (98, 5.07464715475788e-05), (99, 4e-07),
        ])
        // Clamped outside the run.
        assertRates(schedule, total: 100, [(-5, 0.004), (100, 4e-07), (500, 4e-07)])
        // anneal_strategy='linear'
        assertRates(OneCycle(annealing: .linear), total: 100, [
            (0, 0.004), (10, 0.037103448275862067), (29, 0.1), (64, 0.0500002), (99, 3.999999999976245e-07),
        ])
        // max_lr is each group's base rate: ratios are kept.
        XCTAssertEqual(schedule.learningRate(base: 0.01, step: 50, totalSteps: 100), 0.00793893450575732,
                       accuracy: tolerance)
    }

    func testOneCycleMomentumMatchesOneCycleLR() {
        // torch 1.13 OneCycleLR(max_lr=0.1, total_steps=100), SGD(momentum=0.9): param_groups[0]['momentum']
        // before each step. Defaults base_momentum 0.85, max_momentum 0.95: down to 0.85 at the peak, back up.
        let schedule = OneCycle()
        for (step, value) in [(0, 0.95), (15, 0.897293054570729), (29, 0.85), (50, 0.8706107373853763),
                              (99, 0.95)] {
            XCTAssertEqual(schedule.momentum(step: step, totalSteps: 100)!, value, accuracy: tolerance, "step \(step)")
        }
        XCTAssertNil(OneCycle(momentumCycle: nil).momentum(step: 5, totalSteps: 100))
        XCTAssertNil(CosineAnnealing().momentum(step: 5, totalSteps: 100))
        // A warmup holds the cycle's first momentum, then the cycle runs over the remaining steps.
        let warm = LinearWarmup(steps: 10, then: schedule)
        XCTAssertEqual(warm.momentum(step: 3, totalSteps: 110), 0.95)
        XCTAssertEqual(warm.momentum(step: 60, totalSteps: 110)!, 0.8706107373853763, accuracy: tolerance)
    }

    func testWarmupComposition() {
        // 10 warmup steps from 0.1 × the rate, then cosine to 0 over the remaining 90 steps.
        let schedule = LinearWarmup(steps: 10, startFactor: 0.1, then: CosineAnnealing())
        assertRates(schedule, total: 100, [
            (0, 0.010000000000000002), (5, 0.05500000000000001), (9, 0.091), (10, 0.1), (55, 0.05),
            (99, 3.0458649045211895e-05),
        ])
        // From zero in front of step decay: the decay counts from the end of the warmup.
        let stepped = LinearWarmup(steps: 4, then: StepDecay(stepSize: 10, gamma: 0.5))
        assertRates(stepped, base: 1, total: 100, [(0, 0), (1, 0.25), (3, 0.75), (4, 1), (13, 1), (14, 0.5), (24, 0.25)])
        // Warmup into OneCycle rises to OneCycle's own starting rate.
        let cycle = LinearWarmup(steps: 2, then: OneCycle())
        assertRates(cycle, total: 102, [(0, 0), (1, 0.002), (2, 0.004), (31, 0.1), (101, 4e-07)])
    }

    // MARK: - Configuration

    func testParsing() throws {
        XCTAssertEqual(try ScheduleConfig(parsing: "cosine"), .cosine(etaMin: 0, periodSteps: nil))
        XCTAssertEqual(try ScheduleConfig(parsing: "fixed"), .fixed)
        XCTAssertEqual(try ScheduleConfig(parsing: "step:step_size=1000,gamma=0.1"), .step(stepSize: 1000, gamma: 0.1))
        XCTAssertEqual(try ScheduleConfig(parsing: "exponential:decay_steps=1000,rate=0.94,staircase=true"),
                       .exponential(decaySteps: 1000, rate: 0.94, staircase: true))
        XCTAssertEqual(try ScheduleConfig(parsing: "polynomial:power=2, end_lr=0"),
                       .polynomial(decaySteps: nil, endLearningRate: 0, power: 2, cycle: false))
        XCTAssertEqual(try ScheduleConfig(parsing: "onecycle:pct_start=0.25,anneal=linear"),
                       .oneCycle(pctStart: 0.25, divFactor: 25, finalDivFactor: 1e4, annealing: .linear,
                                 momentum: .init(base: 0.85, maximum: 0.95)))
        XCTAssertEqual(try ScheduleConfig(parsing: "onecycle:cycle_momentum=false"),
                       .oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos, momentum: nil))
        XCTAssertEqual(try ScheduleConfig(parsing: "onecycle:base_momentum=0.8,max_momentum=0.9").description,
                       "onecycle:pct_start=0.3,div_factor=25.0,final_div_factor=10000.0,anneal=cos,"
                       + "cycle_momentum=true,base_momentum=0.8,max_momentum=0.9")
        XCTAssertEqual(try ScheduleConfig(parsing: "cosine:eta_min=1e-5,warmup_steps=500"),
                       .warmup(steps: 500, startFactor: 0, then: .cosine(etaMin: 1e-5, periodSteps: nil)))
        XCTAssertEqual(try ScheduleConfig(parsing: "step:step_size=3,warmup_steps=0"), .step(stepSize: 3, gamma: 0.1))

        // The parsed configuration builds the schedule it names.
        let config = try ScheduleConfig(parsing: "cosine:eta_min=0.001,warmup_steps=10,warmup_start=0.1")
        let schedule = config.schedule
        XCTAssertEqual(schedule.learningRate(base: 0.1, step: 5, totalSteps: 110), 0.05500000000000001,
                       accuracy: tolerance)
        XCTAssertEqual(schedule.learningRate(base: 0.1, step: 60, totalSteps: 110), 0.050499999999999975,
                       accuracy: tolerance)
        XCTAssertEqual(config.name, "cosine")
        XCTAssertEqual(config.description, "cosine:eta_min=0.001,warmup_steps=10,warmup_start=0.1")
        XCTAssertEqual(try ScheduleConfig(parsing: config.description), config)
    }

    func testParsingErrorsNameTheBadKey() {
        func error(_ text: String) -> ScheduleError? {
            do {
                _ = try ScheduleConfig(parsing: text)
                return nil
            } catch {
                return error as? ScheduleError
            }
        }
        XCTAssertEqual(error("cosinus"), .unknownSchedule("cosinus"))
        XCTAssertEqual(error("step:step_size=10,gama=0.5"),
                       .unknownKey(key: "gama", schedule: "step",
                                   allowed: ["step_size", "gamma", "warmup_steps", "warmup_start"]))
        XCTAssertEqual(error("step:gamma=0.5"), .missingKey(key: "step_size", schedule: "step"))
        XCTAssertEqual(error("exponential:rate=0.9"), .missingKey(key: "decay_steps", schedule: "exponential"))
        XCTAssertEqual(error("step:step_size=ten"),
                       .invalidValue(key: "step_size", value: "ten", reason: "expected an integer"))
        XCTAssertEqual(error("step:step_size=0"),
                       .invalidValue(key: "step_size", value: "0", reason: "must be at least 1"))
        XCTAssertEqual(error("exponential:decay_steps=10,staircase=maybe"),
                       .invalidValue(key: "staircase", value: "maybe", reason: "expected true or false"))
        XCTAssertEqual(error("exponential:decay_steps=10,rate=-1"),
                       .invalidValue(key: "rate", value: "-1", reason: "must be greater than 0"))
        XCTAssertEqual(error("cosine:eta_min=nan"),
                       .invalidValue(key: "eta_min", value: "nan", reason: "expected a finite number"))
        XCTAssertEqual(error("onecycle:pct_start=1.5"),
                       .invalidValue(key: "pct_start", value: "1.5", reason: "must be between 0 and 1"))
        XCTAssertEqual(error("onecycle:max_momentum=1"),
                       .invalidValue(key: "max_momentum", value: "1", reason: "must be below 1"))
        XCTAssertEqual(error("onecycle:cycle_momentum=false,base_momentum=0.8"),
                       .invalidValue(key: "base_momentum", value: "0.8",
                                     reason: "momentum is not cycled with cycle_momentum=false"))
        XCTAssertEqual(error("onecycle:anneal=cosine"),
                       .invalidValue(key: "anneal", value: "cosine", reason: "expected cos or linear"))
        XCTAssertEqual(error("cosine:warmup_start=0.1"), .missingKey(key: "warmup_steps", schedule: "cosine"))
        XCTAssertEqual(error("step:step_size=1,step_size=2"), .duplicateKey(key: "step_size", schedule: "step"))
        XCTAssertEqual(error("step:step_size"), .malformed("step_size"))
        XCTAssertEqual(error("fixed:gamma=1"),
                       .unknownKey(key: "gamma", schedule: "fixed", allowed: ["warmup_steps", "warmup_start"]))
        // Messages name the key.
        XCTAssertTrue(ScheduleError.unknownKey(key: "gama", schedule: "step", allowed: ["gamma"]).description
            .contains("'gama'"))
        XCTAssertTrue(error("step:step_size=ten")!.description.contains("step_size"))
    }

    func testCodableRoundTrip() throws {
        let configs: [ScheduleConfig] = [
            .fixed,
            .exponential(decaySteps: 1000, rate: 0.94, staircase: true),
            .polynomial(decaySteps: nil, endLearningRate: 0.0001, power: 1, cycle: false),
            .polynomial(decaySteps: 500, endLearningRate: 0, power: 0.9, cycle: true),
            .step(stepSize: 7, gamma: 0.5),
            .cosine(etaMin: 1e-6, periodSteps: 300),
            .oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos, momentum: .init()),
            .oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos, momentum: nil),
            .warmup(steps: 100, startFactor: 0.01, then: .cosine(etaMin: 0, periodSteps: nil)),
        ]
        for config in configs {
            let data = try JSONEncoder().encode(config)
            XCTAssertEqual(try JSONDecoder().decode(ScheduleConfig.self, from: data), config, String(decoding: data, as: UTF8.self))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        XCTAssertEqual(String(decoding: try encoder.encode(ScheduleConfig.step(stepSize: 1000, gamma: 0.1)), as: UTF8.self),
                       #"{"gamma":0.1,"name":"step","step_size":1000}"#)
        // Decoding validates like parsing.
        let bad = Data(#"{"name":"step","step_size":1000,"gama":0.1}"#.utf8)
        XCTAssertThrowsError(try JSONDecoder().decode(ScheduleConfig.self, from: bad)) { error in
            XCTAssertTrue("\(error)".contains("gama"), "\(error)")
        }
        // A onecycle schedule recorded before momentum was cycled keeps a constant momentum, so its run
        // resumes as it started; one written now cycles it.
        let old = Data(#"{"anneal":"cos","div_factor":25,"final_div_factor":10000,"name":"onecycle","pct_start":0.3}"#.utf8)
        XCTAssertEqual(try JSONDecoder().decode(ScheduleConfig.self, from: old),
                       .oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos, momentum: nil))
        let now = try JSONEncoder().encode(try ScheduleConfig(parsing: "onecycle"))
        XCTAssertNotNil(try JSONDecoder().decode(ScheduleConfig.self, from: now).schedule.momentum(step: 0, totalSteps: 9))
        // Two warmups cannot be encoded.
        let nested = ScheduleConfig.warmup(steps: 1, startFactor: 0, then: .warmup(steps: 2, startFactor: 0, then: .fixed))
        XCTAssertThrowsError(try JSONEncoder().encode(nested))
    }

    /// A negative warmup is no warmup (Int.min overflowed `totalSteps - steps`).
    func testANegativeWarmupIsNone() {
        var warm = LinearWarmup(steps: Int.min, then: CosineAnnealing())
        XCTAssertEqual(warm.steps, 0)
        XCTAssertEqual(warm.learningRate(base: 1, step: 0, totalSteps: 10), 1)
        warm.steps = -5
        XCTAssertEqual(warm.steps, 0)
    }
}
