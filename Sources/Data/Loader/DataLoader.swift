import Foundation
import Torch

/// One batch: images as float32 [N, 3, H, W] (normalised by the transform), labels as int64 [N],
/// and the dataset index of each row.
public struct Batch: @unchecked Sendable {
    /// The transformed images, float32 [N, 3, H, W] (N ≤ the batch size when files were skipped),
    /// channels-first as PyTorch's `DataLoader` yields them.
    public let images: Tensor
    /// Class indices, int64 [N], row for row with `images`.
    public let labels: Tensor
    /// The dataset index of each row (what was actually delivered, skipped files left out).
    public let indices: [Int]
    /// The batch's position in its epoch (0-based; batches whose every image was skipped leave gaps).
    public let number: Int

    /// A batch from its parts (nothing is checked).
    public init(images: Tensor, labels: Tensor, indices: [Int], number: Int) {
        self.images = images
        self.labels = labels
        self.indices = indices
        self.number = number
    }

    /// Number of images in the batch.
    public var count: Int { indices.count }
}

/// Batches of decoded, transformed images with a bounded, threaded prefetch.
///
/// * **Order.** `order(epoch:)` is the sequence of dataset indices of an epoch: in dataset order,
///   a seeded shuffle (`shuffle`; the same `seed` and epoch always give the same order), or
///   class-balanced draws with replacement (`balanced`, see `BalancedSampler`). Batches are
///   consecutive runs of `batchSize`; with `dropLast` a final short run is dropped.
/// * **Determinism.** Each sample's augmentation is seeded by (seed, epoch, dataset index, draw),
///   never by thread or time, and batches are delivered in order, so the output is identical for
///   any `workers` (0 decodes on the calling thread) and any `prefetch`.
/// * **Memory.** Samples are decoded on demand by `workers` threads; at most `prefetch` batches are
///   being built or waiting at any time (plus the one the caller holds). Fast-path batch memory is
///   reused: up to `prefetch + 1` released batch buffers are kept for the next batches. Nothing else
///   is kept unless `cacheDecoded` is set, which keeps every decoded image (before augmentation) for
///   later epochs.
/// * **Decoding.** Files are decoded with `minSide = transform.decodeMinSide` (when `dctScaling`),
///   so large JPEGs are shrunk by libjpeg while decoding.
/// * **Fast path.** For `TrainingTransform.standard` without colour jitter and for `EvaluationTransform`,
///   each sample is cropped, resized, flipped and normalised in one pass written straight into its
///   slot of the batch tensor; random crops of JPEG files decode only the crop's window, at the
///   smallest DCT scale that keeps it at least the output size (with `dctScaling`). Other transforms
///   produce one tensor per sample, stacked into the batch.
/// * **Bad files.** A file that cannot be loaded (missing, empty, truncated, not an image) is left
///   out of its batch — the batch is *smaller*, never refilled, so batch composition stays
///   independent of timing — and listed in `skippedFiles`; a batch left with no image is skipped
///   entirely. With `strict`, iteration throws the first such error instead (the `DataError`
///   naming the file). Errors raised by the transform itself always throw.
/// * **Stopping early.** Dropping or `cancel()`ing a `DataLoaderEpoch` stops its threads and waits
///   for them (each finishes at most the sample it is decoding).
public final class DataLoader: @unchecked Sendable {
    /// The samples the loader reads (its list is copied at creation).
    public let dataset: any ImageDataset
    /// Images per batch (≥ 1); the last batch may be shorter unless `dropLast`.
    public let batchSize: Int
    /// Whether each epoch visits the dataset in a seeded random order (ignored with `balanced`).
    public let shuffle: Bool
    /// Seed of the shuffles, balanced draws and every sample's augmentation.
    public let seed: UInt64
    /// Turns each decoded image into its tensor: `EvaluationTransform`, `TrainingTransform`,
    /// `KerasImageDataGenerator`, ….
    public let transform: any SampleTransform
    /// Decoding threads (0: on the calling thread).
    public let workers: Int
    /// Batches built ahead of the consumer, at most (≥ 1).
    public let prefetch: Int
    /// Whether a final short batch is dropped (PyTorch's `drop_last`).
    public let dropLast: Bool
    /// Whether an unloadable file throws (true) or is skipped and reported in `skippedFiles` (false).
    public let strict: Bool
    /// Whether decoded images are kept in memory for later epochs (augmentation still runs every epoch).
    public let cacheDecoded: Bool
    /// What decoding does with JPEG orientation tags: given at creation, or the setting in force then
    /// (a later change of `ImageCodec.exifOrientation` does not reach a loader that exists).
    public let exifOrientation: EXIFOrientation
    /// Whether JPEGs are decoded at a reduced DCT scale when the transform needs fewer pixels (faster,
    /// with slightly different pixels); off decodes at full size, as PIL does.
    public let dctScaling: Bool
    /// Set when the loader draws class-balanced samples.
    public let sampler: BalancedSampler?

