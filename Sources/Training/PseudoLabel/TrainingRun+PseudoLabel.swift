import Data
import Foundation

extension TrainingRun {
    /// The `TrainOptions`/`RunError` name of each `PseudoLabelSettings` field.
    static let pseudoLabelSettingNames = [
        "threshold": "pseudoLabelThreshold", "fraction": "pseudoLabelFraction",
        "startEpoch": "pseudoLabelStartEpoch", "weight": "pseudoLabelWeight",
    ]

    /// Checks the pseudo-label settings of `options` (errors name the setting).
    public static func validatePseudoLabel(_ options: TrainOptions) throws {
        guard let settings = options.pseudoLabel else { return }
        guard options.unlabeled != nil else {
            throw RunError.invalidSetting(setting: "unlabeled", reason: "the pseudo-label settings need a folder of "
                                          + "unlabelled images")
        }
        if let (setting, reason) = settings.problem() {
            throw RunError.invalidSetting(setting: pseudoLabelSettingNames[setting] ?? setting, reason: reason)
        }
    }

    /// The training configuration's pseudo-label settings (start epoch resolved), nil without unlabelled images.
    static func pseudoLabelSettings(_ options: TrainOptions, mixing: Bool) throws -> PseudoLabelSettings? {
        guard options.unlabeled != nil else { return nil }
        try validatePseudoLabel(options)
        if mixing {
            throw RunError.invalidSetting(setting: "unlabeled", reason: "pseudo-labelling cannot be combined with "
                                          + "MixUp/CutMix (their mixed images have no single label)")
        }
        var settings = options.pseudoLabel ?? PseudoLabelSettings()
        settings.startEpoch = settings.firstEpoch(of: options.epochs)
        if let start = settings.startEpoch, start >= options.epochs {
            throw RunError.invalidSetting(setting: "pseudoLabelStartEpoch", reason: "\(start) (0-based) is past the run's last "
                + "epoch, \(options.epochs - 1): the unlabelled images would never be used; give a start below \(options.epochs)")
        }
        return settings
    }

    /// A warning when label smoothing keeps the model's confidence below the pseudo-label threshold.
    /// Cross-entropy against smoothed targets is lowest where the top class's probability is
    /// 1 − ε + ε/K (K classes; 2 for a binary head), so a model that fits its labels stops there, and few
    /// or no unlabelled images reach a higher threshold: `--label-smoothing 0.2` on 10 classes trains
    /// toward 0.82, under the default 0.9, and each refresh said only that no image reached it (stop 53).
    static func smoothingCapsConfidenceWarning(_ configuration: TrainingConfiguration, classCount: Int) -> String? {
        guard let threshold = configuration.pseudoLabel?.threshold, configuration.labelSmoothing > 0 else { return nil }
        let classes = configuration.loss == .binary ? 2 : Swift.max(classCount, 2)
        let smoothing = configuration.labelSmoothing
        let top = 1 - smoothing + smoothing / Double(classes)
        guard threshold > top else { return nil }
        func shown(_ value: Double) -> String { String(format: "%.3g", value) }
        return "--label-smoothing \(shown(smoothing)) trains the top class toward a probability of \(shown(top)) "
            + "(\(classes) classes), below --pseudo-label-threshold \(shown(threshold)): few or no unlabelled images will "
            + "reach it; lower the threshold under \(shown(top)), or the smoothing"
    }

    /// What `--unlabeled` images that are also the run's own images do, one warning for each split
    /// that holds some: pseudo-labels beside their labels (training), or metrics that are no
    /// longer held out (validation, test).
    static func sharedImagesWarnings(_ shared: [(split: String, files: [String])], unlabeled: String) -> [String] {
        shared.map { split, files in
            let consequence = switch split {
            case "training": "they train twice, once with a pseudo-label that may not be their label"
            case "validation": "the validation metrics, which pick the best epoch, are no longer measured on held-out images"
            default: "the test metrics are no longer measured on images the model has not trained on"
            }
            let count = files.count == 1 ? "1 unlabeled image in \(unlabeled) is also a \(split) image"
                : "\(files.count) of the unlabeled images in \(unlabeled) are also \(split) images"
            return "\(count) (\(files[0])\(files.count > 1 ? ", …" : "")): \(consequence); "
                + "keep the unlabelled folder apart from DATA's splits"
        }
    }

    /// The run's unlabelled images, or nil without pseudo-labelling. A missing or empty folder and
    /// unreadable files are reported once (the run then trains on labelled data only).
    func makePseudoLabeler(_ train: DataLoader, evalTransform: any SampleTransform,
                           reporter: SkippedFileReporter) throws -> PseudoLabeler? {
        guard let path = config.options.unlabeled, trainer.configuration.pseudoLabel != nil else { return nil }
        // Each rank would label its own copy of the unlabelled set and draw different pseudo batches.
        if trainer.distributed != nil {
            throw RunError.invalidSetting(setting: "unlabeled", reason: "pseudo-labelling does not run data-parallel yet; "
                + "train with one process (no --nproc-per-node, RANK or WORLD_SIZE)")
        }
        let strict = (config.options.onBadImage ?? .skip).isStrict
        var dataset: any ImageDataset = LabeledDataset(samples: [], classNames: [])
        var folders: [String?] = []
        do {
            let folder = try UnlabeledImageFolder(root: path, options: ScanOptions(strict: strict))
            reporter.record(folder.skipped, split: "unlabeled")
            dataset = folder
            folders = folder.folderNames
            if folder.count == 0 {
                notify(.warning("the unlabeled folder \(path) has no usable image: training on labelled data only"))
            }
            for warning in Self.sharedImagesWarnings(splits.sharedFiles(folder.samples.compactMap(\.source.path)),
                                                     unlabeled: path) {
                notify(.warning(warning))
            }
        } catch let error as DataError where !strict {
            notify(.warning("--unlabeled: \(error); training on labelled data only"))
        }
        let labeler = PseudoLabeler(unlabeled: dataset, folderNames: folders, classNames: config.classNames,
                                    trainTransform: train.transform, evalTransform: evalTransform, seed: train.seed,
                                    batchSize: config.options.batchSize, workers: config.options.workers)
        labeler.reporter = reporter
        labeler.notify = { [notify] in notify(.info($0)) }
        return labeler
    }
}
