import ArgumentParser
import Training

extension PseudoLabelRefresh: ExpressibleByArgument {}
extension PseudoLabelSelection: ExpressibleByArgument {}

/// Pseudo-labelling flags of `finetune train` (semi-supervised fine-tuning, see docs/cli.md):
/// parsed into `TrainOptions.unlabeled` and `TrainOptions.pseudoLabel`.
struct PseudoLabelOptions: ParsableArguments {
    @Option(help: """
        A folder of unlabelled images (read recursively; class folder names are ignored, except to \
        report the pseudo-labels' accuracy against them): the model trained so far labels them, and \
        those it is sure of join the training batches.
        """)
    var unlabeled: String?
    @Option(help: "First epoch (0-based) that uses pseudo-labels (default: a third of --epochs).")
    var pseudoLabelStartEpoch: Int?
    @Option(help: "Top-class probability an unlabelled image needs to be used, in (0, 1] (default 0.9).")
    var pseudoLabelThreshold: Double?
    @Option(help: "Share of each batch that is pseudo-labelled, in [0, 0.9] (default 0.3; the rest is labelled data).")
    var pseudoLabelFraction: Double?
    @Option(help: "Relabel the unlabelled images every-epoch or once (at the start epoch).")
    var pseudoLabelRefresh: PseudoLabelRefresh?
    @Option(help: "Loss weight of the pseudo-labelled images (default 1: as labelled ones).")
    var pseudoLabelWeight: Double?
    @Option(help: "Which confident images are used: threshold (every one at or above it; default), balanced (each class as many as the class with the fewest), or flexmatch (FlexMatch's lower thresholds for classes with fewer confident images).")
    var pseudoLabelSelection: PseudoLabelSelection?

    /// The flag of each pseudo-label setting.
    static let flags: [String: String] = [
        "unlabeled": "--unlabeled", "pseudoLabelThreshold": "--pseudo-label-threshold",
        "pseudoLabelFraction": "--pseudo-label-fraction", "pseudoLabelStartEpoch": "--pseudo-label-start-epoch",
        "pseudoLabelWeight": "--pseudo-label-weight",
    ]

    func validate() throws {
        var options = TrainOptions(epochs: 1, batchSize: 1)
        apply(to: &options)
        do {
            try TrainingRun.validatePseudoLabel(options)
        } catch RunError.invalidSetting(let setting, let reason) {
            throw ValidationError("\(Self.flags[setting] ?? setting): \(reason)")
        }
    }

    /// The settings the flags give (nil when none is given).
    var settings: PseudoLabelSettings? {
        guard pseudoLabelStartEpoch != nil || pseudoLabelThreshold != nil || pseudoLabelFraction != nil
            || pseudoLabelRefresh != nil || pseudoLabelWeight != nil || pseudoLabelSelection != nil else { return nil }
        let defaults = PseudoLabelSettings()
        return PseudoLabelSettings(threshold: pseudoLabelThreshold ?? defaults.threshold,
                                   fraction: pseudoLabelFraction ?? defaults.fraction, startEpoch: pseudoLabelStartEpoch,
                                   refresh: pseudoLabelRefresh ?? defaults.refresh, weight: pseudoLabelWeight ?? defaults.weight,
                                   selection: pseudoLabelSelection)
    }

    /// Puts the unlabelled folder and the settings into the run's options.
    func apply(to options: inout TrainOptions) {
        options.unlabeled = unlabeled
        options.pseudoLabel = settings
    }
}
