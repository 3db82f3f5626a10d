import Data
import Foundation
import NN
import Torch
import Training
import Vision
import XCTest

/// An epoch whose images leave one over (N mod batch size = 1) ends in a batch of one image. A
/// BatchNorm layer in training behaviour cannot normalise one value per channel (LibTorch: "expected
/// more than 1 value per channel when training"), which ended the run; the trainer now leaves that
/// batch out and says so, as timm and fastai drop their last short batch. Without training BatchNorm,
/// the batch of one trains as before.
final class SingleImageBatchTests: XCTestCase {
    /// TRTinyNet with a Keras-style head whose BatchNorm1d sees one value per channel for one image.
    static func makeModel() throws -> TRTinyNet {
        Runtime.manualSeed(3)
        let model = try TRTinyNet()
        try model.configureHead(HeadSpec(outputs: 3, batchNorm: true))
        return model
    }

    func testABatchOfOneIsLeftOutWhileBatchNormTrains() throws {
        let model = try Self.makeModel()
        let trainer = try Trainer(model: model, configuration: TrainingConfiguration(optimizer: .adam(learningRate: 1e-2)))
        var leftOut: [[Int]] = []
        trainer.onSingleImageBatchLeftOut = { epoch, batch, sample in leftOut.append([epoch, batch, sample]) }
        let loader = try TRData.loader(TRData.dataset(count: 9), batchSize: 8)
        let result = try trainer.fit(train: loader, validation: nil, epochs: 2)
        XCTAssertEqual(result.status, .completed)
        XCTAssertEqual(result.globalStep, 2, "one step per epoch: the batch of eight")
        XCTAssertEqual(leftOut.map { Array($0.prefix(2)) }, [[0, 1], [1, 1]])
        for (epoch, entry) in leftOut.enumerated() {
            XCTAssertEqual(loader.batches(epoch: epoch)[1], [entry[2]], "the image of the epoch's last batch")
        }
        XCTAssertTrue(result.history.allSatisfy { $0.metrics["loss"]?.isFinite == true })
    }

    /// A last batch of one labelled image that pseudo-labelling fills up (here with one unlabelled
    /// image, from decoded images) is not a batch of one: it trains. The trainer asked the pseudo-label
    /// stream for the batch's part twice, once to decide and once to train, and the second ask found
    /// it consumed: the image trained alone, and the head's BatchNorm1d ended the run.
    func testABatchOfOneLabelledImageWithAPseudoLabelledPartTrains() throws {
        let model = try Self.makeModel()
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        configuration.pseudoLabel = PseudoLabelSettings(threshold: 1e-6, fraction: 0.5, startEpoch: 0)
        let trainer = try Trainer(model: model, configuration: configuration)
        let unlabeled = try TRData.dataset(count: 20, seed: 9)
        trainer.pseudoLabeler = PseudoLabeler(unlabeled: unlabeled, classNames: unlabeled.classNames,
                                              trainTransform: TRData.transform, evalTransform: TRData.transform, seed: 7,
                                              batchSize: 5, workers: 0)
        var leftOut = 0
        trainer.onSingleImageBatchLeftOut = { _, _, _ in leftOut += 1 }
        var samples: [Int] = []
        trainer.callbacks = [TREventRecorder { event, _ in if case .batchEnd(let r) = event { samples.append(r.samples) } }]
        let result = try trainer.fit(train: TRData.loader(TRData.dataset(count: 9), batchSize: 8), validation: nil, epochs: 2)
        XCTAssertEqual(result.status, .completed)
        XCTAssertEqual(result.globalStep, 4, "both batches of each epoch train")
        XCTAssertEqual(leftOut, 0)
        XCTAssertEqual(samples, [8, 1, 8, 1], "labelled images per batch")
    }

    func testABatchOfOneTrainsWhenNoBatchNormTrains() throws {
        Runtime.manualSeed(3)
        let model = try TRTinyNet()  // head: Dropout + Linear; head-only freezes the backbone's BatchNorm
        var configuration = TrainingConfiguration(optimizer: .adam(learningRate: 1e-2))
        configuration.apply(.headOnly(trainBatchNorm: false))
        let trainer = try Trainer(model: model, configuration: configuration)
        var leftOut = 0
        trainer.onSingleImageBatchLeftOut = { _, _, _ in leftOut += 1 }
        let result = try trainer.fit(train: TRData.loader(TRData.dataset(count: 9), batchSize: 8), validation: nil, epochs: 2)
        XCTAssertEqual(result.globalStep, 4, "both batches of each epoch train")
        XCTAssertEqual(leftOut, 0)
    }

