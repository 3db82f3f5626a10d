import AtomicFiles
import Data
import Foundation
import Hashing
import NN
import TensorIO
import Torch
import Vision

/// Backbone features ("bottleneck features") of a dataset, computed once by a frozen backbone and
/// kept on disk, so head-only epochs skip the backbone.
///
/// **Equal by construction.** Training on cached features runs `classify(features)` where the
/// full path runs `classify(embedding(images))`. That is the same computation exactly when
/// nothing `embedding` runs can change or behave differently during training: every module
/// outside `classifierScopes` is frozen (no gradients, BatchNorm and Dropout in inference
/// behaviour) — `FeatureCache.ineligibility(of:)` checks this — and the images are the ones the
/// full path would see. The features are computed in inference mode, in eval behaviour (which
/// frozen modules have anyway), under bf16 autocast when training uses it.
///
/// **Views.** Unaugmented inputs need one view. With augmentation, `views` K caches K augmented
/// views: view `k` of sample `i` is the augmentation the training loader draws for sample `i` in
/// epoch `k` (augmentations are seeded by seed, epoch and index), and epoch `e` uses view
/// `e mod K`. The first K epochs therefore equal the full path; later ones reuse views.
///
/// **Key.** A cache file is named by the SHA-256 of: the architecture, the backbone's weights
/// (every parameter and buffer outside `classifierScopes`: names, shapes and bytes), the
/// transform's description (preprocessing and augmentation), the views and the seed that draws
/// them, autocast, and the samples (path, size and modification time of each file, or the bytes
/// of in-memory images, with labels). Any change gives another file; nothing stale is reused.
public final class CachedFeatures: @unchecked Sendable {
    /// Features of every view, [views, samples, embeddingSize] float32 on the CPU.
    public let features: Tensor
    /// Whether sample `i` could be loaded (unreadable files are left out, as the image loader does).
    public let valid: [Bool]
    /// The cache file (nil when kept in memory only).
    public let path: String?
    /// Why features computed now were kept in memory only although a cache folder was given: it is one
    /// this process may not write in ("cannot write in FOLDER: Permission denied"). Nil otherwise.
    public internal(set) var whyNotKept: String?
    /// The hex SHA-256 key (see the type's documentation).
    public let key: String
    /// True when the features were read from an existing file, false when computed now.
    public let reused: Bool
    /// Files that could not be loaded (when reused: the samples the cache marks invalid).
    public let skipped: SkippedFiles
    /// The file mapping `features` references (nil when they are in memory).
    let mapping: SafeTensorsMapping?
    /// The samples the features were made from (`prepare` sets it), so that a loader of other images
    /// is refused even when it has as many (nil for features made otherwise: only counts are checked).
    var madeFrom: [LabeledSample]?
    /// The last samples `mismatch(with:)` matched to `madeFrom` by file identity (other paths): the next
    /// epoch's equal list is matched without a `stat` per sample (probe AE: 0.9 s per epoch for 70,000).
    private var matchedByIdentity: [LabeledSample]?

    public var views: Int { features.shape[0] }
    public var sampleCount: Int { features.shape[1] }
    /// Samples that could be loaded (the ones training uses).
    public var usableCount: Int { valid.lazy.filter { $0 }.count }
    public var embeddingSize: Int { features.shape[2] }

    init(features: Tensor, valid: [Bool], path: String?, key: String, reused: Bool, skipped: SkippedFiles,
         mapping: SafeTensorsMapping? = nil) {
        self.mapping = mapping
        self.features = features
        self.valid = valid
        self.path = path
        self.key = key
        self.reused = reused
        self.skipped = skipped
    }

    /// The batches `loader` yields for `epoch` (same samples, same order, same batch numbers),
    /// with each sample's cached features of view `epoch mod views` in place of its image.
    /// Drops the pages of a memory-mapped cache that reading has made resident (they stay in the page
    /// cache); nothing for features in memory. Epochs call it as they go, so peak RSS does not grow with
    /// the number of samples.
    public func releaseResidentPages() { mapping?.releaseResidentPages() }

