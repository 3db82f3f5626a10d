import AtomicFiles
import Foundation

/// Images arranged one folder per class — Keras' `flow_from_directory` / torchvision's `ImageFolder`:
///
///     root/cat/001.jpg
///     root/cat/more/002.PNG      (subfolders inside a class folder are searched too)
///     root/dog/003.jpeg
///
/// * Class names are the folder names sorted by Unicode code point (as Python sorts them), so class
///   indices agree with torchvision and Keras. Files are listed in the same order.
/// * Image files are recognised by extension (`ScanOptions.extensions`: jpg, jpeg, png, any case);
///   other files are ignored. Names starting with "." (hidden files and folders) are ignored.
/// * Symlinks to files and folders are followed (a folder reached twice through links is searched once).
///   A class folder that is another class's (`Handbag -> Bag`) is an error; an image file linked into
///   two classes is left out of both and listed in `skipped`.
/// * Unusable image files (empty, unreadable, not JPEG/PNG, a folder named like an image, a dangling
///   symlink) are skipped and listed in `skipped`; with `ScanOptions.strict` the first one throws.
/// * Errors (`DataError.invalidDataset`, naming the path): a missing root, a root with no class
///   folders or only one, a class folder with no usable image.
public struct ImageFolderDataset: ImageDataset {
    /// The scanned folder, without trailing slashes.
    public let root: String
    /// One sample per usable image file, class by class, files sorted by path within each class.
    public let samples: [LabeledSample]
    /// The class folder names sorted by code point (or the list given to `init`).
    public let classNames: [String]
    /// Files that were left out.
    public let skipped: SkippedFiles

    /// Scans `root`. With `classNames` given (a validation or test split scanned with the training
    /// split's classes), labels index that list, every class folder must be one of them, and fewer
    /// classes (even one) are accepted.
    public init(root: String, classNames fixed: [String]? = nil, options: ScanOptions = ScanOptions()) throws {
        let root = Self.trimmedRoot(root)
        self.root = root
        switch FileKind(path: root) {
        case .directory: break
        case .missing, .danglingLink:
            throw DataError.invalidDataset("dataset folder \(root) does not exist")
        default:
            throw DataError.invalidDataset("dataset path \(root) is not a folder")
        }
        let classFolders = try Self.listFolders(root)
        try Self.checkDistinct(classFolders, in: root)
        try Self.checkNoClassIsAnother(classFolders, in: root)
        if let fixed {
            let known = Set(fixed)
            for name in classFolders where !known.contains(name) {
                throw DataError.invalidDataset("class folder \(root)/\(name) is not one of the \(fixed.count) " +
                                               "training classes (\(fixed.prefix(8).joined(separator: ", "))" +
                                               "\(fixed.count > 8 ? ", …" : ""))")
            }
            classNames = fixed
        } else {
            guard !classFolders.isEmpty else {
                throw DataError.invalidDataset("no class folders in \(root): put the images of each class in its " +
                                               "own subfolder (\(root)/<class>/<image>.jpg)")
            }
            guard classFolders.count >= 2 else {
                throw DataError.invalidDataset("only one class folder (\(classFolders[0])) in \(root): a classifier " +
                                               "needs at least two classes")
            }
            classNames = classFolders
        }

        // Candidate files per class, then one verification pass over all of them.
        var candidates: [(path: String, label: Int)] = []
        var scanSkipped = SkippedFiles()
        var perClassFound: [String: Int] = [:]
        for name in classFolders {
            let label = classNames.firstIndex(of: name)!
            let folder = root + "/" + name
            let (files, bad) = try Self.imageFiles(in: folder, options: options)
            scanSkipped.merge(bad)
            perClassFound[name] = files.count + bad.count
            candidates += files.map { ($0, label) }
        }
        let shared = try Self.leaveOutFilesOfTwoClasses(&candidates, classNames: classNames, options: options,
                                                        skipped: &scanSkipped)
        let (usable, verifySkipped) = try verifyImageFiles(candidates.map(\.path), options: options)
        scanSkipped.merge(verifySkipped)
        var samples: [LabeledSample] = []
        var counts = [Int](repeating: 0, count: classNames.count)
        for (c, ok) in zip(candidates, usable) where ok {
            samples.append(LabeledSample(source: .file(c.path), label: c.label))
            counts[c.label] += 1
        }
        for name in classFolders where counts[classNames.firstIndex(of: name)!] == 0 {
            let found = perClassFound[name] ?? 0
            let sharedHere = shared[classNames.firstIndex(of: name)!] ?? 0
            let detail = sharedHere > 0
                ? " (\(sharedHere) of its \(found) image file\(found == 1 ? "" : "s") \(sharedHere == 1 ? "is" : "are") also another "
                    + "class's, through a link, and left out of both)"
                : found > 0 ? " (\(found) image file\(found == 1 ? "" : "s") skipped as unusable)" : ""
            throw DataError.invalidDataset("class folder \(root)/\(name) contains no usable images" + detail +
                                           "; expected files ending in " +
                                           options.extensions.sorted().map { "." + $0 }.joined(separator: ", "))
        }
        self.samples = samples
        self.skipped = scanSkipped
    }

