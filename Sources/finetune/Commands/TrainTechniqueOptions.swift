import ArgumentParser
import Training

/// The training techniques of `finetune train` that users know from timm, fastai, Lightning and
/// Keras: gradient accumulation and an exponential moving average of the weights. Parsed into
/// `RecipeOptions`.
struct TechniqueOptions: ParsableArguments {
    @Option(help: """
        Gradient accumulation: step the optimizer every K batches, each loss scaled by 1/K (an epoch's \
        last, smaller group by 1/its size). The schedule and --save-every-steps count optimizer steps.
        """)
    var accumulateSteps: Int?
    @Option(help: """
        Keep an exponential moving average of the weights with this decay (timm's ModelEmaV3, e.g. \
        0.999; BatchNorm statistics are copied): evaluated every epoch (val_*_ema) and saved as \
        model.safetensors.
        """)
    var ema: Double?
    @Flag(help: "With --ema: timm's decay warmup, 1 - (1 + step)^(-2/3) until it reaches --ema.")
    var emaWarmup = false

    /// Puts the techniques into the run's recipe.
    func apply(to recipe: inout RecipeOptions) {
        recipe.accumulateSteps = accumulateSteps
        recipe.emaDecay = ema
        recipe.emaWarmup = emaWarmup ? true : nil
    }

    /// The flag of each `RecipeOptions`/`TrainOptions` setting these options set.
    static let flags: [String: String] = [
        "accumulateSteps": "--accumulate-steps", "emaDecay": "--ema", "emaWarmup": "--ema-warmup",
    ]
}