    let samples: [LabeledSample]
    let cache: DecodedImageCache?
    /// The fast path's plan (nil: per-sample tensors through `transform.tensor(from:random:)`).
    let direct: DirectSamplePlan?
    /// Memory of fast-path batches, reused once the consumer drops them (fresh memory costs a page
    /// fault per 4 KiB when first written).
    let pool: BatchMemoryPool
    private let lock = NSLock()
    private var allSkipped = SkippedFiles()
    private var peak = 0
    private var decodes = 0

    /// - Parameters:
    ///   - workers: decoding threads (0: decode on the calling thread).
    ///   - prefetch: batches built ahead, at most (1 to 4096). Give at least `workers` for full parallelism
    ///     with small batches.
    ///   - balanced: draw `dataset.count` class-balanced samples per epoch with replacement (overrides `shuffle`).
    ///   - exif: what decoding does with JPEG orientation tags; nil: the setting in force where the
    ///     loader is created (`ImageCodec.effectiveEXIFOrientation`), kept for its whole life.
    public init(_ dataset: any ImageDataset, batchSize: Int, shuffle: Bool = false, seed: UInt64 = 0,
                transform: any SampleTransform, workers: Int = 2, prefetch: Int = 2, dropLast: Bool = false,
                balanced: Bool = false, strict: Bool = false, cacheDecoded: Bool = false,
                dctScaling: Bool = true, exif: EXIFOrientation? = nil) throws {
        guard batchSize >= 1 else { throw DataError.invalidDataset("batch size must be at least 1, got \(batchSize)") }
        guard workers >= 0, workers <= Runtime.maxThreads else {
            throw DataError.invalidDataset("workers must be 0 to \(Runtime.maxThreads) (4 × the cores), got \(workers)")
        }
        guard (1...4096).contains(prefetch) else {
            throw DataError.invalidDataset("prefetch must be 1 to 4096 batches, got \(prefetch)")
        }
        self.dataset = dataset
        self.samples = dataset.samples
        self.batchSize = batchSize
        self.shuffle = shuffle
        self.seed = seed
        self.transform = transform
        self.workers = workers
        self.prefetch = prefetch
        self.dropLast = dropLast
        self.strict = strict
        self.cacheDecoded = cacheDecoded
        self.dctScaling = dctScaling
        self.exifOrientation = exif ?? ImageCodec.effectiveEXIFOrientation
        self.sampler = balanced ? BalancedSampler(dataset, seed: seed) : nil
        self.cache = cacheDecoded ? DecodedImageCache() : nil
        self.direct = (try? (transform as? DirectSampleTransform)?.directPlan()) ?? nil
        self.pool = BatchMemoryPool(keep: prefetch + 1)
    }

    /// In data-parallel training, this process's part of every epoch (`DataShard`); nil: all of it.
    /// Set it before iterating.
    public var shard: DataShard?

    /// The dataset indices of `epoch`, in order (this rank's part of them with a `shard`).
    public func order(epoch: Int) -> [Int] {
        guard let shard else { return fullOrder(epoch: epoch) }
        return shard.select(fullOrder(epoch: epoch))
    }