    /// Whether `features` are read through a memory mapping of the cache file (not held in memory).
    public var isMemoryMapped: Bool { mapping != nil }

    public func epoch(_ epoch: Int, of loader: DataLoader, startingAtBatch first: Int = 0) -> CachedFeatureEpoch {
        CachedFeatureEpoch(features: self, batches: Array(loader.batches(epoch: epoch).enumerated().dropFirst(first)),
                           view: epoch % views, samples: loader.dataset.samples)
    }

    /// Why these features cannot stand for `samples` (nil when they can): another count, or (when
    /// `madeFrom` is known) another image at some index. Labels may differ: features do not depend on
    /// them. Files match when their paths are equal or name the same file (`./a`, `a`, its absolute path,
    /// a link to it: `FileIdentity`); in-memory images when their stores are the same object or the
    /// image's bytes are equal.
    func mismatch(with samples: [LabeledSample]) -> String? {
        let key = "(its key is \(key.prefix(12)))"
        guard samples.count == sampleCount, valid.count == sampleCount else {
            return "the feature cache holds \(sampleCount) samples and the data \(samples.count): "
                + "it was made for other data \(key)"
        }
        guard let madeFrom, samples != matchedByIdentity else { return nil }
        for (i, (cached, sample)) in zip(madeFrom, samples).enumerated()
        where !Self.sameImage(cached.source, sample.source) {
            let gone = [sample.source, cached.source].compactMap(\.path).filter { !FileManager.default.fileExists(atPath: $0) }
            return "the feature cache was made from other images: sample \(i) of the data is \(sample.source), "
                + "the cache's is \(cached.source)"
                + (gone.isEmpty ? "" : " (\(gone.joined(separator: " and ")) cannot be found, so the two cannot be told to be one file)")
                + " \(key)"
        }
        if madeFrom != samples { matchedByIdentity = samples }
        return nil
    }

    /// Whether two sources hold the same pixels for certain (see `mismatch(with:)`).
    private static func sameImage(_ a: ImageSource, _ b: ImageSource) -> Bool {
        switch (a, b) {
        case (.file(let p), .file(let q)):
            if p == q { return true }
            guard let x = FileIdentity(path: p), let y = FileIdentity(path: q) else { return false }
            return x == y
        case (.memory(let s, let i), .memory(let t, let j)):
            if s === t { return i == j }
            guard s.width == t.width, s.height == t.height, s.channels == t.channels, s.layout == t.layout,
                  s.bytesPerImage > 0, i >= 0, j >= 0, i < s.count, j < t.count else { return false }
            let n = s.bytesPerImage
            return s.bytes.withUnsafeBytes { x in
                t.bytes.withUnsafeBytes { y in memcmp(x.baseAddress! + i * n, y.baseAddress! + j * n, n) == 0 }
            }
        default: return false
        }
    }
}

/// One epoch of batches of cached features (see `CachedFeatures.epoch(_:of:startingAtBatch:)`).
public final class CachedFeatureEpoch {
    private let features: CachedFeatures
    private let view: Tensor
    private let labels: [Int]
    private var pending: ArraySlice<(offset: Int, element: [Int])>
    /// Why this cache cannot serve the loader's samples (nil when it can).
    private var mismatch: String?
    /// Bytes of the mapping that reading may have made resident since its pages were last released.
    private var residentSinceRelease = 0
    /// How many bytes of a memory-mapped cache an epoch lets become resident between releases of its
    /// pages.
    static let releaseInterval = 32 << 20
    /// What reading one row can make resident beyond the row itself. A page fault on a file mapping
    /// also maps the pages around it that are in the page cache (Linux's fault-around, 64 KiB by
    /// default), so a shuffled epoch whose rows are 5 KiB apart in the file makes the whole file
    /// resident while it has read only a tenth of it. Counting bytes read instead let a 70,000-image
    /// cache (276 MB) become resident between two releases.
    static let faultAroundBytes = 64 << 10

