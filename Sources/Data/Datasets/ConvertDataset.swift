import AtomicFiles
import Foundation
import Hashing
import Torch

/// The engine of `finetune convert cifar10|cifar100|mnist|fashion-mnist SRC DST`: writes a dataset
/// as class folders of PNGs that `ImageFolderDataset.splits(root:)` reads back:
///
///     DST/train/<class>/<index>.png
///     DST/test/<class>/<index>.png
///
/// * `<index>` is the image's position in the source split (0-based), so names are stable and a
///   re-run rewrites the same files.
/// * `<class>` is the real class name made safe as a folder name by `folderName(for:)`: "/" and "\"
///   become "_" (Fashion-MNIST's "T-shirt/top" → "T-shirt_top"), control characters become "_",
///   and a leading "." becomes "_" (so the folder is not hidden).
/// * Each split is written into a hidden folder beside it (`.train.tmp-<UUID>`) and renamed into
///   place once complete, so an interrupted or failed run (a full disk) never leaves a partial split,
///   and an earlier conversion stays as it was until the new one is whole.
/// * The marker (`markerName`) records the files written in each class folder (count and digest of
///   their names). A later run replaces the destination only while it holds exactly those: an image
///   or class folder a user added stops it (`checkDestination`).
/// * MNIST images are written as 8-bit gray PNGs, CIFAR as 8-bit RGB; pixels are exact.
/// * Note that reading the folders back orders classes by name, not by the source's label order.
public enum ConvertDataset {
    /// The datasets `convert` reads; the raw value is the CLI's name.
    public enum Source: String, Sendable, CaseIterable {
        /// CIFAR-10, binary or python version (`CIFARDataset`).
        case cifar10
        /// CIFAR-100, binary or python version; the fine labels become the folders.
        case cifar100
        /// MNIST digits from IDX files; folders "0" … "9".
        case mnist
        /// Fashion-MNIST from IDX files (e.g. Debian's `/usr/share/datasets/fashion-mnist`).
        case fashionMNIST = "fashion-mnist"
    }

    /// What to convert and how (`finetune convert`'s flags).
    public struct Options: Sendable {
        /// Convert only the first `limitPerClass` images of each class in each split.
        public var limitPerClass: Int?
        /// Count what would be written without writing anything.
        public var dryRun: Bool
        /// zlib level 0…9 for the PNGs.
        public var compressionLevel: Int
        /// Images encoded in parallel (0 = all cores).
        public var workers: Int
        /// Asked between chunks of images while the splits are written (`SignalStop.isTriggered` for
        /// Ctrl-C): when it says true, the run removes what it has written and throws
        /// `ConvertDataset.Interrupted`, and the destination is as it was. Once the new splits are
        /// whole, they are put in place (a few renames) whatever it says.
        public var shouldStop: (@Sendable () -> Bool)?

        /// The defaults convert everything at zlib level 6 on all cores.
        public init(limitPerClass: Int? = nil, dryRun: Bool = false, compressionLevel: Int = 6, workers: Int = 0,
                    shouldStop: (@Sendable () -> Bool)? = nil) {
            self.limitPerClass = limitPerClass
            self.dryRun = dryRun
            self.compressionLevel = compressionLevel
            self.workers = workers
            self.shouldStop = shouldStop
        }
    }

    /// `Options.shouldStop` said to stop: nothing was changed in the destination.
    public struct Interrupted: Error, CustomStringConvertible {
        /// The destination, as it was before the run.
        public let destination: String
        public var description: String { "interrupted: \(destination) is as it was before this run" }
    }

    /// Reported after each chunk of images and at the end of each split, on the calling thread.
    public struct Progress: Sendable {
        /// "train" or "test".
        public var split: String
        /// Images of the split written so far.
        public var completed: Int
        /// Images in the split (after `limitPerClass`).
        public var total: Int
    }

