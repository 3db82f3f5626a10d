import Foundation
import TensorIO

/// CIFAR-10 and CIFAR-100 (https://www.cs.toronto.edu/~kriz/cifar.html), 32×32 RGB, held in memory.
///
/// Both distributed formats are read:
/// * binary: CIFAR-10 `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin` (records of
///   1 label byte + 3,072 pixel bytes), class names from `batches.meta.txt`; CIFAR-100 `train.bin`
///   and `test.bin` (coarse label byte, fine label byte, 3,072 pixel bytes), names from
///   `fine_label_names.txt` / `coarse_label_names.txt`;
/// * python: CIFAR-10 `data_batch_1` … `data_batch_5`, `test_batch`, `batches.meta`; CIFAR-100
///   `train`, `test`, `meta` — pickled dicts read by TensorIO's restricted, data-only `Unpickler`
///   with the CIFAR allow-list (`PickleAllowList.cifar`: numpy arrays only; nothing is executed).
/// When the class-name files are absent the standard lists are used. Pixels stay in the files'
/// planar layout (R plane, G plane, B plane).
public struct CIFARDataset: ImageDataset {
    /// CIFAR-10 (10 classes) or CIFAR-100 (100 fine classes in 20 superclasses).
    public enum Variant: String, Sendable, CaseIterable { case cifar10, cifar100 }
    /// `train` (50,000 images: CIFAR-10's five data batches, CIFAR-100's `train`) or `test` (10,000).
    public enum Split: String, Sendable, CaseIterable { case train, test }
    /// The "binary version" (`.bin` records) or the "python version" (pickled batches) of the archives.
    public enum Format: String, Sendable { case binary, python }

    /// The folder the batches were read from: the given one, or the archive folder found inside it
    /// (e.g. `cifar-10-batches-py`).
    public let directory: String
    /// CIFAR-10 or CIFAR-100, as given or detected from the file names.
    public let variant: Variant
    /// The split that was loaded.
    public let split: Split
    /// The format that was read, as given or detected.
    public let format: Format
    /// All images, 32×32×3 planar.
    public let images: ImageStore
    /// Labels index `classNames` (CIFAR-100: the 100 fine classes).
    public let samples: [LabeledSample]
    /// Names of the classes, indexed by label: from the archive's metadata file, else the standard list
    /// (`cifar10ClassNames`, `cifar100ClassNames`).
    public let classNames: [String]
    /// CIFAR-100's 20 superclass labels, per sample (nil for CIFAR-10).
    public let coarseLabels: [Int]?
    /// CIFAR-100's 20 superclass names, indexed by `coarseLabels` (nil for CIFAR-10).
    public let coarseClassNames: [String]?

    static let side = 32
    static let imageBytes = 3 * 32 * 32

