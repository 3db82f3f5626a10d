import Foundation

/// What a finished (or stopped, or interrupted) `TrainingRun` reports. Its JSON form (`Encodable`,
/// snake_case keys, absent values as `null`) is `finetune train --json`'s output, which scripts read:
/// keys are never renamed.
public struct TrainingRunSummary: Encodable {
    /// The run directory.
    public var run: String
    /// The zoo architecture trained, e.g. "mobilenet_v2".
    public var architecture: String
    /// The initial weights ("imagenet", a catalog name or a file); nil for random initialisation.
    public var weights: String?
    /// Class names in label order.
    public var classes: [String]
    /// `completed`, `stopped`, `interrupted`.
    public var status: String
    /// Why the run stopped early (a callback's reason, or the diverged step's loss); nil otherwise.
    public var stopReason: String?
    /// Epochs completed in total.
    public var epochs: Int
    /// Optimizer steps taken in total.
    public var globalStep: Int
    /// Images used (files found unusable while decoding are not counted).
    public var trainSamples: Int
    /// Validation images used (0 without validation data).
    public var validationSamples: Int
    /// Test images used (0 without a test split).
    public var testSamples: Int
    /// The last epoch's metrics.
    public var finalMetrics: [String: Double]
    /// The monitored metric, its best value and epoch (1-based).
    public var monitor: String?
    /// The monitored metric's best value (encoded as null when not finite).
    public var bestValue: Double?
    /// The epoch (1-based) of `bestValue`.
    public var bestEpoch: Int?
    /// `final`, `best` or `ema` (see `RunConfig.modelWeights`).
    public var modelWeights: String?
    /// The epoch (1-based) whose weights the run's `model.safetensors` holds.
    public var modelEpoch: Int?
    /// Accuracy of the final validation pass, in [0, 1] (nil without validation data).
    public var validationAccuracy: Double?
    /// The final validation pass (the confusion matrix's source), not encoded.
    public var validationReport: EvaluationReport?
    /// The test split's evaluation; its accuracy, loss and top-k accuracy are encoded.
    public var testReport: EvaluationReport?
    /// Wall-clock seconds of the whole run (preparation included).
    public var seconds: Double = 0
    /// Whether Ctrl-C (or SIGTERM) cut the final validation or test evaluation short: the run is
    /// complete and its weights are written, but those metrics are missing.
    public var evaluationInterrupted = false

    init(run: String, config: RunConfig, result: FitResult) {
        self.run = run
        architecture = config.architecture
        weights = config.weights
        classes = config.classNames
        status = result.status.name
        switch result.status {
        case .stopped(let reason): stopReason = reason
        case .diverged(let step, let loss): stopReason = "the loss of step \(step) is \(FitStatus.describe(loss: loss))"
        case .completed, .interrupted: break
        }
        epochs = result.epochs
        globalStep = result.globalStep
        trainSamples = config.data.trainSamples
        validationSamples = config.data.validationSamples
        testSamples = config.data.testSamples
        finalMetrics = result.history.last?.metrics ?? [:]
        monitor = result.best?.metric
        bestValue = result.best?.best
        bestEpoch = result.best?.bestEpoch.map { $0 + 1 }
        modelWeights = config.modelWeights
        modelEpoch = config.modelEpoch
    }

    /// What to tell the user of an interrupted run (Ctrl-C or SIGTERM; nil otherwise): its checkpoint
    /// and how to continue, or, when only the final evaluation was cut short, how to get its metrics.
    /// A data-parallel run of `processes` processes resumes with as many (`--nproc-per-node`).
    public func interruptionNotice(processes: Int = 1) -> String? {
        let directory = RunDirectory(run)
        if evaluationInterrupted {
            return "Interrupted during the final evaluation: the run is complete (\(directory.model)); "
                + "evaluate it with `finetune evaluate \(directory.path)`"
        }
        guard status == "interrupted" else { return nil }
        return "Interrupted: checkpoint \(directory.lastCheckpoint); continue with `finetune train --resume \(directory.path)"
            + (processes > 1 ? " --nproc-per-node \(processes)`" : "`")
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ string: String) { stringValue = string }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// The `--json` object: snake_case keys (`run_dir`, `status`, `final_metrics`, `test_accuracy`,
    /// `test_top5_accuracy`, …), `null` for absent values, non-finite numbers as `null`.
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        func put<T: Encodable>(_ key: String, _ value: T?) throws {
            if let value { try c.encode(value, forKey: Key(key)) } else { try c.encodeNil(forKey: Key(key)) }
        }
        func number(_ x: Double?) -> Double? { x.flatMap { $0.isFinite ? $0 : nil } }
        try put("run_dir", run)
        try put("architecture", architecture)
        try put("weights", weights)
        try put("classes", classes)
        try put("status", status)
        try put("stop_reason", stopReason)
        try put("epochs", epochs)
        try put("global_step", globalStep)
        try put("train_samples", trainSamples)
        try put("validation_samples", validationSamples)
        try put("test_samples", testSamples)
        try put("final_metrics", finalMetrics.compactMapValues(number))
        try put("monitor", monitor)
        try put("best_value", number(bestValue))
        try put("best_epoch", bestEpoch)
        try put("model_weights", modelWeights)
        try put("model_epoch", modelEpoch)
        try put("test_accuracy", number(testReport?.accuracy))
        try put("test_loss", number(testReport?.loss))
        try put("validation_accuracy", number(validationAccuracy))
        try put("seconds", seconds)  // (`evaluationInterrupted` is not a key: the shape stays; the exit status says it)
        // `test_top5_accuracy` is always there, null without a test split or with 5 classes or fewer,
        // as cli.md says (the key was left out, a KeyError to a script).
        try put("test_top5_accuracy", number(testReport?.topK == 5 ? testReport?.topKAccuracy : nil))
        if let report = testReport, let k = report.topK, k != 5 { try put("test_top\(k)_accuracy", number(report.topKAccuracy)) }
    }
}
