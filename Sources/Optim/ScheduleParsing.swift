import Foundation

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
/// - `onecycle`: `pct_start` [0.3], `div_factor` [25], `final_div_factor` [1e4], `anneal` [cos|linear],
///   `cycle_momentum` [true], `base_momentum` [0.85], `max_momentum` [0.95]
///
/// Codable as `{"name": "step", "step_size": 1000, "gamma": 0.1, "warmup_steps": 500}`; decoding
/// validates exactly as parsing does, except that a `onecycle` object without `cycle_momentum` (written
/// before momentum was cycled) decodes as `cycle_momentum=false`, so its run resumes as it started.
/// `description` is the canonical CLI string.
public indirect enum ScheduleConfig: Equatable, CustomStringConvertible {
    /// The base rate throughout (`fixed`): `FixedSchedule`.
    case fixed
    /// `exponential:decay_steps=…,rate=…,staircase=…`: `ExponentialDecay`.
    case exponential(decaySteps: Int, rate: Double, staircase: Bool)
    /// `polynomial:decay_steps=…,end_lr=…,power=…,cycle=…`: `PolynomialDecay` (nil `decaySteps`: the whole run).
    case polynomial(decaySteps: Int?, endLearningRate: Double, power: Double, cycle: Bool)
    /// `step:step_size=…,gamma=…`: `StepDecay`.
    case step(stepSize: Int, gamma: Double)
    /// `cosine:eta_min=…,t_max=…`: `CosineAnnealing` (nil `periodSteps`: the whole run).
    case cosine(etaMin: Double, periodSteps: Int?)
    /// `onecycle:pct_start=…,div_factor=…,final_div_factor=…,anneal=cos|linear,cycle_momentum=…,
    /// base_momentum=…,max_momentum=…`: `OneCycle` (nil `momentum`: `cycle_momentum=false`).
    case oneCycle(pctStart: Double, divFactor: Double, finalDivFactor: Double, annealing: OneCycle.Annealing,
                  momentum: OneCycle.MomentumCycle?)
    /// `warmup_steps=N` (and `warmup_start=F`) added to another schedule: `LinearWarmup` in front of it.
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
        case "onecycle":
            return ["pct_start", "div_factor", "final_div_factor", "anneal", "cycle_momentum", "base_momentum",
                    "max_momentum"]
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
        case let .oneCycle(pct, div, finalDiv, annealing, momentum):
            return OneCycle(pctStart: pct, divFactor: div, finalDivFactor: finalDiv, annealing: annealing,
                            momentumCycle: momentum)
        case let .warmup(steps, startFactor, inner):
            return LinearWarmup(steps: steps, startFactor: startFactor, then: inner.schedule)
        }
    }

    /// The momentum range a one-cycle schedule moves through (behind any warmup); nil for other
    /// schedules and for `cycle_momentum=false`.
    public var momentumCycle: OneCycle.MomentumCycle? {
        switch self {
        case let .oneCycle(_, _, _, _, momentum): return momentum
        case let .warmup(_, _, inner): return inner.momentumCycle
        default: return nil
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
        case let .oneCycle(pct, div, finalDiv, annealing, momentum):
            return [("pct_start", d(pct)), ("div_factor", d(div)), ("final_div_factor", d(finalDiv)),
                    ("anneal", annealing.rawValue), ("cycle_momentum", "\(momentum != nil)")]
                + (momentum.map { [("base_momentum", d($0.base)), ("max_momentum", d($0.maximum))] } ?? [])
        case let .warmup(steps, startFactor, inner):
            return inner.parameters + [("warmup_steps", "\(steps)"), ("warmup_start", d(startFactor))]
        }
    }

    /// The canonical CLI string, e.g. `step:step_size=1000,gamma=0.1`; `init(parsing:)` reads it back.
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
            var momentum: OneCycle.MomentumCycle?
            if try p.bool("cycle_momentum", default: true) {
                momentum = OneCycle.MomentumCycle(base: try p.momentum("base_momentum", default: 0.85),
                                                  maximum: try p.momentum("max_momentum", default: 0.95))
            } else if let key = ["base_momentum", "max_momentum"].first(where: { given[$0] != nil }) {
                throw ScheduleError.invalidValue(key: key, value: given[key]!,
                                                 reason: "momentum is not cycled with cycle_momentum=false")
            }
            config = .oneCycle(pctStart: pct, divFactor: try p.double("div_factor", default: 25, positive: true),
                               finalDivFactor: try p.double("final_div_factor", default: 1e4, positive: true),
                               annealing: annealing, momentum: momentum)
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

    /// A momentum in [0, 1), as optimizers take.
    func momentum(_ key: String, default value: Double) throws -> Double {
        let v = try double(key, default: value, nonNegative: true)
        guard v < 1 else { throw ScheduleError.invalidValue(key: key, value: values[key]!, reason: "must be below 1") }
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

    /// Writes `{"name": …, key: value, …}` with numbers and booleans as JSON values. Throws for a
    /// configuration with two warmups, which no string or JSON can express.
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

    /// Reads the JSON form, validating exactly as `init(parsing:)`; a `ScheduleError` becomes a
    /// `DecodingError.dataCorrupted` carrying its message.
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
        if name.lowercased() == "onecycle" && !values.contains(where: { $0.0.hasSuffix("momentum") }) {
            values.append(("cycle_momentum", "false"))  // written before momentum was cycled
        }
        do {
            try self.init(name: name, parameters: values)
        } catch let error as ScheduleError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description,
                                                    underlyingError: error))
        }
    }
}
