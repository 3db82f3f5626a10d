import Data
import Foundation
import NN
import Torch
import Vision

/// Settings of `RunReport.make`.
public struct RunReportOptions: Sendable {
    /// The class-folder data (nil: the data the run trained on, from `config.json`).
    public var data: String?
    /// Which split (nil: `test`, or all of a plain folder or CSV file), chosen as `evaluate` chooses it
    /// (`EvaluationData.select`): the run's own split where the run chose among the images.
    public var split: DataSplit?
    /// Images in the top-losses grid.
    public var topLosses: Int
    /// Grad-CAM pictures of the worst losses and of the most confident correct predictions (each; 0 or less: none).
    public var gradCAMCount: Int
    /// Images per forward pass.
    public var batchSize: Int
    /// Decoding threads.
    public var workers: Int
    /// Run the data check on the data (every image decoded once more).
    public var checkData: Bool
    /// How the data check searches for near-duplicates.
    public var nearDuplicateMethod: NearDuplicateMethod
    /// The precision of the evaluation pass (`.auto` resolved for the run's model), so the metrics and
    /// top losses are `evaluate`'s at the same `--precision`. Grad-CAM runs in fp32.
    public var precision: Precision
    /// Which weights are evaluated (nil: the final weights, else, for a run that has not finished, its
    /// best checkpoint so far, else its last: `RunDirectory.checkpointForUnfinishedRun`).
    public var weights: RunWeights?

    /// Defaults: `evaluate`'s split, 16 top losses, 4 + 4 Grad-CAM pictures, batches of 32, 2 workers, fp32.
    public init(data: String? = nil, split: DataSplit? = nil, topLosses: Int = 16, gradCAMCount: Int = 4,
                batchSize: Int = 32, workers: Int = 2, checkData: Bool = true, nearDuplicateMethod: NearDuplicateMethod = .auto,
                precision: Precision = .fp32, weights: RunWeights? = nil) {
        self.data = data
        self.split = split
        self.topLosses = topLosses
        self.gradCAMCount = gradCAMCount
        self.batchSize = batchSize
        self.workers = workers
        self.checkData = checkData
        self.nearDuplicateMethod = nearDuplicateMethod
        self.precision = precision
        self.weights = weights
    }
}

/// A run report (`finetune report`): everything about a finished run in one self-contained HTML page
/// (`html()`): the run's settings and results, learning curves with the phase boundary, the confusion
/// matrix, per-class metrics, the most confused pairs, fastai-style top losses, Grad-CAM heat maps and
/// the data check.
public struct RunReport {
    /// One picture with its caption data: a top loss or a Grad-CAM overlay.
    public struct Picture {
        /// The prediction it shows.
        public var sample: SamplePrediction
        /// `data:image/png;base64,…`.
        public var dataURI: String
    }

    /// The run directory reported on.
    public var runDirectory: String
    /// Its `config.json`.
    public var config: RunConfig
    /// Its epochs, from `events.jsonl`.
    public var history: RunHistory
    /// The data evaluated and the split's name.
    public var data: String
    /// The split evaluated, as `evaluate` names it (`EvaluationData.split`).
    public var split: String
    /// The metrics of the split (what `evaluate` reports).
    public var evaluation: EvaluationReport
    /// The precision the split was evaluated in (`RunReportOptions.precision`, `.auto` decided).
    public var evaluationPrecision: Precision = .fp32
    /// The checkpoint evaluated, for a run that has not finished training ("checkpoints/best, epoch
    /// 3"); nil when the evaluation is of `model.safetensors`.
    public var evaluatedCheckpoint: String?
    /// Every evaluated image's prediction, in dataset order.
    public var samples: [SamplePrediction]
    /// The worst predictions, worst first (`SamplePrediction.topLosses`).
    public var topLosses: [Picture]
    /// The layer Grad-CAM used (`ImageClassifier.featureLayer`).
    public var gradCAMLayer: String
    /// Grad-CAM overlays for the predicted class: top losses, then confident correct predictions.
    public var gradCAMLosses: [Picture]
    /// Grad-CAM overlays of the most confident correct predictions.
    public var gradCAMCorrect: [Picture]
    /// The data check of `data`, nil when not asked for.
    public var dataCheck: DataCheckReport?
    /// Why the data check was not run although asked for (it could not read DATA), if so.
    public var dataCheckNotRun: String?

