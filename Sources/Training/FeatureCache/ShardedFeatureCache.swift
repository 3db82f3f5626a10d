import Data
import Foundation
import NN
import TensorIO
import Torch

/// What one feature extraction reads and computes with (the arguments of `FeatureCache.prepare`).
struct ExtractionInputs {
    /// The model whose frozen `embedding` computes the features.
    var model: any ClassifierModel
    /// The samples, in dataset order (the cache's rows).
    var dataset: any ImageDataset
    /// The training or evaluation loader's transform.
    var transform: any SampleTransform
    /// Augmented views per sample (1 unaugmented).
    var views: Int
    /// The loader's seed, which draws the augmented views.
    var seed: UInt64
    /// Whether the backbone runs under bf16 autocast.
    var autocastBF16: Bool
    /// Images per backbone batch, and decoding threads.
    var batchSize: Int, workers: Int
    /// Whether an undecodable image is an error (else it is skipped).
    var strict: Bool
}

extension FeatureCache {
    /// `prepare` for the ranks of a data-parallel run, which all call it with the same inputs. When every
    /// rank can read the cache file, each reuses it. Otherwise each rank runs the backbone over its own
    /// shard of the samples (`DataParallel.evaluationShard`: every sample on exactly one rank, by its
    /// dataset index, so augmented views are those of one process), the shards are gathered into the
    /// whole cache on every rank, and rank 0 alone writes the file. Each rank then reads the file back
    /// memory-mapped when it can see it (one folder shared by the ranks), else keeps the features in
    /// memory. A failure on any rank stops every rank, naming it. Each rank's skipped files are the
    /// ones in its own shard. Without `writes` (a cache folder this process may not write in), a file
    /// at `path` is still read, but the features computed are kept in memory.
    static func prepareSharded(_ inputs: ExtractionInputs, key: String, description: String, path: String?, writes: Bool,
                               distributed: DataParallel) throws -> CachedFeatures {
        let n = inputs.dataset.count, width = inputs.model.embeddingSize, views = inputs.views
        let existing = try distributed.allSucceed("reading the feature cache") {
            try path.flatMap { try reuse($0, key: key, dataset: inputs.dataset, views: views, width: width,
                                         strict: inputs.strict) }
        }
        let readers = try distributed.sum([existing == nil ? 0 : 1])[0]
        if let existing, Int(readers) == distributed.worldSize {
            // Every rank read the whole cache, with every file it marks unloadable: rank 0 reports them
            // (each rank reported them all, probe AE).
            guard distributed.rank > 0 else { return existing }
            return CachedFeatures(features: existing.features, valid: existing.valid, path: existing.path, key: key,
                                  reused: true, skipped: SkippedFiles(), mapping: existing.mapping)
        }

        let shard = distributed.evaluationShard
        let (indices, rows, skipped) = try distributed.allSucceed("computing this rank's share of the feature cache") {
            () throws -> ([Int64], [Float], SkippedFiles) in
            _ = try checkMemory(views: views, samples: n, width: width)
            if distributed.rank == 0, let path, writes {
                try prepareDirectory(URL(fileURLWithPath: path).deletingLastPathComponent().path, views: views,
                                     samples: n, width: width)
            }
            var indices: [Int64] = [], rows: [Float] = []
            let skipped = try forEachBatch(model: inputs.model, dataset: inputs.dataset, transform: inputs.transform,
                                           views: views, seed: inputs.seed, autocastBF16: inputs.autocastBF16,
                                           batchSize: inputs.batchSize, workers: inputs.workers, strict: inputs.strict,
                                           shard: shard) { view, batch, features in
                indices += batch.map { Int64(view * n + $0) }
                rows += features
            }
            return (indices, rows, skipped)
        }
        // Every rank's rows, placed by (view, sample): the whole cache, the same on every rank.
        let allIndices = try distributed.gather(indices)
        let allRows = try distributed.gather(rows)
        var values = [Float](repeating: 0, count: views * n * width)
        var valid = [Bool](repeating: false, count: n)
        for (k, flat) in allIndices.enumerated() {
            let row = Int(flat)
            values.replaceSubrange(row * width..<(row + 1) * width, with: allRows[k * width..<(k + 1) * width])
            valid[row % n] = true
        }
        guard let path, writes else {
            return CachedFeatures(features: try Tensor(values, shape: [views, n, width]), valid: valid, path: nil,
                                  key: key, reused: false, skipped: skipped)
        }
        try distributed.allSucceed("writing the feature cache") {
            guard distributed.rank == 0 else { return }
            try writeFile(path, key: key, description: description, views: views, samples: n, width: width) { append in
                try values.withUnsafeBytes(append)
                try valid.map { UInt8($0 ? 1 : 0) }.withUnsafeBytes(append)
            }
        }
        if let cached = try? read(path, key: key, views: views, samples: n, width: width) {
            return CachedFeatures(features: cached.features, valid: valid, path: path, key: key, reused: false,
                                  skipped: skipped, mapping: cached.mapping)
        }
        return CachedFeatures(features: try Tensor(values, shape: [views, n, width]), valid: valid, path: nil, key: key,
                              reused: false, skipped: skipped)
    }
}