    /// CIFAR-10's class names in label order (as in `batches.meta.txt`).
    public static let cifar10ClassNames = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                           "ship", "truck"]
    /// CIFAR-100's 100 fine class names in label order (as in `fine_label_names.txt`).
    public static let cifar100ClassNames = [
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
        "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
        "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
        "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
        "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
        "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
        "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
        "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
        "woman", "worm",
    ]
    /// CIFAR-100's 20 superclass names in label order (as in `coarse_label_names.txt`).
    public static let cifar100CoarseClassNames = [
        "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
        "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
        "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
        "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
        "vehicles_1", "vehicles_2",
    ]

    /// Folder names the archives unpack to, searched below `directory`.
    static let archiveFolders = ["cifar-10-batches-bin", "cifar-10-batches-py", "cifar-100-binary", "cifar-100-python"]

    /// Loads `split` from `directory` (or one of the archive folders inside it). `variant` and
    /// `format` are detected from the file names when not given.
    public init(directory: String, split: Split, variant: Variant? = nil, format: Format? = nil) throws {
        let found = try Self.detect(directory: directory, variant: variant, format: format)
        self.directory = found.directory
        self.variant = found.variant
        self.format = found.format
        self.split = split
        let parts: (pixels: [UInt8], fine: [Int], coarse: [Int]?)
        let names: (fine: [String], coarse: [String]?)
        switch found.format {
        case .binary:
            parts = try Self.readBinary(found.directory, variant: found.variant, split: split)
            names = try Self.binaryClassNames(found.directory, variant: found.variant)
        case .python:
            let python = try Self.readPython(found.directory, variant: found.variant, split: split)
            parts = (python.pixels, python.fine, python.coarse)
            names = python.names
        }
        let count = parts.fine.count
        images = try ImageStore(bytes: parts.pixels, count: count, width: Self.side, height: Self.side, channels: 3,
                                layout: .chw)
        for (labels, classes, what) in [(parts.fine, names.fine, "label"), (parts.coarse ?? [], names.coarse ?? [], "coarse label")] {
            if let bad = labels.first(where: { $0 < 0 || $0 >= classes.count }) {
                throw DataError.corrupt(path: found.directory, reason: "\(split.rawValue) \(what) \(bad) is out of " +
                                        "range for \(classes.count) classes")
            }
        }
        let store = images
        samples = parts.fine.enumerated().map { LabeledSample(source: .memory(store, index: $0), label: $1) }
        classNames = names.fine
        coarseLabels = parts.coarse
        coarseClassNames = names.coarse
    }

    // MARK: - Locating the files

    static func exists(_ path: String) -> Bool {
        if case .regular = FileKind(path: path) { return true }
        return false
    }

    /// The folder holding the batches, its variant and format.
    public static func detect(directory: String, variant: Variant? = nil,
                              format: Format? = nil) throws -> (directory: String, variant: Variant, format: Format) {
        guard FileKind(path: directory).isDirectory else {
            throw DataError.invalidDataset("CIFAR folder \(directory) does not exist or is not a folder")
        }
        let candidates = [directory] + archiveFolders.map { directory + "/" + $0 }
        let signatures: [(Variant, Format, [String])] = [
            (.cifar10, .binary, ["data_batch_1.bin", "test_batch.bin"]),
            (.cifar100, .binary, ["train.bin", "test.bin"]),
            (.cifar10, .python, ["data_batch_1", "test_batch"]),
            (.cifar100, .python, ["train", "test"]),
        ]
        for dir in candidates where FileKind(path: dir).isDirectory {
            for (v, f, files) in signatures where (variant ?? v) == v && (format ?? f) == f {
                if files.contains(where: { exists(dir + "/" + $0) }) { return (dir, v, f) }
            }
        }
        throw DataError.invalidDataset("no CIFAR batches in \(directory): expected data_batch_1.bin…/test_batch.bin " +
                                       "(CIFAR-10 binary), train.bin/test.bin (CIFAR-100 binary), data_batch_1…/" +
                                       "test_batch (CIFAR-10 python) or train/test/meta (CIFAR-100 python)")
    }

    /// The batch files of `split`: CIFAR-10 train is every `data_batch_N[.bin]` present, in N order.
    static func batchFiles(_ dir: String, variant: Variant, split: Split, suffix: String) throws -> [String] {
        let files: [String]
        switch (variant, split) {
        case (.cifar10, .train):
            let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
            let numbered = names.compactMap { name -> (Int, String)? in
                guard name.hasPrefix("data_batch_"), name.hasSuffix(suffix) else { return nil }
                let middle = name.dropFirst("data_batch_".count).dropLast(suffix.count)
                return Int(middle).map { ($0, name) }
            }
            files = numbered.sorted { $0.0 < $1.0 }.map { dir + "/" + $0.1 }
        case (.cifar10, .test): files = [dir + "/test_batch" + suffix]
        case (.cifar100, _): files = [dir + "/" + split.rawValue + suffix]
        }
        let missing = files.filter { !exists($0) }
        guard !files.isEmpty, missing.isEmpty else {
            let what = files.isEmpty ? "\(dir)/data_batch_1\(suffix)" : missing.joined(separator: ", ")
            throw DataError.invalidDataset("missing CIFAR \(split.rawValue) batch \(what)")
        }
        return files
    }

    // MARK: - Binary batches

    static func readBinary(_ dir: String, variant: Variant, split: Split) throws -> ([UInt8], [Int], [Int]?) {
        let labelBytes = variant == .cifar10 ? 1 : 2
        let record = labelBytes + imageBytes
        var pixels: [UInt8] = []
        var fine: [Int] = []
        var coarse: [Int] = []
        for file in try batchFiles(dir, variant: variant, split: split, suffix: ".bin") {
            let raw = try readMaybeGzip(file, limit: 1 << 31)
            guard !raw.isEmpty, raw.count % record == 0 else {
                throw DataError.corrupt(path: file, reason: "\(raw.count) bytes is not a whole number of \(record)-byte " +
                                        "CIFAR-\(variant == .cifar10 ? "10" : "100") records")
            }
            let n = raw.count / record
            pixels.reserveCapacity(pixels.count + n * imageBytes)
            raw.withUnsafeBufferPointer { r in
                for i in 0..<n {
                    let base = i * record
                    if variant == .cifar10 {
                        fine.append(Int(r[base]))
                    } else {
                        coarse.append(Int(r[base]))
                        fine.append(Int(r[base + 1]))
                    }
                    pixels.append(contentsOf: r[(base + labelBytes)..<(base + record)])
                }
            }
        }
        return (pixels, fine, variant == .cifar100 ? coarse : nil)
    }

    static func readNames(_ path: String, expected: Int) throws -> [String]? {
        guard exists(path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DataError.unreadable(path: path, reason: "not readable UTF-8 text")
        }
        let names = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty }
        guard names.count == expected else {
            throw DataError.corrupt(path: path, reason: "lists \(names.count) class names, expected \(expected)")
        }
        return names
    }

    static func binaryClassNames(_ dir: String, variant: Variant) throws -> ([String], [String]?) {
        switch variant {
        case .cifar10:
            return (try readNames(dir + "/batches.meta.txt", expected: 10) ?? cifar10ClassNames, nil)
        case .cifar100:
            return (try readNames(dir + "/fine_label_names.txt", expected: 100) ?? cifar100ClassNames,
                    try readNames(dir + "/coarse_label_names.txt", expected: 20) ?? cifar100CoarseClassNames)
        }
    }

    // MARK: - Python batches

    static func readPython(_ dir: String, variant: Variant, split: Split)
        throws -> (pixels: [UInt8], fine: [Int], coarse: [Int]?, names: ([String], [String]?)) {
        var pixels: [UInt8] = []
        var fine: [Int] = []
        var coarse: [Int] = []
        for file in try batchFiles(dir, variant: variant, split: split, suffix: "") {
            let batch = try unpickle(file, limit: 1 << 31)
            guard let data = entry(batch, "data") else {
                throw DataError.corrupt(path: file, reason: "the pickled \(batch.typeName) has no 'data' entry")
            }
            guard case .ndarray(let array) = data else {
                throw DataError.corrupt(path: file, reason: "'data' is a \(data.typeName), not a numpy array")
            }
            let bytes = try uint8(array, "'data'", path: file)
            let labelKey = variant == .cifar10 ? "labels" : "fine_labels"
            guard let labelValue = entry(batch, labelKey) else {
                throw DataError.corrupt(path: file, reason: "the batch has no '\(labelKey)' entry")
            }
            let labels = try integers(labelValue, "'\(labelKey)'", path: file)
            guard array.shape.first == labels.count, bytes.count == labels.count * imageBytes else {
                throw DataError.corrupt(path: file, reason: "'data' has shape \(array.shape) for \(labels.count) labels " +
                                        "(expected [\(labels.count), 3072])")
            }
            if variant == .cifar100 {
                guard let c = entry(batch, "coarse_labels") else {
                    throw DataError.corrupt(path: file, reason: "the batch has no 'coarse_labels' entry")
                }
                let values = try integers(c, "'coarse_labels'", path: file)
                guard values.count == labels.count else {
                    throw DataError.corrupt(path: file, reason: "\(values.count) coarse labels for \(labels.count) images")
                }
                coarse += values
            }
            pixels += bytes
            fine += labels
        }
        // Class names from the meta pickle, when present.
        var names: ([String], [String]?) = variant == .cifar10 ? (cifar10ClassNames, nil)
            : (cifar100ClassNames, cifar100CoarseClassNames)
        let metaPath = dir + "/" + (variant == .cifar10 ? "batches.meta" : "meta")
        if exists(metaPath) {
            let meta = try unpickle(metaPath, limit: 1 << 24)
            func list(_ key: String, _ expected: Int) throws -> [String]? {
                guard let value = entry(meta, key) else { return nil }
                guard let items = value.sequenceItems, items.count == expected else {
                    throw DataError.corrupt(path: metaPath, reason: "'\(key)' is not a list of \(expected) names")
                }
                return try items.map {
                    guard let t = $0.text else {
                        throw DataError.corrupt(path: metaPath, reason: "'\(key)' contains a \($0.typeName)")
                    }
                    return t
                }
            }
            if variant == .cifar10 {
                names.0 = try list("label_names", 10) ?? names.0
            } else {
                names.0 = try list("fine_label_names", 100) ?? names.0
                names.1 = try list("coarse_label_names", 20) ?? names.1
            }
        }
        return (pixels, fine, variant == .cifar100 ? coarse : nil, names)
    }

    // MARK: - Reading the pickles

    /// The pickle in `path` (gzipped or not), read by the restricted unpickler with the CIFAR
    /// allow-list. Python 2 `str` values stay bytes (like `pickle.load(f, encoding="bytes")`), so the
    /// real archives' pixel data survives intact.
    static func unpickle(_ path: String, limit: Int) throws -> PickleValue {
        let bytes = try readMaybeGzip(path, limit: limit)
        do {
            return try Unpickler(data: Foundation.Data(bytes), allowList: .cifar, legacyStrings: .bytes).load()
        } catch let error as PickleError {
            switch error.kind {
            case .refusedGlobal, .unsupported: throw DataError.unsupported("\(path): \(error.message)")
            case .truncated, .malformed: throw DataError.corrupt(path: path, reason: "pickle: \(error.message)")
            }
        }
    }

    /// `dict[key]` for a dict with `str` or `bytes` keys (nil for anything else).
    static func entry(_ value: PickleValue, _ key: String) -> PickleValue? {
        guard case .dict(let dict) = value else { return nil }
        return dict.value(forText: key)
    }

    /// Integers of a list or tuple of ints, or of an integer numpy array.
    static func integers(_ value: PickleValue, _ what: String, path: String) throws -> [Int] {
        if case .ndarray(let array) = value { return try integers(array, what, path: path) }
        guard let items = value.sequenceItems else {
            throw DataError.corrupt(path: path, reason: "\(what) is a \(value.typeName), not a list of ints")
        }
        return try items.map {
            guard let i = $0.intValue else {
                throw DataError.corrupt(path: path, reason: "\(what) contains a \($0.typeName), not an int")
            }
            return i
        }
    }

    /// The dtype and item size of a complete integer array.
    static func integerType(_ array: NumpyArray, _ what: String, path: String) throws -> (NumpyDType, Int) {
        guard array.isBuilt, let dtype = array.dtype, let size = dtype.itemSize, let kind = dtype.kind else {
            throw DataError.corrupt(path: path, reason: "\(what) is an incomplete numpy array")
        }
        guard "iub".contains(kind), [1, 2, 4, 8].contains(size) else {
            throw DataError.unsupported("\(path): \(what) has numpy dtype '\(dtype.code)', expected an integer type")
        }
        return (dtype, size)
    }

    /// The payload of a uint8 array.
    static func uint8(_ array: NumpyArray, _ what: String, path: String) throws -> [UInt8] {
        let (dtype, size) = try integerType(array, what, path: path)
        guard size == 1 else {
            throw DataError.unsupported("\(path): \(what) has numpy dtype '\(dtype.code)', expected uint8")
        }
        return array.data
    }

    static func integers(_ array: NumpyArray, _ what: String, path: String) throws -> [Int] {
        let (dtype, size) = try integerType(array, what, path: path)
        let signed = dtype.kind == "i"
        let data = array.data
        var out = [Int](repeating: 0, count: array.count)
        for i in out.indices {
            var v: UInt64 = 0
            for b in 0..<size {
                let byte = UInt64(data[i * size + (dtype.isBigEndian ? b : size - 1 - b)])
                v = v << 8 | byte
            }
            if signed && size < 8 && v & (1 << (UInt64(size) * 8 - 1)) != 0 { v |= ~0 << (UInt64(size) * 8) }
            out[i] = Int(Int64(bitPattern: v))
        }
        return out
    }
}
