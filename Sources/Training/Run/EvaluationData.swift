import Data
import Foundation

/// Which images of a class-folder root `evaluate` and `features` read (`--split`): one split folder,
/// or all of them (train + val + test).
public enum DataSplit: String, CaseIterable, Sendable {
    case test, val, train, all
}

/// The images a run is evaluated (or its features taken) on: a split of DATA, DATA used whole, or the
/// run's own split of it made again.
public struct EvaluationData {
    /// The images.
    public var dataset: any ImageDataset
    /// What they are: `test`, `val`, `train`, `all`, `folder` (a plain folder of class folders used
    /// whole) or `csv` (a `path,label` CSV file used whole).
    public var split: String
    /// Files the scan left out (unusable before any decoding).
    public var scanSkipped: Int
    /// What the scan has to say of those files, to show the user.
    public var warnings: [String] = []

    /// The images of `split` of `root` (nil: the command's default, `unset`), read with `classNames`
    /// as the run's classes (a folder's classes must be those; a CSV's labels must be among them).
    ///
    /// For a run with a `--val-split` hold-out, and on a plain folder or CSV file, `train` and `val`
    /// are the run's own split, made again (`RunSplits.recreate`: its hold-out and
    /// `--limit-per-class`, on the images it was created with), so that `val` is exactly the images
    /// the run held out; `train` beside a test/ folder only on the run's own DATA (another dataset's
    /// train/ is read as it is). Without `run`, or `test` on a plain folder or CSV file, a split DATA
    /// does not have is `RunError.invalidSetting("split")`.
    public static func select(_ root: String, split: DataSplit?, unset: DataSplit = .test, run: RunConfig?,
                              classNames: [String]?, strict: Bool = false, imageRoot: String? = nil) throws -> EvaluationData {
        let explicitSplit = split.flatMap { $0 == .all ? nil : $0 }
        // The same folder also through a link (dev and inode).
        let ownData = run.flatMap { run in
            FileIdentity(path: root).flatMap { here in FileIdentity(path: run.data.path).map { $0 == here } }
        } ?? false
        if let explicitSplit, explicitSplit == .val || (explicitSplit == .train && ownData), run?.options.valSplit != nil {
            return try runSplit(root, split: explicitSplit, run: run, imageRoot: imageRoot, isCSV: CSVDataset.isCSVFile(root))
        }
        if CSVDataset.isCSVFile(root) {
            if let explicitSplit { return try runSplit(root, split: explicitSplit, run: run, imageRoot: imageRoot, isCSV: true) }
            let csv = try CSVDataset(csv: root, classNames: classNames, imageRoot: imageRoot, options: ScanOptions(strict: strict))
            return EvaluationData(dataset: csv, split: "csv", scanSkipped: csv.skipped.count,
                                  warnings: csv.skipped.warning().map { [$0] } ?? [])
        }
        let splits = try ImageFolderDataset.splits(root: root, options: ScanOptions(strict: strict))
        if let explicitSplit, !splits.hasSplitFolders {
            return try runSplit(root, split: explicitSplit, run: run, imageRoot: imageRoot, isCSV: false)
        }
        let warnings = splits.skipped.warning().map { [$0] } ?? []
        if let classNames { try RunDirectory.checkClassNames(splits.train.classNames, run: classNames, data: root) }
        guard splits.hasSplitFolders else {
            return EvaluationData(dataset: splits.train, split: "folder", scanSkipped: splits.skipped.count, warnings: warnings)
        }
        let chosen: ImageFolderDataset?
        let split = split ?? unset
        switch split {
        case .train: chosen = splits.train
        case .val: chosen = splits.validation
        case .test: chosen = splits.test
        case .all:
            let parts: [any ImageDataset] = [splits.train] + [splits.validation, splits.test].compactMap { $0 }
            return EvaluationData(dataset: LabeledDataset(samples: parts.flatMap(\.samples), classNames: splits.train.classNames),
                                  split: "all", scanSkipped: splits.skipped.count, warnings: warnings)
        }
        guard let chosen else {
            throw RunError.invalidSetting(setting: "split", reason: "\(split.rawValue): \(root) has no \(split.rawValue)/ folder; "
                                          + "use another --split or all")
        }
        return EvaluationData(dataset: chosen, split: split.rawValue, scanSkipped: chosen.skipped.count, warnings: warnings)
    }

    /// `train`, `val` or `test` of a plain folder or CSV file, or of a run with a hold-out: the run's
    /// own split of it, or an error.
    private static func runSplit(_ root: String, split: DataSplit, run: RunConfig?, imageRoot: String?,
                                 isCSV: Bool) throws -> EvaluationData {
        let kind = isCSV ? "a CSV file, which has no split folders" : "a folder of class folders without train/ val/ test/ folders"
        let whole = "leave --split out (or --split all) to use all of it"
        guard let run, split != .test else {
            throw RunError.invalidSetting(setting: "split", reason: "\(split.rawValue): \(root) is \(kind); \(whole)")
        }
        guard split == .train || run.options.valSplit != nil else {
            throw RunError.invalidSetting(setting: "split", reason: "val: \(root) is \(kind), and the run held out no "
                                          + "validation images from it (no --val-split); \(whole)")
        }
        let splits = try RunSplits.recreate(root, run: run, imageRoot: imageRoot)
        guard let chosen = split == .val ? splits.validation : splits.train else {
            throw RunError.invalidSetting(setting: "split", reason: "val: the run's split of \(root) holds no validation images")
        }
        return EvaluationData(dataset: chosen, split: split.rawValue, scanSkipped: splits.skipped.count,
                              warnings: splits.skipped.warning().map { [$0] } ?? [])
    }
}
