import Data
import Foundation
import NN
import Optim
import TensorIO
import Torch
@testable import Training
import Vision
import XCTest

/// The frozen-backbone feature cache: training the head on cached features equals training it
/// through the frozen network, and the cache is keyed by everything that determines the features.
final class FeatureCacheTests: XCTestCase {
    /// TRTinyNet with a Keras-style head (BatchNorm1d → Dropout → Dense(6) → Dropout → Dense) and
    /// non-trivial BatchNorm running statistics in the backbone, so inference behaviour matters.
    func makeModel(seed: UInt64 = 5) throws -> TRTinyNet {
        Runtime.manualSeed(seed)
        let model = try TRTinyNet()
        try model.configureHead(HeadSpec(outputs: 3, batchNorm: true, dropout: 0.3, hiddenUnits: [6]))
        try withNoGrad {
            for (key, buffer) in model.namedBuffers() where key.hasPrefix("features.") {
                if key.hasSuffix("running_mean") { try buffer.copy_(Tensor.randn(buffer.shape) * 0.2) }
                if key.hasSuffix("running_var") { try buffer.copy_(Tensor.rand(buffer.shape) + 0.5) }
            }
        }
        return model
    }

    func headOnly(_ recipe: Recipe = .headOnly(trainBatchNorm: false)) -> TrainingConfiguration {
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), seed: 11)
        config.apply(recipe)
        return config
    }

    /// Trains a copy of `model` for `epochs`, with or without cached features; returns the trainer
    /// and whether each epoch used the cache.
    func train(_ state: StateDict, configuration: TrainingConfiguration, train trainSet: LabeledDataset,
               validation: LabeledDataset, transform: any SampleTransform, views: Int, cached: Bool,
               epochs: Int) throws -> (Trainer, [Bool]) {
        let model = try makeModel()
        try model.load(state, strict: true)
        let loader = try DataLoader(trainSet, batchSize: 8, shuffle: true, seed: 7, transform: transform, workers: 0)
        let validationLoader = try TRData.loader(validation, shuffle: false)
        var usedCache: [Bool] = []
        let recorder = TREventRecorder { event, _ in
            if case .epochEnd(let result) = event { usedCache.append(result.usedFeatureCache) }
        }
        let trainer = try Trainer(model: model, configuration: configuration, callbacks: [recorder])
        if cached {
            trainer.featureCache = TrainingFeatures(
                train: try FeatureCache.prepare(model: model, dataset: trainSet, transform: transform,
                                                transformDescription: "test", views: views, seed: loader.seed,
                                                batchSize: 5, workers: 2, directory: nil),
                validation: try FeatureCache.prepare(model: model, dataset: validation, transform: TRData.transform,
                                                     transformDescription: "eval", directory: nil))
        }
        try trainer.fit(train: loader, validation: validationLoader, epochs: epochs)
        return (trainer, usedCache)
    }

    func assertSameRun(_ a: Trainer, _ b: Trainer, atol: Double, file: StaticString = #filePath, line: UInt = #line) {
        let bState = b.model.stateDict()
        for (key, tensor) in a.model.stateDict() where tensor.dtype.isFloatingPoint {
            guard let other = bState[key] else { XCTFail("missing \(key)", file: file, line: line); continue }
            XCTAssertTrue((try? tensor.allClose(other, rtol: 0, atol: atol)) == true, "\(key) differs", file: file, line: line)
        }
        XCTAssertEqual(a.state.history.count, b.state.history.count, file: file, line: line)
        for (ra, rb) in zip(a.state.history, b.state.history) {
            XCTAssertEqual(Set(ra.metrics.keys), Set(rb.metrics.keys), file: file, line: line)
            for (name, value) in ra.metrics {
                XCTAssertEqual(value, rb.metrics[name] ?? .nan, accuracy: atol, "epoch \(ra.epoch) \(name)",
                               file: file, line: line)
            }
        }
    }

    /// Acceptance: same seed and data order → the same head weights and metrics to 1e-5, with a
    /// head containing Dropout and BatchNorm; unaugmented, and with K augmented views for K epochs.
    func testHeadTrainingOnCachedFeaturesEqualsTrainingThroughTheFrozenNetwork() throws {
        let trainSet = try TRData.dataset(count: 30), validation = try TRData.dataset(count: 12, seed: 9)
        let initial = try makeModel().stateDict()
        let flips = TrainingTransform([RandomHorizontalFlip(), RandomVerticalFlip()], output: .rescale(1.0 / 255))
        for (transform, views) in [(TRData.transform, 1), (flips, 3)] as [(any SampleTransform, Int)] {
            let (full, fullFlags) = try train(initial, configuration: headOnly(), train: trainSet, validation: validation,
                                              transform: transform, views: views, cached: false, epochs: 3)
            let (fast, fastFlags) = try train(initial, configuration: headOnly(), train: trainSet, validation: validation,
                                              transform: transform, views: views, cached: true, epochs: 3)
            XCTAssertEqual(fullFlags, [false, false, false])
            XCTAssertEqual(fastFlags, [true, true, true])
            assertSameRun(full, fast, atol: 1e-5)
            // The head did train, and the frozen backbone (weights and BatchNorm statistics) did not move.
            let trained = fast.model.stateDict()
            XCTAssertFalse(try XCTUnwrap(trained["classifier.1.5.weight"]).allClose(XCTUnwrap(initial["classifier.1.5.weight"])))
            XCTAssertNotEqual(try XCTUnwrap(trained["classifier.1.0.num_batches_tracked"]).itemInt(), 0)
            for (key, tensor) in initial where key.hasPrefix("features.") {
                XCTAssertEqual(try TRData.bytes(XCTUnwrap(trained[key])), try TRData.bytes(tensor), key)
            }
        }
    }

    /// Two-phase: phase 1 (head only) on the cache, phase 2 through the whole network, and the
    /// result equals the uncached run.
    func testTwoPhaseUsesTheCacheInPhaseOneOnly() throws {
        let trainSet = try TRData.dataset(count: 24), validation = try TRData.dataset(count: 9, seed: 4)
        let initial = try makeModel().stateDict()
        let phaseTwo = PhaseTwo(trigger: .afterEpochs(2), unfreeze: .all, optimizer: .sgd(learningRate: 1e-2, momentum: 0.9))
        let config = headOnly(.twoPhase(phaseTwo))
        let (full, _) = try train(initial, configuration: config, train: trainSet, validation: validation,
                                  transform: TRData.transform, views: 1, cached: false, epochs: 3)
        let (fast, flags) = try train(initial, configuration: config, train: trainSet, validation: validation,
                                      transform: TRData.transform, views: 1, cached: true, epochs: 3)
        XCTAssertEqual(flags, [true, true, false])
        assertSameRun(full, fast, atol: 1e-4)
    }

    func testModelsWhoseEmbeddingCanChangeAreNotEligible() throws {
        let model = try makeModel()
        XCTAssertNotNil(FeatureCache.ineligibility(of: model))  // nothing frozen: everything trains
        try model.freeze(["features"])
        XCTAssertNil(FeatureCache.ineligibility(of: model))
        try model.unfreeze()
        try model.freeze(["features"], keepBatchNormTraining: true)
        let reason = try XCTUnwrap(FeatureCache.ineligibility(of: model))
        XCTAssertTrue(reason.contains("BatchNorm2d") && reason.contains("--train-bn"), reason)
        XCTAssertThrowsError(try FeatureCache.prepare(model: model, dataset: TRData.dataset(count: 4),
                                                      transform: TRData.transform, transformDescription: "t",
                                                      directory: nil)) {
            XCTAssertTrue("\($0)".contains("cannot be cached"), "\($0)")
        }
        // A zoo model: VGG's classifier.0/.3 Linear layers feed the head and train in head-only mode.
        let vgg = try VGG.vgg11(ModelOptions(numClasses: 2))
        try vgg.freeze(vgg.backboneGroups)
        XCTAssertTrue(try XCTUnwrap(FeatureCache.ineligibility(of: vgg)).contains("classifier.0.weight"))
        let resnet = try ResNet.resnet18(ModelOptions(numClasses: 2))
        try resnet.freeze(resnet.backboneGroups)
        XCTAssertNil(FeatureCache.ineligibility(of: resnet))
    }

    /// Acceptance: the cache is reused when nothing changed, and invalidated when a file, the
    /// backbone's weights or the preprocessing changes.
    func testCacheIsReusedUnlessFilesWeightsOrPreprocessingChange() throws {
        let root = try TRData.temporaryDirectory(self)
        let paths = try TRData.writeClassFolders(TRData.dataset(count: 6), to: "\(root)/data")
        let dataset = try ImageFolderDataset(root: "\(root)/data")
        let model = try makeModel()
        try model.freeze(["features"])
        let cacheDirectory = "\(root)/cache"
        func prepare(_ description: String = "rescale", views: Int = 1) throws -> CachedFeatures {
            try FeatureCache.prepare(model: model, dataset: dataset, transform: TRData.transform,
                                     transformDescription: description, views: views, workers: 0,
                                     directory: cacheDirectory)
        }
        let first = try prepare()
        XCTAssertFalse(first.reused)
        XCTAssertEqual(first.features.shape, [1, 6, 12])
        XCTAssertTrue(FileManager.default.fileExists(atPath: try XCTUnwrap(first.path)))
        let again = try prepare()
        XCTAssertTrue(again.reused)
        XCTAssertEqual(again.key, first.key)
        XCTAssertTrue(try again.features.allClose(first.features, rtol: 0, atol: 0))
        // A file whose features were damaged into NaN is computed again (reused, it made every run
        // "diverge", naming no file), and replaced.
        let file = try SafeTensors.read(try XCTUnwrap(first.path))
        let nan = try file.tensors["features"]! * Double.nan
        try SafeTensors.write(StateDict([("features", nan), ("valid", file.tensors["valid"]!)]), metadata: file.metadata,
                              to: try XCTUnwrap(first.path))
        let recomputed = try prepare()
        XCTAssertFalse(recomputed.reused)
        XCTAssertTrue(try recomputed.features.allClose(first.features, rtol: 0, atol: 0))
        XCTAssertTrue(try prepare().reused)
        // One bit of one feature changed in place (the value still finite: bit rot, another tool's
        // edit): the file no longer matches its digest and is computed again. It was trained on.
        let cachePath = try XCTUnwrap(first.path)
        let range = try XCTUnwrap(try SafeTensors.read(cachePath).mapping?.byteRanges["features"])
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: cachePath))
        try handle.seek(toOffset: UInt64(range.lowerBound + 4 * 7))  // the low mantissa byte of feature 7
        let byte = try XCTUnwrap(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: UInt64(range.lowerBound + 4 * 7))
        try handle.write(contentsOf: [byte ^ 1])
        try handle.close()
        let flipped = try SafeTensors.read(cachePath).tensors["features"]!
        XCTAssertTrue(try flipped.allFinite())
        XCTAssertFalse(try flipped.allClose(first.features, rtol: 0, atol: 0))
        let rehashed = try prepare()
        XCTAssertFalse(rehashed.reused)
        XCTAssertTrue(try rehashed.features.allClose(first.features, rtol: 0, atol: 0))
        XCTAssertTrue(try prepare().reused)
        // Validity flags that finetune does not write (stored as float32, or holding 2) are computed
        // again too (probe U: both were read as "valid").
        for flags in [try file.tensors["valid"]!.to(.float32), try file.tensors["valid"]! * 2] {
            try SafeTensors.write(StateDict([("features", file.tensors["features"]!), ("valid", flags)]),
                                  metadata: file.metadata, to: try XCTUnwrap(first.path))
            XCTAssertFalse(try prepare().reused, "\(flags.dtype)")
        }
        XCTAssertTrue(try prepare().reused)
        // The head is not part of the key: training it between runs keeps the cache valid.
        try withNoGrad { try XCTUnwrap(model.module(at: "classifier.1.5") as? Linear).weight.add_(1) }
        XCTAssertTrue(try prepare().reused)

        // A changed file (new modification time).
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 3600)],
                                              ofItemAtPath: paths[2])
        let touched = try prepare()
        XCTAssertFalse(touched.reused)
        XCTAssertNotEqual(touched.key, first.key)
        XCTAssertTrue(try prepare().reused)
        // Changed backbone weights.
        try withNoGrad { try XCTUnwrap(model.module(at: "features.0.0") as? Conv2d).weight.mul_(1.5) }
        let reweighted = try prepare()
        XCTAssertFalse(reweighted.reused)
        XCTAssertFalse(try reweighted.features.allClose(touched.features))
        // Changed preprocessing, or another number of views.
        XCTAssertFalse(try prepare("rescale 224").reused)
        XCTAssertFalse(try prepare(views: 2).reused)
        XCTAssertTrue(try prepare().reused)
        // The head's pooling is not in the state dict: a max-pooling head trained on the average
        // pooling's cache (probe AJ), and was then evaluated on max-pooled features.
        try model.configureHead(HeadSpec(outputs: 3, pooling: .max, batchNorm: true, dropout: 0.3, hiddenUnits: [6]))
        let maxPooled = try prepare()
        XCTAssertFalse(maxPooled.reused)
        XCTAssertFalse(try maxPooled.features.allClose(reweighted.features))  // the same backbone weights
        // Nor is the layout, which changes the features' last bits.
        try model.useChannelsLast()
        XCTAssertFalse(try prepare().reused)
        let files = try FileManager.default.contentsOfDirectory(atPath: cacheDirectory).filter { $0.hasSuffix(".safetensors") }
        XCTAssertEqual(files.count, 7)
    }
}

