import AtomicFiles
import Foundation

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
/// * Each file is written to a hidden temporary name in its folder and renamed into place, so an
///   interrupted run never leaves a partial PNG under a real name.
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

        /// The defaults convert everything at zlib level 6 on all cores.
        public init(limitPerClass: Int? = nil, dryRun: Bool = false, compressionLevel: Int = 6, workers: Int = 0) {
            self.limitPerClass = limitPerClass
            self.dryRun = dryRun
            self.compressionLevel = compressionLevel
            self.workers = workers
        }
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
        let found = try checkDestination(destination)
        // Both splits are read before anything in DST changes: a SRC that cannot be read leaves it as it was.
        var datasets: [(split: String, dataset: any ImageDataset)] = []
        for split in ["train", "test"] {
            var dataset = try load(source, from: sourceDirectory, split: split)
            if let limit = options.limitPerClass { dataset = dataset.limited(perClass: limit) }
            datasets.append((split, dataset))
        }
        if !options.dryRun {
            // An earlier conversion's images go first: what DST holds is what this command reports,
            // not a mix of two limits or two sources. (The marker goes last, so an interrupted removal
            // leaves a folder that is still recognisably convert's.)
            for split in found.earlierSplits {
                do {
                    try FileManager.default.removeItem(atPath: destination + "/" + split)
                } catch {
                    throw DataError.unwritable(path: destination + "/" + split,
                                               reason: "cannot remove the earlier conversion: \(FileErrorReason.of(error))")
                }
            }
            // Marked as convert's only where nothing else was: a folder of numbered PNGs without the
            // marker might be a user's, and a later run must not take it for convert's and replace it.
            if found != .unmarked {
                try AtomicFile.write(Foundation.Data("{\"format\":\"finetune-convert\",\"source\":\"\(source.rawValue)\"}\n".utf8),
                                     to: destination + "/" + markerName, durable: false, createDirectory: true)
            } else {
                try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: true)
            }
        }
        for (split, dataset) in datasets {
            let folders = dataset.classNames.map(folderName(for:))
            if let clash = Dictionary(grouping: folders, by: { $0 }).first(where: { $0.value.count > 1 }) {
                throw DataError.invalidDataset("several classes map to the folder name '\(clash.key)'")
            }
            summary.classNames = dataset.classNames
            summary.folderNames = folders
            summary.counts[split] = dataset.classCounts
            if options.dryRun {
                progress?(Progress(split: split, completed: dataset.count, total: dataset.count))
                continue
            }
            summary.written += try write(dataset, folders: folders, to: destination + "/" + split, split: split,
                                         options: options, progress: progress)
        }
        return summary
    }

    /// The file `run` writes into the destination before any image: a destination that has it was
    /// made by `convert`, which may write into it again.
    public static let markerName = ".finetune-convert.json"

    /// What a destination holds, as far as `convert` may write there.
    public enum Destination: Equatable, Sendable {
        /// Nothing: a missing or empty folder.
        case new
        /// An earlier conversion, marked (`markerName`): its split folders are replaced.
        case converted(splits: [String])
        /// Only `train/` and `test/` class folders of `<index>.png`, but no marker: output of a version
        /// from before the marker, or a user's own numbered PNGs. Written into, never removed or marked.
        case unmarked

        /// The split folders `run` removes before writing.
        public var earlierSplits: [String] { if case .converted(let splits) = self { return splits } else { return [] } }
    }

    /// Throws unless `destination` is missing, empty, or holds only what `convert` writes (`train/` and
    /// `test/` of class folders of `<index>.png`, and its marker, `markerName`): `convert` never
    /// overwrites or mixes with files it did not write.
    @discardableResult
    public static func checkDestination(_ destination: String) throws -> Destination {
        let fm = FileManager.default
        var isFolder: ObjCBool = false
        guard fm.fileExists(atPath: destination, isDirectory: &isFolder) else { return .new }
        guard isFolder.boolValue else { throw DataError.invalidDataset("\(destination) is a file; convert writes a folder") }
        func entries(_ path: String) -> [String] { ((try? fm.contentsOfDirectory(atPath: path)) ?? []).sorted() }
        func isFolderAt(_ path: String) -> Bool { fm.fileExists(atPath: path, isDirectory: &isFolder) && isFolder.boolValue }
        func isImageName(_ name: String) -> Bool {
            name.hasSuffix(".png") && !name.dropLast(4).isEmpty && name.dropLast(4).allSatisfy(\.isASCII) && Int(name.dropLast(4)) != nil
        }
        var foreign: String?
        let splits = entries(destination).filter { $0 != markerName }
        search: for split in splits {
            guard ["train", "test"].contains(split), isFolderAt(destination + "/" + split) else { foreign = split; break }
            for folder in entries(destination + "/" + split) {
                let classPath = destination + "/" + split + "/" + folder
                guard isFolderAt(classPath) else { foreign = split + "/" + folder; break search }
                for file in entries(classPath) where !isImageName(file) && !(file.hasPrefix(".") && file.hasSuffix(".tmp")) {
                    foreign = split + "/" + folder + "/" + file
                    break search
                }
            }
        }
        if let foreign {
            throw DataError.invalidDataset("\(destination) holds \(foreign), which finetune convert did not write; "
                                           + "give a new or empty folder (convert never writes among other files)")
        }
        if fm.fileExists(atPath: destination + "/" + markerName) { return .converted(splits: splits) }
        return splits.isEmpty ? .new : .unmarked
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
        let workers = options.workers > 0 ? options.workers : ProcessInfo.processInfo.activeProcessorCount
        var done = 0
        while done < total {
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