    /// The dataset indices of `epoch` for all ranks together.
    func fullOrder(epoch: Int) -> [Int] {
        if let sampler { return sampler.indices(epoch: epoch) }
        guard shuffle else { return Array(samples.indices) }
        var random = SampleRandom(seed: SplitMix64.derive(seed, 0x5A0F, UInt64(bitPattern: Int64(epoch))))
        return random.permutation(samples.count)
    }

    /// The dataset indices of each batch of `epoch`.
    public func batches(epoch: Int) -> [[Int]] { plan(epoch: epoch).map { $0.map(\.index) } }

    /// Batches in one epoch: samples (or balanced draws) / `batchSize`, rounded up, or down with `dropLast`.
    public var batchesPerEpoch: Int {
        let all = sampler?.numSamples ?? samples.count
        let n = shard?.size(of: all) ?? all
        return dropLast || n % batchSize == 0 ? n / batchSize : n / batchSize + 1  // no overflow for any batch size
    }

    /// Images in an epoch's last batch (`batchSize` when it is full; 0 without batches).
    public var lastBatchSize: Int {
        let all = sampler?.numSamples ?? samples.count
        let n = shard?.size(of: all) ?? all
        guard n > 0, batchesPerEpoch > 0 else { return 0 }
        return dropLast || n % batchSize == 0 ? batchSize : n % batchSize
    }

    /// Iterates `epoch` (threads start on the first batch requested).
    public func epoch(_ n: Int) -> DataLoaderEpoch { DataLoaderEpoch(run: EpochRun(loader: self, epoch: n)) }

    /// Epoch `n` from batch `first` on, without decoding the earlier batches (exact mid-epoch resume).
    public func epoch(_ n: Int, startingAtBatch first: Int) -> DataLoaderEpoch {
        DataLoaderEpoch(run: EpochRun(loader: self, epoch: n, startingAtBatch: first))
    }

    /// Called once for each file that is found unusable, the first time it is found (on the thread
    /// that consumes the batches), e.g. to report it at once. Set it before iterating.
    public var onSkip: ((SkippedFiles.Entry) -> Void)?

    /// Every file skipped so far, over all epochs.
    public var skippedFiles: SkippedFiles { lock.synchronized { allSkipped } }

    /// The most batches in memory at once (built or waiting) seen so far; never above `prefetch`.
    public var peakBatchesInMemory: Int { lock.synchronized { peak } }

    /// Images read from their source so far (cache hits excluded).
    public var imagesDecoded: Int { lock.synchronized { decodes } }

    // MARK: - Internals shared with the epoch runs

    struct PlanItem {
        var index: Int
        /// How many times `index` occurred earlier in the epoch (sampling with replacement).
        var draw: Int
    }

    func plan(epoch: Int) -> [[PlanItem]] {
        var seen: [Int: Int] = [:]
        let items = order(epoch: epoch).map { i -> PlanItem in
            let draw = seen[i, default: 0]
            seen[i] = draw + 1
            return PlanItem(index: i, draw: draw)
        }
        var batches = stride(from: 0, to: items.count, by: batchSize).map {
            Array(items[$0..<min($0 + batchSize, items.count)])
        }
        if dropLast, let last = batches.last, last.count < batchSize { batches.removeLast() }
        return batches
    }

    func record(skipped: SkippedFiles, peak epochPeak: Int) {
        let new = lock.synchronized { () -> [SkippedFiles.Entry] in
            let known = Set(allSkipped.paths)
            allSkipped.merge(skipped)
            peak = max(peak, epochPeak)
            return skipped.entries.filter { !known.contains($0.path) }
        }
        if let onSkip { for entry in new { onSkip(entry) } }
    }

    enum SampleOutcome {
        case tensor(Tensor)
        /// Written into the batch buffer's slot.
        case written
        case skipped(SkippedFiles.Entry)
        case failed(Error)
    }

    /// The float32 [n, 3, H, W] tensor a fast-path batch is written into, one slot per planned sample.
    /// Its memory comes from `pool` and goes back there when LibTorch frees the tensor's storage.
    final class BatchBuffer: @unchecked Sendable {
        let tensor: Tensor
        let base: UnsafeMutablePointer<Float>
        let sampleCount: Int