extension FeatureCacheTests {
    /// A cache with a folder is streamed to its file batch by batch and read back through mmap (so
    /// memory does not grow with the number of images); its features equal the in-memory ones, rows of
    /// undecodable files stay zero, and releasing the resident pages loses nothing.
    func testStreamedCacheIsMemoryMappedAndEqualsTheInMemoryOne() throws {
        let root = try TRData.temporaryDirectory(self)
        // Image 3 a truncated PNG: found by the scan, fails to decode.
        try TRData.writeClassFolders(TRData.dataset(count: 7), to: "\(root)/data") { $0 == 3 ? $1.prefix(60) : $1 }
        let dataset = try ImageFolderDataset(root: "\(root)/data")
        let model = try makeModel()
        try model.freeze(["features"])
        func prepare(_ directory: String?) throws -> CachedFeatures {
            try FeatureCache.prepare(model: model, dataset: dataset, transform: TRData.transform,
                                     transformDescription: "rescale", views: 2, batchSize: 2, workers: 0,
                                     directory: directory)
        }
        let streamed = try prepare("\(root)/cache")
        let inMemory = try prepare(nil)
        XCTAssertTrue(streamed.isMemoryMapped)
        XCTAssertFalse(inMemory.isMemoryMapped)
        XCTAssertEqual(streamed.features.shape, [2, 7, 12])
        XCTAssertEqual(streamed.valid, inMemory.valid)
        XCTAssertEqual(streamed.valid.filter { !$0 }.count, 1)
        XCTAssertEqual(streamed.skipped.count, 1)
        XCTAssertTrue(try streamed.features.allClose(inMemory.features, rtol: 0, atol: 0))
        let bad = try XCTUnwrap(streamed.valid.firstIndex(of: false))
        XCTAssertEqual(try streamed.features.select(dim: 1, index: bad).abs().sum().item(), 0)
        streamed.releaseResidentPages()
        XCTAssertTrue(try streamed.features.allClose(inMemory.features, rtol: 0, atol: 0))
        let reused = try prepare("\(root)/cache")
        XCTAssertTrue(reused.reused && reused.isMemoryMapped)
        XCTAssertTrue(try reused.features.allClose(inMemory.features, rtol: 0, atol: 0))
    }

