import Data
import Foundation
import Hashing
import NN
import Torch

/// Cached backbone features of the unlabelled images, for epochs that train the head on the feature
/// cache: the teacher labels `teacher` and the student trains on `student`, so the unlabelled
/// images cost one backbone pass per view, whatever the number of epochs and refreshes.
public struct UnlabeledFeatures {
    /// Features from the evaluation transform (one view): what the model labels.
    public var teacher: CachedFeatures
    /// Features from the training transform (epoch e uses view e mod K); the teacher's when the
    /// training transform is the evaluation transform.
    public var student: CachedFeatures

    public init(teacher: CachedFeatures, student: CachedFeatures) {
        self.teacher = teacher
        self.student = student
    }
}

/// The unlabelled images of a pseudo-labelling run (`TrainingConfiguration.pseudoLabel`) and how
/// they reach the trainer: the labelling pass (the current model in inference mode, evaluation
/// transform) and, each epoch, the pseudo-labelled part of every batch (training transform, through
/// the same `DataLoader` as the labelled data, or cached features).
///
/// Which images a batch gets is a function of the state, the seed, the epoch and the batch number:
/// epoch e shuffles the labelled set with a generator seeded by (seed, e), and batch b takes the
/// next `P` of that order (cycling), `P` being `PseudoLabelSettings.pseudoCount` of a full batch. A
/// run resumed in the middle of an epoch therefore gets the same pseudo-labelled images.
public final class PseudoLabeler {
    /// The unlabelled images (labels unused).
    public let unlabeled: any ImageDataset
    /// Each image's top-level folder, when the folder has them (`UnlabeledImageFolder.folderNames`).
    public let folderNames: [String?]
    /// The training classes (labels index these).
    public let classNames: [String]
    /// The transform of the student's images (the training augmentation).
    public let trainTransform: any SampleTransform
    /// The transform of the teacher's images (the evaluation transform).
    public let evalTransform: any SampleTransform
    /// Seeds the order of the pseudo-labelled images and their augmentation.
    public let seed: UInt64
    /// Images per batch of the labelling pass.
    public let batchSize: Int
    /// Decoding threads.
    public let workers: Int
    /// Cached features of the unlabelled images (needed for epochs that train on the feature cache).
    public var features: UnlabeledFeatures?
    /// Told what happens at each refresh (e.g. that no image reached the threshold).
    public var notify: (String) -> Void = { _ in }
    /// Told (once per file) about unlabelled images that cannot be decoded.
    public var reporter: SkippedFileReporter?

    public init(unlabeled: any ImageDataset, folderNames: [String?] = [], classNames: [String],
                trainTransform: any SampleTransform, evalTransform: any SampleTransform, seed: UInt64,
                batchSize: Int, workers: Int = 2) {
        self.unlabeled = unlabeled
        self.folderNames = folderNames
        self.classNames = classNames
        self.trainTransform = trainTransform
        self.evalTransform = evalTransform
        self.seed = seed
        self.batchSize = Swift.max(1, batchSize)
        self.workers = workers
    }

    // MARK: - Labelling

    /// Thrown by `label` when its `stop` was triggered (Ctrl-C) before every image was labelled.
    struct Stopped: Error {}