    /// The splits under `root`: `train/`, `val/` (or `validation/`, `valid/`) and `test/`, matched
    /// case-insensitively. Validation and test folders are scanned with the training classes. When
    /// `root` has none of these folders, `root` itself is the training split (`hasSplitFolders` is
    /// false) — use `stratifiedSplit` to carve out a validation set. With `classNames` (a trained model's
    /// classes), every split is scanned with them: its class folders must be among them, and fewer
    /// (even one) are accepted.
    public static func splits(root: String, classNames: [String]? = nil, options: ScanOptions = ScanOptions()) throws
        -> ImageFolderSplits {
        let root = trimmedRoot(root)
        guard FileKind(path: root).isDirectory else {
            throw DataError.invalidDataset("dataset folder \(root) does not exist or is not a folder")
        }
        let folders = try listFolders(root)
        func find(_ names: [String]) throws -> String? {
            let found = folders.filter { names.contains($0.lowercased()) }
            guard found.count <= 1 else {
                throw DataError.invalidDataset("\(root) has several folders for the same split: " +
                                               found.joined(separator: ", "))
            }
            return found.first.map { root + "/" + $0 }
        }
        let train = try find(["train", "training"])
        let validation = try find(["val", "validation", "valid"])
        let test = try find(["test", "testing"])
        guard let train else {
            if validation != nil || test != nil {
                throw DataError.invalidDataset("\(root) has \((validation ?? test)!) but no train/ folder")
            }
            let all = try ImageFolderDataset(root: root, classNames: classNames, options: options)
            return ImageFolderSplits(train: all, validation: nil, test: nil, hasSplitFolders: false)
        }
        let trainSet = try ImageFolderDataset(root: train, classNames: classNames, options: options)
        let validationSet = try validation.map {
            try ImageFolderDataset(root: $0, classNames: trainSet.classNames, options: options)
        }
        let testSet = try test.map { try ImageFolderDataset(root: $0, classNames: trainSet.classNames, options: options) }
        let splitFolders = [train, validation, test].compactMap { $0.map { ($0 as NSString).lastPathComponent } }
        var found = ImageFolderSplits(train: trainSet, validation: validationSet, test: testSet, hasSplitFolders: true)
        found.unusedFolders = folders.filter { !splitFolders.contains($0) }
        return found
    }

    // MARK: - Scanning

    static func trimmedRoot(_ root: String) -> String {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        return r
    }

    /// Class folders whose names differ only in Unicode form (café as é, or as e and a combining
    /// accent: NFC and NFD) are one name to Swift's `String` and two to the file system, so their
    /// images all went to one class and the run's class list held a duplicate nothing could load.
    /// A class folder whose name holds a line break is refused, as such a CSV label is (`breaksLine`).
    static func checkDistinct(_ names: [String], in root: String) throws {
        var seen: [String: String] = [:]
        for name in names {
            if breaksLine(name) {
                throw DataError.invalidDataset("class folder \(root)/\(escapedName(name)): its name holds a line break; "
                    + "a class name must be one line of text: rename it")
            }
            if let first = seen[name] {
                throw DataError.invalidDataset("class folders \(root)/\(first) and \(root)/\(name) have the same name in "
                    + "two Unicode forms (composed and decomposed accents); rename one so the classes differ")
            }
            seen[name] = name
        }
    }

