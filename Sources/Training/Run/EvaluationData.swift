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
    /// What the metrics on these images must be read with, for the report's notes: the run's own
    /// DATA used whole holds the images it trained on.
    public var notes: [String] = []

    /// The images of `split` of `root` (nil: the command's default, `unset`), read with `classNames`
    /// as the run's classes (a folder's classes must be those; a CSV's labels must be among them).
    ///
    /// `train`, `val` and `test` are the run's own split, made again (`RunSplits.recreate`: its
    /// `--limit-per-class` and `--val-split` hold-out, with its seed, on the images it was created
    /// with), where the run chose among the images: `val` of a run with a hold-out, and on the run's own
    /// DATA `train` of such a run and every split of a run with `--limit-per-class`. So `val` is
    /// exactly the images the run held out, and `test` of the run's own data those its test metrics
    /// were taken on. Other data is read as it is. `all` is every image of `root`. Without `run`, or
    /// `test` on a plain folder or CSV file, a split DATA does not have is
    /// `RunError.invalidSetting("split")`.
    ///
    /// With `unlabelled`, a folder of images without class folders (photos to embed) is read whole as
    /// `UnlabeledImageFolder` (labels -1, no class names, split `unlabelled`) where DATA used whole is
    /// asked for (`split` nil or `all`); without it, it is the scan's "no class folders" error.
    public static func select(_ root: String, split: DataSplit?, unset: DataSplit = .test, run: RunConfig?,
                              classNames: [String]?, strict: Bool = false, imageRoot: String? = nil,
                              unlabelled: Bool = false) throws -> EvaluationData {
        // Only a folder without subfolders is scanned for loose photos: a class-folder root was scanned
        // (every image's header read) twice.
        if unlabelled, !CSVDataset.isCSVFile(root), !hasSubfolders(root),
           let folder = try? UnlabeledImageFolder(root: root, options: ScanOptions(strict: strict)),
           !folder.samples.isEmpty, folder.folderNames.allSatisfy({ $0 == nil }) {
            guard split == nil || split == .all else {
                throw RunError.invalidSetting(setting: "split", reason: "\(split?.rawValue ?? ""): \(root) is a folder of images "
                                              + "without class folders, which has no splits; leave --split out to use all of it")
            }
            return EvaluationData(dataset: folder, split: "unlabelled", scanSkipped: folder.skipped.count,
                                  warnings: folder.skipped.warning().map { [$0] } ?? [])
        }
        let explicitSplit = split.flatMap { $0 == .all ? nil : $0 }
        // The same folder also through a link (dev and inode).
        let ownData = run.flatMap { run in
            FileIdentity(path: root).flatMap { here in FileIdentity(path: run.data.path).map { $0 == here } }
        } ?? false
        // The split holds the run's --val-split hold-out, or what it left after it: no other images
        // can stand in for it.
        func isHoldOut(_ split: DataSplit) -> Bool {
            run?.options.valSplit != nil && (split == .val || (split == .train && ownData))
        }
        func isRunsOwn(_ split: DataSplit) -> Bool {
            guard let run, split != .all else { return false }
            return isHoldOut(split) || (ownData && run.options.limitPerClass != nil)
        }
        // Only --limit-per-class chose (no hold-out in this split): when DATA's images changed since the
        // run was made, its choice cannot be made again, and the split is read as it is, with a warning
        // (evaluating the run's data after an image was added was refused).
        var notice: String?
        func ownSplit(_ split: DataSplit, isCSV: Bool, hasSplitFolders: Bool? = nil) throws -> EvaluationData? {
            do {
                return try runSplit(root, split: split, run: run, imageRoot: imageRoot, isCSV: isCSV, hasSplitFolders: hasSplitFolders)
            } catch RunError.invalidSetting(let setting, _) where setting == "data" && !isCSV && !isHoldOut(split) {
                notice = "the images in \(root) changed since the run was created, so its --limit-per-class choice of them "
                    + "cannot be made again: its \(split.rawValue) split is read whole, not as the run used it"
                return nil
            }
        }
        if let explicitSplit, isRunsOwn(explicitSplit),
           let own = try ownSplit(explicitSplit, isCSV: CSVDataset.isCSVFile(root)) {
            return own
        }
        // The run's own DATA used whole (no test split to take) holds the images it trained on:
        // `evaluate runs/x data/x` reported them as if unseen.
        // So does a folder inside it where the run trained (`evaluate runs/x data/x/train`).
        let heldOut = run?.options.valSplit != nil ? "--split val evaluates only its --val-split hold-out"
                                                   : "evaluate other images (a test/ folder or another DATA) for that"
        var trainedOn: [String] = []
        if ownData {
            trainedOn = ["\(root) is the data the run was trained on, used whole: these metrics include the images it "
                + "trained on and overstate how it does on new ones; " + heldOut]
        } else if let run, let part = trainingPart(of: root, run: run) {
            trainedOn = ["\(root) holds images the run was trained on (it is inside \(run.data.path)/\(part)): these "
                + "metrics include them and overstate how it does on new ones; "
                + (run.options.valSplit != nil ? "--split val on \(run.data.path) evaluates only its --val-split hold-out"
                                               : "evaluate other images (its test/ folder or another DATA) for that")]
        }
        if CSVDataset.isCSVFile(root) {
            if let explicitSplit { return try runSplit(root, split: explicitSplit, run: run, imageRoot: imageRoot, isCSV: true) }
            // The run's own CSV file resolves its paths as the run did unless told otherwise.
            let csv = try CSVDataset(csv: root, classNames: classNames, imageRoot: imageRoot ?? (ownData ? run?.options.imageRoot : nil),
                                     options: ScanOptions(strict: strict))
            return EvaluationData(dataset: csv, split: "csv", scanSkipped: csv.skipped.count,
                                  warnings: csv.skipped.warning().map { [$0] } ?? [], notes: trainedOn)
        }
        // Read with the run's classes: a folder of some of them (more photos of two of the classes) is
        // evaluated by name; it was refused unless it had a folder for every class.
        let splits = try ImageFolderDataset.splits(root: root, classNames: classNames, options: ScanOptions(strict: strict))
        var warnings = (splits.skipped.warning().map { [$0] } ?? []) + (notice.map { [$0] } ?? [])
        if let explicitSplit, !splits.hasSplitFolders {
            if notice != nil && explicitSplit == .train {  // the run's choice cannot be made again: the folder, whole
                return EvaluationData(dataset: splits.train, split: "folder", scanSkipped: splits.skipped.count, warnings: warnings)
            }
            return try runSplit(root, split: explicitSplit, run: run, imageRoot: imageRoot, isCSV: false, hasSplitFolders: false)
        }
        guard splits.hasSplitFolders else {
            return EvaluationData(dataset: splits.train, split: "folder", scanSkipped: splits.skipped.count, warnings: warnings,
                                  notes: trainedOn).namingClassesWithoutImages(of: root, run: classNames)
        }
        let split = split ?? unset
        if notice == nil && isRunsOwn(split) {
            if let own = try ownSplit(split, isCSV: false, hasSplitFolders: true) { return own }
            warnings += notice.map { [$0] } ?? []
        }
        let chosen: ImageFolderDataset?
        switch split {
        case .train: chosen = splits.train
        case .val: chosen = splits.validation
        case .test: chosen = splits.test
        case .all:
            let parts: [any ImageDataset] = [splits.train] + [splits.validation, splits.test].compactMap { $0 }
            return EvaluationData(dataset: LabeledDataset(samples: parts.flatMap(\.samples), classNames: splits.train.classNames),
                                  split: "all", scanSkipped: splits.skipped.count, warnings: warnings, notes: trainedOn)
                .namingClassesWithoutImages(of: root, run: classNames)
        }
        guard let chosen else {
            throw RunError.invalidSetting(setting: "split", reason: "\(split.rawValue): \(root) has no \(split.rawValue)/ folder; "
                                          + "use another --split or all")
        }
        return EvaluationData(dataset: chosen, split: split.rawValue, scanSkipped: chosen.skipped.count, warnings: warnings)
            .namingClassesWithoutImages(of: root, run: classNames)
    }

    /// With a note naming the run's classes (`run`) that have no image here, if any (a folder of some
    /// of the classes, a test split without a rare one): the metrics are read with it.
    func namingClassesWithoutImages(of root: String, run classNames: [String]?) -> EvaluationData {
        guard let classNames, dataset.classNames == classNames else { return self }
        let present = Set(dataset.samples.map(\.label))
        let absent = classNames.indices.filter { !present.contains($0) }.map { classNames[$0] }
        guard !absent.isEmpty else { return self }
        var data = self
        let listed = absent.prefix(8).joined(separator: ", ") + (absent.count > 8 ? ", …" : "")
        data.notes.append("\(root) has images of \(classNames.count - absent.count) of the run's \(classNames.count) "
            + "classes (none of \(listed)): their rows of the per-class report are empty, and the macro averages are over "
            + "the classes these images have or the model predicted for them (sklearn's)")
        return data
    }

    /// The folder of the run's own DATA that holds `root`, where that is a part the run trained on: its
    /// `train/` folder, or a class folder of a DATA without split folders (its `val/` and `test/` folders
    /// are held out). nil when `root` is not below the run's DATA (the same folder through links too).
    static func trainingPart(of root: String, run: RunConfig) -> String? {
        guard let data = FileIdentity(path: run.data.path) else { return nil }
        var folder = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath()
        var first = ""
        while folder.pathComponents.count > 1 {
            first = folder.lastPathComponent
            folder = folder.deletingLastPathComponent()
            guard FileIdentity(path: folder.path) == data else { continue }
            let heldOut = ["val", "validation", "valid", "test", "testing"].contains(first.lowercased())
            return heldOut ? nil : first
        }
        return nil
    }

    /// Whether the folder at `root` holds a folder (hidden ones aside); false for anything else.
    private static func hasSubfolders(_ root: String) -> Bool {
        let fm = FileManager.default
        return ((try? fm.contentsOfDirectory(atPath: root)) ?? []).contains { name in
            var isDirectory: ObjCBool = false
            return !name.hasPrefix(".") && fm.fileExists(atPath: root + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
        }
    }

    /// `train`, `val` or `test` of a plain folder or CSV file, or of a run that chose among its
    /// images: the run's own split of it, or an error.
    private static func runSplit(_ root: String, split: DataSplit, run: RunConfig?, imageRoot: String?,
                                 isCSV: Bool, hasSplitFolders: Bool? = nil) throws -> EvaluationData {
        let kind = isCSV ? "a CSV file, which has no split folders" : "a folder of class folders without train/ val/ test/ folders"
        let whole = "leave --split out (or --split all) to use all of it"
        let noSuchSplit = RunError.invalidSetting(setting: "split", reason: "\(split.rawValue): \(root) is \(kind); \(whole)")
        guard let run else { throw noSuchSplit }
        func check(splitFolders: Bool) throws {
            if split == .test && !splitFolders { throw noSuchSplit }
            if split == .val && !splitFolders && run.options.valSplit == nil {
                throw RunError.invalidSetting(setting: "split", reason: "val: \(root) is \(kind), and the run held out no "
                                              + "validation images from it (no --val-split); \(whole)")
            }
        }
        if let known = isCSV ? false : hasSplitFolders { try check(splitFolders: known) }
        let splits = try RunSplits.recreate(root, run: run, imageRoot: imageRoot)
        try check(splitFolders: splits.hasSplitFolders)
        if !isCSV { try RunDirectory.checkClassNames(splits.train.classNames, run: run.classNames, data: root) }
        let chosen: (any ImageDataset)?
        switch split {
        case .train, .all: chosen = splits.train
        case .val: chosen = splits.validation
        case .test: chosen = splits.test
        }
        guard let chosen else {
            throw RunError.invalidSetting(setting: "split", reason: "\(split.rawValue): the run's split of \(root) holds no "
                                          + "\(split == .val ? "validation" : "test") images; use another --split or all")
        }
        return EvaluationData(dataset: chosen, split: split.rawValue, scanSkipped: splits.skipped.count,
                              warnings: splits.skipped.warning().map { [$0] } ?? [])
    }
}
