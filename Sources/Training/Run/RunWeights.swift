import Foundation
import TensorIO
import Vision

/// Which weights of a run to use: its final weights, or one of its checkpoints. A checkpoint serves
/// while the run trains, after Ctrl-C, or to compare the best epoch with the final weights, as
/// PyTorch Lightning's `ckpt_path="best"` and `"last"` do.
public enum RunWeights: String, CaseIterable, Sendable {
    /// `model.safetensors`, written when training ends (the EMA's, or the best epoch's when early
    /// stopping restored them: `RunConfig.modelWeights` says which).
    case final
    /// `checkpoints/best`: the epoch that was best so far by the monitored metric.
    case best
    /// `checkpoints/last`: the latest checkpoint (each epoch's end, `--save-every-steps`, Ctrl-C).
    case last
}

extension RunDirectory {
    /// The weights file of the checkpoint `which` (`.best` or `.last`) and what it is for a reader
    /// ("checkpoints/best, epoch 3"). A run that keeps an EMA is evaluated with it (its final weights
    /// are the EMA's), so its checkpoint's EMA weights are chosen too. A checkpoint whose replacement a
    /// crash interrupted is found as `Checkpoint.locate` finds it. Throws `RunError.missingCheckpoint`
    /// when there is no complete one; for `.final`, the model file ("model.safetensors").
    public func weightsFile(_ which: RunWeights) throws -> (file: String, description: String) {
        guard which != .final else { return (model, Self.modelFile) }
        let folder = checkpoints + "/" + which.rawValue
        guard let found = Checkpoint.locate(folder) else {
            let reason = FileManager.default.fileExists(atPath: folder)
                ? Checkpoint.whyIncomplete(folder) ?? "it is incomplete" : "it does not exist"
            throw RunError.missingCheckpoint(path: path, name: "checkpoints/" + which.rawValue, reason: reason)
        }
        let manifest = try Checkpoint.readManifest(found)
        let state = manifest.state
        let epoch = state.batchInEpoch > 0 ? "epoch \(state.epoch + 1), batch \(state.batchInEpoch)"
            : "epoch \(state.epoch)"
        let ema = found + "/" + Checkpoint.emaFile
        if manifest.configuration.ema != nil, FileManager.default.fileExists(atPath: ema) {
            return (ema, "checkpoints/\(which.rawValue), \(epoch), EMA weights")
        }
        return (found + "/" + Checkpoint.modelFile, "checkpoints/\(which.rawValue), \(epoch)")
    }

    /// The run's model with the weights `which` names, in eval mode, and what they are (`weightsFile`'s
    /// description, read once with the weights: a run that trains may write a newer checkpoint at any
    /// time): `loadModel(_:notify:)` for `.final`, else the checkpoint's weights.
    public func loadModel(_ runConfig: RunConfig, from which: RunWeights,
                          notify: (TrainingRun.Notice) -> Void = TrainingRun.printToStandardError) throws
        -> (model: ImageClassifier, weights: String) {
        guard which != .final else { return (try loadModel(runConfig, notify: notify), Self.modelFile) }
        // A run that trains replaces a checkpoint by two renames (the old one aside, the new one in):
        // a reader between them found the folder and then no file in it. It looks for it again.
        var attempts = 1
        while true {
            let (file, description) = try weightsFile(which)
            Self.beforeReadingCheckpointForTesting?(file)
            do {
                return (try loadModel(runConfig, weights: file), description)
            } catch where attempts < 3 && !FileManager.default.fileExists(atPath: file) {
                attempts += 1
            }
        }
    }

    /// Tests only: called with a checkpoint's weights file between finding it and reading it, where a
    /// run that trains may replace the checkpoint.
    nonisolated(unsafe) static var beforeReadingCheckpointForTesting: ((String) -> Void)?

    /// The checkpoint that stands for an unfinished run's model: `checkpoints/best` (its best epoch so
    /// far) when it is complete, else `checkpoints/last`: which, its weights file and description
    /// (`weightsFile`). Nil when there is neither.
    public func checkpointForUnfinishedRun() -> (which: RunWeights, file: String, description: String)? {
        for which in [RunWeights.best, .last] {
            if let (file, description) = try? weightsFile(which) { return (which, file, description) }
        }
        return nil
    }
}