        init(count: Int, plan: DirectSamplePlan, pool: BatchMemoryPool) throws {
            let shape = [count, 3, plan.height, plan.width]
            if let block = pool.take(bytes: count * plan.sampleCount * MemoryLayout<Float>.size) {
                tensor = try Tensor.wrapping(block.pointer, shape: shape, dtype: .float32, owner: block)
            } else {
                tensor = try Tensor.empty(shape, dtype: .float32)
            }
            base = try tensor.dataPointer().assumingMemoryBound(to: Float.self)
            sampleCount = plan.sampleCount
        }

        func slot(_ i: Int) -> UnsafeMutablePointer<Float> { base + i * sampleCount }
    }

    /// A buffer for a batch of `count` samples on the fast path (nil: per-sample tensors).
    func makeBuffer(count: Int) -> BatchBuffer? {
        guard let direct else { return nil }
        return try? BatchBuffer(count: count, plan: direct, pool: pool)
    }

    /// Loads (or fetches from the cache) and transforms one sample: into `slot` of `buffer` when given.
    /// Decodes with the loader's `exifOrientation`, on whichever thread it runs.
    func process(_ item: PlanItem, epoch: Int, buffer: BatchBuffer? = nil, slot: Int = 0) -> SampleOutcome {
        ImageCodec.withEXIFOrientation(exifOrientation) { decode(item, epoch: epoch, buffer: buffer, slot: slot) }
    }

    private func decode(_ item: PlanItem, epoch: Int, buffer: BatchBuffer?, slot: Int) -> SampleOutcome {
        let sample = samples[item.index]
        var random = SampleRandom(seed: seed, epoch: epoch, index: item.index, draw: item.draw)
        if let direct, let buffer {
            let out = buffer.slot(slot)
            if cache == nil, case .file(let path) = sample.source {
                lock.synchronized { decodes += 1 }
                do {
                    try direct.write(file: path, dctScaling: dctScaling, random: &random, into: out)
                    return .written
                } catch let failure as SampleLoadFailure {
                    return loadFailed(failure.underlying, sample)
                } catch {
                    return .failed(error)
                }
            }
            let image: Image
            do { image = try loadImage(item.index, sample.source) } catch { return loadFailed(error, sample) }
            do {
                try direct.write(image, random: &random, into: out)
                return .written
            } catch {
                return .failed(error)
            }
        }
        let image: Image
        do { image = try loadImage(item.index, sample.source) } catch { return loadFailed(error, sample) }
        do {
            return .tensor(try transform.tensor(from: image, random: &random))
        } catch {
            return .failed(error)
        }
    }

    private func loadFailed(_ error: Error, _ sample: LabeledSample) -> SampleOutcome {
        if strict { return .failed(error) }
        let path = sample.source.description
        return .skipped(SkippedFiles.Entry(path: path, reason: skipReason(error, path: path)))
    }

    private func loadImage(_ index: Int, _ source: ImageSource) throws -> Image {
        if let cached = cache?.get(index) { return try cached.get() }
        lock.synchronized { decodes += 1 }
        let result = Result {
            try source.load(minSide: dctScaling ? transform.decodeMinSide : 0, fast: transform.decodeFast)
        }
        cache?.set(index, result)
        return try result.get()
    }

