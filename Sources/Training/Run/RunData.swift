import Data
import Foundation

/// The splits of a class-folder dataset as a run uses them: after `limitPerClass` and a
/// stratified `valSplit`, when those are set.
public struct RunSplits {
    /// The training images (the `train/` folder or the whole root, less any held-out validation).
    public var train: any ImageDataset
    /// The `val/` folder, or the stratified `valSplit` of the training images; nil when neither.
    public var validation: (any ImageDataset)?
    /// The `test/` folder; nil when absent.
    public var test: (any ImageDataset)?
    /// Whether the root had train/val/test folders.
    public var hasSplitFolders: Bool
    /// Files the scan found unusable (missing, empty, not an image, bad header).
    public var skipped: SkippedFiles

    /// Scans `root` (strictly with `--on-bad-image fail`) and applies `options`' limit and split.
    public static func load(_ root: String, options: TrainOptions) throws -> RunSplits {
        let found = try ImageFolderDataset.splits(root: root, options: ScanOptions(strict: (options.onBadImage ?? .skip).isStrict))
        var train: any ImageDataset = found.train
        var validation: (any ImageDataset)? = found.validation
        var test: (any ImageDataset)? = found.test
        if let n = options.limitPerClass {
            train = train.limited(perClass: n, seed: options.seed)
            validation = validation?.limited(perClass: n, seed: options.seed)
            test = test?.limited(perClass: n, seed: options.seed)
        }
        if let fraction = options.valSplit {
            guard validation == nil else {
                throw RunError.invalidSetting(setting: "valSplit", reason: "\(root) already has a validation folder; drop the validation split")
            }
            let parts = try train.stratifiedSplit(validationFraction: fraction, seed: options.seed)
            train = parts.train
            validation = parts.validation
        }
        return RunSplits(train: train, validation: validation, test: test, hasSplitFolders: found.hasSplitFolders,
                         skipped: found.skipped)
    }

    /// The most images any split holds (a batch never holds more).
    public var largestCount: Int { max(train.count, validation?.count ?? 0, test?.count ?? 0) }
}

/// Training augmentations a run can use.
public enum Augmentation: String, Codable, CaseIterable, Sendable {
    /// The evaluation transform (resize, centre crop).
    case none
    /// Random resized crop and horizontal flip (torchvision's ImageNet training transform).
    case standard
    /// Keras' ImageDataGenerator: shear 0.2, zoom 0.2, horizontal flip.
    case keras

    /// The training transform for `preprocessing`.
    public func transform(_ p: Preprocessing) -> any SampleTransform {
        switch self {
        case .none:
            return EvaluationTransform(p)
        case .keras:
            // Keras' ImageDataGenerator(rescale, shear_range=0.2, zoom_range=0.2, horizontal_flip=True),
            // with the model's own scaling and normalisation folded into rescale/mean/std.
            let low = p.valueRange[0]
            return KerasImageDataGenerator(rescale: (p.valueRange[1] - low) / 255, shearRange: 0.2, zoomRange: 0.2,
                                           horizontalFlip: true, targetSize: (p.cropSize, p.cropSize),
                                           mean: p.mean.map { $0 - low }, std: p.std)
        case .standard:
            return TrainingTransform.standard(p)
        }
    }
}

/// When a run trains the head on cached backbone features (see `FeatureCache`).
public enum FeatureCacheMode: String, Codable, CaseIterable, Sendable {
    /// Whenever the backbone is frozen and the inputs are unaugmented (or augmented views are cached).
    case auto
    /// Always; an error when the run is not eligible.
    case on
    /// Never.
    case off
}
