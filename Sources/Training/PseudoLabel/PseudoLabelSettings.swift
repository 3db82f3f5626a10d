import Foundation

/// When the pseudo-labels are recomputed (`--pseudo-label-refresh`).
public enum PseudoLabelRefresh: String, Codable, CaseIterable, Equatable, Sendable {
    /// At the start of every epoch from the start epoch on, by the model trained so far.
    case everyEpoch = "every-epoch"
    /// Once, at the start epoch; later epochs keep those labels.
    case once
}

/// Which confident images become pseudo-labels (`--pseudo-label-selection`).
public enum PseudoLabelSelection: String, Codable, CaseIterable, Equatable, Sendable {
    /// Every image whose top probability reaches the threshold (FixMatch's rule).
    case threshold
    /// Class-balanced: of the images at or above the threshold, each class keeps its most confident
    /// ones, as many as the class with the fewest (classes with none keep none), so that classes the
    /// model finds easy do not crowd out the others.
    case balanced
    /// FlexMatch's class-adaptive thresholds (Zhang et al. 2021, with its threshold warm-up), computed
    /// at each refresh over all unlabelled images: with σ_c the images predicted as c at or above the
    /// threshold τ and u those below it, β_c = σ_c / max(max σ, u), and class c's threshold is
    /// τ · β_c / (2 − β_c): lower for classes the model is still learning.
    case flexmatch
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
    /// The largest `fraction`: 9 pseudo-labelled images per labelled one (FixMatch's μ is 7). Closer to
    /// 1 the count per batch grows without bound: 1 − 1e-16 asked for 7 × 10¹⁸ bytes and crashed.
    public static let largestFraction = 0.9
    /// The first epoch (0-based) that uses pseudo-labels; nil: `epochs / 3`.
    public var startEpoch: Int?
    /// Whether labels are recomputed every epoch or once.
    public var refresh: PseudoLabelRefresh
    /// The loss weight of pseudo-labelled images (1: the same as labelled ones), ≥ 0.
    public var weight: Double
    /// How the confident images are chosen (nil, as in runs from before it existed: `.threshold`).
    public var selection: PseudoLabelSelection?

    /// The recipe: threshold 0.9, 30 % of each batch, from a third of the epochs, refreshed every epoch.
    public init(threshold: Double = 0.9, fraction: Double = 0.3, startEpoch: Int? = nil,
                refresh: PseudoLabelRefresh = .everyEpoch, weight: Double = 1, selection: PseudoLabelSelection? = nil) {
        self.threshold = threshold
        self.fraction = fraction
        self.startEpoch = startEpoch
        self.refresh = refresh
        self.weight = weight
        self.selection = selection
    }

    /// The first out-of-range setting, as (its name in these settings, why), or nil.
    public func problem() -> (setting: String, reason: String)? {
        if !(threshold > 0 && threshold <= 1) {
            return ("threshold", "must be in (0, 1] (a probability), got \(threshold)")
        }
        if !(fraction >= 0 && fraction <= Self.largestFraction) {
            return ("fraction", "must be in [0, \(Self.largestFraction)] (the rest of each batch is labelled data; at "
                    + "\(Self.largestFraction), 9 pseudo-labelled images per labelled one), got \(fraction)")
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

    /// The pseudo-labels `selection` keeps of `predictions` (every candidate's top class and its
    /// probability, in unlabelled-dataset order), in that order.
    public func select(_ predictions: [PseudoLabel], classes: Int) -> [PseudoLabel] {
        let confident = predictions.filter { $0.confidence >= threshold }
        switch selection ?? .threshold {
        case .threshold:
            return confident
        case .balanced:
            var byClass = [Int: [PseudoLabel]](grouping: confident, by: \.label)
            guard let quota = byClass.values.map(\.count).min() else { return [] }
            for (label, members) in byClass {
                byClass[label] = Array(members.sorted { ($0.confidence, $1.index) > ($1.confidence, $0.index) }.prefix(quota))
            }
            let kept = Set(byClass.values.joined().map(\.index))
            return confident.filter { kept.contains($0.index) }
        case .flexmatch:
            var counts = [Int](repeating: 0, count: Swift.max(classes, 1))
            for p in confident where p.label >= 0 && p.label < counts.count { counts[p.label] += 1 }
            let unused = predictions.count - confident.count
            let normaliser = Double(Swift.max(counts.max() ?? 0, unused))
            guard normaliser > 0 else { return confident }
            return predictions.filter { p in
                let beta = p.label >= 0 && p.label < counts.count ? Double(counts[p.label]) / normaliser : 1
                return p.confidence >= threshold * beta / (2 - beta)
            }
        }
    }

    /// Pseudo-labelled images that join a batch of `labelled` images.
    public func pseudoCount(labelled: Int) -> Int {
        guard fraction > 0, labelled > 0 else { return 0 }
        // `fraction` past `largestFraction` (1 made this infinite, a trap) counts as the largest.
        let f = Swift.min(fraction, Self.largestFraction)
        return Int((f * Double(labelled) / (1 - f)).rounded())
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
    /// The unlabelled images the labels index (`PseudoLabeler.unlabeledDigest`: names, sizes, order);
    /// nil in checkpoints written before it was recorded.
    public var unlabeledDigest: String?

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