    /// A shuffled epoch over a memory-mapped cache keeps the mapping's resident pages within the
    /// release interval, however large the file. Linux maps the cached pages around each faulting row
    /// (fault-around), so when only the bytes read were counted, a 70,000-image cache (276 MB) became
    /// resident between two releases and peak RSS grew with the number of images (bench/scale: 947 MB
    /// at 70,000 against 767 MB at 1,000). This 131 MB file became resident whole that way.
    func testAShuffledEpochOverAMappedCacheKeepsItsResidentPagesBounded() throws {
        #if os(Linux)
        let root = try TRData.temporaryDirectory(self)
        let (n, width) = (25_600, 1_280)  // MobileNetV2's feature width; 4 × the release interval in all
        let path = "\(root)/cache.safetensors"
        let row = (0..<width).map { Float($0) }
        try FeatureCache.writeFile(path, key: "k", description: "", views: 1, samples: n, width: width) { append in
            for _ in 0..<n { try row.withUnsafeBytes(append) }
            try [UInt8](repeating: 1, count: n).withUnsafeBytes(append)
        }
        let cached = try XCTUnwrap(FeatureCache.read(path, key: "k", views: 1, samples: n, width: width))
        XCTAssertTrue(cached.isMemoryMapped)
        let loader = try TRData.loader(try TRData.dataset(count: n), batchSize: 32, shuffle: true)
        let epoch = cached.epoch(0, of: loader)
        let before = try Self.residentFileBytes()
        var most = 0, batches = 0
        while let batch = try epoch.nextBatch() {
            if batches == 0 { XCTAssertEqual(try batch.images.select(dim: 0, index: 0).toArray(Float.self), row) }
            batches += 1
            most = Swift.max(most, try Self.residentFileBytes() - before)
        }
        XCTAssertEqual(batches, n / 32)
        XCTAssertLessThan(most, CachedFeatureEpoch.releaseInterval + (8 << 20),
                          "the mapping's resident pages grew by \(most >> 20) MiB over a \((n * width * 4) >> 20) MiB file")
        #else
        throw XCTSkip("reads RssFile from /proc/self/status, which only Linux has")
        #endif
    }

    /// This process's resident file-backed memory (`RssFile` in /proc/self/status), in bytes.
    static func residentFileBytes() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("RssFile:") }),
              let kibibytes = Int(line.split(separator: " ")[1]) else {
            throw XCTSkip("/proc/self/status has no RssFile line")
        }
        return kibibytes * 1024
    }
}
