import Data
import Foundation
import NN
import Torch

/// What PyTorch's `DistributedDataParallel` does for one model, on a c10d Gloo `ProcessGroup`: rank 0's
/// parameters and buffers to every rank at the start, gradients of the trainable parameters averaged
/// across ranks in buckets before every optimizer step, the data sharded (`DataShard`) and the
/// metrics summed so they are those of all samples. A `Trainer` with `distributed` set uses it.
///
/// Gradients are reduced after the whole backward pass (the shim has no autograd hooks, so the
/// all-reduce of early buckets does not overlap the rest of backward as DDP's reducer does); each
/// bucket of about `bucketBytes` is one collective. Frozen parameters (no gradient) are skipped.
/// BatchNorm statistics stay per rank, as DDP's default is, unless `syncBatchNorm` is set.
public final class DataParallel {
    /// The group every collective goes through.
    public let group: ProcessGroup
    /// The size of one gradient all-reduce, in bytes (DDP's `bucket_cap_mb` = 25).
    public let bucketBytes: Int
    /// Seconds spent in gradient all-reduces so far (the benchmark reads it).
    public private(set) var allReduceSeconds = 0.0
    /// Gradient all-reduces (optimizer steps) so far.
    public private(set) var allReduceSteps = 0
    /// Seconds spent in each optimizer step's all-reduce of the epoch's metric sums (4 doubles) so far.
    public internal(set) var metricSumSeconds = 0.0
    /// Seconds spent in each batch's agreement (`agreeOnBatch`) so far: mostly waiting for the rank
    /// whose batch was ready last, time that would otherwise be spent at the gradient all-reduce.
    public private(set) var batchAgreementSeconds = 0.0
    /// The launcher's pause of this group (`GroupPause`), when it started this rank and passed one:
    /// read at each training batch's agreement.
    public var pause: GroupPause?

    /// Whether the model's BatchNorm layers compute their training statistics over every rank's batch
    /// together (PyTorch's `SyncBatchNorm`), set on the model when training starts; false: per rank.
    public var syncBatchNorm = false

    /// DDP's default bucket size, 25 MiB.
    public static let defaultBucketBytes = 25 * 1024 * 1024

    public init(group: ProcessGroup, bucketBytes: Int = DataParallel.defaultBucketBytes) {
        self.group = group
        self.bucketBytes = Swift.max(1, bucketBytes)
    }

    /// This process's rank.
    public var rank: Int { group.rank }
    /// The number of processes.
    public var worldSize: Int { group.worldSize }

    /// Training shards: padded so every rank has as many batches (see `DataShard`).
    public var trainingShard: DataShard { DataShard(rank: rank, count: worldSize, padded: true) }
    /// Evaluation shards: every sample exactly once over all ranks.
    public var evaluationShard: DataShard { DataShard(rank: rank, count: worldSize, padded: false) }

    /// Copies rank 0's parameters and buffers into every rank's model (DDP's start-up broadcast), so
    /// ranks start identical whatever each one loaded.
    public func broadcastState(of model: Module) throws {
        let tensors = model.namedParameters().map(\.1) + model.namedBuffers().map(\.1)
        try withNoGrad {
            for bucket in buckets(tensors) { try collective("broadcast") { try group.broadcast(bucket, from: 0) } }
        }
    }

    /// Rank 0's buffers (BatchNorm's running statistics) on every rank, in place. Each rank's running
    /// statistics follow its own shard of the batches; an evaluation shared among the ranks must use one
    /// model, rank 0's, the one the run saves (as DDP's `broadcast_buffers`).
    public func broadcastBuffers(of model: Module) throws {
        let buffers = model.namedBuffers().map(\.1).filter { $0.dtype.isFloatingPoint }
        guard !buffers.isEmpty else { return }
        try withNoGrad {
            for bucket in buckets(buffers) { try collective("buffer broadcast") { try group.broadcast(bucket, from: 0) } }
        }
    }

