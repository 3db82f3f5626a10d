import Data
import Foundation
import NN
import Optim
import TestSupport
import Torch
import Training
import Vision
import XCTest

/// A model without batch-dependent layers (no BatchNorm, no dropout): flatten → Linear → ReLU → Linear.
final class TRPlainNet: Module {
    let body: Sequential

    init(classes: Int = 3) throws {
        body = Sequential(Flatten(), try Linear(8 * 8 * 3, 16), ReLU(), try Linear(16, classes))
        super.init()
    }

    override var namedChildren: [(String, Module)] { [("body", body)] }
    override func forward(_ x: Tensor) throws -> Tensor { try body(x) }
}

/// Gradient accumulation (`accumulateSteps`) and the EMA of weights (`ema`, timm's ModelEmaV3).
final class AccumulationEMATests: XCTestCase {
    func plainModel() throws -> TRPlainNet {
        Runtime.manualSeed(5)
        return try TRPlainNet()
    }

    func maxDifference(_ a: StateDict, _ b: StateDict) throws -> Double {
        var worst = 0.0
        for (key, ta) in a {
            guard let tb = b[key] else { XCTFail("missing \(key)"); continue }
            worst = Swift.max(worst, try (ta - tb).abs().max().item())
        }
        return worst
    }

    /// Four batches of 8 with `accumulateSteps: 4` give the weights of one batch of 32, to 1e-5, over
    /// three epochs of SGD with momentum and a cosine schedule (which must count optimizer steps).
    func testFourBatchesOfEightEqualOneBatchOfThirtyTwo() throws {
        let data = try TRData.dataset(count: 32)
        let config = TrainingConfiguration(optimizer: .sgd(learningRate: 0.5, momentum: 0.9),
                                           schedule: .cosine(etaMin: 0, periodSteps: nil))
        let whole = try Trainer(model: plainModel(), configuration: config)
        try whole.fit(train: TRData.loader(data, batchSize: 32, shuffle: false), epochs: 3)
        var accumulating = config
        accumulating.accumulateSteps = 4
        let split = try Trainer(model: plainModel(), configuration: accumulating)
        try split.fit(train: TRData.loader(data, batchSize: 8, shuffle: false), epochs: 3)
        XCTAssertEqual(whole.state.globalStep, 3)
        XCTAssertEqual(split.state.globalStep, 3, "the schedule and step count are optimizer steps")
        XCTAssertEqual(split.state.stepsPerEpoch, 1)
        XCTAssertNil(split.state.accumulation)
        XCTAssertLessThan(try maxDifference(whole.model.stateDict(), split.model.stateDict()), 1e-5)
        // Control: stepping on every batch of 8 ends elsewhere.
        let unaccumulated = try Trainer(model: plainModel(), configuration: config)
        try unaccumulated.fit(train: TRData.loader(data, batchSize: 8, shuffle: false), epochs: 3)
        XCTAssertGreaterThan(try maxDifference(whole.model.stateDict(), unaccumulated.model.stateDict()), 1e-3)
    }

    /// 5 batches per epoch with K = 3: groups of 3 and 2, so 2 optimizer steps per epoch; the last group's
    /// losses are divided by 2 (timm), so it equals one batch of its 16 images.
    func testPartialLastGroupStepsWithItsOwnSize() throws {
        let data = try TRData.dataset(count: 40)
        var config = TrainingConfiguration(optimizer: .sgd(learningRate: 0.5, momentum: 0))
        config.accumulateSteps = 3
        let trainer = try Trainer(model: plainModel(), configuration: config)
        var stepped: [Bool] = []
        trainer.callbacks = [TREventRecorder { event, _ in if case .batchEnd(let r) = event { stepped.append(r.optimizerStepped) } }]
        try trainer.fit(train: TRData.loader(data, batchSize: 8, shuffle: false), epochs: 1)
        XCTAssertEqual(stepped, [false, false, true, false, true])
        XCTAssertEqual(trainer.state.globalStep, 2)
        // The same two steps by hand: a batch of the first 24 images, then one of the last 16.
        let reference = try Trainer(model: plainModel(), configuration: TrainingConfiguration(
            optimizer: .sgd(learningRate: 0.5, momentum: 0)))
        for range in [0..<24, 24..<40] {
            let part = LabeledDataset(samples: Array(data.samples[range]), classNames: data.classNames)
            let loader = try TRData.loader(part, batchSize: range.count, shuffle: false)
            let batch = try XCTUnwrap(try loader.epoch(0).nextBatch())
            try reference.trainStep(batch)
        }
        XCTAssertLessThan(try maxDifference(reference.model.stateDict(), trainer.model.stateDict()), 1e-5)
    }

