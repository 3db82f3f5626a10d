import AtomicFiles
import Data
import Foundation
import NN

/// `finetune pseudo-label`: a finished run's model labels a folder of unlabelled images (the same
/// labelling pass as pseudo-labelling in training), and the images at or above a threshold are
/// written for a person to review: class folders of symbolic links (or copies) and a CSV of
/// `file, class, confidence`, least confident first.
public enum PseudoLabelReview {
    /// One image the model labelled at or above the threshold.
    public struct Entry: Equatable, Sendable {
        /// The image file.
        public var file: String
        /// The class the model gave it.
        public var className: String
        /// The model's probability of that class.
        public var confidence: Double

        /// An entry for `file`, labelled `className` with probability `confidence`.
        public init(file: String, className: String, confidence: Double) {
            self.file = file
            self.className = className
            self.confidence = confidence
        }
    }

    /// What a labelling pass found.
    public struct Result {
        /// The images at or above the threshold, least confident first (ties by file).
        public var entries: [Entry]
        /// Images the model labelled (those that could be decoded).
        public var candidates: Int
        /// The highest confidence seen (nil without images).
        public var highestConfidence: Double?
        /// Where the unlabelled images lie in class folders named like the run's classes: the share of
        /// the entries whose class is their folder's name.
        public var folderAccuracy: Double?
        /// The precision the model ran in (`precision` of `label`, `.auto` decided).
        public var precision: Precision = .fp32
    }

    /// The CSV's name inside the output folder.
    public static let csvName = "pseudo_labels.csv"

    /// Labels the images under `unlabeled` (recursively) with `run`'s model in inference mode and its
    /// evaluation transform, in `precision` (`.auto`: as `predict` decides; it was always fp32, where
    /// `train --unlabeled` labels in the run's precision). Files that cannot be read go to `reporter`.
    /// A missing folder, or one without images, is an error. `weights`: the run's final weights or a
    /// checkpoint's.
    public static func label(run: RunDirectory, unlabeled: String, threshold: Double, batchSize: Int = 32,
                             workers: Int = 2, reporter: SkippedFileReporter? = nil,
                             precision: Precision = .fp32, weights: RunWeights = .final) throws -> Result {
        guard threshold > 0 && threshold <= 1 else {
            throw RunError.invalidSetting(setting: "threshold", reason: "must be in (0, 1], got \(threshold)")
        }
        let config = try run.readConfig()
        let folder = try UnlabeledImageFolder(root: unlabeled)
        reporter?.record(folder.skipped, split: "unlabeled")
        guard folder.count > 0 else {
            throw DataError.invalidDataset("\(folder.root) holds no usable image (.jpg, .jpeg or .png, searched recursively)")
        }
        let model = try run.loadModel(config, from: weights).model
        var configuration = TrainingConfiguration()
        configuration.loss = config.head.isBinary ? .binary : .crossEntropy
        let resolved = precision.resolved(for: model)
        configuration.autocastBF16 = resolved == .bf16
        let trainer = try Trainer(model: model, configuration: configuration)
        let transform = EvaluationTransform(config.preprocessing)
        let labeler = PseudoLabeler(unlabeled: folder, folderNames: folder.folderNames, classNames: config.classNames,
                                    trainTransform: transform, evalTransform: transform, seed: 0,
                                    batchSize: batchSize, workers: workers)
        labeler.reporter = reporter
        let all = try labeler.label(by: trainer, input: .images,
                                    settings: PseudoLabelSettings(threshold: .leastNonzeroMagnitude), epoch: 0)
        let kept = all.labels.filter { $0.confidence >= threshold }
        var entries = kept.map {
            Entry(file: folder.samples[$0.index].source.description, className: config.classNames[$0.label],
                  confidence: $0.confidence)
        }
        entries.sort { ($0.confidence, $0.file) < ($1.confidence, $1.file) }
        return Result(entries: entries, candidates: all.candidates,
                      highestConfidence: all.labels.map(\.confidence).max(), folderAccuracy: labeler.folderAccuracy(of: kept),
                      precision: resolved)
    }

    /// The folder that holds `className`'s images in the review folder: the name itself where it is
    /// one plain path component, else percent-encoded so that it is one and stays inside the review
    /// folder. A class of a CSV dataset may be named `a/b` or `..`; its images must not land in a
    /// subfolder or beside the review folder. `%` becomes `%25`, `/` `%2F` and NUL `%00` (so distinct
    /// classes keep distinct folders), and a name that would still be special (`.`, `..` or the CSV's
    /// name) has its first character encoded (`%2E`). The CSV keeps the class names unencoded.
    public static func folderName(forClass className: String) -> String {
        let escapes: [Unicode.Scalar: String] = ["%": "%25", "/": "%2F", "\0": "%00"]
        var name = className.unicodeScalars.map { escapes[$0] ?? String($0) }.joined()
        if name.isEmpty || name == "." || name == ".." || name == csvName {
            let first = name.unicodeScalars.first.map { String(format: "%%%02X", $0.value) } ?? "%"
            name = first + String(name.unicodeScalars.dropFirst())
        }
        return name
    }

