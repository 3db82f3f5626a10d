import Data
import Foundation
import NN
import Optim
import Torch
import Training
import Vision
import XCTest

// MARK: - Shared fixtures for the trainer tests (TrainerTests, ResumeTests, RecipeTests, CallbackTests)

/// A tiny classifier: three conv-bn-relu blocks ("features.0" … "features.2"), global average
/// pooling, and a dropout + linear head ("classifier"). About 2k parameters; a step on a batch of
/// eight 8×8 images takes well under a millisecond of arithmetic.
final class TRTinyNet: ImageClassifier {
    let features: Sequential
    let classifier: Sequential

    init(classes: Int = 3, dropout: Double = 0.2) throws {
        func block(_ input: Int, _ output: Int, stride: Int) throws -> Sequential {
            Sequential(try Conv2d(input, output, kernelSize: (3, 3), stride: (stride, stride), padding: 1),
                       try BatchNorm2d(output), ReLU())
        }
        features = Sequential(try block(3, 8, stride: 1), try block(8, 8, stride: 2), try block(8, 12, stride: 2))
        classifier = Sequential(try Dropout(p: dropout), try Linear(12, classes))
        super.init(architecture: "tiny", options: ModelOptions(numClasses: classes), headPath: "classifier.1",
                   embeddingSize: 12, featureChannels: 12)
    }

    override var namedChildren: [(String, Module)] { [("features", features), ("classifier", classifier)] }
    override var layerGroups: [String] { ["features.0", "features.1", "features.2", "classifier"] }
    override var classifierScopes: [String] { ["classifier"] }
    override func forwardFeatures(_ x: Tensor) throws -> Tensor { try features(x) }
    override func classify(_ embedding: Tensor) throws -> Tensor { try classifier(embedding) }
}

enum TRData {
    /// `count` 8×8 RGB images; class `c`'s images are bright in channel `c % 3` (an easy task),
    /// with deterministic noise.
    static func dataset(count: Int = 48, classes: Int = 3, seed: UInt64 = 1) throws -> LabeledDataset {
        var state = seed &* 6364136223846793005 &+ 1442695040888963407
        func noise() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int((state >> 33) % 81) - 40
        }
        var bytes: [UInt8] = []
        var samples: [LabeledSample] = []
        let store: ImageStore
        var labels: [Int] = []
        for i in 0..<count {
            let label = i % classes
            labels.append(label)
            for _ in 0..<64 {
                for channel in 0..<3 {
                    let base = channel == label % 3 ? 185 : 70
                    bytes.append(UInt8(Swift.max(0, Swift.min(255, base + noise()))))
                }
            }
        }
        store = try ImageStore(bytes: bytes, count: count, width: 8, height: 8, channels: 3)
        for (i, label) in labels.enumerated() { samples.append(LabeledSample(source: .memory(store, index: i), label: label)) }
        return LabeledDataset(samples: samples, classNames: (0..<classes).map { "class\($0)" })
    }

    static let transform = TrainingTransform([], output: .rescale(1.0 / 255))

    static func loader(_ dataset: LabeledDataset, batchSize: Int = 8, shuffle: Bool = true, seed: UInt64 = 7,
                       workers: Int = 0) throws -> DataLoader {
        try DataLoader(dataset, batchSize: batchSize, shuffle: shuffle, seed: seed, transform: transform,
                       workers: workers, prefetch: 2)
    }

    static func temporaryDirectory(_ test: XCTestCase) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    /// Writes `dataset`'s images as PNGs in class folders, `<root>/class<label>/<index>.png`, each
    /// file's bytes passed through `edit` (index, PNG) first: a truncated PNG is found by the scan and
    /// fails to decode. Returns the files' paths in sample order.
    @discardableResult
    static func writeClassFolders(_ dataset: LabeledDataset, to root: String,
                                  edit: (Int, Foundation.Data) -> Foundation.Data = { $1 }) throws -> [String] {
        var paths: [String] = []
        for (i, sample) in dataset.samples.enumerated() {
            let folder = "\(root)/class\(sample.label)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let path = "\(folder)/\(i).png"
            try edit(i, try sample.source.load().pngData()).write(to: URL(fileURLWithPath: path))
            paths.append(path)
        }
        return paths
    }

    static func bytes(_ tensor: Tensor) throws -> [UInt8] {
        let t = try tensor.contiguous()
        var out = [UInt8](repeating: 0, count: t.count * t.dtype.byteSize)
        try out.withUnsafeMutableBytes { try t.copyBytes(to: $0) }
        return out
    }

    /// Deep copies (bytes) of a state dict's tensors.
    static func snapshot(_ dict: StateDict) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for (key, tensor) in dict { out[key] = try bytes(tensor) }
        return out
    }

    /// Same keys and bit-identical tensors (`allClose(rtol: 0, atol: 0)` for floats, bytes for all).
    static func assertIdentical(_ a: StateDict, _ b: StateDict, _ what: String, file: StaticString = #filePath,
                                line: UInt = #line) throws {
        XCTAssertEqual(a.keys, b.keys, "\(what): keys", file: file, line: line)
        for (key, ta) in a {
            guard let tb = b[key] else { continue }
            XCTAssertEqual(ta.shape, tb.shape, "\(what): \(key) shape", file: file, line: line)
            if ta.dtype.isFloatingPoint {
                XCTAssertTrue(try ta.allClose(tb, rtol: 0, atol: 0), "\(what): \(key) differs", file: file, line: line)
            }
            XCTAssertEqual(try bytes(ta), try bytes(tb), "\(what): \(key) bytes differ", file: file, line: line)
        }
    }
}