    /// A class folder that is another class's folder (`Handbag -> Bag`, a link) would give each of its
    /// images two labels: refused, naming both (probe AK: every Bag image was a Handbag image too).
    static func checkNoClassIsAnother(_ names: [String], in root: String) throws {
        var seen: [FileIdentity: String] = [:]
        for name in names {
            guard let identity = FileIdentity(path: root + "/" + name) else { continue }
            guard let first = seen[identity] else { seen[identity] = name; continue }
            let link = [name, first].first { RegularFile.isSymbolicLink(root + "/" + $0) }
            throw DataError.invalidDataset("class folders \(root)/\(first) and \(root)/\(name) are one folder"
                + (link.map { " (\(root)/\($0) is a link to it)" } ?? "") + ", so each of its images would be in two "
                + "classes: remove the link, or give each class its own images")
        }
    }

    /// Removes from `candidates` the image files that are also another class's (one file linked into two
    /// class folders: the same device and inode) and records them in `skipped` (with `options.strict`,
    /// the first one throws): an image with two labels teaches neither, and nothing said so (probe AK).
    /// Returns how many were left out of each class, by label.
    static func leaveOutFilesOfTwoClasses(_ candidates: inout [(path: String, label: Int)], classNames: [String],
                                          options: ScanOptions, skipped: inout SkippedFiles) throws -> [Int: Int] {
        let other = FileIdentity.filesOfTwoLabels(candidates)  // a left-out candidate → one of another class
        guard !other.isEmpty else { return [:] }
        var kept: [(path: String, label: Int)] = []
        var leftOut: [Int: Int] = [:]
        for (i, candidate) in candidates.enumerated() {
            guard let j = other[i] else { kept.append(candidate); continue }
            leftOut[candidate.label, default: 0] += 1
            let reason = "the same file as \(candidates[j].path), an image of class \(classNames[candidates[j].label]): "
                + "an image of two classes is left out of both"
            if options.strict { throw DataError.unreadable(path: candidate.path, reason: reason) }
            skipped.append(path: candidate.path, reason: reason)
        }
        candidates = kept
        return leftOut
    }

