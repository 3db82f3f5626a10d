import Foundation

// Adapters from trainer events to the CSV, JSON-lines and TensorBoard writers. Each opens its file
// at `fitStart`; when the run resumes from a checkpoint, the existing file is kept and whatever an
// interrupted run logged after the checkpoint's step is dropped (TensorBoard: hidden by a restart
// marker), so the log reads as one uninterrupted run.

/// Per-epoch history as CSV (`history.csv`, Keras' `CSVLogger`): `epoch,step,<metrics…>` with
/// epochs counted from 0 as Keras does.
public final class CSVLoggerCallback: TrainingCallback {
    /// The CSV file (e.g. `RUN_DIR/history.csv`).
    public let path: String
    public private(set) var logger: CSVLogger?

    /// A logger for `path`; the file is opened (or, on resume, kept and truncated) at `fitStart`.
    public init(path: String) { self.path = path }

    /// Opens the file at `fitStart`, writes a row at every `epochEnd`, closes it at `fitEnd`. Throws
    /// when the file cannot be opened or written.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart(let info):
            let logger = try CSVLogger(path: path, resume: info.resumed)
            if info.resumed {
                try logger.truncate(afterStep: info.startStep, fromEpoch: info.startEpoch)
                // Rows lost (the file deleted, emptied or cut, or a copy of the run without it) come
                // back from the checkpoint's history, which holds every epoch's row: the resumed run
                // wrote only its own epochs.
                let history = trainer.state.history.filter { $0.epoch < info.startEpoch }
                if try logger.read().map(\.epoch) != history.map(\.epoch) {
                    logger.restart()
                    for row in history { try logger.log(epoch: row.epoch, step: row.step, metrics: row.metrics) }
                }
            }
            self.logger = logger
        case .epochEnd(let r):
            try logger?.log(epoch: r.epoch, step: r.step, metrics: r.metrics)
        case .fitEnd:
            logger?.close()
            logger = nil
        default:
            break
        }
    }
}

/// Events as JSON lines (`events.jsonl`): `train` every `everySteps` steps (loss, accuracy, lr),
/// `validation` and `epoch` per epoch, plus `fit_start`, `phase_change` and `fit_end`.
public final class JSONLinesLoggerCallback: TrainingCallback {
    /// The JSON-lines file (e.g. `RUN_DIR/events.jsonl`).
    public let path: String
    /// A `train` line is written every this many optimizer steps (at least 1).
    public let everySteps: Int
    public private(set) var logger: JSONLinesLogger?

    /// A logger for `path`, logging every `everySteps` steps (values below 1 count as 1).
    public init(path: String, everySteps: Int = 1) {
        self.path = path
        self.everySteps = Swift.max(1, everySteps)
    }

