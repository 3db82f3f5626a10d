import Data
import Foundation
import TestSupport
import Torch
import XCTest

/// The threaded loader: batches, seeded order, determinism across worker counts, the prefetch
/// bound, early stopping, bad files at load time, caching and DCT-scaled decoding.
final class LoaderTests: XCTestCase {
    /// Counts transformed samples (and can slow each one down) to observe the loader from outside.
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        var value: Int {
            lock.lock()
            defer { lock.unlock() }
            return count
        }

        func increment() {
            lock.lock()
            count += 1
            lock.unlock()
        }
    }

    struct CountingTransform: SampleTransform {
        let counter: Counter
        var delay: TimeInterval = 0
        var decodeMinSide: Int { 0 }

        func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
            counter.increment()
            if delay > 0 { Thread.sleep(forTimeInterval: delay) }
            return try image.rgb().toTensor().to(.float32)
        }
    }

    static let preprocessing = Preprocessing(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25], resizeSize: 20,
                                             cropSize: 16)

    /// A folder of `perClass` PNGs in each of three classes, 30×24 with distinct content.
    func imageFolder(perClass: Int = 6) throws -> (root: String, dataset: ImageFolderDataset) {
        let root = try TestData.temporaryDirectory(self)
        for c in 0..<3 {
            for i in 0..<perClass { try TestData.writePNG("\(root)/class\(c)/\(i).png", seed: c * 100 + i, width: 30, height: 24) }
        }
        return (root, try ImageFolderDataset(root: root))
    }

    func collect(_ loader: DataLoader, epoch: Int = 0) throws -> [Batch] {
        let e = loader.epoch(epoch)
        var out: [Batch] = []
        while let b = try e.nextBatch() { out.append(b) }
        XCTAssertEqual(e.liveWorkers, 0)
        return out
    }

    func testBatchesShapesLabelsAndDropLast() throws {
        let dataset = TestData.memoryDataset(counts: [5, 4, 3], side: 4)
        let transform = TrainingTransform([], output: .rescale(1))
        for workers in [0, 2] {
            let loader = try DataLoader(dataset, batchSize: 5, transform: transform, workers: workers)
            XCTAssertEqual(loader.batchesPerEpoch, 3)
            let batches = try collect(loader)
            XCTAssertEqual(batches.map(\.indices), [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]])
            XCTAssertEqual(batches.map(\.number), [0, 1, 2])
            let first = batches[0]
            XCTAssertEqual(first.images.shape, [5, 3, 4, 4])
            XCTAssertEqual(first.images.dtype, .float32)
            XCTAssertEqual(first.labels.dtype, .int64)
            XCTAssertEqual(try batches[1].labels.toArray(Int64.self), [1, 1, 1, 1, 2])
            // Pixel values are the sample ids (see memoryDataset).
            XCTAssertEqual(try batches[2].images.select(dim: 0, index: 1).floats(), Array(repeating: 11, count: 48))
            let dropped = try DataLoader(dataset, batchSize: 5, transform: transform, workers: workers, dropLast: true)
            XCTAssertEqual(dropped.batchesPerEpoch, 2)
            XCTAssertEqual(try collect(dropped).map(\.count), [5, 5])
        }
        // The Sequence interface.
        let loader = try DataLoader(dataset, batchSize: 4, transform: transform)
        XCTAssertEqual(loader.epoch(0).map(\.count), [4, 4, 4])
        XCTAssertThrowsError(try DataLoader(dataset, batchSize: 0, transform: transform))
    }

    func testShuffleIsSeededPerEpoch() throws {
        let dataset = TestData.memoryDataset(counts: [40, 40])
        let transform = TrainingTransform([], output: .rescale(1))
        let a = try DataLoader(dataset, batchSize: 8, shuffle: true, seed: 3, transform: transform)
        let b = try DataLoader(dataset, batchSize: 8, shuffle: true, seed: 3, transform: transform)
        XCTAssertEqual(a.order(epoch: 0), b.order(epoch: 0))
        XCTAssertEqual(a.order(epoch: 5), b.order(epoch: 5))
        XCTAssertNotEqual(a.order(epoch: 0), a.order(epoch: 1))
        XCTAssertNotEqual(a.order(epoch: 0), Array(0..<80))
        XCTAssertEqual(a.order(epoch: 0).sorted(), Array(0..<80))
        let c = try DataLoader(dataset, batchSize: 8, shuffle: true, seed: 4, transform: transform)
        XCTAssertNotEqual(a.order(epoch: 0), c.order(epoch: 0))
        XCTAssertEqual(try collect(a, epoch: 2).flatMap(\.indices), a.order(epoch: 2))
        XCTAssertEqual(try DataLoader(dataset, batchSize: 8, transform: transform).order(epoch: 3), Array(0..<80))
    }

    func testAugmentedOutputIsIdenticalForAnyWorkerCount() throws {
        let (_, dataset) = try imageFolder(perClass: 5)
        let transform = TrainingTransform.standard(Self.preprocessing,
                                                   colorJitter: ColorJitter(brightness: 0.3, contrast: 0.3, hue: 0.05))
        func run(workers: Int, prefetch: Int, seed: UInt64 = 9, epoch: Int = 1) throws -> ([Int], [Float], [Int64]) {
            let loader = try DataLoader(dataset, batchSize: 4, shuffle: true, seed: seed, transform: transform,
                                        workers: workers, prefetch: prefetch)
            let batches = try collect(loader, epoch: epoch)
            return (batches.flatMap(\.indices), try batches.flatMap { try $0.images.floats() },
                    try batches.flatMap { try $0.labels.toArray(Int64.self) })
        }
        let reference = try run(workers: 1, prefetch: 1)
        XCTAssertEqual(reference.0.count, 15)
        XCTAssertEqual(reference.1.count, 15 * 3 * 16 * 16)
        for (workers, prefetch) in [(3, 2), (3, 5), (0, 1), (1, 1)] {
            let other = try run(workers: workers, prefetch: prefetch)
            XCTAssertEqual(other.0, reference.0, "indices, workers \(workers)")
            XCTAssertTrue(other.1 == reference.1, "images differ with workers \(workers), prefetch \(prefetch)")
            XCTAssertEqual(other.2, reference.2)
        }
        XCTAssertFalse(try run(workers: 3, prefetch: 2, seed: 10).1 == reference.1, "another seed, other pixels")
        XCTAssertFalse(try run(workers: 3, prefetch: 2, epoch: 2).1 == reference.1, "another epoch, other pixels")
    }

    func testStartingAtABatchSkipsDecodingAndMatchesTheFullEpoch() throws {
        let (_, dataset) = try imageFolder(perClass: 5)
        let transform = TrainingTransform.standard(Self.preprocessing)
        for workers in [0, 2] {
            let loader = try DataLoader(dataset, batchSize: 4, shuffle: true, seed: 3, transform: transform,
                                        workers: workers, prefetch: 2)
            let full = try collect(loader, epoch: 2)
            let decodedBefore = loader.imagesDecoded
            let run = loader.epoch(2, startingAtBatch: 2)
            var tail: [Batch] = []
            while let b = try run.nextBatch() { tail.append(b) }
            XCTAssertEqual(tail.map(\.number), [2, 3])
            XCTAssertEqual(loader.imagesDecoded - decodedBefore, 15 - 8, "batches 0 and 1 are not decoded")
            for (a, b) in zip(full.suffix(2), tail) {
                XCTAssertEqual(a.indices, b.indices)
                XCTAssertTrue(try a.images.floats() == b.images.floats(), "workers \(workers)")
            }
            var past: [Batch] = []
            let beyond = loader.epoch(2, startingAtBatch: 99)
            while let b = try beyond.nextBatch() { past.append(b) }
            XCTAssertTrue(past.isEmpty)
        }
    }

    func testPrefetchQueueStaysWithinItsBound() throws {
        let dataset = TestData.memoryDataset(counts: [60, 60], side: 2)
        let counter = Counter()
        let loader = try DataLoader(dataset, batchSize: 4, transform: CountingTransform(counter: counter), workers: 3,
                                    prefetch: 2)
        let epoch = loader.epoch(0)
        var consumed = 0
        while let batch = try epoch.nextBatch() {
            consumed += 1
            XCTAssertEqual(batch.count, 4)
            Thread.sleep(forTimeInterval: 0.004)   // a slow consumer: workers run ahead until the bound
            // Samples started so far: the consumed batches plus at most `prefetch` batches in flight.
            XCTAssertLessThanOrEqual(counter.value, (consumed + 2) * 4)
            XCTAssertLessThanOrEqual(epoch.peakBatchesInMemory, 2)
        }
        XCTAssertEqual(consumed, 30)
        XCTAssertEqual(counter.value, 120)
        XCTAssertEqual(epoch.peakBatchesInMemory, 2)   // the workers did fill the queue
        XCTAssertEqual(loader.peakBatchesInMemory, 2)
    }

    func testStoppingEarlyJoinsTheWorkers() throws {
        let dataset = TestData.memoryDataset(counts: [500, 500], side: 2)
        let counter = Counter()
        let loader = try DataLoader(dataset, batchSize: 8, transform: CountingTransform(counter: counter, delay: 0.001),
                                    workers: 3, prefetch: 3)
        let start = Date()
        func takeOne(_ epoch: DataLoaderEpoch) {
            for batch in epoch {
                XCTAssertEqual(batch.count, 8)
                break
            }
        }
        var epoch: DataLoaderEpoch? = loader.epoch(0)
        takeOne(epoch!)
        XCTAssertGreaterThan(epoch!.liveWorkers, 0)
        weak let weakEpoch = epoch
        epoch = nil                                   // dropping the epoch stops and joins its threads
        XCTAssertNil(weakEpoch)
        let stoppedAt = counter.value
        Thread.sleep(forTimeInterval: 0.05)
        XCTAssertEqual(counter.value, stoppedAt, "no sample is processed after the epoch is gone")
        XCTAssertLessThanOrEqual(stoppedAt, 8 * 4 + 3)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)

        // cancel() on a running epoch, and on one never started.
        let running = loader.epoch(1)
        _ = try running.nextBatch()
        running.cancel()
        XCTAssertEqual(running.liveWorkers, 0)
        XCTAssertNil(try running.nextBatch())
        loader.epoch(2).cancel()
    }

    func testBadFilesAtLoadTimeAreSkippedOrFailInStrictMode() throws {
        let (root, _) = try imageFolder(perClass: 3)
        let truncated = root + "/class1/1b_truncated.jpg"
        try FileManager.default.copyItem(atPath: Fixtures.path("images/truncated.jpg"), toPath: truncated)
        let dataset = try ImageFolderDataset(root: root)
        XCTAssertEqual(dataset.count, 10)   // the truncated JPEG passes the scan's header check
        let vanished = root + "/class2/2.png"
        try FileManager.default.removeItem(atPath: vanished)   // deleted after the scan
        let transform = EvaluationTransform(Self.preprocessing)
        for workers in [0, 2] {
            let loader = try DataLoader(dataset, batchSize: 4, transform: transform, workers: workers)
            let batches = try collect(loader)
            XCTAssertEqual(batches.map(\.count), [4, 3, 1], "a batch with a bad file is smaller, not refilled")
            XCTAssertEqual(Set(loader.skippedFiles.paths), [truncated, vanished])
            XCTAssertFalse(batches.flatMap(\.indices).contains { dataset.samples[$0].source.path == truncated })
            let warning = try XCTUnwrap(loader.skippedFiles.warning())
            XCTAssertTrue(warning.contains("skipped 2 unusable files") && warning.contains(truncated), warning)

            let strict = try DataLoader(dataset, batchSize: 4, transform: transform, workers: workers, strict: true)
            let epoch = strict.epoch(0)
            XCTAssertNotNil(try epoch.nextBatch())
            XCTAssertThrowsError(try epoch.nextBatch()) { error in
                XCTAssertTrue("\(error)".contains(truncated), "\(error)")
            }
            XCTAssertEqual(epoch.liveWorkers, 0)
            // The Sequence interface records the error.
            let seq = strict.epoch(0)
            XCTAssertEqual(Array(seq).count, 1)
            XCTAssertNotNil(seq.error)
        }
    }

    func testTransformErrorsAlwaysThrow() throws {
        let (_, dataset) = try imageFolder(perClass: 2)
        // No crop: the 30×24 images and a 12×9 one would not stack.
        let mixed = LabeledDataset(samples: dataset.samples + [LabeledSample(source: .memory(
            try ImageStore(bytes: Array(repeating: 1, count: 27), count: 1, width: 3, height: 3, channels: 3), index: 0),
                                                                                              label: 0)],
                                   classNames: dataset.classNames)
        let loader = try DataLoader(mixed, batchSize: 7, transform: TrainingTransform([], output: .rescale(1)), workers: 2)
        XCTAssertThrowsError(try collect(loader)) { error in
            XCTAssertTrue("\(error)".contains("fixed size"), "\(error)")
        }
    }

    func testCacheDecodedKeepsImagesAcrossEpochs() throws {
        let (root, dataset) = try imageFolder(perClass: 2)
        let transform = EvaluationTransform(Self.preprocessing)
        let cached = try DataLoader(dataset, batchSize: 4, transform: transform, workers: 2, cacheDecoded: true)
        let uncached = try DataLoader(dataset, batchSize: 4, transform: transform, workers: 2)
        let first = try collect(cached, epoch: 0)
        _ = try collect(uncached, epoch: 0)
        XCTAssertEqual(cached.imagesDecoded, 6)
        try FileManager.default.removeItem(atPath: root)
        let second = try collect(cached, epoch: 1)
        XCTAssertEqual(cached.imagesDecoded, 6, "no file read in the second epoch")
        XCTAssertTrue(try first.flatMap { try $0.images.floats() } == second.flatMap { try $0.images.floats() })
        XCTAssertEqual(try collect(uncached, epoch: 1).count, 0)   // every file is gone
        XCTAssertEqual(uncached.skippedFiles.count, 6)
    }

    func testBalancedSamplingAndLargeJPEGDecodeScaling() throws {
        let dataset = TestData.memoryDataset(counts: [90, 10], side: 2)
        let loader = try DataLoader(dataset, batchSize: 10, seed: 5, transform: TrainingTransform([], output: .rescale(1)),
                                    balanced: true)
        let labels = try collect(loader).flatMap { try $0.labels.toArray(Int64.self) }
        XCTAssertEqual(labels.count, 100)
        XCTAssertEqual(Double(labels.filter { $0 == 1 }.count), 50, accuracy: 15)
        XCTAssertEqual(loader.order(epoch: 0), BalancedSampler(dataset, seed: 5).indices(epoch: 0))

        // The transform's decodeMinSide reaches the JPEG decoder (big.jpg is 256×192).
        let big = Fixtures.path("images/big.jpg")
        let jpegs = LabeledDataset(samples: [LabeledSample(source: .file(big), label: 0),
                                             LabeledSample(source: .file(big), label: 1)], classNames: ["a", "b"])
        let preprocessing = Preprocessing(mean: [0, 0, 0], std: [1, 1, 1], resizeSize: 48, cropSize: 48)
        let transform = EvaluationTransform(preprocessing, decodeMinSide: 48)
        var r = SampleRandom(seed: 0)
        let scaled = try transform.tensor(from: Image(contentsOfFile: big, minSide: 48), random: &r)
        let full = try transform.tensor(from: Image(contentsOfFile: big), random: &r)
        XCTAssertEqual(try Image(contentsOfFile: big, minSide: 48).height, 48)   // decoded at 1/4
        let viaLoader = try collect(try DataLoader(jpegs, batchSize: 2, transform: transform))[0].images
        assertClose(try viaLoader.select(dim: 0, index: 0), scaled, atol: 0)
        let unscaled = try collect(try DataLoader(jpegs, batchSize: 2, transform: transform, dctScaling: false))[0].images
        assertClose(try unscaled.select(dim: 0, index: 0), full, atol: 0)
        // By default evaluation decodes at full size, as predict and serve do.
        let byDefault = try collect(try DataLoader(jpegs, batchSize: 2, transform: EvaluationTransform(preprocessing)))[0].images
        assertClose(try byDefault.select(dim: 0, index: 0), full, atol: 0)
    }

    /// Not a benchmark (those come later): prints images/s at 224 px so regressions are visible.
    func testThroughputIsReported() throws {
        let root = try TestData.temporaryDirectory(self)
        for c in 0..<2 {
            for i in 0..<24 { try TestData.writePNG("\(root)/c\(c)/\(i).png", seed: c * 50 + i, width: 320, height: 240) }
        }
        let dataset = try ImageFolderDataset(root: root)
        let transforms: [(String, any SampleTransform)] = [
            ("evaluation", EvaluationTransform(.imagenet)),
            ("standard training", TrainingTransform.standard(.imagenet, colorJitter: ColorJitter(brightness: 0.2, saturation: 0.2))),
            ("Keras preset", KerasImageDataGenerator(rescale: 1.0 / 255, shearRange: 0.2, zoomRange: 0.2,
                                                     horizontalFlip: true, targetSize: (224, 224))),
        ]
        for (name, transform) in transforms {
            let loader = try DataLoader(dataset, batchSize: 16, shuffle: true, transform: transform, workers: 2, prefetch: 2)
            let start = Date()
            let batches = try collect(loader)
            let seconds = Date().timeIntervalSince(start)
            XCTAssertEqual(batches.map { $0.images.shape }, Array(repeating: [16, 3, 224, 224], count: 3))
            print("loader, \(name): \(Int(Double(dataset.count) / seconds)) images/s (320×240 PNG → 224, 2 workers)")
        }
    }

    func testKerasPresetInTheLoader() throws {
        let (_, dataset) = try imageFolder(perClass: 2)
        let keras = KerasImageDataGenerator(rescale: 1.0 / 255, shearRange: 0.2, zoomRange: 0.2, horizontalFlip: true,
                                            targetSize: (20, 18))
        let a = try collect(try DataLoader(dataset, batchSize: 6, shuffle: true, seed: 1, transform: keras, workers: 3))
        let b = try collect(try DataLoader(dataset, batchSize: 6, shuffle: true, seed: 1, transform: keras, workers: 0))
        XCTAssertEqual(a[0].images.shape, [6, 3, 20, 18])
        XCTAssertTrue(try a[0].images.floats() == b[0].images.floats())
        let values = try a[0].images.floats()
        XCTAssertTrue(values.allSatisfy { $0 >= 0 && $0 <= 1 })
    }
}