    /// Stacks one batch's outcomes (in slot order); fast-path samples are already in `buffer`, where
    /// skipped slots are closed up.
    func assemble(_ number: Int, _ items: [PlanItem], _ outcomes: [SampleOutcome],
                  buffer: BatchBuffer? = nil) -> BatchOutcome {
        var tensors: [Tensor] = []
        var indices: [Int] = []
        var skipped = SkippedFiles()
        var written = 0
        for (slot, (item, outcome)) in zip(items, outcomes).enumerated() {
            switch outcome {
            case .tensor(let t):
                tensors.append(t)
                indices.append(item.index)
            case .written:
                guard let buffer else { return .failure(DataError.invalidDataset("batch \(number) lost its buffer")) }
                if slot != written {
                    buffer.slot(written).update(from: buffer.slot(slot), count: buffer.sampleCount)
                }
                written += 1
                indices.append(item.index)
            case .skipped(let e):
                skipped.append(path: e.path, reason: e.reason)
            case .failed(let error):
                return .failure(error)
            }
        }
        if written > 0, let buffer {
            guard tensors.isEmpty else {
                return .failure(DataError.invalidDataset("batch \(number) mixes buffered and separate samples"))
            }
            do {
                let images = written == buffer.tensor.shape[0]
                    ? buffer.tensor : try buffer.tensor.slice(dim: 0, start: 0, end: written)
                let labels = try Tensor(indices.map { Int64(samples[$0].label) }, shape: [indices.count])
                return .batch(Batch(images: images, labels: labels, indices: indices, number: number), skipped)
            } catch {
                return .failure(error)
            }
        }
        guard !tensors.isEmpty else { return .empty(skipped) }
        do {
            let images = try Tensor.stack(tensors).to(.float32).contiguous()
            let labels = try Tensor(indices.map { Int64(samples[$0].label) }, shape: [indices.count])
            return .batch(Batch(images: images, labels: labels, indices: indices, number: number), skipped)
        } catch {
            let shapes = Set(tensors.map { "\($0.shape)" }).sorted().joined(separator: ", ")
            return .failure(DataError.invalidDataset("cannot stack batch \(number): the transform produced tensors " +
                                                     "of shapes \(shapes); it must produce one fixed size (\(error))"))
        }
    }

    enum BatchOutcome {
        case batch(Batch, SkippedFiles)
        case empty(SkippedFiles)
        case failure(Error)
    }
}

/// Reusable blocks of batch memory: at most `keep` idle blocks are kept, the rest are freed.
final class BatchMemoryPool: @unchecked Sendable {
    /// A block in use; returns to its pool when released (by LibTorch, when the tensor's storage dies).
    final class Block {
        let pointer: UnsafeMutableRawPointer
        let bytes: Int
        let pool: BatchMemoryPool

        init(pointer: UnsafeMutableRawPointer, bytes: Int, pool: BatchMemoryPool) {
            self.pointer = pointer
            self.bytes = bytes
            self.pool = pool
        }

        deinit { pool.give(pointer, bytes: bytes) }
    }

    private let lock = NSLock()
    private var idle: [(pointer: UnsafeMutableRawPointer, bytes: Int)] = []
    let keep: Int

    init(keep: Int) { self.keep = keep }

    /// Blocks waiting for reuse.
    var idleBlocks: Int { lock.synchronized { idle.count } }

    deinit { for block in idle { free(block.pointer) } }

    /// A block of exactly `bytes` (64-byte aligned), reused when one is idle; nil when out of memory.
    func take(bytes: Int) -> Block? {
        let reused: UnsafeMutableRawPointer? = lock.synchronized {
            guard let i = idle.firstIndex(where: { $0.bytes == bytes }) else { return nil }
            return idle.remove(at: i).pointer
        }
        if let reused { return Block(pointer: reused, bytes: bytes, pool: self) }
        var fresh: UnsafeMutableRawPointer?
        guard bytes > 0, posix_memalign(&fresh, 64, bytes) == 0, let fresh else { return nil }
        return Block(pointer: fresh, bytes: bytes, pool: self)
    }

    fileprivate func give(_ pointer: UnsafeMutableRawPointer, bytes: Int) {
        let kept: Bool = lock.synchronized {
            guard idle.count < keep else { return false }
            idle.append((pointer, bytes))
            return true
        }
        if !kept { free(pointer) }
    }
}

/// Decoded images kept across epochs (`cacheDecoded`), failures included so bad files are read once.
final class DecodedImageCache: @unchecked Sendable {
    private let lock = NSLock()
    private var images: [Int: Result<Image, Error>] = [:]

    func get(_ index: Int) -> Result<Image, Error>? { lock.synchronized { images[index] } }
    func set(_ index: Int, _ value: Result<Image, Error>) { lock.synchronized { images[index] = value } }
}

extension NSLock {
    /// `lock(); defer { unlock() }; body()` (Foundation's `withLock` needs macOS 14).
    func synchronized<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}
