import Foundation
import Optim

/// At the start of a run, warnings for settings counted in optimizer steps that the run has too few
/// steps for, which trained on without a word (found in stop 52):
/// - an EMA of the weights whose decay averages over more steps than the run has: the run ends with
///   the average (model.safetensors, checkpoints/best), which would still be mostly the weights after
///   the first step (`--ema 0.99` on 30 steps ended with 75% of them, at 26% validation accuracy where
///   the raw weights had 60%);
/// - a learning-rate warmup as long as a phase or longer: the rate never reaches the one asked for
///   (`--warmup 500` on 6 steps trained at 1% of `--lr`);
/// - a schedule whose step counts read as epochs: a cosine whose `t_max` is shorter than the run goes
///   back up, a step or exponential decay brings the rate to nothing early.
final class RunLengthCheck: TrainingCallback {
    /// The share of the first step's weights in the final average above which the run is warned.
    static let emaLimit = 0.1
    private let warn: (String) -> Void

    /// Warns through `warn`.
    init(warn: @escaping (String) -> Void) {
        self.warn = warn
    }

    func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        guard case .fitStart(let info) = event else { return }
        let state = trainer.state
        let perEpoch = state.stepsPerEpoch ?? 1
        let left = Trainer.saturatingProduct(Swift.max(0, info.epochs - info.startEpoch), perEpoch)
            - info.startBatch / trainer.configuration.accumulationSteps
        let steps = state.globalStep > Int.max - Swift.max(0, left) ? Int.max : state.globalStep + Swift.max(0, left)
        if let ema = trainer.ema?.configuration, let message = Self.emaWarning(ema, steps: steps) { warn(message) }
        if let previous = info.previousEpochs, previous != info.epochs,
           let message = Self.restartWarning(trainer: trainer, previousEpochs: previous, epochs: info.epochs) {
            warn(message)
        }
        // The schedules, said once, as the run starts.
        guard state.globalStep == 0 else { return }
        let configuration = trainer.configuration
        // Phase 2's length is known where it starts after a set number of epochs.
        var phases: [(phase: Int?, schedule: ScheduleConfig, epochs: Int)] = [(nil, configuration.schedule, info.epochs)]
        if let p2 = configuration.phaseTwo {
            var phaseOne = info.epochs
            if case .afterEpochs(let n) = p2.trigger { phaseOne = Swift.min(n, info.epochs) }
            phases = [(1, configuration.schedule, phaseOne), (2, p2.schedule, info.epochs - phaseOne)]
        }
        for (phase, schedule, epochs) in phases {
            let phaseSteps = Trainer.saturatingProduct(epochs, perEpoch)
            if let message = Self.warmupWarning(schedule, phaseSteps: phaseSteps, phase: phase) { warn(message) }
            if let message = Self.scheduleShapeWarning(schedule, phaseSteps: phaseSteps, stepsPerEpoch: perEpoch, phase: phase) {
                warn(message)
            }
        }
    }

    /// The factor by which the rate may rise from a resume's last trained step to its next before the
    /// resume is warned.
    static let restartFactor = 2.0

    /// The warning for a resume that lengthens the run (`--resume RUN --epochs N`) when the schedule,
    /// stretched over the new length, sends the rate back up: a cosine that had decayed to 3e-5 at the
    /// end of 3 epochs went on at 1.6e-4 when the run was extended to 5, a warm restart without a word
    /// (stop 53). timm's `--resume` with more `--epochs` does the same; it is what the schedule means.
    static func restartWarning(trainer: Trainer, previousEpochs: Int, epochs: Int) -> String? {
        let step = trainer.state.globalStep
        guard step > 0, let last = trainer.scheduledHeadRate(step: step - 1, totalEpochs: previousEpochs),
              let next = trainer.scheduledHeadRate(step: step, totalEpochs: epochs),
              last > 0, next > last * restartFactor else { return nil }
        func rate(_ value: Double) -> String { String(format: "%.3g", value) }
        let phase = trainer.configuration.phaseTwo == nil ? "" : " of phase \(trainer.state.phase)"
        return "--epochs \(epochs) lengthens the run from \(previousEpochs) epochs, and its learning-rate schedule\(phase) "
            + "now spans the new length: the rate goes from \(rate(last)) at step \(step), the last trained, up to "
            + "\(rate(next)) at step \(step + 1), a warm restart. To train on at a low rate instead, start a new run "
            + "from this one's weights (--checkpoint-path RUN_DIR/model.safetensors) with a lower --lr"
    }

    /// The rate as a share of its peak below which a schedule counts as having brought it to nothing.
    static let collapsedRate = 1e-4

    /// The warning for `schedule` over a phase of `phaseSteps` optimizer steps when its shape is not
    /// one a run wants, as happens when its steps were counted as epochs (`t_max=50` meant as 50 epochs):
    /// the rate rises again after falling (PyTorch's `CosineAnnealingLR` is periodic: a `t_max` below
    /// the run's length sends it back up), or it falls below `collapsedRate` of its peak before half of
    /// the phase (`step:step_size=30` on 30 steps an epoch: 1e-10 of it by epoch 10). The first million
    /// steps are looked at.
    static func scheduleShapeWarning(_ schedule: ScheduleConfig, phaseSteps: Int, stepsPerEpoch: Int, phase: Int?) -> String? {
        guard phaseSteps > 2 else { return nil }
        // A polynomial decay with `cycle=true` rises at each cycle's start: asked for.
        var inner = schedule
        while case .warmup(_, _, let next) = inner { inner = next }
        if case .polynomial(_, _, _, true) = inner { return nil }
        let rates = schedule.schedule
        var peak = 0.0, previous = rates.multiplier(step: 0, totalSteps: phaseSteps), fell = false
        var collapsed: Int?
        for step in 0..<Swift.min(phaseSteps, 1_000_000) {
            let rate = rates.multiplier(step: step, totalSteps: phaseSteps)
            if fell && rate > previous * (1 + 1e-9) + 1e-12 {
                return Self.shapeWarning(schedule, "goes back up after step \(step - 1)", phaseSteps: phaseSteps,
                                         stepsPerEpoch: stepsPerEpoch, phase: phase,
                                         reason: "its period is shorter than the run, and a cosine rises again after it")
            }
            if rate < previous * (1 - 1e-9) { fell = true }
            peak = Swift.max(peak, rate)
            if collapsed == nil, peak > 0, rate < peak * collapsedRate { collapsed = step }
            previous = rate
        }
        guard let collapsed, collapsed < phaseSteps / 2 else { return nil }
        return Self.shapeWarning(schedule, "brings the learning rate below 1/10,000 of its peak by step \(collapsed)",
                                 phaseSteps: phaseSteps, stepsPerEpoch: stepsPerEpoch, phase: phase, reason: nil)
    }

    private static func shapeWarning(_ schedule: ScheduleConfig, _ what: String, phaseSteps: Int, stepsPerEpoch: Int,
                                     phase: Int?, reason: String?) -> String {
        let run = phase.map { "phase \($0)" } ?? "the run"
        return "the learning-rate schedule \(schedule) \(what) of \(run)'s \(phaseSteps) optimizer steps"
            + (reason.map { " (\($0))" } ?? "") + ": its step counts are optimizer steps, not epochs (an epoch here is "
            + "\(stepsPerEpoch) step\(stepsPerEpoch == 1 ? "" : "s"))"
    }

    /// The warning for an EMA with `configuration` over a run of `steps` optimizer steps, if any.
    static func emaWarning(_ configuration: EMAConfig, steps: Int) -> String? {
        // After one step the average is those weights, as the model is: nothing to say.
        let share = configuration.shareOfFirstUpdate(afterSteps: steps)
        guard share > emaLimit, steps > 1 else { return nil }
        let decay = configuration.decay
        // The decay whose average keeps 1% of the first step's weights after `steps` steps, shown with the
        // digits it needs (0.85, 0.995).
        let suggested = steps > 1 ? Foundation.pow(0.01, 1 / Double(steps - 1)) : 0
        var digits = 2
        while digits < 6 && Foundation.floor(suggested * Foundation.pow(10, Double(digits))) / Foundation.pow(10, Double(digits))
            >= 1 - Foundation.pow(10, -Double(digits)) { digits += 1 }
        let scale = Foundation.pow(10, Double(digits))
        let lower = Foundation.floor(suggested * scale) / scale
        let percent = Int((share * 100).rounded())
        return "--ema \(decay): after this run's \(steps) optimizer step\(steps == 1 ? "" : "s") the average still holds "
            + "\(percent)% of the weights after its first step (it averages about \(Int((1 / (1 - decay)).rounded())) "
            + "steps), and the run ends with the average (model.safetensors, checkpoints/best): "
            + (configuration.warmup ? "" : "add --ema-warmup, or ") + "lower --ema to \(lower) or less"
    }

    /// The warning for `schedule` over a phase of `phaseSteps` optimizer steps (`phase` names it in a
    /// two-phase run), when its warmup takes every step: the rate then peaks below the one asked for.
    static func warmupWarning(_ schedule: ScheduleConfig, phaseSteps: Int, phase: Int?) -> String? {
        guard case let .warmup(steps, startFactor, _) = schedule, phaseSteps > 0, steps >= phaseSteps else { return nil }
        let reached = startFactor + (1 - startFactor) * Double(phaseSteps - 1) / Double(steps)
        let percent = String(format: reached < 0.1 ? "%.1f" : "%.0f", reached * 100)
        let run = phase.map { "phase \($0)" } ?? "the run"
        return "a warmup of \(steps) steps (--warmup) takes all of \(run)'s \(phaseSteps) optimizer step"
            + "\(phaseSteps == 1 ? "" : "s"), so the learning rate peaks at \(percent)% of the one asked for "
            + "(\(phase == 2 ? "--phase2-lr" : "--lr")): "
            + "shorten the warmup to a small part of the \(phaseSteps) steps"
    }
}