    /// Throws unless `out` can receive a review: a new or empty folder outside `unlabeledRoot` (inside
    /// it, the next labelling would read its links and copies as more unlabelled images). `write`
    /// checks it; callers check it first to fail before the labelling pass.
    public static func checkDestination(_ out: String, unlabeledRoot: String) throws {
        let manager = FileManager.default
        if let target = RegularFile.danglingLinkTarget(out) {
            throw RunError.refusedDestination(path: out, reason: "it is a symbolic link to \(target), which does not exist; "
                                              + "create its target or give another folder")
        }
        var isDirectory: ObjCBool = false
        if manager.fileExists(atPath: out, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw RunError.refusedDestination(path: out, reason: "it is a file; give a new folder")
            }
            guard (try manager.contentsOfDirectory(atPath: out)).isEmpty else {
                throw RunError.refusedDestination(path: out, reason: "it exists and is not empty; give a new or empty folder "
                                                  + "(finetune never replaces files it did not create)")
            }
        }
        // Resolved as far as the path exists: a new folder behind a link into the unlabelled folder
        // (`link/review`) was not resolved at all, and passed.
        let root = RunDirectory.resolvedPath(unlabeledRoot), target = RunDirectory.resolvedPath(out)
        if target == root || target.hasPrefix(root + "/") {
            throw RunError.refusedDestination(path: out, reason: "it lies inside the unlabelled folder \(unlabeledRoot), whose "
                                              + "next labelling would read the review's links as more images; give a folder outside it")
        }
    }

    /// Writes `entries` into `out`, which must not exist or be an empty folder (nothing finetune did
    /// not create is ever replaced): `out/<class folder>/<file name>` as a symbolic link to the image
    /// (a copy with `copy`), where the class folder is `folderName(forClass:)`, and
    /// `out/pseudo_labels.csv`. Images that share a file name get the folders they came from in front
    /// of it (`a__b__x.jpg`), and a counter where that is still taken (`a__b__x-2.jpg`). A failure
    /// part-way removes what was written. Returns the CSV's path.
    @discardableResult
    public static func write(_ entries: [Entry], unlabeledRoot: String, to out: String, copy: Bool) throws -> String {
        let manager = FileManager.default
        try checkDestination(out, unlabeledRoot: unlabeledRoot)
        let root = URL(fileURLWithPath: unlabeledRoot).standardizedFileURL.path
        // Every target is named before anything is written: a shared file name gets its folders in
        // front (`a__b__x.jpg`), and a name still taken (`a/b/x.jpg` and `a__b/x.jpg`) a counter (`-2`).
        var names: [String: Int] = [:]
        for entry in entries { names[entry.className + "/" + (entry.file as NSString).lastPathComponent, default: 0] += 1 }
        var taken: Set<String> = []
        let targets: [(source: String, folder: String, target: String)] = entries.map { entry in
            let source = URL(fileURLWithPath: entry.file).standardizedFileURL.path
            var name = (source as NSString).lastPathComponent
            if names[entry.className + "/" + name, default: 0] > 1 {
                let relative = source.hasPrefix(root + "/") ? String(source.dropFirst(root.count + 1)) : source
                // The folders nearest the file, as many as a file name holds (255 bytes, less room for a
                // counter): two 250-byte folder names made one name too long to write at all.
                var parts = relative.split(separator: "/").map(String.init)
                while parts.count > 1 && parts.joined(separator: "__").utf8.count > 240 { parts.removeFirst() }
                name = parts.joined(separator: "__")
            }
            let folder = (out as NSString).appendingPathComponent(folderName(forClass: entry.className))
            var target = (folder as NSString).appendingPathComponent(name)
            var counter = 2
            while taken.contains(target) {
                var stem = (name as NSString).deletingPathExtension
                let suffix = "-\(counter)" + { $0.isEmpty ? "" : "." + $0 }((name as NSString).pathExtension)
                // A name of up to 255 bytes and its counter must still fit in one (257 bytes failed the write).
                while stem.utf8.count + suffix.utf8.count > 255 && !stem.isEmpty { stem.removeLast() }
                target = (folder as NSString).appendingPathComponent(stem + suffix)
                counter += 1
            }
            taken.insert(target)
            return (source, folder, target)
        }
        var text = CSV.record(["file", "class", "confidence"]) + "\n"
        for entry in entries {
            text += CSV.record([entry.file, entry.className, String(format: "%.6f", entry.confidence)]) + "\n"
        }
        let csv = (out as NSString).appendingPathComponent(csvName)
        // A failure part-way, the CSV's included, removes what this call wrote, so the folder is new or
        // empty again (a re-run found it "not empty").
        var info = stat()
        let existed = lstat(out, &info) == 0  // a link too: only what this call made is removed
        var written: [String] = []
        do {
            for (source, folder, target) in targets {
                if !manager.fileExists(atPath: folder) {
                    try manager.createDirectory(atPath: folder, withIntermediateDirectories: true)
                    written.append(folder)
                }
                if copy {
                    try manager.copyItem(atPath: source, toPath: target)
                } else {
                    try manager.createSymbolicLink(atPath: target, withDestinationPath: source)
                }
                written.append(target)
            }
            try AtomicFile.write(Foundation.Data(text.utf8), to: csv, createDirectory: true)
        } catch {
            for path in written.reversed() { try? manager.removeItem(atPath: path) }
            if !existed { try? manager.removeItem(atPath: out) }
            let reason = (error as? AtomicFileError)?.description ?? FileErrorReason.of(error, path: out)
            throw RunError.io(path: out, reason: "cannot write the review folder: \(reason)")
        }
        return csv
    }
}
