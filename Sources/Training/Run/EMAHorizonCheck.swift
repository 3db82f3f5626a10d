import Foundation

/// At the start of a run that keeps an EMA of its weights (and ends with it: model.safetensors,
/// checkpoints/best), a warning when the run has too few optimizer steps for the EMA's decay: after
/// them more than `limit` of the average would still be the weights after the first step. `--ema 0.99`
/// averages about 100 steps; on 30 it ended with 75% of the first step's weights, at 26% validation
/// accuracy where the raw weights had 60%, without a word (found in stop 52).
final class EMAHorizonCheck: TrainingCallback {
    /// The share of the first step's weights above which the run is warned.
    static let limit = 0.1
    private let warn: (String) -> Void

    /// Warns through `warn`.
    init(warn: @escaping (String) -> Void) {
        self.warn = warn
    }

    func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        guard case .fitStart(let info) = event, let ema = trainer.ema?.configuration else { return }
        let state = trainer.state
        let perEpoch = state.stepsPerEpoch ?? 1
        let remaining = Swift.max(0, info.epochs - info.startEpoch) * perEpoch
            - info.startBatch / trainer.configuration.accumulationSteps
        let steps = state.globalStep + Swift.max(0, remaining)
        if let message = Self.warning(ema, steps: steps) { warn(message) }
    }

    /// The warning for an EMA with `configuration` over a run of `steps` optimizer steps, if any.
    static func warning(_ configuration: EMAConfig, steps: Int) -> String? {
        let share = configuration.shareOfFirstUpdate(afterSteps: steps)
        guard share > limit, steps > 0 else { return nil }
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
            + "steps), and the run ends with the average (model.safetensors, checkpoints/best): add --ema-warmup, or lower "
            + "--ema to \(lower) or less"
    }
}
