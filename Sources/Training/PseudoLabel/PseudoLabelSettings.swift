import Foundation

/// When the pseudo-labels are recomputed (`--pseudo-label-refresh`).
public enum PseudoLabelRefresh: String, Codable, CaseIterable, Equatable, Sendable {
    /// At the start of every epoch from the start epoch on, by the model trained so far.
    case everyEpoch = "every-epoch"
    /// Once, at the start epoch; later epochs keep those labels.
    case once
}

/// Pseudo-labelling (semi-supervised fine-tuning): unlabelled images labelled by the model trained so
/// far join the training batches (`TrainingConfiguration.pseudoLabel`, `Trainer.pseudoLabeler`).
///
/// * From epoch `startEpoch` (0-based; nil: a third of the epochs), at each refresh, the current model
///   labels every unlabelled image in inference mode with the evaluation transform; images whose top
///   probability is at least `threshold` are used, with their top class as label.
/// * Each batch of `n` labelled images gets `round(fraction × n / (1 − fraction))` pseudo-labelled
///   images (with the training augmentation), so that they make up `fraction` of the batch: the
///   labelled data, its batches, the epoch length and the schedule are those of a run without them.
/// * The pseudo-labelled part's mean loss counts `weight` times its share of the batch.
public struct PseudoLabelSettings: Codable, Equatable, Sendable {
    /// The top-class probability an image needs to be used, in (0, 1].
    public var threshold: Double
    /// The share of each batch that is pseudo-labelled, in [0, 1).
    public var fraction: Double
    /// The first epoch (0-based) that uses pseudo-labels; nil: `epochs / 3`.
    public var startEpoch: Int?
    /// Whether labels are recomputed every epoch or once.
    public var refresh: PseudoLabelRefresh
    /// The loss weight of pseudo-labelled images (1: the same as labelled ones), ≥ 0.
    public var weight: Double

    /// The recipe: threshold 0.9, 30 % of each batch, from a third of the epochs, refreshed every epoch.
    public init(threshold: Double = 0.9, fraction: Double = 0.3, startEpoch: Int? = nil,
                refresh: PseudoLabelRefresh = .everyEpoch, weight: Double = 1) {
        self.threshold = threshold
        self.fraction = fraction
        self.startEpoch = startEpoch
        self.refresh = refresh
        self.weight = weight
    }

    /// The first out-of-range setting, as (its name in these settings, why), or nil.
    public func problem() -> (setting: String, reason: String)? {
        if !(threshold > 0 && threshold <= 1) {
            return ("threshold", "must be in (0, 1] (a probability), got \(threshold)")
        }
        if !(fraction >= 0 && fraction < 1) {
            return ("fraction", "must be in [0, 1) (the rest of each batch is labelled data), got \(fraction)")
        }
        if let startEpoch, startEpoch < 0 { return ("startEpoch", "must be ≥ 0, got \(startEpoch)") }
        if !(weight >= 0 && weight.isFinite) { return ("weight", "must be a finite number ≥ 0, got \(weight)") }
        return nil
    }

    /// Throws `TrainingError.invalidConfiguration` naming the first setting out of range.
    public func validate() throws {
        if let (setting, reason) = problem() {
            throw TrainingError.invalidConfiguration("pseudo-label \(setting) \(reason)")
        }
    }

    /// The first epoch that uses pseudo-labels in a run of `epochs` epochs.
    public func firstEpoch(of epochs: Int) -> Int { startEpoch ?? epochs / 3 }

    /// Pseudo-labelled images that join a batch of `labelled` images.
    public func pseudoCount(labelled: Int) -> Int {
        guard fraction > 0, labelled > 0 else { return 0 }
        return Int((fraction * Double(labelled) / (1 - fraction)).rounded())
    }
}

/// One unlabelled image the model labelled with enough confidence.
public struct PseudoLabel: Codable, Equatable, Sendable {
    /// The image's index in the unlabelled dataset.
    public var index: Int
    /// The class the model gave it (its top class).
    public var label: Int
    /// The model's probability of that class.
    public var confidence: Double

    public init(index: Int, label: Int, confidence: Double) {
        self.index = index
        self.label = label
        self.confidence = confidence
    }
}

/// The pseudo-labels in use: which images, which labels, and when they were computed. Part of every
/// checkpoint (`TrainingState.pseudoLabels`), so a resumed run trains on the same ones.
public struct PseudoLabelState: Codable, Equatable, Sendable {
    /// The images at or above the threshold, in unlabelled-dataset order.
    public var labels: [PseudoLabel]
    /// The epoch (0-based) at whose start they were computed.
    public var refreshedEpoch: Int
    /// Images the model labelled (those that could be decoded).
    public var candidates: Int
    /// Where the unlabelled images lie in class folders named like training classes: the share of
    /// the used images whose label is their folder's name (evaluation only; never used to train).
    public var folderAccuracy: Double?

    public init(labels: [PseudoLabel], refreshedEpoch: Int, candidates: Int, folderAccuracy: Double? = nil) {
        self.labels = labels
        self.refreshedEpoch = refreshedEpoch
        self.candidates = candidates
        self.folderAccuracy = folderAccuracy
    }

    /// Their mean confidence (NaN when there are none).
    public var meanConfidence: Double {
        labels.isEmpty ? .nan : labels.reduce(0) { $0 + $1.confidence } / Double(labels.count)
    }

    /// Images per class, indexed by class.
    public func histogram(classes: Int) -> [Int] {
        var counts = [Int](repeating: 0, count: classes)
        for l in labels where l.label >= 0 && l.label < classes { counts[l.label] += 1 }
        return counts
    }

    /// The epoch metrics: `pseudo_count`, `pseudo_confidence`, `pseudo_class_<name>` per class and,
    /// with class folders, `pseudo_folder_accuracy`.
    public func metrics(classNames: [String]) -> [String: Double] {
        var metrics = ["pseudo_count": Double(labels.count), "pseudo_confidence": meanConfidence]
        for (name, count) in zip(classNames, histogram(classes: classNames.count)) {
            metrics["pseudo_class_" + name] = Double(count)
        }
        if let folderAccuracy { metrics["pseudo_folder_accuracy"] = folderAccuracy }
        return metrics
    }
}