    init(features: CachedFeatures, batches: [(offset: Int, element: [Int])], view: Int, samples: [LabeledSample]) {
        self.features = features
        self.labels = samples.map(\.label)
        // A cache of other data: indexing it by this loader's samples trapped, or (as many samples)
        // trained the head on other images' features.
        mismatch = features.mismatch(with: samples)
        // `select` is a view of the cached tensor: no copy.
        self.view = (try? features.features.select(dim: 0, index: view)) ?? features.features
        self.pending = batches[...]
    }

    /// The next batch, or nil at the end of the epoch. A batch keeps only samples that could be
    /// loaded; a batch with none is skipped, as the image loader does.
    public func nextBatch() throws -> Batch? {
        if let mismatch { throw TrainingError.invalidConfiguration(mismatch) }
        while let (number, indices) = pending.popFirst() {
            let kept = indices.filter { features.valid[$0] }
            guard !kept.isEmpty else { continue }
            let rows = try Tensor(kept.map { Int64($0) }, shape: [kept.count])
            let selected = try view.indexSelect(dim: 0, index: rows)  // a copy: the mapped pages may go
            if features.isMemoryMapped {
                let rowBytes = features.embeddingSize * MemoryLayout<Float>.size
                residentSinceRelease += kept.count * (rowBytes + Self.faultAroundBytes)
                if residentSinceRelease >= Self.releaseInterval {
                    features.releaseResidentPages()
                    residentSinceRelease = 0
                }
            }
            return Batch(images: selected,
                         labels: try Tensor(kept.map { Int64(labels[$0]) }, shape: [kept.count]),
                         indices: kept, number: number)
        }
        return nil
    }

    public func cancel() { pending = [][...] }
}

/// Computing, keying and storing `CachedFeatures`.
public enum FeatureCache {
    /// The `format` of a cache file's metadata (and of its key's inputs). Version 2 (2026-12-07) adds
    /// the `sha256` tensor; a version-1 file has another key, so it is computed again once.
    static let format = "finetune-feature-cache-2"
    /// The formats finetune wrote before `format`: such files are never reused (their keys differ), but
    /// they are finetune's, so `cache list` shows them and `cache prune` may remove them.
    static let earlierFormats: Set<String> = ["finetune-feature-cache-1"]

    /// Writes a cache file atomically, streamed: `body` appends the features' bytes ([views, samples,
    /// width] float32, row-major) and then the validity flags (one byte each, 0 or 1). A last tensor,
    /// `sha256` (64 ASCII hex digits), holds the SHA-256 of those bytes, which `read` checks: a file
    /// changed since (a flipped bit, another tool's edit) is computed again rather than trained on.
    static func writeFile(_ path: String, key: String, description: String, views: Int, samples: Int, width: Int,
                          _ body: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        try SafeTensors.write(streaming: [("features", .float32, [views, samples, width]), ("valid", .uint8, [samples]),
                                          ("sha256", .uint8, [64])],
                              metadata: ["format": format, "key": key, "inputs": description], to: path) { append in
            var hasher = SHA256Hasher()
            try withoutActuallyEscaping(append) { append in
                try body { bytes in
                    hasher.update(bytes)
                    try append(bytes)
                }
            }
            try Array(hasher.finalizeHex().utf8).withUnsafeBytes(append)
        }
    }

    /// Whether the features' and flags' bytes of a mapped cache file hash to its `sha256` tensor. The
    /// bytes are read through the mapping 32 MiB at a time, each part's pages released after it, so
    /// checking a large cache does not make it resident.
    static func contentsMatchDigest(_ mapping: SafeTensorsMapping) -> Bool {
        guard let features = mapping.byteRanges["features"], let valid = mapping.byteRanges["valid"],
              let stored = mapping.byteRanges["sha256"], stored.count == 64 else { return false }
        var hasher = SHA256Hasher()
        let part = 32 << 20
        do {
            for range in [features, valid] {
                for start in stride(from: range.lowerBound, to: range.upperBound, by: part) {
                    try mapping.withUnsafeBytes(in: start..<min(start + part, range.upperBound)) { hasher.update($0) }
                    mapping.releaseResidentPages()
                }
            }
            return try mapping.withUnsafeBytes(in: stored) { Array($0) } == Array(hasher.finalizeHex().utf8)
        } catch {
            return false
        }
    }

