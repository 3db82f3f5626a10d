import Foundation

/// Writes resumable checkpoints (see `Checkpoint`) under `directory`:
///
/// * `last/` at the end of every epoch, and periodically during training every `everySteps`
///   optimizer steps and/or every `everySeconds` seconds (TF-slim's `save_interval_secs`); each
///   save replaces the previous one atomically, so after a crash (even SIGKILL) `last/` holds the
///   latest complete checkpoint;
/// * `best/` at the end of an epoch whose monitored metric improved;
/// * with `saveBestOnly` false, also `epoch-<n>/` after every epoch (n counted from 1).
///
/// The monitor defaults to the trainer's (`val_loss` with validation data, else `loss`). Its best
/// value is saved in checkpoints, so a resumed run only replaces `best/` on a real improvement.
public final class ModelCheckpoint: StatefulCallback {
    /// Why a checkpoint was written.
    public enum Kind: String, Codable, Sendable {
        /// `best`: the monitored metric improved (`best/`); `last`: an epoch ended (`last/`); `periodic`:
        /// `everySteps`/`everySeconds` fell due mid-epoch (`last/`); `epoch`: `epoch-NNNN/` with
        /// `saveBestOnly` off.
        case best, last, periodic, epoch
    }

    /// One checkpoint written.
    public struct Save: Equatable, Sendable {
        /// Why it was written.
        public var kind: Kind
        /// Epochs completed and global step at the time of the save.
        public var epoch: Int
        /// The global step at the save.
        public var step: Int
        /// The checkpoint directory written.
        public var path: String
    }

    /// The folder holding `last/`, `best/` and `epoch-NNNN/` (e.g. `RUN_DIR/checkpoints`).
    public let directory: String
    /// When false, every epoch is also kept as `epoch-0001/`, `epoch-0002/`, … (Keras' `save_best_only=False`).
    public let saveBestOnly: Bool
    /// Also save `last/` after every this many optimizer steps (nil or 0: only at epoch ends).
    public let everySteps: Int?
    /// Also save `last/` at the first batch end this many seconds after the previous save (nil: off).
    public let everySeconds: Double?
    /// The time source for `everySeconds` (injectable for tests).
    public let clock: () -> Date
    /// Whether checkpoints are written at all (`best/`, `last/`, `epoch-NNNN/`); the tracker follows the
    /// monitored metric either way. False on a data-parallel rank above 0, whose checkpoints nothing
    /// reads: a resume copies rank 0's `last/` and `best/` into the rank's private folder, and early
    /// stopping restores a best epoch of the same process from memory (`best/` only for one before
    /// the resume: the copy). Each rank above 0 wrote full checkpoints (model and optimizer state,
    /// fsync'd) into that folder in the temporary directory: `last/` every epoch and with
    /// `--save-every-*` until 2026-12-07, `best/` at every better epoch until stop 52, while the other
    /// ranks waited for it at the next collective.
    public var writesCheckpoints = true
    private let requestedMonitor: String?
    private let mode: MonitorMode
    private let minDelta: Double
    public private(set) var tracker: MetricTracker?
    /// Every checkpoint written by this callback, in order.
    public private(set) var saves: [Save] = []
    private var lastSave: Date?

    /// - Parameters:
    ///   - monitor: the metric deciding `best/` (nil: the trainer's monitored metric).
    ///   - mode: whether it should go down or up (`auto`: from its name).
    ///   - minDelta: the least change that counts as an improvement.
    public init(directory: String, monitor: String? = nil, mode: MonitorMode = .auto, saveBestOnly: Bool = true,
                everySteps: Int? = nil, everySeconds: Double? = nil, minDelta: Double = 0,
                clock: @escaping () -> Date = Date.init) {
        self.directory = directory
        self.requestedMonitor = monitor
        self.mode = mode
        self.minDelta = minDelta
        self.saveBestOnly = saveBestOnly
        self.everySteps = everySteps
        self.everySeconds = everySeconds
        self.clock = clock
        if let monitor { tracker = MetricTracker(metric: monitor, mode: mode, minDelta: minDelta) }
    }

    /// `<directory>/last`: the latest checkpoint, what a resume reads.
    public var lastPath: String { (directory as NSString).appendingPathComponent("last") }
    /// `<directory>/best`: the checkpoint of the best epoch so far.
    public var bestPath: String { (directory as NSString).appendingPathComponent("best") }

    /// Saves on `batchEnd` when a period falls due, and on `epochEnd` (best, epoch and last, in that
    /// order). Throws when a checkpoint cannot be written, or `TrainingError.unknownMetric` when the
    /// monitored metric is not among the epoch's metrics.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart:
            lastSave = clock()
            if tracker == nil {
                tracker = MetricTracker(metric: trainer.state.best?.metric ?? "loss", mode: mode, minDelta: minDelta)
            }
        case .batchEnd(let result):
            guard writesCheckpoints else { break }
            var due = false
            if let n = everySteps, n > 0, result.optimizerStepped, result.step % n == 0 { due = true }
            if let seconds = everySeconds, let lastSave, clock().timeIntervalSince(lastSave) >= seconds { due = true }
            // A data-parallel rank's accumulated gradients are its own, and rank 0's checkpoint could not
            // resume the others': a save falls due at the end of the accumulation group.
            if trainer.distributed != nil && !result.optimizerStepped { due = false }
            if due { try save(.periodic, to: lastPath, trainer: trainer) }
        case .epochEnd(let result):
            if var t = tracker {
                let improved = t.update(try t.value(in: result.metrics), epoch: result.epoch)
                tracker = t
                if improved && writesCheckpoints { try save(.best, to: bestPath, trainer: trainer) }
            }
            guard writesCheckpoints else { break }
            if !saveBestOnly {
                let path = (directory as NSString).appendingPathComponent(String(format: "epoch-%04d", result.epoch + 1))
                try save(.epoch, to: path, trainer: trainer)
            }
            try save(.last, to: lastPath, trainer: trainer)
        default:
            break
        }
    }

    private func save(_ kind: Kind, to path: String, trainer: Trainer) throws {
        try trainer.saveCheckpoint(to: path)
        lastSave = clock()
        saves.append(Save(kind: kind, epoch: trainer.state.epoch, step: trainer.state.globalStep, path: path))
    }

    // MARK: StatefulCallback

    /// "model_checkpoint:<directory>", so two checkpointers of one run keep separate states.
    public var stateKey: String { "model_checkpoint:\(directory)" }

    /// A checkpointer's state saved while the run lay elsewhere (moved, copied, reached through a link):
    /// the same folder name (`checkpoints`). Without it a resumed run forgot its best epoch, replaced
    /// `best/` with a worse one, and early stopping kept the last weights (probe V).
    public func restores(fromSavedKey key: String) -> Bool {
        let prefix = "model_checkpoint:"
        guard key.hasPrefix(prefix) else { return false }
        return (String(key.dropFirst(prefix.count)) as NSString).lastPathComponent
            == (directory as NSString).lastPathComponent
    }

    /// The monitored metric's tracker (best value and epoch) as JSON.
    public func saveState() throws -> String {
        try TrainingJSON.string(["tracker": tracker])
    }

    /// Restores the tracker, unless this callback was set to monitor a different metric.
    public func restoreState(_ state: String) throws {
        let saved = try TrainingJSON.decode([String: MetricTracker?].self, state)
        if let restored = saved["tracker"] ?? nil, tracker == nil || tracker?.metric == restored.metric {
            tracker = restored
        }
    }
}
