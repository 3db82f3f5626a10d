import Foundation

// Learning-rate schedules as pure functions of the step count, so a resumed run lands on exactly
// the rate it would have had (no scheduler state beyond the step and each group's base rate).
//
// Conventions for every schedule:
// - `step` is the number of optimizer steps already taken: the rate for the first update is the
//   value at step 0, for the last update of a `totalSteps` run the value at `totalSteps - 1`.
//   This is PyTorch's `scheduler.last_epoch` when the scheduler is stepped once per optimizer step.
// - `base` is a parameter group's configured learning rate. Groups with different base rates
//   (discriminative fine-tuning) keep their ratios, except where a schedule has an absolute floor
//   (`eta_min`, `end_lr`), which is shared by every group as in PyTorch and TF.
//
// The CLI's schedule strings (`ScheduleConfig`: parsing, validation, Codable) are in ScheduleParsing.swift.

/// A learning-rate schedule: the rate for a group whose configured rate is `base`, at `step` of a
/// `totalSteps` run. Implementations are pure functions.
public protocol LearningRateSchedule {
    /// The rate at `step` of a `totalSteps` run for a group whose configured rate is `base`.
    func learningRate(base: Double, step: Int, totalSteps: Int) -> Double
    /// The momentum (SGD's and RMSprop's `momentum`, Adam's β1) at `step`, for a schedule that cycles
    /// it (`OneCycle`); nil, the default, leaves every optimizer its own.
    func momentum(step: Int, totalSteps: Int) -> Double?
}

extension LearningRateSchedule {
    /// No momentum of its own: optimizers keep theirs.
    public func momentum(step: Int, totalSteps: Int) -> Double? { nil }

    /// The rate as a multiple of the base rate (exact for schedules without absolute floors;
    /// with `eta_min`/`end_lr` it is the rate of a group whose base rate is 1).
    public func multiplier(step: Int, totalSteps: Int) -> Double {
        learningRate(base: 1, step: step, totalSteps: totalSteps)
    }

    /// Sets every group's rate to this schedule's value for its base rate (`baseLearningRates[i]`
    /// for group `i`), and its momentum where the schedule cycles it and the optimizer has one.
    /// Throws when the counts differ.
    public func apply(to optimizer: Optimizer, baseLearningRates: [Double], step: Int, totalSteps: Int) throws {
        guard baseLearningRates.count == optimizer.parameterGroups.count else {
            throw ScheduleError.groupCountMismatch(expected: baseLearningRates.count,
                                                   found: optimizer.parameterGroups.count)
        }
        let groupMomentum = optimizer.momentumName == nil ? nil : momentum(step: step, totalSteps: totalSteps)
        let rates = baseLearningRates.map { learningRate(base: $0, step: step, totalSteps: totalSteps) }
        // Parameters that pass their own checks can still give an unusable rate (cosine's eta_min of
        // 1e308, an exponential rate of 1e308): the step was taken at -inf or inf, then saving failed.
        if let bad = rates.firstIndex(where: { !isUsableLearningRate($0) }) {
            throw ScheduleError.unusableRate(step: step, rate: rates[bad], base: baseLearningRates[bad])
        }
        for i in optimizer.parameterGroups.indices {
            optimizer.parameterGroups[i].learningRate = rates[i]
            optimizer.parameterGroups[i].momentum = groupMomentum
        }
    }

    /// The first of `steps` at which this schedule gives an unusable rate (see `isUsableLearningRate`)
    /// for the smallest or the largest of `baseLearningRates`, with that rate and base; nil when every
    /// rate is usable. A trainer checks a phase's steps before its first one: an exponential rate of
    /// 1e9 passed every parameter check and failed at step 5, after an epoch had trained and been
    /// checkpointed (probe AD). Every schedule here is monotone in its base rate, so the two bound
    /// the rates of the others (layer decay's dozens of bases made a million steps take 27 s); `apply`
    /// still checks every group's rate at every step.
    public func firstUnusableRate(baseLearningRates: [Double], steps: Range<Int>,
                                  totalSteps: Int) -> (step: Int, rate: Double, base: Double)? {
        guard let low = baseLearningRates.min(), let high = baseLearningRates.max() else { return nil }
        let bases = low == high ? [high] : [high, low]
        for step in steps {
            for base in bases {
                let rate = learningRate(base: base, step: step, totalSteps: totalSteps)
                if !isUsableLearningRate(rate) { return (step, rate, base) }
            }
        }
        return nil
    }
}