/// Records every event's name (and runs an optional action per event).
final class TREventRecorder: TrainingCallback {
    var names: [String] = []
    var action: ((TrainingEvent, Trainer) throws -> Void)?

    init(action: ((TrainingEvent, Trainer) throws -> Void)? = nil) { self.action = action }

    func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        names.append(event.name)
        try action?(event, trainer)
    }
}

/// Stops training (clean stop) at a given global step or after a given epoch.
final class TRStopper: TrainingCallback {
    let step: Int?
    let afterEpoch: Int?
    init(step: Int? = nil, afterEpoch: Int? = nil) {
        self.step = step
        self.afterEpoch = afterEpoch
    }

    func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .batchEnd(let r) where r.step == step: throw TrainingControl.stopBecause("test stop at step \(r.step)")
        case .epochEnd(let r) where r.epoch == afterEpoch: throw TrainingControl.stop
        default: break
        }
    }
}

// MARK: - Tests

/// The training step and loop: losses, label smoothing, class weights, clipping, bf16 autocast,
/// binary mode, evaluation and the Codable state.
final class TrainerTests: XCTestCase {
    func losses(_ result: FitResult) -> [Double] { result.history.compactMap { $0.metrics["loss"] } }

    func assertDecreases(_ result: FitResult, file: StaticString = #filePath, line: UInt = #line) {
        let l = losses(result)
        XCTAssertTrue(l.allSatisfy(\.isFinite), "losses \(l)", file: file, line: line)
        XCTAssertLessThan(l.last ?? .nan, l.first ?? .nan, "loss should decrease: \(l)", file: file, line: line)
    }