    /// Labels every unlabelled image with `trainer`'s model in eval behaviour and inference mode
    /// (on the teacher features when `input` is `.features`) and keeps those `settings.select` chooses.
    /// A triggered `stop` ends it after the current batch with `Stopped`: labelling a large folder takes
    /// minutes, and until 2026-12-07 a Ctrl-C waited for all of it.
    func label(by trainer: Trainer, input: Trainer.Input, settings: PseudoLabelSettings, epoch: Int,
               unless stop: SignalStop? = nil) throws -> PseudoLabelState {
        let binary = trainer.configuration.loss == .binary
        var predictions: [PseudoLabel] = []  // every unlabelled image's top class, in dataset order
        let model = trainer.model
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        func take(_ logits: Tensor, indices: [Int]) throws {
            let (labels, confidences) = try Self.predictions(logits, binary: binary)
            for (i, index) in indices.enumerated() {
                predictions.append(PseudoLabel(index: index, label: labels[i], confidence: confidences[i]))
            }
        }
        try withInferenceMode {
            switch input {
            case .features:
                // No usable unlabelled image (a missing or empty folder, reported at the start): nothing
                // to label, as on the image path; it failed the run at the start epoch.
                guard unlabeled.count > 0 else { return }
                guard let teacher = features?.teacher else {
                    throw TrainingError.invalidConfiguration("the epoch trains on cached features but the unlabelled "
                        + "images have none (PseudoLabeler.features)")
                }
                let view = try teacher.features.select(dim: 0, index: 0)
                let valid = teacher.valid.indices.filter { teacher.valid[$0] }
                for start in stride(from: 0, to: valid.count, by: batchSize) {
                    if stop?.isTriggered == true { throw Stopped() }
                    let indices = Array(valid[start..<Swift.min(start + batchSize, valid.count)])
                    let rows = try view.indexSelect(dim: 0, index: Tensor(indices.map { Int64($0) }, shape: [indices.count]))
                    try take(trainer.inferenceLogits(rows, input: .features), indices: indices)
                }
            case .images:
                guard unlabeled.count > 0 else { return }
                let loader = try DataLoader(unlabeled, batchSize: batchSize, transform: evalTransform, workers: workers)
                reporter?.watch(loader, split: "unlabeled")
                let run = loader.epoch(0)
                defer { run.cancel() }
                while let batch = try run.nextBatch() {
                    if stop?.isTriggered == true { throw Stopped() }
                    try take(trainer.inferenceLogits(batch.images, input: .images), indices: batch.indices)
                }
            }
        }
        let classes = binary ? 2 : classNames.count
        var state = PseudoLabelState(labels: settings.select(predictions, classes: classes), refreshedEpoch: epoch,
                                     candidates: predictions.count)
        state.folderAccuracy = folderAccuracy(of: state.labels)
        state.unlabeledDigest = unlabeledDigest
        return state
    }

    /// Whether `state`'s labels index this labeler's unlabelled images: the same list (by digest, when
    /// the state records one), and every index inside it.
    func fits(_ state: PseudoLabelState) -> Bool {
        guard state.labels.allSatisfy({ (0..<unlabeled.count).contains($0.index) }) else { return false }
        return state.unlabeledDigest.map { $0 == unlabeledDigest } ?? true
    }

    /// A digest of the unlabelled images in order (each file's name, its folder's name and its size):
    /// pseudo-labels are positions in that list, so a checkpoint's labels fit only the same list.
    public var unlabeledDigest: String {
        var hasher = SHA256Hasher()
        for sample in unlabeled.samples {
            guard let path = sample.source.path else { hasher.update(Array("memory\n".utf8)); continue }
            let url = URL(fileURLWithPath: path)
            let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
            hasher.update(Array("\(url.deletingLastPathComponent().lastPathComponent)/\(url.lastPathComponent)\t\(size)\n".utf8))
        }
        return hasher.finalizeHex()
    }

    /// Each row's top class and its probability (softmax; a sigmoid for one binary logit).
    static func predictions(_ logits: Tensor, binary: Bool) throws -> (labels: [Int], confidences: [Double]) {
        if binary {
            let p = try logits.reshape([-1]).sigmoid().floats()
            return (p.map { $0 > 0.5 ? 1 : 0 }, p.map { Double(Swift.max($0, 1 - $0)) })
        }
        let classes = logits.shape[1]
        let probabilities = try Functional.softmax(logits, dim: 1).contiguous().floats()
        var labels: [Int] = [], confidences: [Double] = []
        for row in 0..<logits.shape[0] {
            let slice = probabilities[row * classes..<(row + 1) * classes]
            var best = slice.startIndex
            for i in slice.indices where slice[i] > slice[best] { best = i }
            labels.append(best - row * classes)
            confidences.append(Double(slice[best]))
        }
        return (labels, confidences)
    }