    /// What `run` converted (or, for a dry run, would convert).
    public struct Summary: Sendable {
        /// The destination folder, holding `train/` and `test/`.
        public var destination: String
        /// The source's class names, in its label order.
        public var classNames: [String]
        /// The folder name of each class (`folderName(for:)`).
        public var folderNames: [String]
        /// Images per class, per split ("train", "test").
        public var counts: [String: [Int]]
        /// Files written (0 for a dry run).
        public var written: Int
    }

    /// A class name made safe as one folder name (see the type's documentation).
    public static func folderName(for className: String) -> String {
        var scalars = String.UnicodeScalarView()
        for u in className.unicodeScalars {
            if u == "/" || u == "\\" || u.value < 0x20 || u.value == 0x7F { scalars.append("_") } else { scalars.append(u) }
        }
        var name = String(scalars)
        if name.hasPrefix(".") { name = "_" + name.dropFirst() }
        return name.isEmpty ? "_" : name
    }

    /// Loads one split of `source` from `directory`.
    public static func load(_ source: Source, from directory: String, split: String) throws -> any ImageDataset {
        switch source {
        case .cifar10, .cifar100:
            guard let s = CIFARDataset.Split(rawValue: split) else { throw DataError.invalidDataset("unknown split \(split)") }
            return try CIFARDataset(directory: directory, split: s, variant: source == .cifar10 ? .cifar10 : .cifar100)
        case .mnist, .fashionMNIST:
            guard let s = MNISTDataset.Split(rawValue: split) else { throw DataError.invalidDataset("unknown split \(split)") }
            return try MNISTDataset(directory: directory, split: s, variant: source == .mnist ? .mnist : .fashionMNIST)
                .imageDataset()
        }
    }