/// Whether an optimizer can take a step at `rate`: finite, at least 0 and within float32's range.
public func isUsableLearningRate(_ rate: Double) -> Bool {
    rate.isFinite && rate >= 0 && rate <= Double(Float.greatestFiniteMagnitude)
}

/// Errors from building and parsing schedules.
public enum ScheduleError: Error, Equatable, CustomStringConvertible {
    /// The schedule name is not one of `ScheduleConfig.names`.
    case unknownSchedule(String)
    /// `key` is not a parameter of `schedule`; `allowed` lists the ones that are.
    case unknownKey(key: String, schedule: String, allowed: [String])
    /// A required parameter was not given.
    case missingKey(key: String, schedule: String)
    /// The same parameter was given twice.
    case duplicateKey(key: String, schedule: String)
    /// A parameter's value does not parse or is out of range.
    case invalidValue(key: String, value: String, reason: String)
    /// A parameter is not written `key=value`.
    case malformed(String)
    /// The scheduler knows a different number of parameter groups than the optimizer has.
    case groupCountMismatch(expected: Int, found: Int)
    /// The schedule gives a rate that is negative, infinite, NaN or past float32's range at `step`.
    case unusableRate(step: Int, rate: Double, base: Double)

    /// A one-line message naming the schedule, parameter and value at fault, for the CLI.
    public var description: String {
        switch self {
        case .unknownSchedule(let name):
            return "unknown learning-rate schedule '\(name)' (expected one of: "
                + ScheduleConfig.names.joined(separator: ", ") + ")"
        case .unknownKey(let key, let schedule, let allowed):
            return "unknown parameter '\(key)' for schedule '\(schedule)' (allowed: "
                + (allowed.isEmpty ? "none" : allowed.joined(separator: ", ")) + ")"
        case .missingKey(let key, let schedule):
            return "schedule '\(schedule)' requires the parameter '\(key)'"
        case .duplicateKey(let key, let schedule):
            return "parameter '\(key)' is given more than once for schedule '\(schedule)'"
        case .invalidValue(let key, let value, let reason):
            return "invalid value '\(value)' for schedule parameter '\(key)': \(reason)"
        case .malformed(let text):
            return "malformed schedule parameter '\(text)' (expected key=value)"
        case .groupCountMismatch(let expected, let found):
            return "the scheduler has base learning rates for \(expected) parameter groups "
                + "but the optimizer has \(found)"
        case .unusableRate(let step, let rate, let base):
            return "the learning-rate schedule gives \(rate) at step \(step) from a base rate of \(base): a rate must be finite, "
                + "at least 0 and within float32's range (check --lr-schedule's parameters and the base rates: --lr, "
                + "--lr-factor, --layer-decay, --phase2-lr)"
        }
    }
}

// MARK: - Schedules

/// The base rate throughout.
public struct FixedSchedule: LearningRateSchedule, Equatable {
    /// The constant schedule (`--lr-schedule fixed`).
    public init() {}
    /// Always `base`.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double { base }
}

/// TF's `exponential_decay`: `base * rate^(step / decaySteps)`, with the exponent floored when
/// `staircase` is set.
public struct ExponentialDecay: LearningRateSchedule, Equatable {
    /// Steps over which the rate is multiplied by `rate` once (TF's `decay_steps`); values below 1 count as 1.
    public var decaySteps: Int
    /// The factor applied per `decaySteps` steps (TF's `decay_rate`), e.g. 0.94.
    public var rate: Double
    /// Whether the rate drops in discrete jumps every `decaySteps` steps instead of continuously.
    public var staircase: Bool

    /// An exponential decay; `rate` defaults to 0.94, TF-slim's `learning_rate_decay_factor`.
    public init(decaySteps: Int, rate: Double = 0.94, staircase: Bool = false) {
        self.decaySteps = decaySteps
        self.rate = rate
        self.staircase = staircase
    }

    /// `base * rate^(step / decaySteps)`, the exponent floored with `staircase`; `totalSteps` is unused.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let d = Swift.max(decaySteps, 1)
        let p = staircase ? (Double(step) / Double(d)).rounded(.down) : Double(step) / Double(d)
        return base * Foundation.pow(rate, p)
    }
}