    /// A batch size of 1 is the user's choice: every batch trains, as in PyTorch (BatchNorm2d over
    /// more than one position per channel normalises a single image), none is left out.
    func testABatchSizeOfOneTrainsEveryBatch() throws {
        Runtime.manualSeed(3)
        let model = try TRTinyNet()  // BatchNorm2d at 8×8, 4×4 and 2×2: several values per channel
        let trainer = try Trainer(model: model, configuration: TrainingConfiguration(optimizer: .adam(learningRate: 1e-2)))
        var leftOut = 0
        trainer.onSingleImageBatchLeftOut = { _, _, _ in leftOut += 1 }
        let result = try trainer.fit(train: TRData.loader(TRData.dataset(count: 5), batchSize: 1), validation: nil, epochs: 1)
        XCTAssertEqual(result.globalStep, 5)
        XCTAssertEqual(leftOut, 0)
    }
}

/// The batch of one that `fit` leaves out does not count: the schedule spans the batches that train,
/// and the epoch's last accumulation group is divided by the batches it trains, as with timm's
/// `drop_last`. Both counted it: a cosine schedule over 3 epochs of 2 batches (1 trained) was 6 steps
/// long and ended at 75% of its rate instead of 25%, and a group of 29 images and the left-out image
/// gave half the update of the 29 images alone.
final class LeftOutBatchCountTests: XCTestCase {
    func testTheScheduleSpansTheBatchesThatTrain() throws {
        let model = try SingleImageBatchTests.makeModel()
        let configuration = TrainingConfiguration(optimizer: .sgd(learningRate: 0.1), schedule: .cosine(etaMin: 0, periodSteps: nil))
        let trainer = try Trainer(model: model, configuration: configuration)
        let result = try trainer.fit(train: TRData.loader(TRData.dataset(count: 9), batchSize: 8), validation: nil, epochs: 3)
        XCTAssertEqual(result.globalStep, 3)
        // Steps 0, 1, 2 of 3: the last at 0.1 · (1 + cos(2π/3)) / 2.
        let rates = result.history.compactMap { $0.metrics["lr"] }
        XCTAssertEqual(rates.count, 3)
        for (rate, expected) in zip(rates, [0.1, 0.075, 0.025]) { XCTAssertEqual(rate, expected, accuracy: 1e-9) }
    }

    func testALastGroupOfOneTrainedBatchIsDividedByOne() throws {
        func trainedWeights(images: Int) throws -> [String: Tensor] {
            let model = try SingleImageBatchTests.makeModel()
            var configuration = TrainingConfiguration(optimizer: .sgd(learningRate: 0.1, momentum: 0), accumulateSteps: 2)
            configuration.seed = 5
            let trainer = try Trainer(model: model, configuration: configuration)
            Runtime.manualSeed(11)
            let loader = try TRData.loader(TRData.dataset(count: images), batchSize: 29, shuffle: false)
            XCTAssertEqual(try trainer.fit(train: loader, validation: nil, epochs: 1).globalStep, 1)
            return Dictionary(uniqueKeysWithValues: model.namedParameters())
        }
        let withLeftOut = try trainedWeights(images: 30), alone = try trainedWeights(images: 29)
        for (name, tensor) in alone {
            let other = try XCTUnwrap(withLeftOut[name])
            XCTAssertEqual(try (tensor - other).abs().max().item(), 0, accuracy: 1e-7, name)
        }
    }
}

extension LeftOutBatchCountTests {
    /// The range test leaves out a last batch of one image as `fit` does: it trained BatchNorm on it,
    /// and ended with LibTorch's "expected more than 1 value per channel" where `train` worked.
    func testTheLearningRateFinderLeavesOutABatchOfOne() throws {
        let trainer = try Trainer(model: SingleImageBatchTests.makeModel(),
                                  configuration: TrainingConfiguration(optimizer: .sgd(learningRate: 0.1)))
        var finder = LRFinder()
        finder.steps = 5
        let result = try finder.run(trainer, on: TRData.loader(TRData.dataset(count: 9), batchSize: 8))
        XCTAssertEqual(result.learningRates.count, 5, "one batch of eight per epoch, five epochs")
    }
}
