import Foundation

/// A folder of unlabelled images, read recursively (pseudo-labelling's `--unlabeled`, and
/// `finetune pseudo-label`). Class folders are allowed and their names are ignored for training;
/// when the folder's top level is class folders, `folderNames` keeps each image's top-level folder
/// so the pseudo-labels can be scored against them, for evaluation only.
///
/// Every sample's `label` is -1 (no class) and `classNames` is empty: a loader over it yields
/// labels nobody may train on.
public struct UnlabeledImageFolder: ImageDataset {
    /// The scanned folder, without trailing slashes.
    public let root: String
    /// One sample per image file whose header could be read, sorted by path; labels are -1.
    public let samples: [LabeledSample]
    /// Always empty: the images have no classes.
    public let classNames: [String] = []
    /// Sample `i`'s top-level folder under `root` (nil for files directly in `root`).
    public let folderNames: [String?]
    /// Files that were left out while scanning (unreadable, empty, not JPEG/PNG).
    public let skipped: SkippedFiles

    /// Scans `root` recursively (following symbolic links, hidden entries ignored). A missing path
    /// or a file is an error; an empty folder is not (it has no samples).
    public init(root: String, options: ScanOptions = ScanOptions()) throws {
        let root = ImageFolderDataset.trimmedRoot(root)
        switch FileKind(path: root) {
        case .directory: break
        case .missing, .danglingLink: throw DataError.invalidDataset("folder \(root) does not exist")
        default: throw DataError.invalidDataset("\(root) is not a folder")
        }
        let (files, scanSkipped) = try ImageFolderDataset.imageFiles(in: root, options: options)
        let (usable, verifySkipped) = try verifyImageFiles(files, options: options)
        var skipped = scanSkipped
        skipped.merge(verifySkipped)
        var samples: [LabeledSample] = []
        var folders: [String?] = []
        for (path, ok) in zip(files, usable) where ok {
            samples.append(LabeledSample(source: .file(path), label: -1))
            let relative = path.dropFirst(root.count + 1).split(separator: "/", omittingEmptySubsequences: true)
            folders.append(relative.count > 1 ? String(relative[0]) : nil)
        }
        self.root = root
        self.samples = samples
        self.folderNames = folders
        self.skipped = skipped
    }

    /// Whether the images lie in class folders (every image is inside a top-level folder).
    public var hasClassFolders: Bool { !folderNames.isEmpty && folderNames.allSatisfy { $0 != nil } }
}
