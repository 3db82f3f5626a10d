import Foundation

/// Subsets, stratified splits, per-class limits and class balancing for any `ImageDataset`.
extension ImageDataset {
    /// The samples at `indices` (in that order), with the same classes.
    public func subset(_ indices: [Int]) -> LabeledDataset {
        LabeledDataset(samples: indices.map { samples[$0] }, classNames: classNames,
                       skipped: (self as? LabeledDataset)?.skipped ?? SkippedFiles())
    }

    /// Sample indices per class, in dataset order.
    public func indicesByClass() -> [[Int]] {
        var groups = [[Int]](repeating: [], count: classNames.count)
        for (i, s) in samples.enumerated() where s.label >= 0 && s.label < groups.count { groups[s.label].append(i) }
        return groups
    }

    /// A stratified train/validation split (what `--val-split 0.2` does when there is no validation
    /// folder): in every class, a seeded random `round(count * validationFraction)` samples go to
    /// validation — at least one and never all, when the class has two or more (a class with a single
    /// sample stays in training). Both parts keep the dataset's order; they are disjoint and together
    /// hold every sample. The same seed gives the same split.
    public func stratifiedSplit(validationFraction: Double, seed: UInt64) throws -> (train: LabeledDataset,
                                                                                     validation: LabeledDataset) {
        guard validationFraction > 0 && validationFraction < 1 else {
            throw DataError.invalidDataset("the validation fraction must be between 0 and 1 (exclusive), " +
                                           "got \(validationFraction)")
        }
        var isValidation = [Bool](repeating: false, count: samples.count)
        for (label, members) in indicesByClass().enumerated() where members.count >= 2 {
            let wanted = Int((Double(members.count) * validationFraction).rounded())
            let n = min(max(wanted, 1), members.count - 1)
            var random = SampleRandom(seed: SplitMix64.derive(seed, 0x5D1, UInt64(label)))
            var shuffled = members
            random.shuffle(&shuffled)
            for i in shuffled.prefix(n) { isValidation[i] = true }
        }
        let train = samples.indices.filter { !isValidation[$0] }
        let validation = samples.indices.filter { isValidation[$0] }
        return (subset(train), subset(validation))
    }

    /// At most `perClass` samples of each class: the first ones in dataset order, or a seeded random
    /// choice when `seed` is given (kept in dataset order either way).
    public func limited(perClass: Int, seed: UInt64? = nil) -> LabeledDataset {
        var keep = [Bool](repeating: false, count: samples.count)
        for (label, members) in indicesByClass().enumerated() {
            var chosen = members
            if let seed, members.count > perClass {
                var random = SampleRandom(seed: SplitMix64.derive(seed, 0x11A, UInt64(label)))
                random.shuffle(&chosen)
            }
            for i in chosen.prefix(max(0, perClass)) { keep[i] = true }
        }
        return subset(samples.indices.filter { keep[$0] })
    }

    /// Class weights for the loss, scikit-learn's 'balanced' heuristic:
    /// `n_samples / (n_classes * count[c])`, where `n_classes` counts the classes that occur.
    /// A class with no samples gets weight 0.
    public func classWeights() -> [Double] {
        let counts = classCounts
        let present = counts.filter { $0 > 0 }.count
        let total = counts.reduce(0, +)
        return counts.map { $0 > 0 ? Double(total) / (Double(present) * Double($0)) : 0 }
    }
}

/// Class-balanced sampling with replacement (PyTorch's `WeightedRandomSampler` with weights
/// `1 / count[label]`): every class is drawn equally often on average. Seeded per epoch.
public struct BalancedSampler: Sendable {
    /// Cumulative sample weights.
    let cumulative: [Double]
    /// Draws per epoch (PyTorch's `num_samples`).
    public let numSamples: Int
    /// Seed of the draws; epoch `e` uses a stream derived from it and `e`, so epochs differ but a run repeats.
    public let seed: UInt64

    /// `numSamples` draws per epoch (default: the dataset's size; a negative count draws none).
    /// Samples with a negative label (unlabelled) are never drawn. The weights come from the labels
    /// themselves: `classCount` is not needed for them (a label at or past it is a class of its own).
    public init(labels: [Int], classCount: Int, numSamples: Int? = nil, seed: UInt64) {
        // Counted by label value: an array as long as the largest label took 8 GB for one stray label of 10⁹.
        var counts: [Int: Int] = [:]
        for l in labels where l >= 0 { counts[l, default: 0] += 1 }
        var running = 0.0
        cumulative = labels.map { l in
            running += l >= 0 ? 1 / Double(counts[l] ?? 1) : 0
            return running
        }
        self.numSamples = max(0, numSamples ?? labels.count)
        self.seed = seed
    }

    /// A sampler over `dataset`'s labels and classes (`numSamples` defaults to the dataset's size).
    public init(_ dataset: any ImageDataset, numSamples: Int? = nil, seed: UInt64) {
        self.init(labels: dataset.labels, classCount: dataset.classNames.count, numSamples: numSamples, seed: seed)
    }

    /// The dataset indices drawn in `epoch`.
    public func indices(epoch: Int) -> [Int] {
        guard let total = cumulative.last, total > 0 else { return [] }
        var random = SampleRandom(seed: SplitMix64.derive(seed, 0xBA1, UInt64(bitPattern: Int64(epoch))))
        return (0..<numSamples).map { _ in
            let u = random.unit() * total
            // First index whose cumulative weight exceeds u.
            var lo = 0, hi = cumulative.count - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] > u { hi = mid } else { lo = mid + 1 }
            }
            return lo
        }
    }
}
