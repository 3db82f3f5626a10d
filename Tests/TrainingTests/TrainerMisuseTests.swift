import Data
import Foundation
import NN
import Optim
import Torch
@testable import Training
import XCTest

/// What a library user can get wrong when driving `Trainer` and its parts by hand (probe AC): each is
/// a thrown error naming the mistake. Each trapped the process, or trained on without a word.
final class TrainerMisuseTests: XCTestCase {
    /// A feature cache of other data: indexing it by the loader's samples trapped (index out of range).
    func testAFeatureCacheOfOtherDataIsAnError() throws {
        Runtime.manualSeed(3)
        let model = try TRTinyNet()
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), seed: 1)
        configuration.apply(.headOnly(trainBatchNorm: false))
        let small = try TRData.dataset(count: 4), large = try TRData.dataset(count: 8)
        let trainer = try Trainer(model: model, configuration: configuration)  // freezes the backbone
        let cached = try FeatureCache.prepare(model: model, dataset: small, transform: TRData.transform,
                                              transformDescription: "test", directory: nil)
        trainer.featureCache = TrainingFeatures(train: cached)
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(large, batchSize: 4), epochs: 1)) { error in
            XCTAssertTrue("\(error)".contains("the feature cache holds 4 samples and the data 8: it was made for other data"),
                          "\(error)")
        }
        XCTAssertThrowsError(try cached.epoch(0, of: TRData.loader(large, batchSize: 4)).nextBatch())
        XCTAssertNotNil(try cached.epoch(0, of: TRData.loader(small, batchSize: 4)).nextBatch())
    }

    /// A feature cache of other images with as many samples trained the head on their features without a
    /// word (only counts were compared). The same images loaded again (another store, the same bytes) and
    /// relabelled samples still use it: features do not depend on labels.
    func testAFeatureCacheOfOtherImagesWithTheSameCountIsAnError() throws {
        Runtime.manualSeed(3)
        let model = try TRTinyNet()
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), seed: 1)
        configuration.apply(.headOnly(trainBatchNorm: false))
        let data = try TRData.dataset(count: 6, seed: 1), other = try TRData.dataset(count: 6, seed: 2)
        var usedCache: [Bool] = []
        let recorder = TREventRecorder { event, _ in
            if case .epochEnd(let result) = event { usedCache.append(result.usedFeatureCache) }
        }
        let trainer = try Trainer(model: model, configuration: configuration, callbacks: [recorder])
        let cached = try FeatureCache.prepare(model: model, dataset: data, transform: TRData.transform,
                                              transformDescription: "test", directory: nil)
        trainer.featureCache = TrainingFeatures(train: cached)
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(other, batchSize: 3), epochs: 1)) { error in
            XCTAssertTrue("\(error)".contains("the feature cache was made from other images: sample 0 of the data is "
                + "<in-memory image #0>"), "\(error)")
        }
        let reloaded = try TRData.dataset(count: 6, seed: 1)
        var relabelled = reloaded
        relabelled.samples = relabelled.samples.map { LabeledSample(source: $0.source, label: ($0.label + 1) % 3) }
        for (epochs, dataset) in [data, reloaded, relabelled].enumerated() {  // `epochs` counts from the start
            XCTAssertNoThrow(try trainer.fit(train: TRData.loader(dataset, batchSize: 3), epochs: epochs + 1))
        }
        XCTAssertEqual(usedCache, [true, true, true])
        // Probe AD: stores were compared whole, so one other image named sample 0, which was the same.
        var changed = reloaded.samples
        guard case .memory(let store, _) = changed[4].source else { return XCTFail("not in memory") }
        var bytes = store.bytes
        bytes[4 * store.bytesPerImage] ^= 0xFF
        let edited = try ImageStore(bytes: bytes, count: store.count, width: store.width, height: store.height,
                                    channels: store.channels)
        changed = changed.enumerated().map { LabeledSample(source: .memory(edited, index: $0.offset), label: $0.element.label) }
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(LabeledDataset(samples: changed, classNames: data.classNames),
                                                                  batchSize: 3), epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains("sample 4 of the data is <in-memory image #4>"), "\(error)")
        }
    }

    /// Probe AD: image files were compared by their path strings, so the same files named `./x`, `x//y`,
    /// by their absolute path or through a link were "other images". Files are compared by identity
    /// (device and inode) when their paths differ.
    func testAFeatureCacheOfTheSameFilesSpelledOtherwiseIsUsed() throws {
        Runtime.manualSeed(3)
        let root = NSTemporaryDirectory() + "fc-paths-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/images", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let memory = try TRData.dataset(count: 6)
        var names: [String] = []
        for (i, sample) in memory.samples.enumerated() {
            names.append("images/\(i).png")
            try sample.source.load().pngData().write(to: URL(fileURLWithPath: root + "/" + names[i]))
        }
        try FileManager.default.createSymbolicLink(atPath: root + "/linked", withDestinationPath: root + "/images")
        func dataset(_ path: (Int) -> String) -> LabeledDataset {
            LabeledDataset(samples: memory.samples.indices.map { LabeledSample(source: .file(path($0)), label: memory.samples[$0].label) },
                           classNames: memory.classNames)
        }
        let model = try TRTinyNet()
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), seed: 1)
        configuration.apply(.headOnly(trainBatchNorm: false))
        let trainer = try Trainer(model: model, configuration: configuration)
        let made = dataset { root + "/" + names[$0] }
        trainer.featureCache = TrainingFeatures(train: try FeatureCache.prepare(
            model: model, dataset: made, transform: TRData.transform, transformDescription: "test", directory: nil))
        let spellings: [(Int) -> String] = [{ root + "/./images//\($0).png" }, { root + "/linked/\($0).png" },
                                            { root + "/images/../images/\($0).png" }]
        for (epochs, spelling) in spellings.enumerated() {
            XCTAssertNoThrow(try trainer.fit(train: TRData.loader(dataset(spelling), batchSize: 3), epochs: epochs + 1))
        }
        let swapped = dataset { root + "/" + names[$0 == 2 ? 3 : $0 == 3 ? 2 : $0] }
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(swapped, batchSize: 3), epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains("sample 2 of the data is \(root)/images/3.png"), "\(error)")
        }
        // A file gone since: under another spelling it cannot be told to be the same one, and the message
        // says why (probe AE: it read as if the images differed).
        try FileManager.default.removeItem(atPath: root + "/images/1.png")
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(dataset(spellings[1]), batchSize: 3), epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains("(\(root)/linked/1.png and \(root)/images/1.png cannot be found, so the two "
                + "cannot be told to be one file)"), "\(error)")
        }
    }

    /// One class and a one-output head: cross-entropy of one logit is 0, so `fit` trained to a loss of 0
    /// and learnt nothing (probe AC), while `evaluate` refused one class. `fit` refuses it too; binary
    /// mode (one output, two classes) still trains.
    func testFitRefusesOneClass() throws {
        let oneClass = try TRData.dataset(count: 6, classes: 1)
        let trainer = try Trainer(model: try TRTinyNet(classes: 1),
                                  configuration: TrainingConfiguration(optimizer: .sgd(learningRate: 0.1), seed: 1))
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(oneClass, batchSize: 3), epochs: 1)) { error in
            XCTAssertTrue("\(error)".contains("a classifier needs at least 2 classes, the data has 1 (\"class0\")"),
                          "\(error)")
        }
        var binary = TrainingConfiguration(optimizer: .sgd(learningRate: 0.1), seed: 1)
        binary.loss = .binary
        // Binary mode with one class name (or none) trained too (probe AD).
        for names in [["pos"], []] {
            let data = LabeledDataset(samples: oneClass.samples, classNames: names)
            XCTAssertThrowsError(try Trainer(model: try TRTinyNet(classes: 1), configuration: binary)
                .fit(train: TRData.loader(data, batchSize: 3), epochs: 1)) { error in
                XCTAssertTrue("\(error)".contains("binary mode needs 2 classes, the data has \(names.count)"), "\(error)")
            }
        }
        let twoClasses = try TRData.dataset(count: 6, classes: 2)
        let result = try Trainer(model: try TRTinyNet(classes: 1), configuration: binary)
            .fit(train: TRData.loader(twoClasses, batchSize: 3), epochs: 1)
        XCTAssertGreaterThan(result.history.last?.metrics["loss"] ?? 0, 0)
    }

    /// Under MixUp/CutMix a label outside the classes was a row without a one, and training on such data
    /// completed; without mixing, cross-entropy refused it. Both refuse it now.
    func testMixedTargetsRefuseLabelsOutsideTheClasses() throws {
        XCTAssertThrowsError(try BatchMixing.targets([0, 7, 1], classes: 3, lambda: 0.7, smoothing: 0)) { error in
            XCTAssertEqual("\(error)", "invalid training configuration: label 7 is outside the model's 3 classes (0 to 2)")
        }
        XCTAssertThrowsError(try BatchMixing.targets([-1], classes: 3, lambda: 1, smoothing: 0))
        XCTAssertEqual(try BatchMixing.targets([0, 2], classes: 3, lambda: 1, smoothing: 0).floats(), [1, 0, 0, 0, 0, 1])

        let stray = LabeledDataset(samples: try TRData.dataset(count: 8).samples.enumerated().map { i, sample in
            LabeledSample(source: sample.source, label: i == 5 ? 7 : sample.label)
        }, classNames: ["a", "b", "c"])
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2), seed: 1)
        configuration.mix = MixConfig(mixupAlpha: 0.4, cutmixAlpha: 0)
        let trainer = try Trainer(model: TRTinyNet(), configuration: configuration)
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(stray, batchSize: 8), epochs: 1)) { error in
            XCTAssertTrue("\(error)".contains("label 7 is outside the model's 3 classes"), "\(error)")
        }
    }

    /// A schedule whose rate is infinite, negative or past float32 stops before the step is taken (the
    /// step was taken at -inf, then saving the optimizer failed with an encoding error; 1e306 failed in
    /// LibTorch's conversion to float).
    func testAScheduleGivingAnUnusableRateIsAnErrorBeforeTheStep() throws {
        let parameter = try Tensor([Float(1)]).setRequiresGrad()
        let optimizer = try SGD([ParameterGroup(parameters: [("w", parameter)])], learningRate: 0.01)
        for (schedule, text) in [("cosine:eta_min=1e308", "-inf"), ("exponential:decay_steps=1,rate=1e308", "1e+306")] {
            let parsed = try ScheduleConfig(parsing: schedule).schedule
            var failure: String?
            for step in 0..<4 {
                do { try parsed.apply(to: optimizer, baseLearningRates: [0.01], step: step, totalSteps: 4) } catch {
                    failure = "\(error)"
                    break
                }
            }
            XCTAssertTrue(failure?.hasPrefix("the learning-rate schedule gives \(text) at step") == true, "\(schedule): \(failure ?? "none")")
            XCTAssertTrue(optimizer.learningRates.allSatisfy(\.isFinite), "nothing unusable was set")
        }
    }

    /// Probe AD: `exponential:decay_steps=1,rate=1e9` passed every parameter check, trained an epoch at rates
    /// up to 1e24, checkpointed it and failed at step 5 (1e42); a resume could not change the schedule.
    /// `fit` checks the phase's steps before the first one.
    func testAScheduleThatBecomesUnusableLaterIsRefusedBeforeTheFirstStep() throws {
        var configuration = TrainingConfiguration(optimizer: .sgd(learningRate: 1e-3), seed: 1)
        configuration.schedule = try ScheduleConfig(parsing: "exponential:decay_steps=1,rate=1e9")
        let trainer = try Trainer(model: try TRTinyNet(), configuration: configuration)
        XCTAssertThrowsError(try trainer.fit(train: TRData.loader(try TRData.dataset(count: 6), batchSize: 3), epochs: 6)) { error in
            XCTAssertTrue("\(error)".hasPrefix("the learning-rate schedule gives 9.999999999999999e+41 at step 5"), "\(error)")
        }
        XCTAssertEqual(trainer.state.globalStep, 0, "a step was taken")
        // Within float32 to the end (1e-3, then 1e6): trains.
        XCTAssertEqual(try Trainer(model: try TRTinyNet(), configuration: configuration)
            .fit(train: TRData.loader(try TRData.dataset(count: 6), batchSize: 3), epochs: 1).globalStep, 2)
        // Phase 2's schedule, checked in phase 1 when phase 2 starts after a set number of epochs: it failed
        // only after phase 1 had trained.
        var twoPhase = TrainingConfiguration(optimizer: .sgd(learningRate: 1e-3), seed: 1)
        twoPhase.apply(.twoPhase(PhaseTwo(trigger: .afterEpochs(1), optimizer: .sgd(learningRate: 1e-3),
                                          schedule: configuration.schedule)))
        let phased = try Trainer(model: try TRTinyNet(), configuration: twoPhase)
        XCTAssertThrowsError(try phased.fit(train: TRData.loader(try TRData.dataset(count: 6), batchSize: 3), epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains("phase 2: the learning-rate schedule gives 9.999999999999999e+41 at step 5"),
                          "\(error)")
        }
        XCTAssertEqual(phased.state.globalStep, 0, "phase 1 trained")
        // Layer decay too (probe AF: a decay of 1e10 trained phase 1, then failed, and no resume could
        // change it). TRTinyNet has 3 backbone groups: 1e-3 × 1e20³ is past float32; with only the top
        // group unfrozen the rates are 1e-3 and 1e17, and phase 2 trains. The message names the base.
        func layerDecay(_ unfreeze: PhaseTwo.Unfreeze) -> TrainingConfiguration {
            var decayed = TrainingConfiguration(optimizer: .sgd(learningRate: 1e-3), seed: 1)
            decayed.apply(.twoPhase(PhaseTwo(trigger: .afterEpochs(1), unfreeze: unfreeze, optimizer: .sgd(learningRate: 1e-3),
                                             learningRates: .layerDecay(1e20))))
            return decayed
        }
        let decayed = try Trainer(model: try TRTinyNet(), configuration: layerDecay(.all))
        XCTAssertThrowsError(try decayed.fit(train: TRData.loader(try TRData.dataset(count: 6), batchSize: 3), epochs: 2)) { error in
            XCTAssertTrue("\(error)".contains("phase 2: the learning-rate schedule gives 1"), "\(error)")
            XCTAssertTrue("\(error)".contains("e+57 at step 0 from a base rate of 1"), "\(error)")
        }
        XCTAssertEqual(decayed.state.globalStep, 0, "phase 1 trained")
        let top = try Trainer(model: try TRTinyNet(), configuration: layerDecay(.top(1)))
        XCTAssertEqual(try top.fit(train: TRData.loader(try TRData.dataset(count: 6), batchSize: 3), epochs: 2).globalStep, 4)
    }

    /// The ahead check looks at the smallest and largest base rates: a schedule is monotone in its
    /// base, so they bound the others (each of layer decay's bases was walked for every step).
    func testTheAheadCheckNamesTheBaseRateAndBoundsEveryGroupByTheExtremes() throws {
        let schedule = try ScheduleConfig(parsing: "exponential:decay_steps=1,rate=10").schedule
        let bad = try XCTUnwrap(schedule.firstUnusableRate(baseLearningRates: [1e-3, 1e30, 1, 1e-2], steps: 0..<100, totalSteps: 100))
        XCTAssertEqual(bad.step, 9)
        XCTAssertEqual(bad.base, 1e30)
        XCTAssertNil(schedule.firstUnusableRate(baseLearningRates: [1e-3, 1, 1e-2], steps: 0..<30, totalSteps: 30))
        XCTAssertNotNil(schedule.firstUnusableRate(baseLearningRates: [1e-3, 1, 1e-2], steps: 0..<40, totalSteps: 40))
    }

    /// `ModelEMA` checks its configuration (a decay of 5 or NaN averaged into garbage; only `Trainer`
    /// checked), and `MixConfig.validate` is public for those who draw by hand.
    func testEMAAndMixSettingsAreCheckedForLibraryUsers() throws {
        let model = try TRTinyNet()
        for decay in [5, .nan, -0.1, 1] as [Double] {
            XCTAssertThrowsError(try ModelEMA(model: model, configuration: EMAConfig(decay: decay)), "\(decay)")
        }
        XCTAssertNoThrow(try ModelEMA(model: model, configuration: EMAConfig(decay: 0.99)))
        XCTAssertThrowsError(try MixConfig(mixupAlpha: 0, cutmixAlpha: .infinity).validate())
        XCTAssertNoThrow(try MixConfig(mixupAlpha: 0.2, cutmixAlpha: 1).validate())
    }

    /// Helpers that trapped on values a hand-made call can pass (probe AC): each gives a defined answer.
    func testHelpersGiveDefinedAnswersForOddValues() throws {
        XCTAssertEqual(PseudoLabelSettings(fraction: 1).pseudoCount(labelled: 10),
                       PseudoLabelSettings(fraction: PseudoLabelSettings.largestFraction).pseudoCount(labelled: 10))
        XCTAssertEqual(MixConfig(mixupAlpha: 0, cutmixAlpha: 1).draw(epoch: 0, batch: 0, height: 0, width: 0).lambda, 1)
        let (box, lambda) = CutMixBox.around(centreY: 1, centreX: 1, lambda: 2, height: 10, width: 10)
        XCTAssertEqual(lambda, 1)
        XCTAssertEqual(box.bottom - box.top, 0)
        XCTAssertEqual(CutMixBox.around(centreY: 0, centreX: 0, lambda: 0.5, height: 0, width: 4).lambda, 1)
        XCTAssertNil(LRFinder.suggestion(learningRates: [1, 2, 3], losses: [1, 2, 3], steps: -100))
        let result = LRFinder.Result(learningRates: [1e-3, 1e-2], losses: [1, 0.5], suggestion: nil, suggestionIndex: 9,
                                     stoppedEarly: false)
        XCTAssertFalse(LRFinder.plot(result).isEmpty)

        var metrics = try ClassificationMetrics(classCount: 3)
        XCTAssertThrowsError(try metrics.update(logits: Tensor.zeros([2, 3]), labels: Tensor([Float(1.7), 0.2]))) { error in
            XCTAssertEqual("\(error)", "labels must be class indices (an integer dtype), got float32")
        }
        // The refused batch fixed no input form: a batch of probabilities is still welcome.
        XCTAssertThrowsError(try metrics.update(logits: Tensor.zeros([1, 3]), labels: Tensor([Int64(7)])))
        try metrics.update(probabilities: Tensor([Float(0.2), 0.5, 0.3], shape: [1, 3]), labels: Tensor([Int64(1)]))
        XCTAssertEqual(metrics.report().sampleCount, 1)
        XCTAssertFalse(metrics.report().rendered(digits: -2).contains("%"))
        XCTAssertNil(ClassificationMetrics.rocAUC(scores: [0.1, .nan, 0.9], positives: [false, true, true]))
        XCTAssertEqual(ClassificationMetrics.rocAUC(scores: [0.1, 0.4, 0.9], positives: [false, true, true]), 1)
    }
}