    /// The EMA update equals timm's `ModelEmaV3(exclude_buffers=True)` after each of 5 steps, with and
    /// without warmup (Tests/Fixtures/ema_modelemav3.safetensors, tools/fixtures/make_ema.py).
    func testEMAMatchesTimmModelEmaV3() throws {
        let fixture = try Fixtures.load("ema_modelemav3.safetensors")
        for (name, settings) in [("plain", EMAConfig(decay: 0.9)), ("warmup", EMAConfig(decay: 0.9999, warmup: true))] {
            let model = Sequential(try Linear(4, 3), try BatchNorm1d(3))
            // The fixture's buffers are random (negative running variances too, which `load` refuses as a
            // damaged file would be): they are copied in place, as training would change them.
            func set(_ prefix: String) throws {
                try withNoGrad {
                    for (key, tensor) in model.stateDict() { try tensor.copy_(Fixtures.tensor(fixture, "\(name).\(prefix).\(key)")) }
                }
            }
            try set("init")
            let ema = try ModelEMA(model: model, configuration: settings)
            for step in 1...5 {
                try set("model.step\(step)")
                try ema.update(from: model, step: step)
                for key in model.stateDict().keys {
                    let expected = try Fixtures.tensor(fixture, "\(name).ema.step\(step).\(key)")
                    let actual = try XCTUnwrap(ema.state[key])
                    if expected.dtype.isFloatingPoint {
                        assertClose(actual, expected, atol: 1e-6, "\(name) step \(step) \(key)")
                    } else {
                        XCTAssertEqual(try actual.toArray(Int64.self), try expected.toArray(Int64.self), "\(name) \(key)")
                    }
                }
            }
            // Control: the running statistics were copied, not averaged (they differ from the averaged path).
            let mean = try XCTUnwrap(ema.state["1.running_mean"])
            assertClose(mean, try Fixtures.tensor(fixture, "\(name).model.step5.1.running_mean"), atol: 0)
        }
        XCTAssertEqual(EMAConfig(decay: 0.99).decay(atStep: 1), 0, "the first update copies the weights")
        XCTAssertEqual(EMAConfig(decay: 0.99, warmup: true).decay(atStep: 2), 1 - pow(2, -2.0 / 3), accuracy: 1e-15)
        // Steps below 1 are the first update too; Int.min used to overflow `step - 1` and trap.
        XCTAssertEqual(EMAConfig(decay: 0.99).decay(atStep: 0), 0)
        XCTAssertEqual(EMAConfig(decay: 0.99, warmup: true).decay(atStep: .min), 0)
        XCTAssertEqual(EMAConfig(decay: 0.99, warmup: true).decay(atStep: .max), 0.99)
    }

    /// With an EMA, every epoch reports `val_*_ema` next to `val_*`, and the trained weights are put
    /// back after the EMA's evaluation.
    func testEMAIsEvaluatedEachEpoch() throws {
        let data = try TRData.dataset()
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        config.ema = EMAConfig(decay: 0.5)
        Runtime.manualSeed(3)
        let trainer = try Trainer(model: TRTinyNet(), configuration: config)
        try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: 2)
        let metrics = try XCTUnwrap(trainer.state.history.last?.metrics)
        XCTAssertNotNil(metrics["val_loss_ema"])
        XCTAssertNotNil(metrics["val_accuracy_ema"])
        XCTAssertNotEqual(metrics["val_loss_ema"], metrics["val_loss"])
        // The live model kept its own weights: evaluating it again gives val_loss.
        let again = try trainer.evaluate(TRData.loader(data, shuffle: false))
        XCTAssertEqual(try XCTUnwrap(again.loss), try XCTUnwrap(metrics["val_loss"]), accuracy: 1e-6)
    }

    /// Interrupted inside an accumulation group (gradients pending) with an EMA, resumed on a fresh
    /// model: the weights, optimizer, EMA and history equal an uninterrupted run's bit for bit.
    func testResumeInsideAnAccumulationGroupWithEMAIsBitIdentical() throws {
        let data = try TRData.dataset()
        let directory = try TRData.temporaryDirectory(self)
        // Channels-last, as runs train, with a clipping norm that clips: the accumulated gradients
        // came back contiguous, so the clip's norm summed in another order and the run differed.
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), schedule: .cosine(etaMin: 0, periodSteps: nil),
                                           gradientClipNorm: 0.05)
        config.accumulateSteps = 4
        config.ema = EMAConfig(decay: 0.9, warmup: true)
        func fresh(seed: UInt64 = 42) throws -> TRTinyNet {
            Runtime.manualSeed(seed)
            let model = try TRTinyNet(classes: 3, dropout: 0)
            try model.useChannelsLast(true)
            return model
        }
        let reference = try Trainer(model: fresh(), configuration: config)
        try reference.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: 2)
        XCTAssertEqual(reference.state.globalStep, 4, "6 batches per epoch: groups of 4 and 2")

        config.checkpointDirectory = directory
        let signal = SignalStop(signals: [])
        let trigger = TREventRecorder { event, _ in
            if case .batchEnd(let r) = event, r.epoch == 1, r.batch == 1 { signal.trigger(signal: SIGINT) }
        }
        let first = try Trainer(model: fresh(), configuration: config, callbacks: [trigger])
        first.signalStop = signal
        let stopped = try first.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: 2)
        XCTAssertEqual(stopped.status, .interrupted(checkpoint: directory + "/last"))
        let manifest = try Checkpoint.readManifest(directory + "/last")
        XCTAssertEqual(manifest.state.accumulation?.group, 0)
        XCTAssertEqual(manifest.state.accumulation?.batches, 2, "two batches of the first group of epoch 2")
        for file in [Checkpoint.emaFile, Checkpoint.gradientsFile] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/last/" + file), file)
        }
        let resumed = try Trainer.resume(from: directory + "/last", model: fresh(seed: 999))
        // The restored gradients have their parameters' layout, as autograd leaves them.
        for (name, parameter) in resumed.model.namedParameters() where parameter.shape.count == 4 {
            XCTAssertEqual(try XCTUnwrap(parameter.grad, name).strides, parameter.strides, name)
        }
        try resumed.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: 2)
        try TRData.assertIdentical(reference.model.stateDict(), resumed.model.stateDict(), "model")
        try TRData.assertIdentical(reference.optimizer.stateDict().tensors, resumed.optimizer.stateDict().tensors, "optimizer")
        try TRData.assertIdentical(try XCTUnwrap(reference.ema).state, try XCTUnwrap(resumed.ema).state, "ema")
        XCTAssertEqual(reference.state.history.map(\.metrics), resumed.state.history.map(\.metrics))
        // Control: the EMA is not the model.
        XCTAssertNotEqual(try TRData.snapshot(reference.model.stateDict()), try TRData.snapshot(reference.ema!.state))
    }
}
