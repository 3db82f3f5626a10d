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
    func learningRate(base: Double, step: Int, totalSteps: Int) -> Double
}

extension LearningRateSchedule {
    /// The rate as a multiple of the base rate (exact for schedules without absolute floors;
    /// with `eta_min`/`end_lr` it is the rate of a group whose base rate is 1).
    public func multiplier(step: Int, totalSteps: Int) -> Double {
        learningRate(base: 1, step: step, totalSteps: totalSteps)
    }

    /// Sets every group's rate to this schedule's value for its base rate (`baseLearningRates[i]`
    /// for group `i`). Throws when the counts differ.
    public func apply(to optimizer: Optimizer, baseLearningRates: [Double], step: Int, totalSteps: Int) throws {
        guard baseLearningRates.count == optimizer.parameterGroups.count else {
            throw ScheduleError.groupCountMismatch(expected: baseLearningRates.count,
                                                   found: optimizer.parameterGroups.count)
        }
        for i in optimizer.parameterGroups.indices {
            optimizer.parameterGroups[i].learningRate =
                learningRate(base: baseLearningRates[i], step: step, totalSteps: totalSteps)
        }
    }
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
        }
    }
}

// MARK: - Schedules

/// The base rate throughout.
public struct FixedSchedule: LearningRateSchedule, Equatable {
    public init() {}
    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double { base }
}

/// TF's `exponential_decay`: `base * rate^(step / decaySteps)`, with the exponent floored when
/// `staircase` is set.
public struct ExponentialDecay: LearningRateSchedule, Equatable {
    public var decaySteps: Int
    public var rate: Double
    public var staircase: Bool

    public init(decaySteps: Int, rate: Double = 0.94, staircase: Bool = false) {
        self.decaySteps = decaySteps
        self.rate = rate
        self.staircase = staircase
    }

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
    public var decaySteps: Int?
    public var endLearningRate: Double
    public var power: Double
    public var cycle: Bool

    public init(decaySteps: Int? = nil, endLearningRate: Double = 0.0001, power: Double = 1, cycle: Bool = false) {
        self.decaySteps = decaySteps
        self.endLearningRate = endLearningRate
        self.power = power
        self.cycle = cycle
    }

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
    public var stepSize: Int
    public var gamma: Double

    public init(stepSize: Int, gamma: Double = 0.1) {
        self.stepSize = stepSize
        self.gamma = gamma
    }

    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        base * Foundation.pow(gamma, (Double(step) / Double(Swift.max(stepSize, 1))).rounded(.down))
    }
}

/// PyTorch's `CosineAnnealingLR` in closed form:
/// `etaMin + (base - etaMin) * (1 + cos(pi * step / T)) / 2` with `T = periodSteps ?? totalSteps`.
/// (Past `T` the closed form rises again, as PyTorch's `_get_closed_form_lr` does.)
public struct CosineAnnealing: LearningRateSchedule, Equatable {
    public var etaMin: Double
    public var periodSteps: Int?

    public init(etaMin: Double = 0, periodSteps: Int? = nil) {
        self.etaMin = etaMin
        self.periodSteps = periodSteps
    }

    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let t = Double(Swift.max(periodSteps ?? totalSteps, 1))
        return etaMin + (base - etaMin) * (1 + Foundation.cos(Double.pi * Double(step) / t)) / 2
    }
}

/// PyTorch's `OneCycleLR` (two phases) with `max_lr` = the group's base rate: from
/// `base / divFactor` up to `base` over the first `pctStart` of the run, then down to
/// `base / divFactor / finalDivFactor` at step `totalSteps - 1`. Steps outside `0..<totalSteps`
/// are clamped into it (PyTorch raises past the end).
public struct OneCycle: LearningRateSchedule, Equatable {
    public enum Annealing: String, Codable, Equatable, CaseIterable {
        case cos, linear
    }

    public var pctStart: Double
    public var divFactor: Double
    public var finalDivFactor: Double
    public var annealing: Annealing

    public init(pctStart: Double = 0.3, divFactor: Double = 25, finalDivFactor: Double = 1e4,
                annealing: Annealing = .cos) {
        self.pctStart = pctStart
        self.divFactor = divFactor
        self.finalDivFactor = finalDivFactor
        self.annealing = annealing
    }

    func anneal(_ start: Double, _ end: Double, _ pct: Double) -> Double {
        switch annealing {
        case .cos: return end + (start - end) / 2 * (Foundation.cos(Double.pi * pct) + 1)
        case .linear: return (end - start) * pct + start
        }
    }

    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let initial = base / divFactor
        let minimum = initial / finalDivFactor
        let stepNumber = Double(Swift.min(Swift.max(step, 0), Swift.max(totalSteps - 1, 0)))
        // PyTorch's `_schedule_phases` with three_phase=False.
        let phases: [(end: Double, start: Double, stop: Double)] = [
            (pctStart * Double(totalSteps) - 1, initial, base),
            (Double(totalSteps) - 1, base, minimum),
        ]
        var startStep = 0.0
        for (i, phase) in phases.enumerated() {
            if stepNumber <= phase.end || i == phases.count - 1 {
                let span = phase.end - startStep
                let pct = span == 0 ? 1 : (stepNumber - startStep) / span
                return anneal(phase.start, phase.stop, pct)
            }
            startStep = phase.end
        }
        return minimum  // unreachable: the last phase always answers
    }
}

/// Linear warmup in front of another schedule (PyTorch's `SequentialLR` of `LinearLR` and the
/// schedule): for `step < steps` the rate rises linearly from `startFactor` times the inner
/// schedule's first value to that value, `inner(0) * (startFactor + (1 - startFactor) * step / steps)`;
/// from then on it is the inner schedule shifted by `steps` over the remaining `totalSteps - steps`.
public struct LinearWarmup: LearningRateSchedule {
    public var steps: Int
    public var startFactor: Double
    public var inner: any LearningRateSchedule

    public init(steps: Int, startFactor: Double = 0, then inner: any LearningRateSchedule) {
        self.steps = steps
        self.startFactor = startFactor
        self.inner = inner
    }

    public func learningRate(base: Double, step: Int, totalSteps: Int) -> Double {
        let remaining = Swift.max(totalSteps - steps, 1)
        if step < steps {
            let target = inner.learningRate(base: base, step: 0, totalSteps: remaining)
            return target * (startFactor + (1 - startFactor) * Double(step) / Double(steps))
        }
        return inner.learningRate(base: base, step: step - steps, totalSteps: remaining)
    }
}

// MARK: - Scheduler

/// Applies a schedule to an optimizer, remembering each group's base rate.
///
/// Create it right after the optimizer (before loading a checkpoint, which overwrites the groups'
/// rates with scheduled values), or from saved `baseLearningRates`. Groups added to the optimizer
/// later (gradual unfreezing) are adopted at their rate when first seen by `apply`.
public final class LearningRateScheduler {
    public let schedule: any LearningRateSchedule
    public private(set) var baseLearningRates: [Double]

    /// Remembers the optimizer's current group rates as the base rates.
    public init(_ schedule: any LearningRateSchedule, optimizer: Optimizer) {
        self.schedule = schedule
        self.baseLearningRates = optimizer.learningRates
    }

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