    /// Averages the gradients of `parameters` across ranks, in place (parameters without a gradient are
    /// skipped: every rank trains the same parameters, so they agree on which). `diverged` (this rank's
    /// loss was not finite) travels in the same all-reduce; returns whether any rank's was.
    @discardableResult
    public func averageGradients(of parameters: [Tensor], diverged: Bool = false) throws -> Bool {
        let gradients = parameters.compactMap(\.grad)
        let flag = try Tensor([Float(diverged ? 1 : 0)]).to(gradients.first?.device ?? .cpu)
        let tensors = gradients + [flag]
        let started = Date()
        try withNoGrad {
            for bucket in buckets(tensors) {
                try collective("gradient all-reduce") { try group.allReduceSum(bucket) }
                for g in bucket where g !== flag { try g.div_(Double(worldSize)) }
            }
        }
        allReduceSeconds += Date().timeIntervalSince(started)
        allReduceSteps += 1
        return try flag.item() > 0
    }

    /// `values` summed element-wise over all ranks (exact for integer counts below 2^53).
    public func sum(_ values: [Double]) throws -> [Double] {
        guard !values.isEmpty else { return values }
        let t = try Tensor(values)
        try collective("all-reduce") { try group.allReduceSum([t]) }
        return try t.toArray(Double.self)
    }

    /// Before each training batch: every rank's usable image count for the batch, whether any rank
    /// received a stop signal, and whether any rank's `pause` is asked for, in one collective. A rank
    /// whose batch lost every file (or a single image it cannot train on) still takes part, with 0, so
    /// that the ranks stay in step. When a pause was seen, every rank with a `pause` waits here until
    /// it ends (or `stop` is triggered), outside any collective; that time is not counted in
    /// `batchAgreementSeconds`.
    public func agreeOnBatch(images: Int, stop: Bool, unless signalStop: SignalStop? = nil) throws -> BatchAgreement {
        var values = [Double](repeating: 0, count: worldSize + 2)
        values[0] = stop ? 1 : 0
        values[1] = pause?.isRequested == true ? 1 : 0
        values[2 + rank] = Double(images)
        let started = Date()
        let summed = try sum(values)
        batchAgreementSeconds += Date().timeIntervalSince(started)
        let paused = summed[1] > 0
        if paused { pause?.waitWhileRequested(unless: signalStop) }
        return BatchAgreement(images: summed.dropFirst(2).map { Int($0) }, stop: summed[0] > 0, paused: paused)
    }

    /// The seed of LibTorch's generator for training batch `batch` of `epoch` on this rank, a pure
    /// function of the run's seed, the batch and the rank. The trainer seeds every batch with it, so
    /// each rank draws its own dropout masks, which do not depend on how many images its earlier
    /// batches held (that differs between ranks when files are skipped), and a resumed run draws
    /// the uninterrupted run's masks, although the checkpoint holds rank 0's generator only.
    public func batchSeed(runSeed: UInt64, epoch: Int, batch: Int) -> UInt64 {
        SplitMix64.derive(runSeed, 0xD1_5EED, UInt64(epoch), UInt64(batch), UInt64(rank))
    }

    /// Every rank's `values` (of any length), concatenated in rank order.
    public func gather<T: TensorScalar & Numeric>(_ values: [T]) throws -> [T] {
        let counts = try collective("all-gather") { try group.allGather(try Tensor([Int64(values.count)])) }
            .toArray(Int64.self).map { Int($0) }
        let longest = counts.max() ?? 0
        guard longest > 0 else { return [] }
        let padded = try Tensor(values + [T](repeating: .zero, count: longest - values.count))
        let all = try collective("all-gather") { try group.allGather(padded) }.toArray(T.self)
        return counts.enumerated().flatMap { r, n in all[(r * longest)..<(r * longest + n)] }
    }

