import Foundation

/// Why a run directory cannot be created, read, locked or replaced. Each case names the path.
public enum RunError: Error, CustomStringConvertible, Equatable {
    /// `path` is not a run directory written by finetune (the reason says what is missing or wrong).
    case notARun(path: String, reason: String)
    /// `config.json` could not be read or decoded, or holds values that cannot be used.
    case invalidConfig(path: String, reason: String)
    /// A run whose training has not ended (`status`: `running`, `interrupted`, `diverged`, `failed`), so
    /// it has no final weights (`model.safetensors`) to evaluate, predict, export or serve with;
    /// `advice` says what to do (wait for the process training it, resume it, or train it again).
    case unfinished(path: String, status: String, advice: String)
    /// The run at `path` has no complete checkpoint `name` (`checkpoints/best`, `checkpoints/last`) to
    /// load weights from; `reason` says what is missing.
    case missingCheckpoint(path: String, name: String, reason: String)
    /// Another writer holds the run directory's lock (`pid` when it recorded one).
    case locked(directory: String, pid: Int32?)
    /// The destination of a new run exists and may not be replaced (the reason says why).
    case refusedDestination(path: String, reason: String)
    /// A run without a checkpoint to resume from: it ended (`status`: `running` after a kill, or
    /// `failed`) before its first checkpoint was written, so nothing was trained.
    case nothingToResume(path: String, status: String)
    /// A run without `checkpoints/last` that still holds trained state (`kept`: e.g.
    /// `checkpoints/best`, `model.safetensors`): it cannot be resumed exactly, and nothing in it is
    /// to be thrown away.
    case lastCheckpointMissing(path: String, kept: [String])
    /// `resume` of a run that ended with status `stopped` (early stopping): it is finished.
    case stoppedEarly(path: String)
    /// Training refused the resumed checkpoint before its first step (`reason` says why); nothing
    /// was changed.
    case resumeRefused(path: String, reason: String)
    /// `TrainingRun.run()` on a run that no longer holds its directory's lock (`release()` was called,
    /// or `run()` already ran): it may not write there.
    case released(directory: String)
    /// A file-system operation failed.
    case io(path: String, reason: String)
    /// A setting of a run's specification is out of range or inconsistent (`setting` is its name in
    /// `TrainingRun.Specification`, `RecipeOptions` or `TrainOptions`).
    case invalidSetting(setting: String, reason: String)

    /// The message for the user, naming the path or setting.
    public var description: String {
        switch self {
        case .notARun(let path, let reason): return "\(path) is not a finetune run directory: \(reason)"
        case .invalidConfig(let path, let reason): return "\(path): \(reason)"
        case .unfinished(let path, let status, let advice):
            return "\(path) is a run that has not finished training (status \(status)), so it has no final weights yet "
                + "(\(RunDirectory.modelFile), written when training ends); \(advice)"
        case .missingCheckpoint(let path, let name, let reason):
            return "\(path) has no \(name) to load weights from (\(reason)): checkpoints/best is written when the monitored "
                + "metric improves, checkpoints/last at each epoch's end, --save-every-steps and Ctrl-C"
        case .locked(let directory, let pid):
            let holder = pid.map { "process \($0)" } ?? "another process"
            return "\(directory) is in use by \(holder), which holds its lock (\(RunLock.fileName)); "
                + "a run directory has one writer: wait for it to finish or stop it first"
        case .refusedDestination(let path, let reason): return "\(path): \(reason)"
        case .nothingToResume(let path, let status):
            return "\(path) has no checkpoint to resume from: the run ended (status \(status)) before its first "
                + "checkpoint, so nothing was trained; start it again (finetune train … --out \(path) --overwrite)"
        case .lastCheckpointMissing(let path, let kept):
            var message = "\(path) cannot be resumed: its checkpoints/last is missing, but the run holds trained state ("
                + kept.joined(separator: ", ") + "); nothing was changed"
            if kept.contains("checkpoints/best") {
                message += ". To continue from the best epoch instead, copy checkpoints/best to checkpoints/last and resume"
            }
            return message
        case .stoppedEarly(let path):
            return "\(path) was stopped early (by early stopping) and is finished: its model.safetensors is final, and "
                + "resuming would train past the stop. To train longer, start a new run"
        case .resumeRefused(let path, let reason): return "\(path) cannot be resumed: \(reason); nothing was changed"
        case .released(let directory):
            return "\(directory): this run has released its lock (release() was called, or run() already ran) and may "
                + "not write there; create or resume the run again"
        case .io(let path, let reason): return "\(path): \(reason)"
        case .invalidSetting(let setting, let reason): return "\(setting): \(reason)"
        }
    }
}
