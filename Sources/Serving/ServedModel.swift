import Data
import Foundation
import NN
import Torch
import Training

/// One model the server answers for: its current version, its inference loop and whether it has
/// warmed up. A reload loads and warms a new version beside the old one, then swaps them; images
/// already queued finish on the version they were preprocessed for.
final class ServedModel: @unchecked Sendable {
    let name: String
    let source: ServeConfiguration.ModelSource
    let loop: InferenceLoop
    private let lock = NSLock()
    private var current: ModelVersion
    private var isReady = false
    private let warmUpBatchSize: Int
    private let decodeWorkers: Int
    /// Held for a whole reload: reloads of one model run one after another, so each gets the next
    /// version number and the last one asked for is the one served.
    private let reloadLock = NSLock()
    private let precision: Precision
    private let exif: EXIFOrientation?

    /// Loads the model (errors name the run directory or weights); it is not ready until `warmUp()`.
    init(_ model: ServeConfiguration.Model, configuration: ServeConfiguration, metrics: ServingMetrics) throws {
        name = model.name
        source = model.source
        warmUpBatchSize = configuration.maxBatchSize
        decodeWorkers = configuration.decodeWorkers
        precision = configuration.precision
        exif = configuration.exif
        current = ModelVersion(predictor: try Self.load(model.source, precision: precision, exif: exif), number: 1)
        try Self.checkMemory(current.predictor, name: model.name, batchSize: warmUpBatchSize, workers: decodeWorkers)
        let name = model.name
        loop = InferenceLoop(maxBatchSize: configuration.maxBatchSize,
                             maxDelaySeconds: configuration.maxBatchDelayMilliseconds / 1000,
                             maxQueue: configuration.maxQueue,
                             onBatch: { size, depth in metrics.batch(model: name, size: size, queueDepth: depth) },
                             onQueued: { depth in metrics.queue(model: name, depth: depth) },
                             onExpired: { count in metrics.expired(count: count) })
        metrics.queue(model: name, depth: 0)
    }

    /// The warm-up batch is a full batch: one the memory cannot hold crashed the server (the input
    /// pipeline), or asked LibTorch for tens of GB (the forward pass). Checked at load and at reload.
    static func checkMemory(_ predictor: Predictor, name: String, batchSize: Int, workers: Int,
                            memory: Int = Runtime.usableMemory) throws {
        do {
            try MemoryEstimate.checkImagePipeline(preprocessing: predictor.preprocessing, batchSize: batchSize, workers: workers,
                                                  memory: memory)
        } catch {
            // The decode workers' images count as much as the batches here.
            throw ServingError.badConfiguration("--max-batch-size \(batchSize) with --decode-workers \(workers) for model \(name): \(error)")
        }
        do {
            try checkForwardPass(predictor, batchSize: batchSize, memory: memory)
        } catch {
            throw ServingError.badConfiguration("--max-batch-size \(batchSize) for model \(name): \(error)")
        }
    }

    /// Throws when a forward pass of `batchSize` images would need more than half of `memory` (the
    /// memory this process may use): about three times the largest layer output (a layer's input, its output and a
    /// workspace), measured with one image (`ModelSummary`), times the batch.
    static func checkForwardPass(_ predictor: Predictor, batchSize: Int, memory: Int = Runtime.usableMemory) throws {
        let side = predictor.preprocessing.cropSize
        let summary = try ModelSummary(predictor.model, inputShape: [1, 3, side, side])
        let largest = summary.rows.compactMap { $0.outputShape?.reduce(1, *) }.max() ?? 0
        let (bytes, overflow) = (largest * MemoryLayout<Float>.size * 3).multipliedReportingOverflow(by: batchSize)
        guard overflow || bytes > memory / 2 else { return }
        throw ServingError.badConfiguration("a batch of \(batchSize) images at \(side) px needs about "
            + (overflow ? "more than \(MemoryEstimate.format(Int.max))" : MemoryEstimate.format(bytes))
            + " for the forward pass, more than half of \(Runtime.describeUsableMemory(MemoryEstimate.format(memory))); use a smaller batch")
    }

    /// A predictor for `source`, running in `precision` (`.auto` resolved for its model) and decoding
    /// with `exif` (nil: the run's own setting).
    static func load(_ source: ServeConfiguration.ModelSource, precision: Precision,
                     exif: EXIFOrientation?) throws -> Predictor {
        let predictor: Predictor
        switch source {
        case .run(let path, let weights):
            let run = RunDirectory(path)
            predictor = try Predictor(run: run, config: run.readConfig(), weights: weights)
        case .zoo(let architecture, let weights):
            predictor = try Predictor(architecture: architecture, weights: weights)
        }
        predictor.precision = precision.resolved(for: predictor.model)
        predictor.exif = exif ?? predictor.exif
        return predictor
    }

    /// The version new requests use.
    var version: ModelVersion { lock.lock(); defer { lock.unlock() }; return current }
    /// Whether the model has loaded and warmed up.
    var ready: Bool { lock.lock(); defer { lock.unlock() }; return isReady }

    /// Runs a batch of one and a full batch through `version` (first-call allocations, kernels picked).
    func warmUp(_ version: ModelVersion) throws {
        let p = version.predictor.preprocessing
        let side = max(p.resizeSize, p.cropSize)
        let image = try Image(rgb: [UInt8](repeating: 128, count: side * side * 3), width: side, height: side)
        let input = try version.predictor.input(image)
        for n in Set([1, warmUpBatchSize]).sorted() {
            _ = try version.predictor.predict(Array(repeating: input, count: n), k: Array(repeating: 1, count: n))
        }
    }

    /// Warms the loaded version up and starts the inference loop; the model is then ready.
    func start() throws {
        try warmUp(version)
        loop.start(name: name)
        lock.lock()
        isReady = true
        lock.unlock()
    }

    /// Loads `source` again, checks its memory needs as at load (a larger model's warm-up got the
    /// process killed), warms the new version up and swaps it in; one reload at a time. A reload that
    /// fails leaves the current version serving and says why (`ServingError.reloadFailed`).
    func reload() throws -> ModelVersion {
        reloadLock.lock()
        defer { reloadLock.unlock() }
        let old = version
        let fresh: ModelVersion
        do {
            fresh = ModelVersion(predictor: try Self.load(source, precision: precision, exif: exif), number: old.number + 1)
            try Self.checkMemory(fresh.predictor, name: name, batchSize: warmUpBatchSize, workers: decodeWorkers)
            try warmUp(fresh)
        } catch {
            throw ServingError.reloadFailed(model: name, version: old.number, reason: "\(error)")
        }
        lock.lock()
        current = fresh
        lock.unlock()
        return fresh
    }
}