    func testFitTrainsValidatesAndLossDecreases() throws {
        Runtime.manualSeed(1)
        let model = try TRTinyNet()
        let data = try TRData.dataset()
        let trainer = try Trainer(model: model, configuration: TrainingConfiguration(optimizer: .adam(learningRate: 2e-2)))
        let result = try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                     epochs: 4)
        XCTAssertEqual(result.status, .completed)
        XCTAssertEqual(result.epochs, 4)
        XCTAssertEqual(result.globalStep, 24)
        XCTAssertEqual(trainer.state.globalStep, 24)
        assertDecreases(result)
        let last = try XCTUnwrap(result.history.last?.metrics)
        for key in ["loss", "accuracy", "lr", "val_loss", "val_accuracy", "val_macro_auc", "val_macro_f1"] {
            XCTAssertNotNil(last[key], key)
        }
        XCTAssertNil(last["val_top5_accuracy"], "top-5 only for more than 5 classes")
        XCTAssertEqual(result.best?.metric, "val_loss")
        XCTAssertGreaterThan(last["val_accuracy"] ?? 0, 0.6)
        XCTAssertTrue(model.isTraining, "evaluate restores the training mode")
    }

    func testTopFiveReportedForMoreThanFiveClasses() throws {
        Runtime.manualSeed(2)
        let model = try TRTinyNet(classes: 6)
        let data = try TRData.dataset(count: 24, classes: 6)
        let trainer = try Trainer(model: model)
        let report = try trainer.evaluate(TRData.loader(data, shuffle: false))
        XCTAssertEqual(report.topK, 5)
        XCTAssertNotNil(report.topKAccuracy)
        XCTAssertEqual(report.sampleCount, 24)
        XCTAssertNotNil(report.loss)
    }

    func testLabelSmoothingAndClassWeights() throws {
        Runtime.manualSeed(3)
        let data = try TRData.dataset()
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 2e-2), labelSmoothing: 0.1,
                                           classWeights: [1, 2, 0.5])
        let result = try Trainer(model: TRTinyNet(), configuration: config).fit(train: TRData.loader(data), epochs: 3)
        assertDecreases(result)

        var bad = config
        bad.classWeights = [1, 2]
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(), configuration: bad).fit(train: TRData.loader(data), epochs: 1))
        bad = config
        bad.labelSmoothing = 1
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(), configuration: bad))
    }

    /// A class weighted 0 is ignored: a batch of only such images has a loss of 0 and no gradient.
    /// PyTorch's weighted mean is 0/0 = NaN there, which ended the run as diverged.
    func testABatchOfOnlyZeroWeightClassesIsNotADivergence() throws {
        Runtime.manualSeed(3)
        let data = try TRData.dataset()
        let ordered = LabeledDataset(samples: data.samples.sorted { $0.label < $1.label }, classNames: data.classNames)
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 2e-2), labelSmoothing: 0.1,
                                           classWeights: [0, 1, 1])
        var losses: [Double] = []
        let recorder = TREventRecorder { event, _ in if case .batchEnd(let r) = event { losses.append(r.loss) } }
        let trainer = try Trainer(model: TRTinyNet(), configuration: config, callbacks: [recorder])
        let result = try trainer.fit(train: TRData.loader(ordered, shuffle: false),
                                     validation: TRData.loader(ordered, shuffle: false), epochs: 2)
        XCTAssertEqual(result.status.description, "completed")
        XCTAssertEqual(losses.count, 12)
        for (i, loss) in losses.enumerated() {
            // Each epoch's first two batches of 8 are all class 0.
            if i % 6 < 2 { XCTAssertEqual(loss, 0, "batch \(i)") } else { XCTAssertTrue(loss > 0 && loss.isFinite, "batch \(i): \(loss)") }
        }
        XCTAssertTrue(result.history.last?.metrics["val_loss"]?.isFinite ?? false)

        let logits = try Tensor([Float(1), 2, 3, 4, 5, 6], shape: [2, 3]).setRequiresGrad()
        let loss = try trainer.computeLoss(logits: logits, labels: Tensor([Int64(0), 0]))
        XCTAssertEqual(try loss.item(), 0)
        try loss.backward()
        XCTAssertEqual(try XCTUnwrap(logits.grad).floats(), [Float](repeating: 0, count: 6))

        var bad = config
        bad.classWeights = [0, 0, 0]
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(), configuration: bad))
        bad.classWeights = [1, 1e39, 1]
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(), configuration: bad), "1e39 is infinite in float32")
    }

    /// A checkpoint taken mid-epoch by 2 data-parallel processes, resumed by one, is refused naming the
    /// process counts (it said "different training data or batching", which hid the cause).
    func testAMidEpochCheckpointOfTwoProcessesResumedByOneNamesTheProcessCounts() throws {
        let directory = try TRData.temporaryDirectory(self)
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        configuration.checkpointDirectory = directory
        let signal = SignalStop(signals: [])
        let trainer = try Trainer(model: TRTinyNet(), configuration: configuration, callbacks: [
            TREventRecorder { event, _ in if case .batchEnd(let r) = event, r.batch == 1 { signal.trigger() } },
        ])
        trainer.signalStop = signal
        XCTAssertEqual(try trainer.fit(train: TRData.loader(TRData.dataset()), epochs: 2).status.description.prefix(11),
                       "interrupted")
        // As two ranks would have written it: their shard has half the batches.
        let path = directory + "/last/trainer.json"
        var manifest = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: path)))
            as? [String: Any])
        var state = try XCTUnwrap(manifest["state"] as? [String: Any])
        var loader = try XCTUnwrap(state["loader"] as? [String: Any])
        loader["batchesPerEpoch"] = 3
        state["loader"] = loader
        state["worldSize"] = 2
        manifest["state"] = state
        try JSONSerialization.data(withJSONObject: manifest).write(to: URL(fileURLWithPath: path))
        let resumed = try Trainer.resume(from: directory + "/last", model: TRTinyNet())
        XCTAssertThrowsError(try resumed.fit(train: TRData.loader(TRData.dataset()), epochs: 2)) { error in
            XCTAssertTrue("\(error)".contains("by 2 processes; resume it with 2, not 1"), "\(error)")
        }
    }

    func testGradientClippingScalesToGlobalNorm() throws {
        // Two parameters with gradients [3, 4] and [12]: global norm 13.
        let a = try Tensor([Float(1), 1]).setRequiresGrad()
        let b = try Tensor([Float(2)]).setRequiresGrad()
        let loss = try (a * Tensor([Float(3), 4])).sum() + (b * 12).sum()
        try loss.backward()
        let norm = try Trainer.clipGradientNorm([a, b], maxNorm: 1.3)
        XCTAssertEqual(norm, 13, accuracy: 1e-5)
        let ga = try XCTUnwrap(a.grad).floats(), gb = try XCTUnwrap(b.grad).floats()
        XCTAssertEqual(ga[0], 0.3, accuracy: 1e-5)
        XCTAssertEqual(ga[1], 0.4, accuracy: 1e-5)
        XCTAssertEqual(gb[0], 1.2, accuracy: 1e-5)
        // Below the limit nothing changes.
        XCTAssertEqual(try Trainer.clipGradientNorm([a, b], maxNorm: 10), 1.3, accuracy: 1e-5)
        XCTAssertEqual(try XCTUnwrap(a.grad).floats()[0], 0.3, accuracy: 1e-5)

        Runtime.manualSeed(4)
        var norms: [Double] = []
        let recorder = TREventRecorder { event, _ in
            if case .batchEnd(let r) = event, let n = r.gradientNorm { norms.append(n) }
        }
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 2e-2), gradientClipNorm: 0.5)
        let result = try Trainer(model: TRTinyNet(), configuration: config, callbacks: [recorder])
            .fit(train: TRData.loader(TRData.dataset()), epochs: 3)
        XCTAssertEqual(norms.count, 18)
        assertDecreases(result)
    }

    func testBF16AutocastRunsAndLossDecreases() throws {
        Runtime.manualSeed(5)
        let data = try TRData.dataset()
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 2e-2), autocastBF16: true)
        let trainer = try Trainer(model: TRTinyNet(), configuration: config)
        let result = try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                     epochs: 3)
        assertDecreases(result)
        XCTAssertTrue(result.history.last?.metrics["val_loss"]?.isFinite ?? false)
        // Parameters stay float32.
        XCTAssertTrue(trainer.model.parameters().allSatisfy { $0.dtype == .float32 })
    }

    func testBinaryModeWithOneLogit() throws {
        Runtime.manualSeed(6)
        let data = try TRData.dataset(count: 32, classes: 2)
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 2e-2), loss: .binary, labelSmoothing: 0.05,
                                           classWeights: [1, 1.5])
        let trainer = try Trainer(model: TRTinyNet(classes: 1), configuration: config)
        let result = try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false),
                                     epochs: 3)
        assertDecreases(result)
        XCTAssertNotNil(result.history.last?.metrics["val_auc"])
        // A multi-output head is refused in binary mode.
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(classes: 2), configuration: config)
            .fit(train: TRData.loader(data), epochs: 1))
    }

    func testEvaluateDoesNotTouchBatchNormStatistics() throws {
        Runtime.manualSeed(7)
        let model = try TRTinyNet()
        let trainer = try Trainer(model: model)
        let before = try TRData.snapshot(model.stateDict())
        let report = try trainer.evaluate(TRData.loader(TRData.dataset(count: 16), shuffle: false))
        XCTAssertEqual(report.sampleCount, 16)
        XCTAssertEqual(try TRData.snapshot(model.stateDict()), before)
    }

    func testPlainSequentialModelTrains() throws {
        Runtime.manualSeed(8)
        let model = Sequential(try Conv2d(3, 6, kernelSize: (3, 3), padding: 1), try BatchNorm2d(6), ReLU(),
                               AdaptiveAvgPool2d(outputSize: (1, 1)), Flatten(), try Linear(6, 3))
        let layout = ModelLayout(model)
        XCTAssertEqual(layout.layerGroups, ["0", "1", "2", "3", "4", "5"])
        XCTAssertEqual(layout.headGroups, ["5"])
        let config = TrainingConfiguration(optimizer: .adam(learningRate: 5e-2), freeze: .backbone)
        let trainer = try Trainer(model: model, configuration: config)
        XCTAssertEqual(model.trainableParameters().map(\.0), ["5.weight", "5.bias"])
        assertDecreases(try trainer.fit(train: TRData.loader(TRData.dataset()), epochs: 3))
    }

    func testStateAndConfigurationAreCodable() throws {
        Runtime.manualSeed(9)
        var config = TrainingConfiguration(optimizer: .sgd(learningRate: 0.1), schedule: .cosine(etaMin: 0, periodSteps: nil),
                                           gradientClipNorm: 1, seed: 3)
        config.apply(.twoPhase(phaseOneEpochs: 1, unfreeze: .top(1)))
        let trainer = try Trainer(model: TRTinyNet(), configuration: config)
        try trainer.fit(train: TRData.loader(TRData.dataset(count: 16)), epochs: 2)
        let encoder = JSONEncoder()
        let decodedState = try JSONDecoder().decode(TrainingState.self, from: encoder.encode(trainer.state))
        XCTAssertEqual(decodedState, trainer.state)
        let decodedConfig = try JSONDecoder().decode(TrainingConfiguration.self, from: encoder.encode(config))
        XCTAssertEqual(decodedConfig, config)
        XCTAssertEqual(trainer.state.phase, 2)
    }
}