    /// Runs `body` on this rank and agrees with the others on how it went, so that no rank waits in a
    /// collective for one that gave up: when it threw anywhere, every rank throws — the failed ranks
    /// their own error, the others `DistributedError.rankFailed` naming them and `what`. Every rank
    /// must call it at the same point.
    @discardableResult
    public func allSucceed<R>(_ what: String, _ body: () throws -> R) throws -> R {
        let outcome = Result { try body() }
        var failure: String?
        if case .failure(let error) = outcome { failure = "\(error)" }
        let failed = try shareOutcome(failure: failure).failedRanks
        let value = try outcome.get()
        guard failed.isEmpty else {
            throw DistributedError.rankFailed("\(what) failed on rank\(failed.count == 1 ? "" : "s") "
                + failed.map(String.init).joined(separator: ", ") + " (its own message says why); rank \(rank) stops too")
        }
        return value
    }

    /// Every rank's outcome of a step that all ranks run alike on the same inputs (making a run: the
    /// same flags, the same data), so that an error they share is reported once: `failure` is this
    /// rank's error text, nil when the step succeeded. One all-gather; every rank must call it at the
    /// same point.
    public func shareOutcome(failure: String?) throws -> SharedOutcome {
        let own: [Int64] = [failure == nil ? 0 : 1, failure.map { Int64(bitPattern: Self.fnv1a($0)) } ?? 0]
        // Every rank gives two numbers: one all-gather (`gather` would first gather the lengths).
        let all = try collective("all-gather") { try group.allGather(try Tensor(own)) }.toArray(Int64.self)
        let failed = (0..<worldSize).filter { all[2 * $0] != 0 }
        return SharedOutcome(failedRanks: failed, sameAsRankZero: failure != nil && all[0] != 0 && all[1] == own[1])
    }