/// TF's `polynomial_decay`: `(base - endLearningRate) * (1 - s / d)^power + endLearningRate` with
/// `s = min(step, d)` and `d = decaySteps` (the whole run when nil). With `cycle`, `d` becomes the
/// first multiple of `decaySteps` at or above the step (at least `decaySteps`), as in TF.
public struct PolynomialDecay: LearningRateSchedule, Equatable {
    /// The decay length in steps (TF's `decay_steps`); nil decays over the whole run.
    public var decaySteps: Int?
    /// The absolute rate reached at the end of the decay (TF's `end_learning_rate`), shared by all groups.
    public var endLearningRate: Double
    /// The polynomial's exponent; 1 is a linear decay.
    public var power: Double
    /// Whether to restart the decay (with a longer period) after it ends, as TF's `cycle`.
    public var cycle: Bool

    /// A polynomial decay with TF's defaults (`end_learning_rate` 1e-4, `power` 1, no cycling).
    public init(decaySteps: Int? = nil, endLearningRate: Double = 0.0001, power: Double = 1, cycle: Bool = false) {
        self.decaySteps = decaySteps
        self.endLearningRate = endLearningRate
        self.power = power
        self.cycle = cycle
    }

    /// The decayed rate at `step` (see the type's formula); constant at `endLearningRate` past the
    /// decay unless `cycle`.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        var d = Double(Swift.max(decaySteps ?? totalSteps, 1))
        var s = Double(step)
        if cycle {
            let multiple = step == 0 ? 1 : (s / d).rounded(.up)
            d *= multiple
        } else {
            s = Swift.min(s, d)
        }
        return (base - endLearningRate) * Foundation.pow(1 - s / d, power) + endLearningRate
    }
}

/// PyTorch's `StepLR`: `base * gamma^(step / stepSize)` (integer division).
public struct StepDecay: LearningRateSchedule, Equatable {
    /// Steps between two drops (PyTorch's `step_size`, counted in optimizer steps here); values below 1 count as 1.
    public var stepSize: Int
    /// The factor applied at each drop (PyTorch's `gamma`), 0.1 by default.
    public var gamma: Double

    /// A step decay as `torch.optim.lr_scheduler.StepLR(step_size:, gamma:)`.
    public init(stepSize: Int, gamma: Double = 0.1) {
        self.stepSize = stepSize
        self.gamma = gamma
    }

    /// `base * gamma^⌊step / stepSize⌋`; `totalSteps` is unused.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        base * Foundation.pow(gamma, (Double(step) / Double(Swift.max(stepSize, 1))).rounded(.down))
    }
}

/// PyTorch's `CosineAnnealingLR` in closed form:
/// `etaMin + (base - etaMin) * (1 + cos(pi * step / T)) / 2` with `T = periodSteps ?? totalSteps`.
/// (Past `T` the closed form rises again, as PyTorch's `_get_closed_form_lr` does.)
public struct CosineAnnealing: LearningRateSchedule, Equatable {
    /// The absolute minimum rate at the end of the period (PyTorch's `eta_min`), shared by all groups.
    public var etaMin: Double
    /// The half-period T in steps (PyTorch's `T_max`); nil uses the whole run.
    public var periodSteps: Int?

    /// A cosine annealing as `CosineAnnealingLR(T_max: periodSteps ?? totalSteps, eta_min: etaMin)`.
    public init(etaMin: Double = 0, periodSteps: Int? = nil) {
        self.etaMin = etaMin
        self.periodSteps = periodSteps
    }

    /// `etaMin + (base - etaMin) * (1 + cos(π · step / T)) / 2`.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let t = Double(Swift.max(periodSteps ?? totalSteps, 1))
        return etaMin + (base - etaMin) * (1 + Foundation.cos(Double.pi * Double(step) / t)) / 2
    }
}

