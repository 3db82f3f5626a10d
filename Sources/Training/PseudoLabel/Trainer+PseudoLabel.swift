import Data
import Foundation
import Torch

extension Trainer {
    /// Float32 logits of `x` (images, or cached features) with the configured autocast; the caller
    /// sets the model's mode and the autograd mode.
    func inferenceLogits(_ x: Tensor, input: Input) throws -> Tensor {
        let output = try withAutocast(enabled: configuration.autocastBF16) { try forward(x, input: input) }
        return output.dtype == .float32 ? output : try output.to(.float32)
    }

    /// At the start of an epoch from the start epoch on, refreshes the pseudo-labels when due (every
    /// epoch, or once) and returns the epoch's pseudo-labelled batch parts; nil when the epoch has none.
    func pseudoLabelEpoch(_ train: DataLoader, startingAtBatch first: Int, input: Input) throws -> PseudoLabelEpoch? {
        guard let settings = configuration.pseudoLabel, settings.fraction > 0,
              state.epoch >= settings.firstEpoch(of: state.totalEpochs ?? state.epoch + 1) else { return nil }
        guard let labeler = pseudoLabeler else {
            throw TrainingError.invalidConfiguration("the configuration pseudo-labels from epoch "
                + "\(settings.firstEpoch(of: state.totalEpochs ?? 0) + 1) but the trainer has no pseudoLabeler")
        }
        // A checkpoint's labels are positions in the unlabelled list it was taken with: another list (files
        // added, removed, the folder gone) gave other images those labels, or an index past the end (a
        // trap). Mid-epoch that is refused (the epoch cannot go on exactly); at an epoch start they are
        // computed again.
        if let saved = state.pseudoLabels, !labeler.fits(saved) {
            guard first == 0 else {
                throw TrainingError.resumeMismatch("the unlabelled images (\(labeler.unlabeled.count) now) are not those "
                    + "the checkpoint's pseudo-labels index: files were added, removed or changed since; put them back "
                    + "as they were to resume this epoch exactly")
            }
            labeler.notify("pseudo-labelling: the unlabelled images changed since the checkpoint; labelling them again")
            state.pseudoLabels = nil
        }
        // Mid-epoch resume keeps the labels the epoch started with (they are in the checkpoint).
        if first == 0 && (settings.refresh == .everyEpoch || state.pseudoLabels == nil) {
            let labels = try labeler.label(by: self, input: input, settings: settings, epoch: state.epoch,
                                           unless: distributed == nil ? signalStop : nil)
            state.pseudoLabels = labels
            if labels.labels.isEmpty && labels.candidates > 0 {
                labeler.notify("pseudo-labelling, epoch \(state.epoch + 1): no unlabelled image reaches the threshold "
                    + "\(settings.threshold) (of \(labels.candidates)); training on labelled data only")
            } else if !labels.labels.isEmpty {
                let rule = settings.selection.map { $0 == .threshold ? "" : ", \($0.rawValue)" } ?? ""
                labeler.notify(String(format: "pseudo-labelling, epoch %d: %d of %d unlabelled images at or above %g%@ "
                    + "(mean confidence %.3f)", state.epoch + 1, labels.labels.count, labels.candidates,
                    settings.threshold, rule, labels.meanConfidence))
            }
        }
        guard let labels = state.pseudoLabels else { return nil }
        return try labeler.epoch(state.epoch, of: train, startingAtBatch: first, state: labels, settings: settings,
                                 input: input)
    }

    /// The epoch's pseudo-label records (count, mean confidence, class histogram, folder accuracy),
    /// from the start epoch on.
    func pseudoLabelMetrics() -> [String: Double] {
        guard let settings = configuration.pseudoLabel, settings.fraction > 0, let labeler = pseudoLabeler,
              state.epoch >= settings.firstEpoch(of: state.totalEpochs ?? state.epoch + 1) else { return [:] }
        let labels = state.pseudoLabels ?? PseudoLabelState(labels: [], refreshedEpoch: state.epoch, candidates: 0)
        return labels.metrics(classNames: labeler.classNames)
    }

    /// The loss of a batch of labelled rows followed by pseudo-labelled rows: the mean over all rows,
    /// the pseudo-labelled part's mean counting `weight` times its share when the weight is not 1.
    /// Returns the logits of the labelled rows (the training metrics count those only).
    func pseudoLabelLoss(logits: Tensor, labels: Tensor, pseudo: Tensor) throws -> (Tensor, Tensor) {
        let n = labels.count, p = pseudo.count
        let labelled = try logits.slice(dim: 0, start: 0, end: n)
        let weight = configuration.pseudoLabel?.weight ?? 1
        if weight == 1 {
            return (try computeLoss(logits: logits, labels: Tensor.cat([labels, pseudo])), labelled)
        }
        let labelledLoss = try computeLoss(logits: labelled, labels: labels) * (Double(n) / Double(n + p))
        let pseudoLoss = try computeLoss(logits: logits.slice(dim: 0, start: n, end: n + p), labels: pseudo)
            * (weight * Double(p) / Double(n + p))
        return (try labelledLoss + pseudoLoss, labelled)
    }
}