    /// Converts the train and test splits of `source` in `sourceDirectory` to class folders under
    /// `destination`. `progress` is called on the calling thread.
    @discardableResult
    public static func run(_ source: Source, from sourceDirectory: String, to destination: String,
                           options: Options = Options(), progress: ((Progress) -> Void)? = nil) throws -> Summary {
        var summary = Summary(destination: destination, classNames: [], folderNames: [], counts: [:], written: 0)
        try checkDestination(destination)
        // Both splits are read before anything in DST changes: a SRC that cannot be read leaves it as it was.
        var datasets: [(split: String, dataset: any ImageDataset, folders: [String])] = []
        for split in ["train", "test"] {
            var dataset = try load(source, from: sourceDirectory, split: split)
            // A split of no image wrote no folder, and the conversion failed half-way (probe AD).
            guard dataset.count > 0 else {
                throw DataError.invalidDataset("the \(split) split of \(sourceDirectory) holds no image")
            }
            if let limit = options.limitPerClass { dataset = dataset.limited(perClass: limit) }
            let folders = dataset.classNames.map(folderName(for:))
            if let clash = Dictionary(grouping: folders, by: { $0 }).first(where: { $0.value.count > 1 }) {
                throw DataError.invalidDataset("several classes map to the folder name '\(clash.key)'")
            }
            datasets.append((split, dataset, folders))
            summary.classNames = dataset.classNames
            summary.folderNames = folders
            summary.counts[split] = dataset.classCounts
        }
        if options.dryRun {
            for (split, dataset, _) in datasets { progress?(Progress(split: split, completed: dataset.count, total: dataset.count)) }
            return summary
        }
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: destination, withIntermediateDirectories: true)
        } catch {
            throw DataError.unwritable(path: destination, reason: "cannot create the folder: \(FileErrorReason.of(error))")
        }
        // One writer at a time: a second convert into DST removed the first one's split folders as
        // leftovers of an interrupted run, and the first failed. The lock ends with the process.
        var lock: FolderLock?
        do { lock = try FolderLock(destination, wait: false) } catch let failure as FolderLock.Failure where failure.isHeld {
            throw DataError.unwritable(path: destination, reason: "another finetune convert is writing into it; wait for it to end")
        } catch {
            lock = nil  // a file system without flock: convert goes on as before, unguarded
        }
        defer { lock?.release() }
        let found = try checkDestination(destination)  // again: another convert may have finished meanwhile
        removeLeftovers(in: destination)
        // Each split is written beside the earlier one, which stays until the new one is whole.
        let token = UUID().uuidString
        var staged: [String] = []
        var published = false
        defer {
            if !published { for path in staged { try? fm.removeItem(atPath: path) } }
        }
        var record = Marker(source: source.rawValue, files: [:])
        for (split, dataset, folders) in datasets {
            let temporary = destination + "/." + split + ".tmp-" + token
            staged.append(temporary)
            summary.written += try write(dataset, folders: folders, to: temporary, split: split, options: options, progress: progress)
            for (folder, names) in fileNames(dataset, folders: folders) { record.files?[split + "/" + folder] = FolderRecord(names) }
        }
        // A Ctrl-C while the splits were written left them as hidden folders until the next run.
        if options.shouldStop?() == true { throw Interrupted(destination: destination) }
        // The marker first, recording the new files and the earlier ones: a split interrupted anywhere
        // in the renames holds one or the other, and the next run accepts either (probe AF: a Ctrl-C
        // here left the new marker beside the earlier splits, which every later run refused). Once
        // every split is in place, the marker records the new files only.
        let markerPath = destination + "/" + markerName
        let earlierMarker = fm.contents(atPath: markerPath)
        var swapping = record
        swapping.previous = earlierMarker.flatMap { try? JSONDecoder().decode(Marker.self, from: $0) }?.files
        try AtomicFile.write(try JSONEncoder().encode(swapping) + Foundation.Data("\n".utf8), to: markerPath, durable: false)
        try interruptForTesting?("renames")
        // A failed rename puts back what was there: the earlier splits and marker (they were left aside,
        // the new splits in place of some, probe AD).
        var placed: [(path: String, temporary: String)] = []
        var movedAside: [(path: String, old: String)] = []
        func rollBack() {
            for (path, temporary) in placed.reversed() { _ = rename(path, temporary) }
            for (path, old) in movedAside.reversed() { _ = rename(old, path) }
            if let earlierMarker { try? AtomicFile.write(earlierMarker, to: markerPath, durable: false) } else {
                try? fm.removeItem(atPath: markerPath)
            }
        }
        for split in Set(found.earlierSplits).union(datasets.map(\.split)).sorted() {
            let path = destination + "/" + split
            if fm.fileExists(atPath: path) {
                let old = destination + "/." + split + ".old-" + token
                guard rename(path, old) == 0 else {
                    let reason = String(cString: strerror(errno))
                    rollBack()
                    throw DataError.unwritable(path: path, reason: "cannot move the earlier conversion aside: " + reason)
                }
                movedAside.append((path, old))
            }
            if let temporary = staged.first(where: { $0.hasSuffix("/." + split + ".tmp-" + token) }) {
                guard rename(temporary, path) == 0 else {
                    let reason = String(cString: strerror(errno))
                    rollBack()
                    throw DataError.unwritable(path: path, reason: "cannot move the new split into place: " + reason)
                }
                placed.append((path, temporary))
            }
        }
        published = true
        try interruptForTesting?("marker")
        if swapping.previous != nil {
            try AtomicFile.write(try JSONEncoder().encode(record) + Foundation.Data("\n".utf8), to: markerPath, durable: false)
        }
        for (_, old) in movedAside { try? fm.removeItem(atPath: old) }
        return summary
    }

    /// Called before the renames (`"renames"`) and before the final marker (`"marker"`); a test
    /// throws from it to leave the destination as an interrupted run does.
    nonisolated(unsafe) static var interruptForTesting: ((String) throws -> Void)?

    /// The file names `write` gives `dataset`'s images, by class folder.
    static func fileNames(_ dataset: any ImageDataset, folders: [String]) -> [String: [String]] {
        var names: [String: [String]] = [:]
        for (position, sample) in dataset.samples.enumerated() {
            names[folders[sample.label], default: []].append(fileName(for: sample, position: position))
        }
        return names
    }

    /// The file `run` writes into the destination: a destination that has it was made by `convert`,
    /// which may replace it while it holds what the marker records.
    public static let markerName = ".finetune-convert.json"

    /// The marker's content: the source, and the files written in each class folder (`split/folder`);
    /// `files` is nil in the markers of versions before 2026-12-06, which recorded only the source.
    struct Marker: Codable {
        var format = "finetune-convert"
        var source: String
        var files: [String: FolderRecord]?
        /// While the splits are being replaced: the earlier conversion's files, which a folder may
        /// still hold instead of `files`.
        var previous: [String: FolderRecord]?
    }

    /// What one class folder held when written: how many files, and a SHA-256 of their sorted names.
    struct FolderRecord: Codable, Equatable {
        var count: Int
        var names: String

        init(_ names: [String]) {
            count = names.count
            self.names = SHA256Hasher.hexDigest(of: Array(names.sorted().joined(separator: "\n").utf8))
        }
    }

    /// What a destination holds, as far as `convert` may write there.
    public enum Destination: Equatable, Sendable {
        /// Nothing: a missing or empty folder.
        case new
        /// An earlier conversion, marked (`markerName`) and holding what the marker records: its
        /// split folders are replaced.
        case converted(splits: [String])

        /// The split folders `run` replaces.
        public var earlierSplits: [String] { if case .converted(let splits) = self { return splits } else { return [] } }
    }

    /// A hidden folder of a run that was interrupted: `.train.tmp-<UUID>`, `.test.old-<UUID>`, or the
    /// marker's temporary file (`AtomicFile`'s `..finetune-convert.json.<pid>.<n>.tmp`), which an
    /// interrupted run left and the next refused as a file convert did not write (probe AF).
    static func isLeftover(_ name: String) -> Bool {
        AtomicFile.replacedName(name).map { [".train", ".test"].contains($0) } ?? false
            || AtomicFile.writerProcess(temporaryName: name, of: markerName) != nil
    }

    /// Removes the hidden split folders of interrupted runs (`isLeftover`).
    static func removeLeftovers(in destination: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: destination)) ?? [] where isLeftover(name) {
            try? FileManager.default.removeItem(atPath: destination + "/" + name)
        }
    }

    /// Throws unless `destination` is missing, empty, or an earlier conversion that holds exactly what
    /// its marker records (`train/` and `test/` class folders of the files it wrote; for a marker of
    /// an older version, which records no files, class folders of `<index>.png`): `convert` never
    /// overwrites, removes or mixes with files it did not write. A folder of images without the marker
    /// (a user's own numbered PNGs) is refused: their names are the ones convert would write.
    @discardableResult
    public static func checkDestination(_ destination: String) throws -> Destination {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: destination, isDirectory: &isFolder) else { return .new }
        guard isFolder.boolValue else { throw DataError.invalidDataset("\(destination) is a file; convert writes a folder") }
        func entries(_ path: String) -> [String] { ((try? fm.contentsOfDirectory(atPath: path)) ?? []).sorted() }
        func isFolderAt(_ path: String) -> Bool { fm.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue }
        func refuse(_ entry: String, _ why: String = "which finetune convert did not write") -> DataError {
            DataError.invalidDataset("\(destination) holds \(entry), \(why); give a new or empty folder "
                                     + "(convert never writes among other files)")
        }
        let splits = entries(destination).filter { $0 != markerName && !isLeftover($0) }
        guard fm.fileExists(atPath: destination + "/" + markerName) else {
            if let first = splits.first {
                throw refuse(first, "and no \(markerName) says convert wrote it (it may be your own images, whose names "
                             + "are those convert writes)")
            }
            return .new
        }
        guard let data = fm.contents(atPath: destination + "/" + markerName),
              let marker = try? JSONDecoder().decode(Marker.self, from: data), marker.format == "finetune-convert" else {
            throw refuse(markerName, "which is not convert's marker")
        }
        for split in splits {
            guard ["train", "test"].contains(split), isFolderAt(destination + "/" + split) else { throw refuse(split) }
            for folder in entries(destination + "/" + split) {
                let relative = split + "/" + folder
                guard isFolderAt(destination + "/" + relative) else { throw refuse(relative) }
                let names = entries(destination + "/" + relative)
                if let files = marker.files {
                    let recorded = [files[relative], marker.previous?[relative]].compactMap { $0 }
                    guard let first = recorded.first else { throw refuse(relative) }
                    guard recorded.contains(FolderRecord(names)) else {
                        throw refuse(relative, "whose files are not those convert wrote there (it wrote \(first.count); "
                                     + "it holds \(names.count))")
                    }
                } else if let other = names.first(where: { !isImageName($0) && !($0.hasPrefix(".") && $0.hasSuffix(".tmp")) }) {
                    throw refuse(relative + "/" + other)
                }
            }
        }
        return .converted(splits: splits)
    }

    /// `<index>.png`.
    static func isImageName(_ name: String) -> Bool {
        name.hasSuffix(".png") && !name.dropLast(4).isEmpty && name.dropLast(4).allSatisfy(\.isASCII) && Int(name.dropLast(4)) != nil
    }

    static func write(_ dataset: any ImageDataset, folders: [String], to directory: String, split: String,
                      options: Options, progress: ((Progress) -> Void)?) throws -> Int {
        let fm = FileManager.default
        for folder in Set(dataset.samples.map { folders[$0.label] }) {
            do {
                try fm.createDirectory(atPath: directory + "/" + folder, withIntermediateDirectories: true)
            } catch {
                throw DataError.unwritable(path: directory + "/" + folder, reason: "cannot create the folder: " +
                                           FileErrorReason.of(error))
            }
        }
        let samples = dataset.samples
        let total = samples.count
        let chunk = 512
        let workers = options.workers > 0 ? options.workers : Runtime.coreCount
        var done = 0
        while done < total {
            if options.shouldStop?() == true { throw Interrupted(destination: (directory as NSString).deletingLastPathComponent) }
            let range = done..<min(done + chunk, total)
            var errors = [Error?](repeating: nil, count: range.count)
            let lanes = max(1, min(workers, range.count))
            errors.withUnsafeMutableBufferPointer { out in
                let base = out.baseAddress!
                DispatchQueue.concurrentPerform(iterations: lanes) { lane in
                    for k in stride(from: lane, to: range.count, by: lanes) {
                        let sample = samples[range.lowerBound + k]
                        let name = Self.fileName(for: sample, position: range.lowerBound + k)
                        let path = directory + "/" + folders[sample.label] + "/" + name
                        do {
                            let png = try sample.source.load().pngData(compressionLevel: options.compressionLevel)
                            try writeAtomically(png, to: path)
                        } catch {
                            base[k] = error
                        }
                    }
                }
            }
            if let error = errors.compactMap({ $0 }).first { throw error }
            done = range.upperBound
            progress?(Progress(split: split, completed: done, total: total))
        }
        if total == 0 { progress?(Progress(split: split, completed: 0, total: 0)) }
        return total
    }

    /// `<index>.png`, the index in the source split (in-memory sources) or the position.
    static func fileName(for sample: LabeledSample, position: Int) -> String {
        if case .memory(_, let index) = sample.source { return "\(index).png" }
        return "\(position).png"
    }

    /// Writes `data` to a hidden temporary file next to `path`, then renames it over `path` (without
    /// fsync: a conversion can simply be re-run, and 70,000 fsyncs would dominate it).
    static func writeAtomically(_ data: Foundation.Data, to path: String) throws {
        do {
            try AtomicFile.write(data, to: path, durable: false)
        } catch let error as AtomicFileError {
            throw DataError.unwritable(path: path, reason: error.reason)
        }
    }
}