/// PyTorch's `OneCycleLR` (two phases) with `max_lr` = the group's base rate: from
/// `base / divFactor` up to `base` over the first `pctStart` of the run, then down to
/// `base / divFactor / finalDivFactor` at step `totalSteps - 1`. Steps outside `0..<totalSteps`
/// are clamped into it (PyTorch raises past the end).
///
/// Momentum cycles the other way by default (PyTorch's `cycle_momentum=True`, fastai's
/// `fit_one_cycle`): from `maximum` (0.95) down to `base` (0.85) while the rate rises, and back up
/// while it falls. It sets SGD's and RMSprop's `momentum` and Adam's β1; an optimizer constructed
/// without momentum keeps none (where PyTorch would switch SGD's momentum on).
public struct OneCycle: LearningRateSchedule, Equatable {
    /// How each phase moves between its rates (PyTorch's `anneal_strategy`).
    public enum Annealing: String, Codable, Equatable, CaseIterable {
        /// `cos`: half a cosine wave (PyTorch's default); `linear`: a straight line.
        case cos, linear
    }

    /// The momentum range a one-cycle schedule moves through (PyTorch's `base_momentum` and
    /// `max_momentum`).
    public struct MomentumCycle: Equatable {
        /// The momentum at the peak rate (PyTorch's `base_momentum`), 0.85 by default.
        public var base: Double
        /// The momentum at the start and end of the run (PyTorch's `max_momentum`), 0.95 by default.
        public var maximum: Double

        /// A range with PyTorch's defaults.
        public init(base: Double = 0.85, maximum: Double = 0.95) {
            self.base = base
            self.maximum = maximum
        }
    }

    /// The fraction of the run spent increasing the rate (PyTorch's `pct_start`), 0.3 by default.
    public var pctStart: Double
    /// The initial rate is `base / divFactor` (PyTorch's `div_factor`), 25 by default.
    public var divFactor: Double
    /// The final rate is `base / divFactor / finalDivFactor` (PyTorch's `final_div_factor`), 1e4 by default.
    public var finalDivFactor: Double
    /// The shape of both phases (PyTorch's `anneal_strategy`).
    public var annealing: Annealing
    /// The momentum range, or nil to leave momentum alone (PyTorch's `cycle_momentum=False`).
    public var momentumCycle: MomentumCycle?

    /// A one-cycle schedule with PyTorch's `OneCycleLR` defaults (`three_phase=False`,
    /// `cycle_momentum=True`).
    public init(pctStart: Double = 0.3, divFactor: Double = 25, finalDivFactor: Double = 1e4,
                annealing: Annealing = .cos, momentumCycle: MomentumCycle? = MomentumCycle()) {
        self.pctStart = pctStart
        self.divFactor = divFactor
        self.finalDivFactor = finalDivFactor
        self.annealing = annealing
        self.momentumCycle = momentumCycle
    }

    func anneal(_ start: Double, _ end: Double, _ pct: Double) -> Double {
        switch annealing {
        case .cos: return end + (start - end) / 2 * (Foundation.cos(Double.pi * pct) + 1)
        case .linear: return (end - start) * pct + start
        }
    }

    /// Where `step` (clamped into `0..<totalSteps`) lies: in the rising phase (0) or the falling one
    /// (1), and how far through it (PyTorch's `_schedule_phases` with `three_phase=False`).
    func position(step: Int, totalSteps: Int) -> (phase: Int, pct: Double) {
        let stepNumber = Double(Swift.min(Swift.max(step, 0), Swift.max(totalSteps - 1, 0)))
        let ends = [pctStart * Double(totalSteps) - 1, Double(totalSteps) - 1]
        var startStep = 0.0
        for (i, end) in ends.enumerated() {
            if stepNumber <= end || i == ends.count - 1 {
                let span = end - startStep
                return (i, span == 0 ? 1 : (stepNumber - startStep) / span)
            }
            startStep = end
        }
        return (ends.count - 1, 1)  // unreachable: the last phase always answers
    }

    /// The rate at `step`, clamped into `0..<totalSteps`, with `base` as `max_lr`.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let initial = base / divFactor
        let minimum = initial / finalDivFactor
        let (phase, pct) = position(step: step, totalSteps: totalSteps)
        return phase == 0 ? anneal(initial, base, pct) : anneal(base, minimum, pct)
    }

    /// The momentum at `step`: from `maximum` to `base` while the rate rises, then back; nil without
    /// a `momentumCycle`.
    public func momentum(step: Int, totalSteps: Int) -> Double? {
        guard let cycle = momentumCycle else { return nil }
        let (phase, pct) = position(step: step, totalSteps: totalSteps)
        return phase == 0 ? anneal(cycle.maximum, cycle.base, pct) : anneal(cycle.base, cycle.maximum, pct)
    }
}

