import Data
import Foundation
import Hashing

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
    /// Folders beside DATA's split folders that no split reads (`ImageFolderSplits.unusedFolders`).
    public var unusedFolders: [String] = []
    /// Image files a CSV file lists more than once, in first-listed order: their copies can land in
    /// both the training and the validation split (`check-data` finds them too).
    public var repeatedFiles: [String] = []

    /// Scans `root` (strictly with `--on-bad-image fail`) and applies `options`' limit and split.
    /// `root` is a class-folder root, or a CSV file of `path,label` rows (see `CSVDataset`; image paths
    /// relative to `options.imageRoot`), which is all training data.
    public static func load(_ root: String, options: TrainOptions) throws -> RunSplits {
        let scan = ScanOptions(strict: (options.onBadImage ?? .skip).isStrict)
        let found: (train: any ImageDataset, validation: (any ImageDataset)?, test: (any ImageDataset)?,
                    hasSplitFolders: Bool, skipped: SkippedFiles, unused: [String])
        var repeated: [String] = []
        if isCSV(root) {
            let csv = try CSVDataset(csv: root, imageRoot: options.imageRoot, options: scan)
            found = (csv, nil, nil, false, csv.skipped, [])
            var seen: [String: Int] = [:]
            for path in csv.samples.compactMap(\.source.path) {
                seen[path, default: 0] += 1
                if seen[path] == 2 { repeated.append(path) }
            }
        } else {
            let folders = try ImageFolderDataset.splits(root: root, options: scan)
            found = (folders.train, folders.validation, folders.test, folders.hasSplitFolders, folders.skipped,
                     folders.unusedFolders)
        }
        let splitSeed = options.splitSeed ?? options.seed
        var train: any ImageDataset = found.train
        var validation: (any ImageDataset)? = found.validation
        var test: (any ImageDataset)? = found.test
        if let n = options.limitPerClass {
            train = train.limited(perClass: n, seed: splitSeed)
            validation = validation?.limited(perClass: n, seed: splitSeed)
            test = test?.limited(perClass: n, seed: splitSeed)
        }
        if let fraction = options.valSplit {
            guard validation == nil else {
                throw RunError.invalidSetting(setting: "valSplit", reason: "\(root) already has a validation folder; drop the validation split")
            }
            let parts = try train.stratifiedSplit(validationFraction: fraction, seed: splitSeed)
            train = parts.train
            validation = parts.validation
        }
        return RunSplits(train: train, validation: validation, test: test, hasSplitFolders: found.hasSplitFolders,
                         skipped: found.skipped, unusedFolders: found.unused, repeatedFiles: repeated)
    }

    /// The warning for `repeatedFiles`, nil when there are none.
    public func repeatedFilesWarning(validationSplit: Bool) -> String? {
        guard let first = repeatedFiles.first else { return nil }
        return "\(repeatedFiles.count) image file\(repeatedFiles.count == 1 ? " is" : "s are") listed more than once "
            + "(\(first)\(repeatedFiles.count > 1 ? ", …" : "")): each row trains"
            + (validationSplit ? ", and copies can land in both the training and the validation split" : "")
            + "; `finetune check-data` lists them"
    }

    /// The warning for `unusedFolders` ("…/x, …/y are not read: …"), nil when there are none.
    public func unusedFoldersWarning(root: String) -> String? {
        guard !unusedFolders.isEmpty else { return nil }
        return "\(unusedFolders.map { root + "/" + $0 }.joined(separator: ", ")) "
            + "\(unusedFolders.count == 1 ? "is" : "are") not read: beside train/, only val/ (validation/, valid/) "
            + "and test/ (testing/) are splits; a class folder belongs inside each split"
    }

    /// Whether DATA is a CSV file (an existing regular file) rather than a class-folder root.
    public static func isCSV(_ path: String) -> Bool { CSVDataset.isCSVFile(path) }

    /// A digest of the images the run trains and evaluates on: each split's images in order, as
    /// (path relative to `base`, size in bytes, class name). `resume` compares it with the one
    /// recorded at creation (`RunConfig.DataInfo.fingerprint`): the same files in another folder
    /// match; an image added, removed, moved to another class or changed in size does not.
    public func fingerprint(base: String) -> String {
        var hasher = SHA256Hasher()
        let prefix = base.hasSuffix("/") ? base : base + "/"
        for (split, dataset) in [("train", train), ("validation", validation), ("test", test)] {
            guard let dataset else { continue }
            for sample in dataset.samples {
                let name = sample.source.path.map { $0.hasPrefix(prefix) ? String($0.dropFirst(prefix.count)) : $0 }
                    ?? sample.source.description
                var info = stat()
                let size = sample.source.path.map { stat($0, &info) == 0 ? Int64(info.st_size) : -1 } ?? 0
                let label = dataset.classNames.indices.contains(sample.label) ? dataset.classNames[sample.label] : "?"
                hasher.update(Array("\(split)\t\(label)\t\(name)\t\(size)\n".utf8))
            }
        }
        return hasher.finalizeHex()
    }

    /// The files of `paths` that are also images of a split, by split (training, validation, test;
    /// splits that share none are left out), in `paths`' order. One file counts through any link to
    /// it (`FileIdentity`); a copy with other bytes on disk does not.
    public func sharedFiles(_ paths: [String]) -> [(split: String, files: [String])] {
        let identities = paths.map(FileIdentity.init(path:))
        guard identities.contains(where: { $0 != nil }) else { return [] }
        var shared: [(split: String, files: [String])] = []
        for (split, dataset) in [("training", train), ("validation", validation), ("test", test)] {
            guard let dataset else { continue }
            let inSplit = Set(dataset.samples.compactMap { $0.source.path.flatMap(FileIdentity.init(path:)) })
            let files = zip(paths, identities).compactMap { path, identity in
                identity.map(inSplit.contains) == true ? path : nil
            }
            if !files.isEmpty { shared.append((split, files)) }
        }
        return shared
    }

    /// Validation and test images that are byte-for-byte copies of a training image of the same file
    /// name, as a split made by copying files instead of moving them has: what is measured on them is
    /// the training accuracy, not a held-out one. Only files whose name and size equal a training
    /// image's are read, so splits that share no name cost a `stat` per file; `finetune check-data`
    /// also finds renamed and re-encoded copies. In split order, then the split's.
    public func copiesOfTrainingImages() -> [(split: String, copy: String, original: String)] {
        func size(_ path: String) -> Int64? {
            var info = stat()
            return stat(path, &info) == 0 ? Int64(info.st_size) : nil
        }
        func key(_ path: String, _ size: Int64) -> String { "\((path as NSString).lastPathComponent)\t\(size)" }
        var training: [String: [String]] = [:]
        for path in train.samples.compactMap(\.source.path) {
            if let bytes = size(path) { training[key(path, bytes), default: []].append(path) }
        }
        var digests: [String: String?] = [:]
        func digest(_ path: String) -> String? {
            if let known = digests[path] { return known }
            let computed = try? SHA256Hasher.hexDigest(ofFile: path)
            digests[path] = computed
            return computed
        }
        var copies: [(split: String, copy: String, original: String)] = []
        for (split, dataset) in [("validation", validation), ("test", test)] {
            for path in dataset?.samples.compactMap(\.source.path) ?? [] {
                guard let bytes = size(path), let candidates = training[key(path, bytes)], let mine = digest(path),
                      let original = candidates.first(where: { $0 != path && digest($0) == mine }) else { continue }
                copies.append((split, path, original))
            }
        }
        return copies
    }

    /// The warning for `copiesOfTrainingImages()` (paths shown relative to `root`), nil when there are none.
    public func copiesOfTrainingImagesWarning(root: String) -> String? {
        let copies = copiesOfTrainingImages()
        guard let first = copies.first else { return nil }
        let prefix = root.hasSuffix("/") ? root : root + "/"
        func shown(_ path: String) -> String { path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path }
        let counts = ["validation", "test"].compactMap { split -> String? in
            let n = copies.filter { $0.split == split }.count
            return n == 0 ? nil : "\(n) \(split)"
        }
        return "\(counts.joined(separator: " and ")) image\(copies.count == 1 ? " is a" : "s are") byte-for-byte "
            + "cop\(copies.count == 1 ? "y" : "ies") of training images (\(shown(first.copy)) = \(shown(first.original))"
            + (copies.count > 1 ? ", …" : "") + "): what is measured on \(copies.count == 1 ? "it" : "them") is the training "
            + "accuracy, not a held-out one; keep each image in one split (`finetune check-data` lists them, and finds "
            + "renamed and re-encoded copies too)"
    }

    /// Where `fingerprint`'s names start: DATA itself, or for a CSV file its image root (by default
    /// the CSV's folder).
    public static func imageBase(_ root: String, imageRoot: String?) -> String {
        isCSV(root) ? imageRoot ?? (root as NSString).deletingLastPathComponent : root
    }

    /// The splits a run made of `root`, made again: its `limitPerClass` and seeded `valSplit`, so
    /// that `evaluate --split val` on the plain folder a run held its validation images out of
    /// evaluates those images. `imageRoot` replaces the run's for a CSV `root`. `root` must hold
    /// the images the run was created with (`RunConfig.DataInfo.fingerprint`; a run that records
    /// none is trusted), else `RunError.invalidSetting("data")` says so.
    public static func recreate(_ root: String, run config: RunConfig, imageRoot: String? = nil) throws -> RunSplits {
        var options = config.options
        if let imageRoot { options.imageRoot = URL(fileURLWithPath: imageRoot).standardizedFileURL.path }
        let splits = try load(root, options: options)
        if let digest = config.data.fingerprint, digest != splits.fingerprint(base: imageBase(root, imageRoot: options.imageRoot)) {
            throw RunError.invalidSetting(setting: "data", reason: "the images in \(root) are not those the run was created "
                + "with (\(config.data.path); an image was added, removed, moved to another class or changed in size), "
                + "so the run's split of them cannot be made again")
        }
        return splits
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
    /// `standard`, then torchvision's `RandAugment(n, m)` (`TrainOptions.randAugment`, default 2 and 9).
    case randaugment
    /// `standard`, then torchvision's `TrivialAugmentWide`.
    case trivialaugment
    /// `standard`, then torchvision's `AutoAugment` with its ImageNet policy.
    case autoaugment

    /// The training transform for `preprocessing`; `colorJitter` follows the standard augmentation's
    /// flip (the other augmentations take none: `TrainingRun` refuses the combination); `erasing`
    /// follows the normalisation of `standard` and the policies (`randaugment`, `trivialaugment`,
    /// `autoaugment`; the others take
    /// none either).
    public func transform(_ p: Preprocessing, colorJitter: ColorJitter? = nil, randAugment: RandAugment = RandAugment(),
                          erasing: RandomErasing? = nil) -> any SampleTransform {
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
            var t = TrainingTransform.standard(p, colorJitter: colorJitter)
            t.erasing = erasing
            return t
        case .randaugment, .trivialaugment, .autoaugment:
            // torchvision's reference recipe: RandomResizedCrop, flip, then the policy.
            var t = TrainingTransform.standard(p)
            switch self {
            case .randaugment: t.augmentations.append(randAugment)
            case .trivialaugment: t.augmentations.append(TrivialAugmentWide())
            default: t.augmentations.append(AutoAugment())
            }
            t.erasing = erasing
            return t
        }
    }
}

/// How a run draws its training batches.
public enum SamplerKind: String, Codable, CaseIterable, Sendable {
    /// Every image once per epoch, in a seeded random order.
    case shuffle
    /// As many draws as images, with replacement, each class equally likely (`BalancedSampler`).
    case balanced
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
