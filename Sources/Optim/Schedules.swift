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

// MARK: - Configuration

/// A schedule's name and parameters, parsed from CLI strings such as `cosine`,
/// `step:step_size=1000,gamma=0.1`, `exponential:decay_steps=1000,rate=0.94,staircase=true` or
/// `onecycle:pct_start=0.25`. Any schedule takes `warmup_steps=N` (and `warmup_start=F`, default 0)
/// to put a linear warmup in front, which appears as `.warmup(…, then: schedule)`.
///
/// Parameters (defaults in brackets):
/// - `fixed`
/// - `exponential`: `decay_steps` (required), `rate` [0.94], `staircase` [false]
/// - `polynomial`: `decay_steps` [the run], `end_lr` [0.0001], `power` [1], `cycle` [false]
/// - `step`: `step_size` (required), `gamma` [0.1]
/// - `cosine`: `eta_min` [0], `t_max` [the run]
/// - `onecycle`: `pct_start` [0.3], `div_factor` [25], `final_div_factor` [1e4], `anneal` [cos|linear]
///
/// Codable as `{"name": "step", "step_size": 1000, "gamma": 0.1, "warmup_steps": 500}`; decoding
/// validates exactly as parsing does. `description` is the canonical CLI string.
public indirect enum ScheduleConfig: Equatable, CustomStringConvertible {
    case fixed
    case exponential(decaySteps: Int, rate: Double, staircase: Bool)
    case polynomial(decaySteps: Int?, endLearningRate: Double, power: Double, cycle: Bool)
    case step(stepSize: Int, gamma: Double)
    case cosine(etaMin: Double, periodSteps: Int?)
    case oneCycle(pctStart: Double, divFactor: Double, finalDivFactor: Double, annealing: OneCycle.Annealing)
    case warmup(steps: Int, startFactor: Double, then: ScheduleConfig)

    /// The schedule names the parser accepts.
    public static let names = ["fixed", "exponential", "polynomial", "step", "cosine", "onecycle"]
    static let warmupKeys = ["warmup_steps", "warmup_start"]

    static func keys(of name: String) -> [String] {
        switch name {
        case "exponential": return ["decay_steps", "rate", "staircase"]
        case "polynomial": return ["decay_steps", "end_lr", "power", "cycle"]
        case "step": return ["step_size", "gamma"]
        case "cosine": return ["eta_min", "t_max"]
        case "onecycle": return ["pct_start", "div_factor", "final_div_factor", "anneal"]
        default: return []
        }
    }

    /// The schedule this configuration describes.
    public var schedule: any LearningRateSchedule {
        switch self {
        case .fixed: return FixedSchedule()
        case let .exponential(decaySteps, rate, staircase):
            return ExponentialDecay(decaySteps: decaySteps, rate: rate, staircase: staircase)
        case let .polynomial(decaySteps, end, power, cycle):
            return PolynomialDecay(decaySteps: decaySteps, endLearningRate: end, power: power, cycle: cycle)
        case let .step(stepSize, gamma): return StepDecay(stepSize: stepSize, gamma: gamma)
        case let .cosine(etaMin, period): return CosineAnnealing(etaMin: etaMin, periodSteps: period)
        case let .oneCycle(pct, div, finalDiv, annealing):
            return OneCycle(pctStart: pct, divFactor: div, finalDivFactor: finalDiv, annealing: annealing)
        case let .warmup(steps, startFactor, inner):
            return LinearWarmup(steps: steps, startFactor: startFactor, then: inner.schedule)
        }
    }

    /// The schedule's name (`cosine`, …); a warmup reports the schedule it leads into.
    public var name: String {
        switch self {
        case .fixed: return "fixed"
        case .exponential: return "exponential"
        case .polynomial: return "polynomial"
        case .step: return "step"
        case .cosine: return "cosine"
        case .oneCycle: return "onecycle"
        case .warmup(_, _, let inner): return inner.name
        }
    }

    /// The parameters as `key=value` strings in canonical order (defaults included, nil omitted).
    public var parameters: [(key: String, value: String)] {
        func d(_ x: Double) -> String { "\(x)" }
        switch self {
        case .fixed: return []
        case let .exponential(decaySteps, rate, staircase):
            return [("decay_steps", "\(decaySteps)"), ("rate", d(rate)), ("staircase", "\(staircase)")]
        case let .polynomial(decaySteps, end, power, cycle):
            return (decaySteps.map { [("decay_steps", "\($0)")] } ?? [])
                + [("end_lr", d(end)), ("power", d(power)), ("cycle", "\(cycle)")]
        case let .step(stepSize, gamma): return [("step_size", "\(stepSize)"), ("gamma", d(gamma))]
        case let .cosine(etaMin, period):
            return [("eta_min", d(etaMin))] + (period.map { [("t_max", "\($0)")] } ?? [])
        case let .oneCycle(pct, div, finalDiv, annealing):
            return [("pct_start", d(pct)), ("div_factor", d(div)), ("final_div_factor", d(finalDiv)),
                    ("anneal", annealing.rawValue)]
        case let .warmup(steps, startFactor, inner):
            return inner.parameters + [("warmup_steps", "\(steps)"), ("warmup_start", d(startFactor))]
        }
    }

    public var description: String {
        let p = parameters
        return p.isEmpty ? name : name + ":" + p.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
    }

    /// Parses `name` or `name:key=value,key=value`.
    public init(parsing text: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let name: String, rest: String
        if let colon = trimmed.firstIndex(of: ":") {
            name = String(trimmed[..<colon]).trimmingCharacters(in: .whitespaces)
            rest = String(trimmed[trimmed.index(after: colon)...])
        } else {
            name = trimmed
            rest = ""
        }
        var values: [(String, String)] = []
        for item in rest.split(separator: ",", omittingEmptySubsequences: true) {
            let part = item.trimmingCharacters(in: .whitespaces)
            if part.isEmpty { continue }
            guard let eq = part.firstIndex(of: "="), eq != part.startIndex else {
                throw ScheduleError.malformed(part)
            }
            values.append((String(part[..<eq]).trimmingCharacters(in: .whitespaces),
                           String(part[part.index(after: eq)...]).trimmingCharacters(in: .whitespaces)))
        }
        try self.init(name: name, parameters: values)
    }

    /// Builds and validates a configuration from a name and `key=value` pairs (strings).
    public init(name rawName: String, parameters: [(String, String)]) throws {
        let name = rawName.lowercased()
        guard Self.names.contains(name) else { throw ScheduleError.unknownSchedule(rawName) }
        let allowed = Self.keys(of: name) + Self.warmupKeys
        var given: [String: String] = [:]
        for (key, value) in parameters {
            guard allowed.contains(key) else {
                throw ScheduleError.unknownKey(key: key, schedule: name, allowed: allowed)
            }
            guard given[key] == nil else { throw ScheduleError.duplicateKey(key: key, schedule: name) }
            given[key] = value
        }
        let p = ParameterReader(schedule: name, values: given)
        var config: ScheduleConfig
        switch name {
        case "fixed":
            config = .fixed
        case "exponential":
            config = .exponential(decaySteps: try p.int("decay_steps", min: 1),
                                  rate: try p.double("rate", default: 0.94, positive: true),
                                  staircase: try p.bool("staircase", default: false))
        case "polynomial":
            config = .polynomial(decaySteps: try p.optionalInt("decay_steps", min: 1),
                                 endLearningRate: try p.double("end_lr", default: 0.0001, nonNegative: true),
                                 power: try p.double("power", default: 1, nonNegative: true),
                                 cycle: try p.bool("cycle", default: false))
        case "step":
            config = .step(stepSize: try p.int("step_size", min: 1),
                           gamma: try p.double("gamma", default: 0.1, positive: true))
        case "cosine":
            config = .cosine(etaMin: try p.double("eta_min", default: 0, nonNegative: true),
                             periodSteps: try p.optionalInt("t_max", min: 1))
        default:  // onecycle
            let pct = try p.double("pct_start", default: 0.3, nonNegative: true)
            guard pct <= 1 else {
                throw ScheduleError.invalidValue(key: "pct_start", value: given["pct_start"]!,
                                                 reason: "must be between 0 and 1")
            }
            let annealText = given["anneal"] ?? "cos"
            guard let annealing = OneCycle.Annealing(rawValue: annealText) else {
                throw ScheduleError.invalidValue(key: "anneal", value: annealText,
                                                 reason: "expected cos or linear")
            }
            config = .oneCycle(pctStart: pct, divFactor: try p.double("div_factor", default: 25, positive: true),
                               finalDivFactor: try p.double("final_div_factor", default: 1e4, positive: true),
                               annealing: annealing)
        }
        if let steps = try p.optionalInt("warmup_steps", min: 0), steps > 0 {
            let start = try p.double("warmup_start", default: 0, nonNegative: true)
            guard start <= 1 else {
                throw ScheduleError.invalidValue(key: "warmup_start", value: given["warmup_start"]!,
                                                 reason: "must be between 0 and 1")
            }
            config = .warmup(steps: steps, startFactor: start, then: config)
        } else if given["warmup_start"] != nil && given["warmup_steps"] == nil {
            throw ScheduleError.missingKey(key: "warmup_steps", schedule: name)
        }
        self = config
    }
}