    /// The folders among `listVisible(root)` (class or split folders). An entry that cannot be
    /// reached by its name is an error naming it: it may be a class, and a class must not vanish
    /// without a word (a folder named in bytes that are not UTF-8 did).
    static func listFolders(_ root: String) throws -> [String] {
        let names = try listVisible(root)
        for name in names {
            // (A file so named beside the class folders is ignored, as any file there is.)
            if let reason = unreachable(name, in: root), mayBeFolder(name, in: root) {
                throw DataError.invalidDataset("\(root)/\(name): \(reason)")
            }
            // A class on a disk that is not mounted: the class vanished without a word (probe AK).
            if case .danglingLink = FileKind(path: root + "/" + name) {
                let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: root + "/" + name)) ?? "?"
                throw DataError.invalidDataset("\(root)/\(name): a symbolic link to \(target), which does not exist; "
                    + "it may be a class: mount or create its target, or remove the link")
            }
        }
        return names.filter { FileKind(path: root + "/" + $0).isDirectory }
    }

    /// Why the entry `name` that listing `folder` gave cannot be opened by that name, if it cannot:
    /// a name in bytes that are not UTF-8 (Foundation lists it with U+FFFD in their place, a name
    /// nothing can open), or a path over the system's length limit.
    static func unreachable(_ name: String, in folder: String) -> String? {
        guard case .missing = FileKind(path: folder + "/" + name) else { return nil }
        if name.contains("\u{FFFD}") {
            return "its name is not valid UTF-8 (shown with U+FFFD in place of the bytes); finetune reads UTF-8 names: rename it"
        }
        if (folder + "/" + name).utf8.count >= Int(PATH_MAX) {
            return "its path is longer than the system's limit of \(PATH_MAX) bytes: move it higher up"
        }
        return nil  // removed since it was listed
    }

    /// Whether the entry of `folder` that Foundation lists as `name` may be a folder, by the type
    /// `readdir` gives (it needs no path): false only for a plain file. Entries that cannot be opened
    /// by name cannot be `stat`ed either.
    static func mayBeFolder(_ name: String, in folder: String) -> Bool {
        guard let directory = opendir(folder) else { return true }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let entryName = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: Int(NAME_MAX) + 1) { String(cString: $0) }  // U+FFFD repaired
            }
            if entryName == name { return Int(entry.pointee.d_type) != Int(DT_REG) }
        }
        return true
    }

    /// Folders that file systems, NAS boxes and archivers add, never a class: Synology's thumbnails,
    /// the AppleDouble folder of a zip made on macOS, Windows' recycle bin and volume information,
    /// ext4's `lost+found`.
    public static let systemFolderNames: Set<String> = ["@eaDir", "__MACOSX", "$RECYCLE.BIN", "System Volume Information",
                                                        "lost+found"]

    /// Entry names of `folder` that do not start with "." and are not `systemFolderNames`, sorted by
    /// code point.
    static func listVisible(_ folder: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder)
                .filter { !$0.hasPrefix(".") && !systemFolderNames.contains($0) }
                .sorted(by: codePointLess)
        } catch {
            throw DataError.unreadable(path: folder, reason: "cannot list the folder: \(FileErrorReason.of(error, path: folder))")
        }
    }

    /// Image files under `folder` (recursively, following symlinks once each, sorted; hidden entries
    /// and `systemFolderNames` left out), plus the entries named like images that are not files
    /// (folders, dangling links) and those that cannot be reached by name, with why.
    public static func imageFiles(in folder: String, options: ScanOptions) throws -> (files: [String], skipped: SkippedFiles) {
        var files: [String] = []
        var skipped = SkippedFiles()
        var visited = Set<[UInt64]>()
        // A folder link inside the class folder that leads to the folder itself or above it (`up -> ..`)
        // gave this class the images of every other class (probe AK): such a link is left out.
        let top = URL(fileURLWithPath: trimmedRoot(folder)).resolvingSymlinksInPath().path
        /// Where the folder at `path` really is, when that is `folder` itself or above it.
        func aboveOrAt(_ path: String) -> String? {
            let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            return real == top || real == "/" || top.hasPrefix(real + "/") ? real : nil
        }
        func walk(_ dir: String) throws {
            if case .directory(let dev, let ino) = FileKind(path: dir) {
                guard visited.insert([dev, ino]).inserted else { return }
            }
            for name in try listVisible(dir) {
                let path = dir + "/" + name
                if let reason = unreachable(name, in: dir) {
                    let image = options.isImageName(name)
                    // Any other file so named is not read, as any file that is not an image.
                    guard image || mayBeFolder(name, in: dir) else { continue }
                    let why = image ? reason : "a folder whose images are not read: " + reason
                    if options.strict { throw DataError.unreadable(path: path, reason: why) }
                    skipped.append(path: path, reason: why)
                    continue
                }
                let isImage = options.isImageName(name)
                switch FileKind(path: path) {
                case .directory:
                    if isImage {
                        if options.strict { throw DataError.unreadable(path: path, reason: "is a directory, not an image file") }
                        skipped.append(path: path, reason: "is a directory, not an image file")
                    } else if let real = aboveOrAt(path) {
                        let reason = "a link to \(real), which holds this folder: its images would be counted again "
                            + "and other classes' given this one; left out"
                        if options.strict { throw DataError.unreadable(path: path, reason: reason) }
                        skipped.append(path: path, reason: reason)
                    } else {
                        try walk(path)
                    }
                case .danglingLink where isImage:
                    let reason = "broken symbolic link (its target does not exist)"
                    if options.strict { throw DataError.unreadable(path: path, reason: reason) }
                    skipped.append(path: path, reason: reason)
                default:
                    if isImage { files.append(path) }
                }
            }
        }
        try walk(trimmedRoot(folder))
        return (files, skipped)
    }
}

/// The splits found by `ImageFolderDataset.splits(root:)`.
public struct ImageFolderSplits: Sendable {
    /// The `train/` folder, or all of `root` when it has no split folders.
    public var train: ImageFolderDataset
    /// The `val/` (`validation/`, `valid/`) folder, scanned with the training classes; nil when absent.
    public var validation: ImageFolderDataset?
    /// The `test/` folder, scanned with the training classes; nil when absent.
    public var test: ImageFolderDataset?
    /// Whether `root` held train/val/test folders (false: `train` is all of `root`).
    public var hasSplitFolders: Bool
    /// Folders of `root` beside its split folders, which no split reads (a class folder put beside
    /// `train/`, a `dev/` split): named in a warning, never read silently as nothing.
    public var unusedFolders: [String] = []

    /// Every file skipped in any split.
    public var skipped: SkippedFiles {
        var all = train.skipped
        if let v = validation { all.merge(v.skipped) }
        if let t = test { all.merge(t.skipped) }
        return all
    }
}