    /// Evaluates the run's model on the split, computes the pictures and runs the data check.
    public static func make(run path: String, options: RunReportOptions = RunReportOptions()) throws -> RunReport {
        let directory = RunDirectory(path)
        let config = try directory.readConfig()
        // Decoded as the run was trained (its --exif): the loaders and the data check made inside the
        // scope keep it on their threads; the process-wide setting is left alone.
        return try ImageCodec.withEXIFOrientation(config.options.exif ?? .apply) {
            try make(directory, config: config, options: options)
        }
    }

    private static func make(_ directory: RunDirectory, config: RunConfig, options: RunReportOptions) throws -> RunReport {
        let data = options.data ?? config.data.path
        let selected = try EvaluationData.select(data, split: options.split, run: config, classNames: config.classNames,
                                                 strict: (config.options.onBadImage ?? .skip).isStrict)
        let dataset = selected.dataset
        // A run that has not finished is evaluated with its best (else last) checkpoint, said in the run
        // section: until 2026-12-07 `report` refused a run while it trained, or once Ctrl-C stopped it.
        let model: ImageClassifier
        var checkpoint: String?
        if let which = options.weights, which != .final {
            (model, checkpoint) = try directory.loadModel(config, from: which)
        } else {
            do {
                model = try directory.loadModel(config)
            } catch let error as RunError {
                guard case .unfinished = error, options.weights == nil,
                      let (which, _, _) = directory.checkpointForUnfinishedRun() else { throw error }
                (model, checkpoint) = try directory.loadModel(config, from: which)
            }
        }
        var evaluation = TrainingConfiguration()
        evaluation.loss = config.training.loss
        let precision = options.precision.resolved(for: model)
        evaluation.autocastBF16 = precision == .bf16
        let trainer = try Trainer(model: model, configuration: evaluation)
        let loader = try DataLoader(dataset, batchSize: options.batchSize,
                                    transform: EvaluationTransform(config.preprocessing), workers: options.workers)
        var (report, samples) = try trainer.evaluateSamples(loader)
        report.notes += selected.notes

        let worst = SamplePrediction.topLosses(samples, count: options.topLosses)
        let topLosses = try worst.map { sample in
            Picture(sample: sample, dataURI: try ReportImages.dataURI(
                ReportImages.thumbnail(dataset.loadImage(at: sample.index).rgb(), side: 128)))
        }
        let p = config.preprocessing
        func gradCAM(_ sample: SamplePrediction) throws -> Picture {
            let image = try dataset.loadImage(at: sample.index, minSide: p.resizeSize).rgb()
            let crop = try p.resizeAndCrop(image)
            let cam = try GradCAM.compute(model, input: p.normalize(crop), classIndex: sample.predicted)
            let overlay = try ReportImages.overlay(crop: crop, heatmap: cam.heatmap)
            return Picture(sample: sample, dataURI: try ReportImages.dataURI(ReportImages.thumbnail(overlay, side: 160)))
        }
        let camCount = max(0, options.gradCAMCount)  // a negative count trapped in prefix
        let camLosses = try worst.prefix(camCount).map(gradCAM)
        let correct = samples.filter { $0.predicted == $0.label }.sorted {
            $0.confidence != $1.confidence ? $0.confidence > $1.confidence : $0.index < $1.index
        }
        let camCorrect = try correct.prefix(camCount).map(gradCAM)
        // A data check that cannot read DATA as a training set (a folder of one of the run's classes) is
        // said in its section; the report is made (it was refused).
        var check: DataCheckReport?
        var checkNotRun: String?
        if options.checkData {
            do {
                check = try DataCheck.run(data, options: DataCheckOptions(imageRoot: config.options.imageRoot),
                                          method: options.nearDuplicateMethod)
            } catch let error as DataError {
                checkNotRun = "\(error)"
            }
        }
        var made = RunReport(runDirectory: directory.path, config: config, history: try RunHistory(eventsFile: directory.events),
                             data: data, split: selected.split, evaluation: report, samples: samples,
                             topLosses: topLosses, gradCAMLayer: model.featureLayer, gradCAMLosses: camLosses,
                             gradCAMCorrect: camCorrect, dataCheck: check)
        made.evaluationPrecision = precision
        made.evaluatedCheckpoint = checkpoint
        made.dataCheckNotRun = checkNotRun
        return made
    }
}
