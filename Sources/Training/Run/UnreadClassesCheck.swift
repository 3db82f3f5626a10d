import Data
import Foundation

/// After the first epoch of a run, the classes none of whose training images could be read (every
/// file truncated or unreadable, found only when decoded): each is a warning, since the model was
/// never trained on it, and a run left with fewer than two classes stops, as `Trainer.fit` refuses a
/// one-class dataset up front (probe AF: a class of truncated files trained a two-class model on
/// one class, without a word beyond the skipped files).
final class UnreadClassesCheck: TrainingCallback {
    private let dataset: any ImageDataset
    private let skipped: SkippedFileReporter
    private let warn: (String) -> Void
    private var checked = false

    /// Checks `dataset`'s classes against the training files `skipped` has recorded.
    init(dataset: any ImageDataset, skipped: SkippedFileReporter, warn: @escaping (String) -> Void) {
        self.dataset = dataset
        self.skipped = skipped
        self.warn = warn
    }

    func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        guard case .epochEnd = event, !checked else { return }
        checked = true
        let unread = Self.unreadClasses(of: dataset, skipped: skipped.paths(split: "training"))
        guard !unread.isEmpty else { return }
        for (name, count) in unread {
            warn("class '\(name)': none of its \(count) training image\(count == 1 ? "" : "s") could be read, "
                 + "so the model is not trained on it")
        }
        let trained = dataset.classNames.count - unread.count
        guard trained >= 2 else {
            throw TrainingError.invalidConfiguration(
                "only \(trained) class\(trained == 1 ? " has" : "es have") training images that could be read; "
                + "a classifier needs at least two classes")
        }
    }

    /// The classes of `dataset` that have samples, every one of them a file in `skipped`, with their
    /// sample counts, in class order.
    static func unreadClasses(of dataset: any ImageDataset, skipped: Set<String>) -> [(name: String, count: Int)] {
        guard !skipped.isEmpty else { return [] }
        var total = [Int](repeating: 0, count: dataset.classNames.count)
        var unread = total
        for sample in dataset.samples where dataset.classNames.indices.contains(sample.label) {
            total[sample.label] += 1
            if let path = sample.source.path, skipped.contains(path) { unread[sample.label] += 1 }
        }
        return dataset.classNames.indices.filter { total[$0] > 0 && unread[$0] == total[$0] }
            .map { (dataset.classNames[$0], total[$0]) }
    }
}