/// Linear warmup in front of another schedule (PyTorch's `SequentialLR` of `LinearLR` and the
/// schedule): for `step < steps` the rate rises linearly from `startFactor` times the inner
/// schedule's first value to that value, `inner(0) * (startFactor + (1 - startFactor) * step / steps)`;
/// from then on it is the inner schedule shifted by `steps` over the remaining `totalSteps - steps`.
public struct LinearWarmup: LearningRateSchedule {
    /// Warmup length in optimizer steps (a negative count is stored as 0: it overflowed the step arithmetic).
    public var steps: Int { didSet { steps = Swift.max(0, steps) } }
    /// The first step's rate as a fraction of the inner schedule's first rate (PyTorch's
    /// `LinearLR.start_factor`); 0 starts from zero.
    public var startFactor: Double
    /// The schedule that takes over after the warmup, run over the remaining `totalSteps - steps` steps.
    public var inner: any LearningRateSchedule

    /// `steps` of linear warmup (a negative count: none), then `inner`.
    public init(steps: Int, startFactor: Double = 0, then inner: any LearningRateSchedule) {
        self.steps = Swift.max(0, steps)
        self.startFactor = startFactor
        self.inner = inner
    }

    /// The warmup ramp for `step < steps`, else `inner` at `step - steps`.
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let remaining = Swift.max(totalSteps - steps, 1)
        if step < steps {
            let target = inner.learningRate(base: base, step: 0, totalSteps: remaining)
            return target * (startFactor + (1 - startFactor) * Double(step) / Double(steps))
        }
        return inner.learningRate(base: base, step: step - steps, totalSteps: remaining)
    }

    /// The inner schedule's momentum: its first value throughout the warmup (as PyTorch's
    /// `SequentialLR`, where `LinearLR` leaves the momentum `OneCycleLR` set), then shifted like the rate.
    public func momentum(step: Int, totalSteps: Int) -> Double? {
        let remaining = Swift.max(totalSteps - steps, 1)
        return inner.momentum(step: Swift.max(step - steps, 0), totalSteps: remaining)
    }
}

// MARK: - Scheduler

/// Applies a schedule to an optimizer, remembering each group's base rate.
///
/// Create it right after the optimizer (before loading a checkpoint, which overwrites the groups'
/// rates with scheduled values), or from saved `baseLearningRates`. Groups added to the optimizer
/// later (gradual unfreezing) are adopted at their rate when first seen by `apply`.
public final class LearningRateScheduler {
    /// The schedule applied to every group.
    public let schedule: any LearningRateSchedule
    /// Each parameter group's configured (unscheduled) rate, by group index; save it with checkpoints.
    public private(set) var baseLearningRates: [Double]

    /// Remembers the optimizer's current group rates as the base rates.
    public init(_ schedule: any LearningRateSchedule, optimizer: Optimizer) {
        self.schedule = schedule
        self.baseLearningRates = optimizer.learningRates
    }

    /// A scheduler with base rates saved earlier (e.g. from a checkpoint), so a resumed run continues
    /// from the original rates rather than from the optimizer's already-scheduled ones.
    public init(_ schedule: any LearningRateSchedule, baseLearningRates: [Double]) {
        self.schedule = schedule
        self.baseLearningRates = baseLearningRates
    }

    /// Each known group's rate at `step`.
    public func learningRates(step: Int, totalSteps: Int) -> [Double] {
        baseLearningRates.map { schedule.learningRate(base: $0, step: step, totalSteps: totalSteps) }
    }

    /// Sets every group's rate for `step` (the number of optimizer steps taken so far): call it
    /// before each `optimizer.step()`. Throws if the optimizer has fewer groups than remembered.
    public func apply(to optimizer: Optimizer, step: Int, totalSteps: Int) throws {
        let groups = optimizer.parameterGroups.count
        if groups > baseLearningRates.count {
            baseLearningRates += optimizer.learningRates[baseLearningRates.count...]
        }
        try schedule.apply(to: optimizer, baseLearningRates: baseLearningRates, step: step, totalSteps: totalSteps)
    }
}
