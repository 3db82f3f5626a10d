import ArgumentParser
import NN
import Torch
import Training

extension Precision: ExpressibleByArgument {}

/// `--precision fp32|bf16|auto` and its alias `--bf16`, one meaning for `train`, `evaluate`, `predict`
/// and `features` (the policy and the `auto` decision are `NN.Precision`'s).
struct PrecisionOptions: ParsableArguments {
    @Option(help: """
        Precision: fp32 (default), bf16 (CPU autocast with the per-layer policy: dense and pointwise \
        convolutions and Linear in bf16; depthwise convolutions, BatchNorm and activations in fp32) or \
        auto (bf16 only on a CPU with native bf16, avx512_bf16 or AMX, for a model the policy speeds up).
        """)
    var precision: Precision?
    @Flag(help: "Alias of --precision bf16.") var bf16 = false

    func validate() throws {
        if bf16, let precision, precision != .bf16 {
            throw ValidationError("--bf16 means --precision bf16; it cannot be combined with --precision \(precision.rawValue)")
        }
    }

    /// What was asked for: `--bf16` is bf16; neither flag is fp32.
    var choice: Precision { bf16 ? .bf16 : precision ?? .fp32 }

    /// `choice` with `auto` decided for `model` on this CPU (`Precision.resolved`).
    func resolved(for model: Module, device: Device = .cpu) -> Precision {
        choice.resolved(for: model, device: device)
    }

    /// Sets a run's precision; `TrainingRun.create` resolves `auto` once it has built the model.
    func apply(to recipe: inout RecipeOptions) {
        recipe.precision = choice
        recipe.autocastBF16 = choice == .bf16
    }
}