    /// Writes one line per logged event (see the type's description). Throws when the file cannot be
    /// opened or written.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart(let info):
            let logger = try JSONLinesLogger(path: path, resume: info.resumed)
            if info.resumed {
                try logger.truncate(afterStep: info.startStep, fromEpoch: info.startEpoch, atEpochStart: info.startBatch == 0)
                // Epoch events lost (the file deleted or cut) come back from the checkpoint's history:
                // what `report` draws. The per-step `train` events and timings are gone.
                let logged = Set(try RunHistory(eventsFile: path).epochs.map { $0.number - 1 })
                for row in trainer.state.history where row.epoch < info.startEpoch && !logged.contains(row.epoch) {
                    try logger.log(event: "epoch", epoch: row.epoch, step: row.step, metrics: row.metrics,
                                   info: ["phase": "\(row.phase)", "restored": "from the checkpoint's history"])
                }
            }
            self.logger = logger
            try logger.log(event: "fit_start", epoch: info.startEpoch, step: info.startStep,
                           info: ["epochs": "\(info.epochs)", "resumed": "\(info.resumed)",
                                  "model": trainer.modelName])
        case .batchEnd(let r):
            guard r.optimizerStepped, r.step % everySteps == 0 else { return }
            // A data-parallel rank with no image in the batch logs its learning rate and norm only.
            var metrics = r.samples > 0 ? ["loss": r.loss, "accuracy": r.accuracy] : [:]
            if let lr = r.learningRates.last { metrics["lr"] = lr }
            if let norm = r.gradientNorm { metrics["grad_norm"] = norm }
            try logger?.log(event: "train", epoch: r.epoch, step: r.step, metrics: metrics,
                            info: ["batch": "\(r.batch)"])
        case .validationEnd(let epoch, let report):
            try logger?.log(event: "validation", epoch: epoch, step: trainer.state.globalStep, metrics: report.scalars)
        case .epochEnd(let r):
            try logger?.log(event: "epoch", epoch: r.epoch, step: r.step, metrics: r.metrics,
                            info: ["phase": "\(r.phase)", "seconds": String(format: "%.3f", r.seconds)])
        case .phaseChange(let p):
            try logger?.log(event: "phase_change", epoch: p.epoch, step: p.step,
                            info: ["phase": "\(p.phase)", "trainable_tensors": "\(p.trainableParameters.count)",
                                   "optimizer_state": p.carriedOptimizerState ? "carried" : "fresh"])
        case .fitEnd(let result):
            try logger?.log(event: "fit_end", epoch: result.epochs, step: result.globalStep,
                            info: ["status": result.status.description])
            logger?.close()
            logger = nil
        default:
            break
        }
    }
}

/// TensorBoard scalars: `batch_loss`, `batch_accuracy`, `learning_rate` (and `momentum` where the
/// schedule cycles it) in the `train` run every
/// `everySteps` steps; per epoch `epoch_loss`, `epoch_accuracy` in `train` and the validation
/// metrics as `epoch_<name>` in `validation` (Keras' naming), all at the global step.
public final class TensorBoardCallback: TrainingCallback {
    /// The folder TensorBoard reads (`--logdir`); the `train` and `validation` runs are subfolders.
    public let logDirectory: String
    /// Batch scalars are written every this many optimizer steps (at least 1; 10 by default).
    public let everySteps: Int
    public private(set) var writer: TensorBoardWriter?

    /// A writer for `logDirectory`, logging batch scalars every `everySteps` steps.
    public init(logDirectory: String, everySteps: Int = 10) {
        self.logDirectory = logDirectory
        self.everySteps = Swift.max(1, everySteps)
    }

    /// Opens the event files at `fitStart` (after a restart marker on resume), writes batch and epoch
    /// scalars, closes them at `fitEnd`.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart(let info):
            writer = try TensorBoardWriter(logDirectory: logDirectory, resumeAfterStep: info.resumed ? info.startStep : nil)
        case .batchEnd(let r):
            guard r.optimizerStepped, r.step % everySteps == 0 else { return }
            var values = r.samples > 0 ? ["batch_loss": r.loss, "batch_accuracy": r.accuracy] : [:]
            if let lr = r.learningRates.last { values["learning_rate"] = lr }
            if let momentum = r.momentum { values["momentum"] = momentum }
            if let norm = r.gradientNorm { values["gradient_norm"] = norm }
            try writer?.addScalars(values, step: r.step, run: .train)
        case .epochEnd(let r):
            var train: [String: Double] = [:], validation: [String: Double] = [:]
            for (name, value) in r.metrics {
                if name.hasPrefix("val_") {
                    validation["epoch_" + name.dropFirst(4)] = value
                } else if name == "lr" {
                    train["epoch_learning_rate"] = value
                } else {
                    train["epoch_" + name] = value
                }
            }
            if !train.isEmpty { try writer?.addScalars(train, step: r.step, run: .train) }
            if !validation.isEmpty { try writer?.addScalars(validation, step: r.step, run: .validation) }
        case .fitEnd:
            writer?.close()
            writer = nil
        default:
            break
        }
    }
}