    /// The share of `labels` whose class is their image's folder name, over images in folders named
    /// like a training class (nil when there are none).
    func folderAccuracy(of labels: [PseudoLabel]) -> Double? {
        guard !folderNames.isEmpty else { return nil }
        let known = Dictionary(classNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        var considered = 0, correct = 0
        for l in labels {
            guard l.index < folderNames.count, let folder = folderNames[l.index], let truth = known[folder] else { continue }
            considered += 1
            if truth == l.label { correct += 1 }
        }
        return considered > 0 ? Double(correct) / Double(considered) : nil
    }

    // MARK: - Batches

    /// The order of the labelled images in `epoch` (indices into `state.labels`).
    func order(epoch: Int, count: Int) -> [Int] {
        var random = SampleRandom(seed: SplitMix64.derive(seed, 0x95E0_4B1E, UInt64(bitPattern: Int64(epoch))))
        return random.permutation(count)
    }

    /// The pseudo-labelled parts of `epoch`'s batches of `train` from batch `first` on.
    func epoch(_ epoch: Int, of train: DataLoader, startingAtBatch first: Int, state: PseudoLabelState,
               settings: PseudoLabelSettings, input: Trainer.Input) throws -> PseudoLabelEpoch? {
        let perBatch = settings.pseudoCount(labelled: train.batchSize)
        guard perBatch > 0, !state.labels.isEmpty else { return nil }
        let order = order(epoch: epoch, count: state.labels.count)
        // Batch b's images: positions b·P ..< (b+1)·P of the epoch's order, cycling.
        let chosen = (0..<train.batchesPerEpoch * perBatch).map { state.labels[order[$0 % order.count]] }
        switch input {
        case .features:
            guard let student = features?.student else {
                throw TrainingError.invalidConfiguration("the epoch trains on cached features but the unlabelled "
                    + "images have none (PseudoLabeler.features)")
            }
            let view = try student.features.select(dim: 0, index: epoch % student.views)
            return PseudoLabelEpoch(settings: settings, perBatch: perBatch, source: .features(view, student.valid, chosen))
        case .images:
            let samples = chosen.map { LabeledSample(source: unlabeled.samples[$0.index].source, label: $0.label) }
            let loader = try DataLoader(LabeledDataset(samples: samples, classNames: classNames), batchSize: perBatch,
                                        seed: SplitMix64.derive(seed, 0x95E0), transform: trainTransform,
                                        workers: workers)
            reporter?.watch(loader, split: "unlabeled")
            return PseudoLabelEpoch(settings: settings, perBatch: perBatch,
                                    source: .images(loader.epoch(epoch, startingAtBatch: first)))
        }
    }
}

/// The pseudo-labelled parts of one epoch's batches (see `PseudoLabeler`).
final class PseudoLabelEpoch {
    enum Source {
        /// The loader's batch b holds batch b's images.
        case images(DataLoaderEpoch)
        /// One view of the student features, which rows are usable, and each position's label.
        case features(Tensor, [Bool], [PseudoLabel])
    }

    let settings: PseudoLabelSettings
    let perBatch: Int
    let source: Source
    private var pending: Batch?

    init(settings: PseudoLabelSettings, perBatch: Int, source: Source) {
        self.settings = settings
        self.perBatch = perBatch
        self.source = source
    }

    /// The pseudo-labelled images that join `batch` (`settings.pseudoCount(labelled: batch.count)`
    /// of them; fewer when files could not be decoded), or nil for none.
    func part(for batch: Batch) throws -> Batch? {
        let count = Swift.min(perBatch, settings.pseudoCount(labelled: batch.count))
        guard count > 0 else { return nil }
        switch source {
        case .features(let view, let valid, let chosen):
            let kept = (batch.number * perBatch..<batch.number * perBatch + count).map { chosen[$0] }
                .filter { valid[$0.index] }
            guard !kept.isEmpty else { return nil }
            return Batch(images: try view.indexSelect(dim: 0, index: Tensor(kept.map { Int64($0.index) }, shape: [kept.count])),
                         labels: try Tensor(kept.map { Int64($0.label) }, shape: [kept.count]),
                         indices: kept.map(\.index), number: batch.number)
        case .images(let run):
            if pending == nil || pending!.number < batch.number {
                pending = nil
                while let next = try run.nextBatch() {
                    if next.number >= batch.number { pending = next; break }
                }
            }
            guard let found = pending, found.number == batch.number else { return nil }
            pending = nil
            guard found.count > count else { return found }
            return Batch(images: try found.images.slice(dim: 0, start: 0, end: count),
                         labels: try found.labels.slice(dim: 0, start: 0, end: count),
                         indices: Array(found.indices.prefix(count)), number: found.number)
        }
    }

    func cancel() {
        if case .images(let run) = source { run.cancel() }
    }
}
