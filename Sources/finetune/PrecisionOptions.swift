import ArgumentParser
import NN
import Torch
import Training

extension Precision: ExpressibleByArgument {}
extension PrecisionPolicy: ExpressibleByArgument {}

/// `--precision fp32|bf16|auto` and its alias `--bf16`, one meaning for `train`, `evaluate`, `predict`,
/// `features` and `serve` (the policy and the `auto` decision are `NN.Precision`'s). `auto` is the
/// default: on the README's main job it kept test accuracy within 0.2 points of fp32 over 3 seeds,
/// head-only and two-phase (docs/benchmarks.md, "Precision policy").
struct PrecisionOptions: ParsableArguments {
    @Option(help: """
        Precision: auto (the default: bf16 on a CPU with native bf16, avx512_bf16 or AMX, for a model \
        the policy speeds up; fp32 elsewhere), fp32, or bf16 (CPU autocast with the per-layer policy of \
        docs/cli.md: convolutions, Linear, BatchNorm, ReLU and SiLU in bf16; ReLU6, 5x5 depthwise \
        convolutions and, on LibTorch 2.x, stride-2 depthwise ones in bf16 in inference only).
        """)
    var precision: Precision?
    @Flag(help: "Alias of --precision bf16.") var bf16 = false

    func validate() throws {
        if bf16, let precision, precision != .bf16 {
            throw ValidationError("--bf16 means --precision bf16; it cannot be combined with --precision \(precision.rawValue)")
        }
    }

    /// What was asked for: `--bf16` is bf16; neither flag is auto.
    var choice: Precision { bf16 ? .bf16 : precision ?? .auto }

    /// `choice` with `auto` decided for `model` on this CPU (`Precision.resolved`). When `auto` decides
    /// bf16, standard error says so: probabilities then differ from float32's (and an ONNX export's) in
    /// the second decimal, and nothing else showed why.
    func resolved(for model: Module, device: Device = .cpu) -> Precision {
        let precision = choice.resolved(for: model, device: device)
        announce(precision, reason: Precision.autoReason(for: model, device: device))
        return precision
    }

    /// Says on standard error that `auto` chose bf16 when `resolved` (what a library call decided for
    /// `choice`) is bf16 and `choice` was `auto`; nothing otherwise.
    func announce(_ resolved: Precision, reason: @autoclosure () -> String = "native bf16 on this CPU") {
        guard choice == .auto, resolved == .bf16 else { return }
        printError("precision: bf16 (auto: \(reason())); --precision fp32 for float32 results")
    }

    /// Sets a run's precision; `TrainingRun.create` resolves `auto` once it has built the model.
    func apply(to recipe: inout RecipeOptions) {
        recipe.precision = choice
        recipe.autocastBF16 = choice == .bf16
    }
}