/// Typed access to parsed parameters with errors naming the key.
private struct ParameterReader {
    let schedule: String
    let values: [String: String]

    func optionalInt(_ key: String, min: Int) throws -> Int? {
        guard let text = values[key] else { return nil }
        guard let v = Int(text) else {
            throw ScheduleError.invalidValue(key: key, value: text, reason: "expected an integer")
        }
        guard v >= min else {
            throw ScheduleError.invalidValue(key: key, value: text, reason: "must be at least \(min)")
        }
        return v
    }

    func int(_ key: String, min: Int) throws -> Int {
        guard let v = try optionalInt(key, min: min) else {
            throw ScheduleError.missingKey(key: key, schedule: schedule)
        }
        return v
    }

    func double(_ key: String, default value: Double, positive: Bool = false, nonNegative: Bool = false) throws
        -> Double {
        guard let text = values[key] else { return value }
        guard let v = Double(text), v.isFinite else {
            throw ScheduleError.invalidValue(key: key, value: text, reason: "expected a finite number")
        }
        if positive && v <= 0 {
            throw ScheduleError.invalidValue(key: key, value: text, reason: "must be greater than 0")
        }
        if nonNegative && v < 0 {
            throw ScheduleError.invalidValue(key: key, value: text, reason: "must not be negative")
        }
        return v
    }