    /// Waits until rank 0's process has ended (the store it hosts no longer answers), at most `seconds`;
    /// nothing on rank 0. A rank that leaves the report of a shared error to rank 0 ends after it, so a
    /// launcher names rank 0, which printed the error, as the worker that failed: the quiet rank often
    /// ended first and was named instead (2 of 6 tries on a loaded 2-core machine).
    public func waitForRankZeroToEnd(atMost seconds: Double) {
        guard rank > 0 else { return }
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            do { _ = try group.store.add("finetune/rank-zero-probe", 0) } catch { return }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Throws naming each setting whose value differs between this rank and rank 0 (classes, architecture,
    /// batch size, data): every rank compares a hash of each value, gathered from all ranks.
    public func checkSameSettings(_ settings: [(name: String, value: String)]) throws {
        guard !settings.isEmpty else { return }
        let hashes = try Tensor(settings.map { Int64(bitPattern: Self.fnv1a($0.value)) })
        let all = try collective("settings check") { try group.allGather(hashes) }.toArray(Int64.self)
        var differing: [String] = []
        for (i, setting) in settings.enumerated() {
            let ranks = (1..<worldSize).filter { all[$0 * settings.count + i] != all[i] }
            if !ranks.isEmpty {
                differing.append("\(setting.name) (rank\(ranks.count == 1 ? "" : "s") "
                    + "\(ranks.map(String.init).joined(separator: ", ")) differ\(ranks.count == 1 ? "s" : "") from rank 0)")
            }
        }
        if !differing.isEmpty {
            throw DistributedError.mismatchedSettings("the ranks disagree on " + differing.joined(separator: "; "))
        }
    }

    /// Runs one collective; when it fails (a peer died, was killed or cannot be reached, or the timeout
    /// ran out), finds out which ranks are gone and throws `DistributedError.lostRank` naming them.
    func collective<R>(_ what: String, _ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as TorchError {
            let lost = lostRanks()
            let who = lost.isEmpty ? "a rank" : "rank\(lost.count == 1 ? "" : "s") " + lost.map(String.init).joined(separator: ", ")
            // "Stopped on its own error" too: a rank that refused a bad file under --on-bad-image fail
            // ended cleanly, with its own message, and read here as a crash (probe AF).
            throw DistributedError.lostRank("\(who) stopped answering (ended on its own error, killed, crashed or "
                + "unreachable) during the \(what); rank \(rank) stops: \(error.message)")
        }
    }

    /// The ranks that do not check in through the store within a few seconds of a failed collective
    /// (every survivor checks in); rank 0 alone when the store, which rank 0 hosts, is gone.
    func lostRanks() -> [Int] {
        let store = group.store
        let key = { (r: Int) in "finetune/alive/\(r)" }
        do {
            try store.add(key(rank), 1)
            var alive: Set<Int> = [rank]
            let deadline = Date().addingTimeInterval(Swift.min(group.timeout, 3))
            while alive.count < worldSize && Date() < deadline {
                for r in 0..<worldSize where !alive.contains(r) { if try store.add(key(r), 0) > 0 { alive.insert(r) } }
                if alive.count < worldSize { Thread.sleep(forTimeInterval: 0.1) }
            }
            return (0..<worldSize).filter { !alive.contains($0) }
        } catch {
            return [0]
        }
    }

    /// Tensors grouped, in order, into buckets of one dtype and about `bucketBytes` each.
    func buckets(_ tensors: [Tensor]) -> [[Tensor]] {
        var result: [[Tensor]] = []
        var current: [Tensor] = []
        var bytes = 0
        for t in tensors {
            let size = t.count * t.dtype.byteSize
            if let first = current.first, first.dtype != t.dtype || bytes + size > bucketBytes {
                result.append(current)
                current = []
                bytes = 0
            }
            current.append(t)
            bytes += size
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// 64-bit FNV-1a of the UTF-8 bytes: a stable hash, the same in every process (Swift's `Hasher` is seeded per process).
    static func fnv1a(_ text: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// A fingerprint of a dataset: its size, class names, and every sample's label and file name (not
    /// its folder, which may differ between machines).
    public static func fingerprint(_ dataset: any ImageDataset) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ text: String) { for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 } }
        mix(dataset.classNames.joined(separator: "\u{1}"))
        for sample in dataset.samples {
            mix(String(sample.label))
            if case .file(let path) = sample.source { mix(URL(fileURLWithPath: path).lastPathComponent) }
        }
        return "\(dataset.count) samples, \(String(hash, radix: 16))"
    }
}

/// What the ranks agreed before a training batch (`DataParallel.agreeOnBatch`).
public struct BatchAgreement: Equatable, Sendable {
    /// Each rank's usable images for the batch, in rank order.
    public var images: [Int]
    /// Whether any rank received a stop signal: every rank stops before the batch.
    public var stop: Bool
    /// Whether any rank saw its `GroupPause` asked for: every rank waited for it to end first.
    public var paused: Bool = false

    /// The images of the batch over all ranks.
    public var total: Int { images.reduce(0, +) }

    /// The factor on rank `rank`'s loss that makes the averaged gradient the mean over all the batch's
    /// images, as one process with the whole batch computes it: images[rank] × ranks / total. Nil when
    /// every rank has the same count (the plain average is that mean already) or the rank has none.
    public func lossScale(rank: Int) -> Double? {
        guard let first = images.first, images.contains(where: { $0 != first }), images[rank] > 0, total > 0 else {
            return nil
        }
        return Double(images[rank] * images.count) / Double(total)
    }
}

/// How a step that every rank runs alike went on all of them (`DataParallel.shareOutcome`).
public struct SharedOutcome: Equatable, Sendable {
    /// The ranks on which it failed, in order.
    public var failedRanks: [Int]
    /// Whether this rank failed with the same error text as rank 0: rank 0 reports it for all.
    public var sameAsRankZero: Bool
}

/// Errors of data-parallel training, each naming what went wrong.
public enum DistributedError: Error, CustomStringConvertible, Equatable {
    /// The launch environment is incomplete or contradictory (the variable is named).
    case badEnvironment(String)
    /// Ranks were started with different settings.
    case mismatchedSettings(String)
    /// A rank stopped answering (died, was killed, or lost the network).
    case lostRank(String)
    /// A step every rank takes together failed on another rank (named), so this one stops too.
    case rankFailed(String)

    public var description: String {
        switch self {
        case .badEnvironment(let text), .mismatchedSettings(let text), .lostRank(let text), .rankFailed(let text):
            return text
        }
    }
}
