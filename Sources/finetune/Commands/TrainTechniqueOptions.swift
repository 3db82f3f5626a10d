import ArgumentParser
import Data
import Training

/// The training techniques of `finetune train` that users know from timm, fastai, Lightning and
/// Keras (gradient accumulation, an exponential moving average of the weights), class balance,
/// colour jitter and CSV data. Parsed into `RecipeOptions` and `TrainOptions`.
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
    @Flag(help: """
        No bias decay (Bag of Tricks; timm's and fastai's default): biases and normalisation weights and \
        biases (every 1-D parameter) train without --weight-decay.
        """)
    var noBiasDecay = false
    @Option(help: "MixUp: blend each batch with its reverse, λ ~ Beta(A, A) (timm's --mixup; e.g. 0.2).")
    var mixup: Double?
    @Option(help: "CutMix: paste a box of area 1 - λ from the paired image, λ ~ Beta(A, A) (timm's --cutmix; e.g. 1.0).")
    var cutmix: Double?
    @Option(help: "With --mixup/--cutmix: probability that a batch is mixed (default 1).")
    var mixProb: Double?
    @Option(help: "With --mixup and --cutmix: probability of CutMix rather than MixUp for a batch (default 0.5).")
    var mixSwitchProb: Double?
    @Option(help: "With --mixup/--cutmix: stop mixing from this epoch on (0-based, as timm's --mixup-off-epoch).")
    var mixupOffEpoch: Int?
    @Option(help: """
        Loss weight per class: auto (scikit-learn's "balanced": n_samples / (n_classes × count), from \
        the training split), none, or a JSON file (an array in class order, or {"class": weight}).
        """)
    var classWeights: String?
    @Option(help: "How training batches are drawn: shuffle, or balanced (with replacement, each class equally likely).")
    var sampler: SamplerKind = .shuffle
    @Option(help: "torchvision's ColorJitter after the standard augmentation: B,C,S,H (e.g. 0.4,0.4,0.4,0.1), B,C,S (no hue), or one number for B, C and S (timm's --color-jitter 0.4).")
    var colorJitter: String?
    @Option(help: """
        Random erasing: with this probability, replace a rectangle (2% to 1/3 of the image, aspect 0.3 to \
        3.3) of the normalised image (timm's --reprob, e.g. 0.25; torchvision's RandomErasing).
        """)
    var randomErasing: Double?
    @Option(help: "With --random-erasing: fill with per-pixel normal noise (pixel, timm's default), one normal colour (rand) or zeros, the mean colour (const).")
    var erasingMode: RandomErasing.Mode?
    @Option(help: "With a path,label CSV file as DATA: the folder relative image paths start from (default: the CSV's folder).")
    var imageRoot: String?

    func validate() throws { _ = try jitter() }

    /// The four numbers B, C, S, H of --color-jitter. As timm reads its `--color-jitter`, one number is
    /// brightness, contrast and saturation alike, and three leave the hue alone: `--color-jitter 0.4`,
    /// a timm user's habit, was refused until 2026-12-07.
    func jitter() throws -> [Double]? {
        guard let colorJitter else { return nil }
        let parts = colorJitter.split(separator: ",", omittingEmptySubsequences: false)
        let values = parts.compactMap { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard values.count == parts.count, [1, 3, 4].contains(values.count) else {
            throw ValidationError("--color-jitter: '\(colorJitter)' is not 4 numbers B,C,S,H (e.g. 0.4,0.4,0.4,0.1), "
                + "3 (B,C,S) or 1 (B, C and S alike)")
        }
        switch values.count {
        case 1: return [values[0], values[0], values[0], 0]
        case 3: return values + [0]
        default: return values
        }
    }

    /// Puts the data options into the run's options.
    func apply(to options: inout TrainOptions) throws {
        options.classWeights = classWeights
        options.sampler = sampler == .shuffle ? nil : sampler
        options.colorJitter = try jitter()
        options.randomErasing = randomErasing == 0 ? nil : randomErasing  // 0: off, as timm's --reprob 0
        options.erasingMode = erasingMode
        options.imageRoot = imageRoot
    }

    /// Puts the techniques into the run's recipe.
    func apply(to recipe: inout RecipeOptions) {
        recipe.accumulateSteps = accumulateSteps
        recipe.emaDecay = ema
        recipe.emaWarmup = emaWarmup ? true : nil
        recipe.noBiasDecay = noBiasDecay ? true : nil
        recipe.mixupAlpha = mixup
        recipe.cutmixAlpha = cutmix
        recipe.mixProbability = mixProb
        recipe.mixSwitchProbability = mixSwitchProb
        recipe.mixupOffEpoch = mixupOffEpoch
    }

    /// The flag of each `RecipeOptions`/`TrainOptions` setting these options set.
    static let flags: [String: String] = [
        "accumulateSteps": "--accumulate-steps", "emaDecay": "--ema", "emaWarmup": "--ema-warmup", "noBiasDecay": "--no-bias-decay",
        "mixupAlpha": "--mixup", "cutmixAlpha": "--cutmix", "mixProbability": "--mix-prob",
        "mixSwitchProbability": "--mix-switch-prob", "mixupOffEpoch": "--mixup-off-epoch",
        "classWeights": "--class-weights", "colorJitter": "--color-jitter", "imageRoot": "--image-root",
        "randomErasing": "--random-erasing", "erasingMode": "--erasing-mode",
    ]
}