    func bool(_ key: String, default value: Bool) throws -> Bool {
        guard let text = values[key] else { return value }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw ScheduleError.invalidValue(key: key, value: text, reason: "expected true or false")
        }
    }
}

extension ScheduleConfig: Codable {
    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        try container.encode(name, forKey: Key("name"))
        var seen = Set<String>()
        for (key, value) in parameters {
            guard seen.insert(key).inserted else {
                throw EncodingError.invalidValue(self, .init(codingPath: encoder.codingPath,
                    debugDescription: "a schedule can have only one warmup"))
            }
            if let i = Int(value) {
                try container.encode(i, forKey: Key(key))
            } else if let d = Double(value) {
                try container.encode(d, forKey: Key(key))
            } else if let b = Bool(value) {
                try container.encode(b, forKey: Key(key))
            } else {
                try container.encode(value, forKey: Key(key))
            }
        }
    }

    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let name = try container.decode(String.self, forKey: Key("name"))
        var values: [(String, String)] = []
        for key in container.allKeys where key.stringValue != "name" {
            let text: String
            if let i = try? container.decode(Int.self, forKey: key) {
                text = "\(i)"
            } else if let d = try? container.decode(Double.self, forKey: key) {
                text = "\(d)"
            } else if let b = try? container.decode(Bool.self, forKey: key) {
                text = "\(b)"
            } else {
                text = try container.decode(String.self, forKey: key)
            }
            values.append((key.stringValue, text))
        }
        values.sort { $0.0 < $1.0 }
        do {
            try self.init(name: name, parameters: values)
        } catch let error as ScheduleError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description,
                                                    underlyingError: error))
        }
    }
}