    /// Where caches go by default: `$FINETUNE_CACHE_DIR/features` (else `~/.cache/finetune/features`).
    public static var defaultDirectory: String { WeightsCache.defaultRoot().appendingPathComponent("features").path }

    /// Why `model`'s `embedding` is not a fixed function during training (nil when it is, i.e.
    /// when features may be cached): a trainable parameter or a module in training behaviour
    /// outside the classifier.
    public static func ineligibility(of model: Module) -> String? {
        guard let classifier = model as? any ClassifierModel else { return "the model is not a ClassifierModel" }
        let scopes = classifier.classifierScopes
        guard !scopes.isEmpty else { return "\(classifier.architecture) has no classifier head" }
        func inClassifier(_ path: String) -> Bool {
            scopes.contains { path == $0 || path.hasPrefix($0 + ".") }
        }
        func encloses(_ path: String) -> Bool {
            path.isEmpty || scopes.contains { $0.hasPrefix(path + ".") }
        }
        if let (key, _) = model.namedParameters().first(where: { !inClassifier($0.0) && $0.1.requiresGrad }) {
            return "\(key) is trainable (only the head may train while features are cached)"
        }
        for (path, module) in model.namedModules() where !inClassifier(path) && !encloses(path) {
            guard module is Dropout || module is BatchNorm else { continue }
            if !module.isFrozen {
                return "\(path) (\(module.typeName)) is not frozen: it behaves differently in training"
                    + (module is BatchNorm ? " (--train-bn)" : "")
            }
        }
        return nil
    }

