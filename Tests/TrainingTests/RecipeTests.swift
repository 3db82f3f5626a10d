import Data
import Foundation
import NN
import Optim
import Torch
import Training
import Vision
import XCTest

/// Freezing specifications and the recipes: head-only, two-phase, discriminative learning rates,
/// freeze-until; scope patterns and errors; the freeze state across checkpoints.
final class RecipeTests: XCTestCase {
    lazy var data: LabeledDataset = try! TRData.dataset()

    func trainer(_ recipe: Recipe, optimizer: OptimizerConfig = .sgd(learningRate: 0.05),
                 callbacks: [TrainingCallback] = []) throws -> Trainer {
        Runtime.manualSeed(11)
        var config = TrainingConfiguration(optimizer: optimizer)
        config.apply(recipe)
        return try Trainer(model: TRTinyNet(), configuration: config, callbacks: callbacks)
    }

    func assertRates(_ actual: [Double], _ expected: [Double], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, "\(actual)", file: file, line: line)
        for (a, e) in zip(actual, expected) { XCTAssertEqual(a, e, accuracy: e * 1e-12, "\(actual)", file: file, line: line) }
    }

    static let headKeys = ["classifier.1.weight", "classifier.1.bias"]

    func testHeadOnlyLeavesFrozenParametersAndBatchNormBuffersBitIdentical() throws {
        let trainer = try trainer(.headOnly(trainBatchNorm: false))
        let model = trainer.model
        XCTAssertEqual(model.trainableParameters().map(\.0), Self.headKeys)
        XCTAssertEqual(trainer.state.freeze.frozenScopes, ["features.0", "features.1", "features.2"])
        let before = try TRData.snapshot(model.stateDict())
        try trainer.fit(train: TRData.loader(data), validation: TRData.loader(data, shuffle: false), epochs: 2)
        let after = try TRData.snapshot(model.stateDict())
        var checkedBuffers = 0
        for key in model.stateDict().keys where key.hasPrefix("features.") {
            XCTAssertEqual(after[key], before[key], "\(key) changed")
            if key.hasSuffix("running_mean") || key.hasSuffix("running_var") || key.hasSuffix("num_batches_tracked") {
                checkedBuffers += 1
            }
        }
        XCTAssertEqual(checkedBuffers, 9)
        for key in Self.headKeys { XCTAssertNotEqual(after[key], before[key], "\(key) should train") }
    }

    func testHeadOnlyWithTrainBatchNormUpdatesOnlyRunningStatistics() throws {
        let trainer = try trainer(.headOnly(trainBatchNorm: true))
        let model = trainer.model
        XCTAssertEqual(model.trainableParameters().map(\.0), Self.headKeys)
        let before = try TRData.snapshot(model.stateDict())
        try trainer.fit(train: TRData.loader(data), epochs: 1)
        let after = try TRData.snapshot(model.stateDict())
        for (key, _) in model.namedParameters() where key.hasPrefix("features.") {
            XCTAssertEqual(after[key], before[key], key)
        }
        XCTAssertNotEqual(after["features.0.1.running_mean"], before["features.0.1.running_mean"])
        XCTAssertNotEqual(after["features.2.1.num_batches_tracked"], before["features.2.1.num_batches_tracked"])
    }

    func testTwoPhaseUnfreezesAndCarriesOptimizerStateByName() throws {
        var headMomentum: [UInt8]?
        var phaseChange: PhaseChange?
        var stateAtPhaseChange: [String: [UInt8]] = [:]
        var learningRatesAtPhaseChange: [Double] = []
        let recorder = TREventRecorder { event, trainer in
            switch event {
            case .epochEnd(let r) where r.epoch == 1:
                headMomentum = try trainer.optimizer.stateDict().tensors["classifier.1.weight.momentum_buffer"]
                    .map(TRData.bytes)
            case .phaseChange(let change):
                phaseChange = change
                stateAtPhaseChange = try TRData.snapshot(trainer.optimizer.stateDict().tensors)
                learningRatesAtPhaseChange = trainer.optimizer.learningRates
            default: break
            }
        }
        let recipe = Recipe.twoPhase(phaseOneEpochs: 2, unfreeze: .top(1))
        let trainer = try trainer(recipe, optimizer: .sgd(learningRate: 0.05, momentum: 0.9), callbacks: [recorder])
        let phaseOneTrainable = trainer.model.trainableParameters().map(\.0)
        XCTAssertEqual(phaseOneTrainable, Self.headKeys)
        try trainer.fit(train: TRData.loader(data), epochs: 3)

        let change = try XCTUnwrap(phaseChange)
        XCTAssertEqual(change.epoch, 2)
        XCTAssertEqual(change.step, 12)
        XCTAssertTrue(change.carriedOptimizerState, change.note ?? "")
        XCTAssertEqual(change.frozenScopes, ["features.0", "features.1"])
        let phaseTwoTrainable = trainer.model.trainableParameters().map(\.0)
        XCTAssertGreaterThan(phaseTwoTrainable.count, phaseOneTrainable.count)
        XCTAssertTrue(phaseTwoTrainable.contains("features.2.0.weight"))
        XCTAssertFalse(phaseTwoTrainable.contains("features.1.0.weight"))
        // The head's momentum buffer came over by name; the newly trainable parameters start fresh.
        XCTAssertEqual(stateAtPhaseChange["classifier.1.weight.momentum_buffer"], try XCTUnwrap(headMomentum))
        XCTAssertNil(stateAtPhaseChange["features.2.0.weight.momentum_buffer"])
        // Phase 2 runs at the Keras guide's SGD 1e-4, momentum 0.9.
        XCTAssertEqual(learningRatesAtPhaseChange, [1e-4])
        XCTAssertEqual((trainer.optimizer as? SGD)?.momentum, 0.9)
        XCTAssertEqual(trainer.state.phase, 2)
        XCTAssertEqual(trainer.state.freeze.phase, 2)
        XCTAssertEqual(trainer.state.history.map(\.phase), [1, 1, 2])
        XCTAssertNotNil(trainer.optimizer.stateDict().tensors["features.2.0.weight.momentum_buffer"])
    }

    func testTwoPhasePlateauTriggerAndAllUnfrozen() throws {
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        config.apply(.twoPhase(PhaseTwo(trigger: .plateau(metric: "val_loss", mode: .auto, patience: 1, minDelta: 0),
                                        unfreeze: .all, optimizer: .adam(learningRate: 1e-4))))
        Runtime.manualSeed(12)
        var changedAt: Int?
        let recorder = TREventRecorder { event, _ in
            if case .phaseChange(let p) = event { changedAt = p.epoch }
        }
        let trainer = try Trainer(model: TRTinyNet(), configuration: config, callbacks: [recorder])
        let injected = [1.0, 0.8, 0.9, 0.7, 0.6]
        trainer.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
        try trainer.fit(train: TRData.loader(data, batchSize: 16), epochs: 5)
        // Epoch 2 (0.9) fails to improve on 0.8: with patience 1, phase 2 starts at epoch 3.
        XCTAssertEqual(changedAt, 3)
        XCTAssertEqual(trainer.model.trainableParameters().count, trainer.model.parameters().count)
        XCTAssertEqual(trainer.state.history.map(\.phase), [1, 1, 1, 2, 2])
    }

    /// Early stopping whose patience runs out in phase 1 of a two-phase run starts phase 2 there, as
    /// fastai's `fine_tune` ends only its frozen fit: it ended the whole run, and the backbone never
    /// trained (stop 53). Phase 2 gets its own patience, against the run's best; the run then stops
    /// early in phase 2 and keeps its best weights, of whichever phase.
    func testEarlyStoppingInPhaseOneStartsPhaseTwo() throws {
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        config.apply(.twoPhase(PhaseTwo(trigger: .afterEpochs(5), unfreeze: .all, optimizer: .adam(learningRate: 1e-4))))
        Runtime.manualSeed(12)
        var change: PhaseChange?
        var bestWeights: [String: [UInt8]]?
        let recorder = TREventRecorder { event, trainer in
            if case .phaseChange(let p) = event { change = p }
            if case .epochEnd(let r) = event, r.epoch == 3 { bestWeights = try TRData.snapshot(trainer.model.stateDict()) }
        }
        let stopper = EarlyStopping(monitor: "val_loss", patience: 1, restoreBestWeights: true)
        let trainer = try Trainer(model: TRTinyNet(), configuration: config, callbacks: [recorder, stopper])
        // Epoch 1 does not improve on epoch 0: phase 2 from epoch 2 (not 5). Epoch 3 is the best;
        // epochs 4 and 5 are not, and with patience 1 the run stops after epoch 4.
        let injected = [1.0, 1.1, 0.9, 0.5, 0.6, 0.7, 0.8, 0.9]
        trainer.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
        let result = try trainer.fit(train: TRData.loader(data, batchSize: 16), epochs: 8)
        XCTAssertEqual(change?.epoch, 2)
        XCTAssertEqual(change?.reason, "early stopping in phase 1: val_loss did not improve for 1 epoch")
        XCTAssertEqual(trainer.state.history.map(\.phase), [1, 1, 2, 2, 2])
        guard case .stopped(let reason) = result.status else { return XCTFail("\(result.status)") }
        XCTAssertEqual(reason, "early stopping: val_loss did not improve for 1 epoch (best 0.5 at epoch 4)")
        XCTAssertEqual(stopper.restoredEpoch, 3)
        XCTAssertEqual(try TRData.snapshot(trainer.model.stateDict()), try XCTUnwrap(bestWeights))

        // A one-phase run stops where its patience runs out, as before.
        Runtime.manualSeed(12)
        let plain = try Trainer(model: TRTinyNet(), configuration: TrainingConfiguration(optimizer: .adam(learningRate: 1e-2)),
                                callbacks: [EarlyStopping(monitor: "val_loss", patience: 1)])
        plain.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
        XCTAssertEqual(try plain.fit(train: TRData.loader(data, batchSize: 16), epochs: 8).epochs, 2)
    }

    /// A run stopped right after early stopping asked for phase 2 resumes into phase 2 at the same
    /// epoch, and ends with the uninterrupted run's weights, bit for bit.
    func testPhaseTwoAskedForByEarlyStoppingSurvivesAResume() throws {
        var config = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        config.apply(.twoPhase(PhaseTwo(trigger: .afterEpochs(5), unfreeze: .all, optimizer: .adam(learningRate: 1e-4))))
        let injected = [1.0, 1.1, 0.9, 0.5, 0.6, 0.7, 0.8, 0.9]
        let directory = try TRData.temporaryDirectory(self)
        func trainer(_ callbacks: [TrainingCallback], resumeFrom: String? = nil) throws -> Trainer {
            Runtime.manualSeed(12)
            let all = [EarlyStopping(monitor: "val_loss", patience: 1, restoreBestWeights: true)] + callbacks
            let trainer = try resumeFrom.map { try Trainer.resume(from: $0, model: TRTinyNet(), callbacks: all) }
                ?? Trainer(model: TRTinyNet(), configuration: config, callbacks: all)
            trainer.epochMetricsHook = { epoch, metrics in metrics["val_loss"] = injected[epoch] }
            return trainer
        }
        let straight = try trainer([])
        try straight.fit(train: TRData.loader(data, batchSize: 16), epochs: 8)
        let first = try trainer([ModelCheckpoint(directory: directory), TRStopper(afterEpoch: 1)])
        try first.fit(train: TRData.loader(data, batchSize: 16), epochs: 8)
        XCTAssertEqual(first.state.phase, 1)
        let resumed = try trainer([], resumeFrom: directory + "/last")
        try resumed.fit(train: TRData.loader(data, batchSize: 16), epochs: 8)
        XCTAssertEqual(resumed.state.history.map(\.phase), [1, 1, 2, 2, 2])
        try TRData.assertIdentical(straight.model.stateDict(), resumed.model.stateDict(), "resumed into phase 2")
    }

    func testDiscriminativeLearningRates() throws {
        let factor = try trainer(.discriminative(.backboneFactor(10)), optimizer: .sgd(learningRate: 1e-2))
        XCTAssertEqual(factor.parameterGroupNames, ["features.0", "features.1", "features.2", "classifier"])
        assertRates(factor.optimizer.learningRates, [1e-3, 1e-3, 1e-3, 1e-2])
        XCTAssertEqual(factor.model.trainableParameters().count, factor.model.parameters().count)

        let decay = try trainer(.discriminative(.layerDecay(0.5)), optimizer: .sgd(learningRate: 1e-2))
        assertRates(decay.optimizer.learningRates, [1.25e-3, 2.5e-3, 5e-3, 1e-2])
        let group = decay.optimizer.parameterGroups[1].parameterNames
        XCTAssertEqual(group, ["features.1.0.weight", "features.1.0.bias", "features.1.1.weight", "features.1.1.bias"])

        // The rates hold through training (fixed schedule) and scale together under a schedule.
        try decay.fit(train: TRData.loader(data), epochs: 1)
        assertRates(decay.optimizer.learningRates, [1.25e-3, 2.5e-3, 5e-3, 1e-2])
        Runtime.manualSeed(13)
        var config = TrainingConfiguration(optimizer: .sgd(learningRate: 1e-2),
                                           schedule: .step(stepSize: 3, gamma: 0.1))
        config.apply(.discriminative(.backboneFactor(4)))
        let scheduled = try Trainer(model: TRTinyNet(), configuration: config)
        var seen: [[Double]] = []
        scheduled.callbacks = [TREventRecorder { event, _ in
            if case .batchEnd(let r) = event { seen.append(r.learningRates) }
        }]
        try scheduled.fit(train: TRData.loader(data), epochs: 1)
        assertRates(try XCTUnwrap(seen.first), [2.5e-3, 2.5e-3, 2.5e-3, 1e-2])
        XCTAssertEqual(seen[3][0], 2.5e-4, accuracy: 1e-12)
        XCTAssertEqual(seen[3][3], 1e-3, accuracy: 1e-12)
    }

    func testFreezeUntilTrainsTheDeepLayers() throws {
        let trainer = try trainer(.freezeUntil("features.1"))
        XCTAssertEqual(trainer.state.freeze.frozenScopes, ["features.0", "features.1"])
        let trainable = trainer.model.trainableParameters().map(\.0)
        XCTAssertTrue(trainable.allSatisfy { $0.hasPrefix("features.2.") || $0.hasPrefix("classifier.") })
        XCTAssertEqual(trainable.count, 6)
        let before = try TRData.snapshot(trainer.model.stateDict())
        try trainer.fit(train: TRData.loader(data), epochs: 1)
        let after = try TRData.snapshot(trainer.model.stateDict())
        XCTAssertEqual(after["features.1.1.running_var"], before["features.1.1.running_var"])
        XCTAssertNotEqual(after["features.2.0.weight"], before["features.2.0.weight"])
    }

    func testTrainableScopesWithGlobs() throws {
        Runtime.manualSeed(14)
        let model = try TRTinyNet()
        let spec = FreezeSpec(trainableScopes: ["features.2*", "classifier"])
        XCTAssertEqual(try spec.frozenScopes(for: model), ["features.0", "features.1"])
        // Every BatchNorm of the features, and the head: parameters outside are frozen one by one.
        let bn = FreezeSpec(trainableScopes: ["features.*.1", "classifier.1.weight"])
        try bn.apply(to: model)
        XCTAssertEqual(model.trainableParameters().map(\.0), [
            "features.0.1.weight", "features.0.1.bias", "features.1.1.weight", "features.1.1.bias",
            "features.2.1.weight", "features.2.1.bias", "classifier.1.weight",
        ])
        XCTAssertFalse(model.module(at: "features.0.1")!.isFrozen)
        XCTAssertTrue(model.module(at: "features.0.0")!.isFrozen)
        XCTAssertTrue(ScopePattern("features.1*").covers("features.10.conv"))
        XCTAssertFalse(ScopePattern("features.1*").covers("features.2"))
        XCTAssertTrue(ScopePattern("layer?").covers("layer4.1.conv2.weight"))
        XCTAssertFalse(ScopePattern("features.1").covers("features.10"))
    }

    func testUnknownScopesAreErrorsListingGroups() throws {
        Runtime.manualSeed(15)
        let model = try TRTinyNet()
        for spec in [FreezeSpec(trainableScopes: ["classifier", "nope*"]), FreezeSpec(freezeUntil: "layer9")] {
            XCTAssertThrowsError(try spec.apply(to: model)) { error in
                guard case TrainingError.unknownScope(let scope, let groups) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(["nope*", "layer9"].contains(scope))
                XCTAssertEqual(groups, ["features.0", "features.1", "features.2", "classifier"])
                XCTAssertTrue("\(error)".contains(scope))
                XCTAssertTrue("\(error)".contains("features.0, features.1"))
            }
        }
        var config = TrainingConfiguration()
        config.freeze = FreezeSpec(freezeUntil: "classifier")
        XCTAssertThrowsError(try Trainer(model: TRTinyNet(), configuration: config)) { error in
            guard case TrainingError.nothingToTrain = error else { return XCTFail("\(error)") }
        }
    }

    func testFreezeStateIsRestoredOnResumeNotReapplied() throws {
        let directory = try TRData.temporaryDirectory(self)
        // Head-only with BatchNorm training: restored exactly, including the BatchNorm flag.
        let headOnly = try trainer(.headOnly(trainBatchNorm: true),
                                   callbacks: [ModelCheckpoint(directory: directory + "/a"), TRStopper(afterEpoch: 0)])
        try headOnly.fit(train: TRData.loader(data), epochs: 2)
        let resumedHeadOnly = try Trainer.resume(from: directory + "/a/last", model: TRTinyNet())
        XCTAssertEqual(resumedHeadOnly.model.trainableParameters().map(\.0), Self.headKeys)
        XCTAssertEqual(resumedHeadOnly.state.freeze, headOnly.state.freeze)
        XCTAssertFalse(resumedHeadOnly.model.module(at: "features.0.1")!.isFrozen)
        XCTAssertTrue(resumedHeadOnly.model.module(at: "features.0.0")!.isFrozen)

        // Two-phase, checkpointed in phase 2: the resumed model stays unfrozen (not re-frozen by
        // the recipe's phase-1 spec) and keeps phase 2's optimizer.
        let twoPhase = try trainer(.twoPhase(phaseOneEpochs: 1, unfreeze: .all),
                                   callbacks: [ModelCheckpoint(directory: directory + "/b"), TRStopper(afterEpoch: 1)])
        try twoPhase.fit(train: TRData.loader(data), epochs: 3)
        XCTAssertEqual(twoPhase.state.phase, 2)
        let resumed = try Trainer.resume(from: directory + "/b/last", model: TRTinyNet())
        XCTAssertEqual(resumed.state.phase, 2)
        XCTAssertEqual(resumed.model.trainableParameters().count, resumed.model.parameters().count)
        XCTAssertEqual(resumed.optimizer.learningRates, [1e-4])
        try TRData.assertIdentical(resumed.optimizer.stateDict().tensors, twoPhase.optimizer.stateDict().tensors,
                                   "optimizer")
        try resumed.fit(train: TRData.loader(data), epochs: 3)
        XCTAssertEqual(resumed.state.history.map(\.phase), [1, 2, 2])
    }

    /// Two-phase with `freezeBatchNormStatistics` (`--freeze-bn-stats`): phase 2 trains every parameter,
    /// BatchNorm's weight and bias included, while no running statistic moves; the flag is in the
    /// checkpoint's freeze state and comes back on resume. A state written before the flag reads as off.
    func testTwoPhaseWithFrozenBatchNormStatisticsTrainsEverythingButTheStatistics() throws {
        let directory = try TRData.temporaryDirectory(self)
        Runtime.manualSeed(11)
        var config = TrainingConfiguration(optimizer: .sgd(learningRate: 0.05))
        config.freeze = FreezeSpec(freezeBatchNormStatistics: true)
        config.apply(.twoPhase(phaseOneEpochs: 1, unfreeze: .all, optimizer: .sgd(learningRate: 0.05)))
        XCTAssertEqual(config.freeze?.freezeBatchNormStatistics, true, "the recipe keeps the flag")
        let trainer = try Trainer(model: TRTinyNet(), configuration: config,
                                  callbacks: [ModelCheckpoint(directory: directory), TRStopper(afterEpoch: 1)])
        let before = try TRData.snapshot(trainer.model.stateDict())
        try trainer.fit(train: TRData.loader(data), epochs: 3)
        XCTAssertEqual(trainer.state.phase, 2)
        XCTAssertTrue(trainer.state.freeze.freezeBatchNormStatistics)
        XCTAssertEqual(trainer.model.trainableParameters().count, trainer.model.parameters().count)
        let after = try TRData.snapshot(trainer.model.stateDict())
        var statistics = 0
        for key in after.keys.sorted() {
            if key.hasSuffix("running_mean") || key.hasSuffix("running_var") || key.hasSuffix("num_batches_tracked") {
                XCTAssertEqual(after[key], before[key], "\(key) moved")
                statistics += 1
            }
        }
        XCTAssertEqual(statistics, 9)
        for key in ["features.0.0.weight", "features.0.1.weight", "features.2.1.bias", "classifier.1.weight"] {
            XCTAssertNotEqual(after[key], before[key], "\(key) should train in phase 2")
        }

        let resumed = try Trainer.resume(from: directory + "/last", model: TRTinyNet())
        XCTAssertTrue(resumed.state.freeze.freezeBatchNormStatistics)
        XCTAssertTrue(resumed.model.batchNormStatisticsFrozen)
        XCTAssertFalse(resumed.model.module(at: "features.0.1")!.usesTrainingBehaviour)

        var old = try JSONSerialization.jsonObject(with: JSONEncoder().encode(trainer.state.freeze)) as! [String: Any]
        old["freezeBatchNormStatistics"] = nil
        let decoded = try JSONDecoder().decode(FreezeState.self, from: JSONSerialization.data(withJSONObject: old))
        XCTAssertFalse(decoded.freezeBatchNormStatistics)
        XCTAssertEqual(decoded.frozenModules, trainer.state.freeze.frozenModules)
        var oldSpec = try JSONSerialization.jsonObject(with: JSONEncoder().encode(config.freeze!)) as! [String: Any]
        oldSpec["freezeBatchNormStatistics"] = nil
        XCTAssertEqual(try JSONDecoder().decode(FreezeSpec.self, from: JSONSerialization.data(withJSONObject: oldSpec)),
                       FreezeSpec(freezeBackbone: true))
    }

    /// `RecipeOptions.freezeBatchNormStatistics` reaches the freeze spec of every recipe, and contradicts
    /// `trainBatchNorm`.
    func testRecipeOptionsCarryFrozenBatchNormStatisticsAndRefuseTrainBatchNormWithThem() throws {
        for recipe in RecipeName.allCases {
            var options = RecipeOptions()
            options.recipe = recipe
            options.freezeBatchNormStatistics = true
            try options.validate(epochs: 4)
            XCTAssertEqual(try options.configuration(epochs: 4).freeze?.freezeBatchNormStatistics, true, "\(recipe)")
            options.freezeBatchNormStatistics = false
            XCTAssertNotEqual(try options.configuration(epochs: 4).freeze?.freezeBatchNormStatistics, true, "\(recipe)")
        }
        var both = RecipeOptions()
        both.trainBatchNorm = true
        both.freezeBatchNormStatistics = true
        XCTAssertThrowsError(try both.validate(epochs: 4)) { error in
            guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "freezeBatchNormStatistics")
            XCTAssertTrue(reason.contains("--train-bn"), reason)
        }
    }

    /// Non-finite rates and factors (and those float32 cannot hold) are refused naming their setting: `--lr inf` passed ("must be
    /// positive") and failed later as "learning rate must be ≥ 0, got inf", naming no flag and leaving
    /// a run directory behind; `--weight-decay inf` trained until the loss was NaN.
    func testNonFiniteRatesAndFactorsAreRefusedNamingTheirSetting() throws {
        let settings: [(String, WritableKeyPath<RecipeOptions, Double?>)] = [
            ("learningRate", \.learningRate), ("phaseTwoLearningRate", \.phaseTwoLearningRate), ("weightDecay", \.weightDecay),
            ("gradientClipNorm", \.gradientClipNorm), ("learningRateFactor", \.learningRateFactor), ("layerDecay", \.layerDecay)]
        for (name, path) in settings {
            for value in [Double.infinity, .nan, 1e39] {  // 1e39: finite, beyond float32 (LibTorch overflowed)
                var options = RecipeOptions()
                options[keyPath: path] = value
                XCTAssertThrowsError(try options.validate(epochs: 4), "\(name) = \(value)") { error in
                    guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
                    XCTAssertEqual(setting, name)
                    XCTAssertTrue(reason.contains("float32 holds"), reason)
                }
            }
        }
        var momentum = RecipeOptions()
        momentum.momentum = .infinity
        XCTAssertThrowsError(try momentum.validate(epochs: 4))
    }

    /// "No bias decay" (Bag of Tricks; timm's `filter_bias_and_bn`): after one AdamW step, biases and
    /// BatchNorm parameters are bit for bit those of a run without weight decay, and every other
    /// parameter those of a run that decays everything. Each group is split in two at its own rate.
    func testNoBiasDecayLeavesOneDimensionalParametersOutOfWeightDecay() throws {
        let batch = try TRData.dataset(count: 8)
        func trained(_ recipe: Recipe, weightDecay: Double, noBiasDecay: Bool) throws -> (Trainer, [String: [UInt8]]) {
            var optimizer = OptimizerConfig.adamw(learningRate: 0.05, weightDecay: weightDecay)
            optimizer.noBiasDecay = noBiasDecay
            let trainer = try self.trainer(recipe, optimizer: optimizer)
            try trainer.fit(train: TRData.loader(batch), epochs: 1)  // one step
            XCTAssertEqual(trainer.state.globalStep, 1)
            return (trainer, try TRData.snapshot(trainer.model.stateDict()))
        }
        let (split, separated) = try trained(.fullFineTune, weightDecay: 0.5, noBiasDecay: true)
        let (_, everything) = try trained(.fullFineTune, weightDecay: 0.5, noBiasDecay: false)
        let (_, none) = try trained(.fullFineTune, weightDecay: 0, noBiasDecay: false)
        XCTAssertEqual(split.parameterGroupNames, ["all", "all/no_decay"])
        XCTAssertEqual(split.optimizer.parameterGroups.map(\.weightDecay), [0.5, 0])
        let oneDimensional = Set(split.optimizer.parameterGroups[1].parameterNames)
        XCTAssertEqual(oneDimensional, Set(split.model.namedParameters().filter { $0.1.rank <= 1 }.map(\.0)))
        XCTAssertTrue(oneDimensional.contains("features.0.1.weight") && oneDimensional.contains("classifier.1.bias"))
        for (name, _) in split.model.namedParameters() {
            let expected = oneDimensional.contains(name) ? none : everything
            XCTAssertEqual(separated[name], expected[name], name)
            // Decay shows after one step, except on BatchNorm biases: they start at 0, which decay leaves.
            if !(name.hasPrefix("features.") && name.hasSuffix(".1.bias")) {
                XCTAssertNotEqual(none[name], everything[name], "\(name): the decay must show after one step")
            }
        }

        // With layer groups: each is split right after itself, at its own rate.
        let (layered, _) = try trained(.discriminative(.backboneFactor(10)), weightDecay: 0.5, noBiasDecay: true)
        XCTAssertEqual(layered.parameterGroupNames, ["features.0", "features.0/no_decay", "features.1", "features.1/no_decay",
                                                     "features.2", "features.2/no_decay", "classifier", "classifier/no_decay"])
        assertRates(layered.optimizer.learningRates, [5e-3, 5e-3, 5e-3, 5e-3, 5e-3, 5e-3, 5e-2, 5e-2])
        XCTAssertEqual(layered.optimizer.parameterGroups.map(\.weightDecay), [0.5, 0, 0.5, 0, 0.5, 0, 0.5, 0])

        // Without weight decay the setting has nothing to do and is refused; AdamW decays by default.
        var options = RecipeOptions()
        options.noBiasDecay = true
        XCTAssertThrowsError(try options.validate(epochs: 2)) { error in
            guard case RunError.invalidSetting(let setting, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(setting, "noBiasDecay")
        }
        options.optimizer = .adamw
        XCTAssertEqual(try options.configuration(epochs: 2).optimizer.noBiasDecay, true)
    }

    /// RMSprop's default rate is Adam's (and Keras' RMSprop's), 1e-3, not PyTorch's 1e-2: with the default
    /// momentum of 0.9, 1e-2 trained the main job's head (head-only, 3 epochs) to a training loss of 38
    /// and a validation loss of 5.5 (1e-3: 1.1 and 0.65), probabilities no threshold can use (stop 53).
    func testRMSpropsDefaultRateIsAnAdaptiveOptimizers() throws {
        var options = RecipeOptions()
        for (optimizer, rate) in [(OptimizerConfig.Kind.sgd, 1e-2), (.adam, 1e-3), (.adamw, 1e-3), (.rmsprop, 1e-3)] {
            options.optimizer = optimizer
            XCTAssertEqual(try options.configuration(epochs: 1).optimizer.learningRate, rate, "\(optimizer)")
        }
        options.learningRate = 0.05
        XCTAssertEqual(try options.configuration(epochs: 1).optimizer.learningRate, 0.05)
    }

    /// A one-cycle momentum range given with SGD or RMSprop at momentum 0 is refused: finetune keeps
    /// momentum off there (PyTorch would switch it on), so the range was silently ignored. The
    /// default range is documented to leave such an optimizer alone, and Adam cycles β1 either way.
    func testOneCycleMomentumRangeWithoutMomentumIsRefused() throws {
        let custom = ScheduleConfig.oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos,
                                             momentum: .init(base: 0.8, maximum: 0.9))
        let plain = ScheduleConfig.oneCycle(pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, annealing: .cos,
                                            momentum: .init())
        for optimizer in [OptimizerConfig.Kind.sgd, .rmsprop] {
            for schedule in [custom, .warmup(steps: 2, startFactor: 0, then: custom)] {
                var options = RecipeOptions()
                options.optimizer = optimizer
                options.momentum = 0
                options.schedule = schedule
                XCTAssertThrowsError(try options.validate(epochs: 4), "\(optimizer)") { error in
                    guard case RunError.invalidSetting(let setting, let reason) = error else { return XCTFail("\(error)") }
                    XCTAssertEqual(setting, "schedule")
                    XCTAssertTrue(reason.contains("--momentum 0"), reason)
                }
                options.momentum = 0.9
                XCTAssertNoThrow(try options.validate(epochs: 4))
                options.momentum = 0
                options.schedule = plain
                XCTAssertNoThrow(try options.validate(epochs: 4))
            }
        }
        var adam = RecipeOptions()
        adam.optimizer = .adam
        adam.momentum = 0
        adam.schedule = custom
        XCTAssertNoThrow(try adam.validate(epochs: 4))
    }

    /// `freezeBatchNormStatistics` is for the pretrained backbone (Keras' `base_model(x, training=False)`):
    /// a head's own new BatchNorm (`--head-batchnorm`) keeps learning its statistics.
    func testFrozenBatchNormStatisticsLeaveTheHeadsOwnBatchNormTraining() throws {
        let model = try TRTinyNet()
        try model.configureHead(HeadSpec(outputs: 3, batchNorm: true))
        let state = try FreezeSpec(freezeBatchNormStatistics: true).apply(to: model)
        XCTAssertTrue(state.freezeBatchNormStatistics)
        model.train()
        let batchNorms = model.namedModules().filter { $0.1 is BatchNormLayer }
        let inHead = batchNorms.filter { $0.0.hasPrefix("classifier.") }
        XCTAssertEqual(inHead.count, 1, "\(batchNorms.map(\.0))")
        XCTAssertEqual(batchNorms.count, 4)
        for (path, module) in batchNorms {
            XCTAssertEqual(module.usesTrainingBehaviour, path.hasPrefix("classifier."), path)
        }
        try FreezeState(frozenScopes: [], trainBatchNorm: false).apply(to: model)
        XCTAssertTrue(batchNorms.allSatisfy { $0.1.usesTrainingBehaviour }, "applying a state without the flag clears it")
    }
}