    /// The cache key's inputs as canonical JSON text (hashed into `key`).
    public static func keyDescription(model: any ClassifierModel, dataset: any ImageDataset, transformDescription: String,
                                      views: Int, seed: UInt64, autocastBF16: Bool) throws -> String {
        var backbone = SHA256Hasher()
        let scopes = model.classifierScopes
        for (key, tensor) in model.stateDict() where !scopes.contains(where: { key.hasPrefix($0 + ".") }) {
            let contiguous = try tensor.to(dtype: tensor.dtype, device: .cpu).contiguous()
            backbone.update(Array("\(key)|\(tensor.dtype)|\(tensor.shape)|".utf8))
            let bytes = contiguous.count * contiguous.dtype.byteSize
            if bytes > 0 { backbone.update(UnsafeRawBufferPointer(start: try contiguous.dataPointer(), count: bytes)) }
        }
        var samples = SHA256Hasher()
        var stores: [ObjectIdentifier: String] = [:]
        for sample in dataset.samples {
            switch sample.source {
            case .file(let path):
                let attributes = try? FileManager.default.attributesOfItem(atPath: path)
                let size = (attributes?[.size] as? NSNumber)?.int64Value ?? -1
                let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
                samples.update(Array("\(path)\t\(size)\t\(modified)\t\(sample.label)\n".utf8))
            case .memory(let store, let index):
                let id = ObjectIdentifier(store)
                if stores[id] == nil { stores[id] = SHA256Hasher.hexDigest(of: store.bytes) }
                samples.update(Array("memory:\(stores[id]!)#\(index)\t\(sample.label)\n".utf8))
            }
        }
        // bf16 features depend on which layers ran in bf16; fp32 keys stay what they were.
        let policy: [(String, String)] = autocastBF16 ? [("precision_policy", "\(PrecisionPolicy.standard)")] : []
        let fields: [(String, String)] = policy + [
            ("format", format),
            ("decoder", "\(ImageCodec.decoderRevision)"),  // a decoder fix makes other pixels
            ("architecture", model.architecture),
            ("backbone", backbone.finalizeHex()),
            ("transform", transformDescription),
            ("views", "\(views)"),
            ("seed", "\(seed)"),
            ("autocast_bf16", "\(autocastBF16)"),
            ("samples", samples.finalizeHex()),
            ("sample_count", "\(dataset.count)"),
            ("embedding_size", "\(model.embeddingSize)"),
            // The head's pooling, the layout, GoogLeNet's transform_input: not in the state dict.
            ("feature_settings", model.featureSettings.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                .joined(separator: ",")),
        ]
        let object = Dictionary(uniqueKeysWithValues: fields)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// Reads the cache for these inputs from `directory`, or computes it (and writes it atomically
    /// there unless `directory` is nil). A `directory` this process may not write in (a shared cache
    /// folder filled by someone else, a read-only disk: `OutputFolder.whyReadOnly`) is still read; the
    /// features computed then are kept in memory, and `CachedFeatures.whyNotKept` says why.
    ///
    /// - Parameters:
    ///   - transform: the transform the training loader applies (`transformDescription` must
    ///     describe it exactly: it is part of the key).
    ///   - views: 1 for unaugmented inputs; K for K augmented views (see the type's documentation).
    ///   - seed: the training loader's seed (it draws the augmented views).
    ///   - distributed: the group of a data-parallel run, whose ranks all call this with the same
    ///     inputs: each computes a shard and rank 0 writes the file (see `prepareSharded`).
    ///   - stop: checked after every batch of a computation in one process: once triggered (Ctrl-C),
    ///     the work stops with `TrainingError.interrupted` and no file is left behind. (The ranks of
    ///     a data-parallel run finish the cache together, and the trainer stops them at its first batch.)
    public static func prepare(model: any ClassifierModel, dataset: any ImageDataset, transform: any SampleTransform,
                               transformDescription: String, views: Int = 1, seed: UInt64 = 0,
                               autocastBF16: Bool = false, batchSize: Int = 32, workers: Int = 2,
                               directory: String? = defaultDirectory, strict: Bool = false,
                               distributed: DataParallel? = nil, stop: SignalStop? = nil) throws -> CachedFeatures {
        guard views >= 1 else { throw TrainingError.invalidConfiguration("feature cache views must be at least 1") }
        if let reason = ineligibility(of: model) {
            throw TrainingError.invalidConfiguration("backbone features cannot be cached: \(reason)")
        }
        // DCT-scaled decoding gives other pixels, so the decoder's scale bound is part of the key.
        let description = try keyDescription(model: model, dataset: dataset,
                                             transformDescription: transformDescription + " decode_min_side=\(transform.decodeMinSide)",
                                             views: views, seed: seed, autocastBF16: autocastBF16)
        let key = SHA256Hasher.hexDigest(of: Array(description.utf8))
        func made(_ features: CachedFeatures) -> CachedFeatures {
            features.madeFrom = dataset.samples
            return features
        }
        let path = directory.map { URL(fileURLWithPath: $0).appendingPathComponent("\(key).safetensors").path }
        // Until 2026-12-07 such a folder failed the run ("cannot create the folder …: Permission denied").
        let readOnly = directory.flatMap { OutputFolder.whyReadOnly($0) }
        func notKept(_ features: CachedFeatures) -> CachedFeatures {
            if !features.reused && features.path == nil { features.whyNotKept = readOnly }
            return made(features)
        }
        if let distributed, distributed.worldSize > 1 {
            let inputs = ExtractionInputs(model: model, dataset: dataset, transform: transform, views: views, seed: seed,
                                          autocastBF16: autocastBF16, batchSize: batchSize, workers: workers, strict: strict)
            return notKept(try prepareSharded(inputs, key: key, description: description, path: path,
                                              writes: readOnly == nil, distributed: distributed))
        }
        if let path, let cached = try reuse(path, key: key, dataset: dataset, views: views, width: model.embeddingSize,
                                            strict: strict) {
            return made(cached)
        }
        guard let path, let directory, readOnly == nil else {
            let (features, valid, skipped) = try extract(model: model, dataset: dataset, transform: transform, views: views,
                                                         seed: seed, autocastBF16: autocastBF16, batchSize: batchSize,
                                                         workers: workers, strict: strict, stop: stop)
            return notKept(CachedFeatures(features: features, valid: valid, path: nil, key: key, reused: false,
                                          skipped: skipped))
        }
        // Streamed to the file batch by batch and read back through mmap: memory stays flat in N.
        let n = dataset.count, width = model.embeddingSize
        try prepareDirectory(directory, views: views, samples: n, width: width)
        var valid = [Bool](repeating: false, count: n)
        var skipped = SkippedFiles()
        try writeFile(path, key: key, description: description, views: views, samples: n, width: width) { write in try withoutActuallyEscaping(write) { append in
            let zeros = [Float](repeating: 0, count: width)
            var next = 0, currentView = 0  // the next row of the file, and its view
            func pad(to index: Int) throws {  // rows of samples that could not be loaded stay zero
                while next < index {
                    try zeros.withUnsafeBytes(append)
                    next += 1
                }
            }
            skipped = try forEachBatch(model: model, dataset: dataset, transform: transform, views: views, seed: seed,
                                       autocastBF16: autocastBF16, batchSize: batchSize, workers: workers,
                                       strict: strict, stop: stop) { view, indices, rows in
                if view != currentView {
                    try pad(to: n)
                    (currentView, next) = (view, 0)
                }
                for (row, index) in indices.enumerated() {
                    guard index >= next else {
                        throw TrainingError.invalidConfiguration("feature extraction: sample \(index) came out of order")
                    }
                    try pad(to: index)
                    try rows[row * width..<(row + 1) * width].withUnsafeBytes(append)
                    next += 1
                    valid[index] = true
                }
            }
            try pad(to: n)
            for _ in stride(from: currentView + 1, to: views, by: 1) {  // views with no loadable sample at all
                next = 0
                try pad(to: n)
            }
            try valid.map { UInt8($0 ? 1 : 0) }.withUnsafeBytes(append)
        } }
        afterWritingForTesting?(path)
        let readBack: CachedFeatures?
        do {
            readBack = try read(path, key: key, views: views, samples: n, width: width)
        } catch where !FileManager.default.fileExists(atPath: path) {
            // `cache prune` may remove any cache, and did between the rename and this read (probe V:
            // the run failed, with nothing to resume). The features are computed again, kept in memory.
            let (features, valid, skipped) = try extract(model: model, dataset: dataset, transform: transform, views: views,
                                                         seed: seed, autocastBF16: autocastBF16, batchSize: batchSize,
                                                         workers: workers, strict: strict, stop: stop)
            return made(CachedFeatures(features: features, valid: valid, path: nil, key: key, reused: false, skipped: skipped))
        }
        guard let cached = readBack else {
            throw TrainingError.invalidConfiguration("feature cache \(path) did not read back as written")
        }
        return made(CachedFeatures(features: cached.features, valid: valid, path: path, key: key, reused: false,
                                   skipped: skipped, mapping: cached.mapping))
    }

    /// Tests only: called with a new cache's path between writing it and reading it back, where another
    /// process's `cache prune` may remove it.
    nonisolated(unsafe) static var afterWritingForTesting: ((String) -> Void)?

    /// The cache at `path` when it exists and holds these features (nil otherwise), with the samples it
    /// marks unloadable as skipped files; with `strict`, the first of those is an error.
    static func reuse(_ path: String, key: String, dataset: any ImageDataset, views: Int, width: Int,
                      strict: Bool) throws -> CachedFeatures? {
        guard FileManager.default.fileExists(atPath: path),
              let cached = try? read(path, key: key, views: views, samples: dataset.count, width: width) else { return nil }
        // A damaged file (NaN or infinite features, which a backbone in eval mode does not produce) is
        // computed again: reused, it ended every run as "diverged; lower --lr", naming no file.
        guard (try? cached.features.allFinite()) == true else { return nil }
        var skipped = SkippedFiles()
        for (i, ok) in cached.valid.enumerated() where !ok {
            skipped.append(path: dataset.samples[i].source.description,
                           reason: "could not be decoded (found when this feature cache was computed)")
        }
        if strict, let first = skipped.entries.first {
            throw DataError.corrupt(path: first.path, reason: first.reason)
        }
        FeatureCacheFolder.markUsed(path)
        return CachedFeatures(features: cached.features, valid: cached.valid, path: path, key: key, reused: true,
                              skipped: skipped, mapping: cached.mapping)
    }

    static func read(_ path: String, key: String, views: Int, samples: Int, width: Int) throws
        -> CachedFeatures? {
        let file = try SafeTensors.read(path)
        guard file.metadata["key"] == key, let features = file.tensors["features"], let valid = file.tensors["valid"],
              features.shape == [views, samples, width], features.dtype == .float32, valid.shape == [samples],
              valid.dtype == .uint8, let mapping = file.mapping, contentsMatchDigest(mapping) else {
            return nil
        }
        let bytes = try valid.toArray(UInt8.self)
        guard bytes.allSatisfy({ $0 <= 1 }) else { return nil }  // finetune writes 0 or 1
        let flags = bytes.map { $0 != 0 }
        return CachedFeatures(features: features, valid: flags, path: path, key: key, reused: true,
                              skipped: SkippedFiles(), mapping: file.mapping)
    }

    /// Runs `model.embedding` over every view of the dataset in inference mode and eval behaviour:
    /// features [views, N, D] float32 on the CPU, which samples could be loaded, and the files that
    /// could not (their rows stay zero). No eligibility check: `finetune features` uses this too.
    /// A triggered `stop` ends it after the current batch with `TrainingError.interrupted`.
    public static func extract(model: any ClassifierModel, dataset: any ImageDataset, transform: any SampleTransform,
                               views: Int = 1, seed: UInt64 = 0, autocastBF16: Bool = false, batchSize: Int = 32,
                               workers: Int = 2, strict: Bool = false, stop: SignalStop? = nil) throws
        -> (features: Tensor, valid: [Bool], skipped: SkippedFiles) {
        let n = dataset.count, width = model.embeddingSize
        let count = try checkMemory(views: views, samples: n, width: width)
        var values = [Float](repeating: 0, count: count)
        var valid = [Bool](repeating: false, count: n)
        let skipped = try forEachBatch(model: model, dataset: dataset, transform: transform, views: views, seed: seed,
                                       autocastBF16: autocastBF16, batchSize: batchSize, workers: workers,
                                       strict: strict, stop: stop) { view, indices, rows in
            for (row, index) in indices.enumerated() {
                let base = (view * n + index) * width
                values.replaceSubrange(base..<base + width, with: rows[row * width..<(row + 1) * width])
                valid[index] = true
            }
        }
        return (try Tensor(values, shape: [views, n, width]), valid, skipped)
    }

    /// Creates `directory` and checks, before extracting, that the cache file (views × samples × width
    /// floats, then memory-mapped) fits in its free disk space.
    static func prepareDirectory(_ directory: String, views: Int, samples n: Int, width: Int) throws {
        try OutputFolder.create(directory)
        let (rows, overflow) = views.multipliedReportingOverflow(by: n)
        let (count, overflow2) = rows.multipliedReportingOverflow(by: width)
        let (bytes, overflow3) = count.multipliedReportingOverflow(by: MemoryLayout<Float>.size)
        let free = (try? FileManager.default.attributesOfFileSystem(forPath: directory)[.systemFreeSize] as? NSNumber)?
            .int64Value
        if overflow || overflow2 || overflow3 || free.map({ Int64(bytes) > $0 }) == true {
            let needed = overflow || overflow2 || overflow3 ? "more than \(MemoryEstimate.format(Int.max))" : MemoryEstimate.format(bytes)
            throw TrainingError.invalidConfiguration(
                "caching \(views) view\(views == 1 ? "" : "s") of \(n) images × \(width) features needs a file of about "
                + "\(needed) (read back memory-mapped), more than the \(MemoryEstimate.format(Int(free ?? 0))) of disk free in "
                + "\(directory); " + (views > 1 ? "cache fewer augmented views, " : "")
                + "free some space, choose another --feature-cache-dir, or train without the cache (--feature-cache off)")
        }
    }

    /// views × samples × width, after checking that this many floats, held twice (array and tensor),
    /// fit in half of the memory this process may use (`Runtime.usableMemory`).
    static func checkMemory(views: Int, samples n: Int, width: Int) throws -> Int {
        let (count, overflow) = views.multipliedReportingOverflow(by: n * width)
        let (bytes, overflow2) = count.multipliedReportingOverflow(by: 2 * MemoryLayout<Float>.size)
        if overflow || overflow2 || bytes > Runtime.usableMemory / 2 {
            let needed = overflow || overflow2 ? "more than \(MemoryEstimate.format(Int.max))" : MemoryEstimate.format(bytes)
            throw TrainingError.invalidConfiguration(
                "caching \(views) view\(views == 1 ? "" : "s") of \(n) images × \(width) features needs about \(needed) "
                + "of memory, more than half of \(Runtime.describeUsableMemory(MemoryEstimate.format(Runtime.usableMemory))); "
                + (views > 1 ? "cache fewer augmented views, or " : "") + "train without the cache (--feature-cache off)")
        }
        return count
    }

    /// The loop of `extract` and of the streamed cache: `model.embedding` over every view of the dataset in
    /// inference mode and eval behaviour, in the unshuffled loader's order, calling `body(view, indices,
    /// rows)` with each batch's sample indices (ascending; unloadable samples left out) and their
    /// features, row-major float32. With a `shard`, only that shard's samples (their dataset indices,
    /// so augmented views are the same). Returns the files that could not be loaded.
    static func forEachBatch(model: any ClassifierModel, dataset: any ImageDataset, transform: any SampleTransform,
                             views: Int, seed: UInt64, autocastBF16: Bool, batchSize: Int, workers: Int, strict: Bool,
                             shard: DataShard? = nil, stop: SignalStop? = nil,
                             _ body: (_ view: Int, _ indices: [Int], _ rows: [Float]) throws -> Void) throws -> SkippedFiles {
        let width = model.embeddingSize
        let loader = try DataLoader(dataset, batchSize: batchSize, shuffle: false, seed: seed, transform: transform,
                                    workers: workers, prefetch: Swift.max(2, workers), strict: strict)
        loader.shard = shard
        let device = model.parameters().first?.device ?? .cpu
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        try withInferenceMode {
            for view in 0..<views {
                // Epoch `view` of an unshuffled loader: sample i gets the augmentation a training
                // loader with the same seed draws for it in epoch `view`.
                let run = loader.epoch(view)
                while let batch = try run.nextBatch() {
                    let images = device == .cpu ? batch.images : try batch.images.to(device)
                    let output = try withPrecision(autocastBF16 ? .bf16 : .fp32) { try model.extractFeatures(images) }
                    let rows = try output.to(dtype: .float32, device: .cpu).contiguous().floats()
                    guard rows.count == batch.count * width else {
                        throw TrainingError.invalidConfiguration("\(model.architecture).embedding returned "
                            + "\(output.shape), expected [\(batch.count), \(width)]")
                    }
                    try body(view, batch.indices, rows)
                    if stop?.isTriggered == true {
                        run.cancel()
                        throw TrainingError.interrupted("while computing backbone features (\(dataset.count) images)")
                    }
                }
            }
        }
        return loader.skippedFiles
    }
}

/// The cached features of a training run's data (see `Trainer.featureCache`).
public struct TrainingFeatures {
    /// Features of the training loader's dataset, from its transform (and seed, for augmented views).
    public var train: CachedFeatures
    /// Features of the validation loader's dataset, from its (evaluation) transform.
    public var validation: CachedFeatures?

    public init(train: CachedFeatures, validation: CachedFeatures? = nil) {
        self.train = train
        self.validation = validation
    }
}

/// A source of batches the trainer iterates: an image loader's epoch or cached features.
protocol BatchStream {
    func nextBatch() throws -> Batch?
    func cancel()
}

extension DataLoaderEpoch: BatchStream {}

/// A stream that ends (and cancels `base`) once `stop` is triggered.
struct StoppableBatches: BatchStream {
    let base: any BatchStream
    let stop: SignalStop

    func nextBatch() throws -> Batch? {
        guard !stop.isTriggered else {
            base.cancel()
            return nil
        }
        return try base.nextBatch()
    }

    func cancel() { base.cancel() }
}
extension CachedFeatureEpoch: BatchStream {}
