import Data
import Foundation
import NN
import TestSupport
import Torch
import Training
import XCTest

/// Test-time augmentation: the five crops are torchvision's `FiveCrop` of the evaluation resize (the
/// centre one is exactly the evaluation transform), and `evaluate(tta:)` scores the views' averaged
/// softmax.
final class TTATests: XCTestCase {
    let preprocessing = Preprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resizeSize: 12, cropSize: 8)

    func image() throws -> Image {
        var state: UInt32 = 7
        let pixels = (0..<(20 * 15 * 3)).map { _ -> UInt8 in
            state = state &* 1_664_525 &+ 1_013_904_223
            return UInt8(state >> 24)
        }
        return try Image(rgb: pixels, width: 20, height: 15)
    }

    func testFiveCropsAreTheCornersAndCentreOfTheEvaluationResize() throws {
        var random = SampleRandom(seed: 0)
        let crops = try FiveCropTransform(preprocessing).tensor(from: image(), random: &random)
        XCTAssertEqual(crops.shape, [15, 8, 8])
        let centre = try EvaluationTransform(preprocessing).tensor(from: image(), random: &random)
        assertClose(try crops.slice(dim: 0, start: 12, end: 15), centre, atol: 0, "the centre crop is the evaluation image")
        // The resized image is 12 × 16 (shorter side 12): the top-right crop starts at column 8.
        let resized = try image().resized(width: 16, height: 12, filter: .bilinear).toTensor()
        let topRight = try preprocessing.normalize(resized.slice(dim: 1, start: 0, end: 8).slice(dim: 2, start: 8, end: 16).contiguous())
        assertClose(try crops.slice(dim: 0, start: 3, end: 6), topRight, atol: 0, "top-right")
        XCTAssertFalse(try crops.slice(dim: 0, start: 0, end: 3).allClose(topRight, rtol: 0, atol: 1e-3), "the corners differ")
    }

    func testEvaluateAveragesTheSoftmaxOfTheViews() throws {
        let data = try TRData.dataset(count: 12)
        Runtime.manualSeed(8)
        let trainer = try Trainer(model: TRTinyNet(), configuration: TrainingConfiguration())
        let loader = try TRData.loader(data, batchSize: 12, shuffle: false)
        let report = try trainer.evaluate(loader, tta: .flip)
        let batch = try XCTUnwrap(try loader.epoch(0).nextBatch())
        trainer.model.eval()
        let expected = try withInferenceMode { () throws -> Double in
            let p = try (Functional.softmax(trainer.model(batch.images), dim: 1)
                         + Functional.softmax(trainer.model(batch.images.flip([3])), dim: 1)) / 2
            let picked = try p.log().gather(dim: 1, index: batch.labels.unsqueeze(dim: 1))
            return try -picked.mean().item()
        }
        XCTAssertEqual(try XCTUnwrap(report.loss), expected, accuracy: 1e-5)
        let plain = try trainer.evaluate(loader)
        XCTAssertNotEqual(try XCTUnwrap(plain.loss), expected, accuracy: 1e-7, "the mirror changes the result")
        XCTAssertEqual(try TestTimeAugmentation.crops.views(Tensor.zeros([2, 15, 8, 8])).count, 7)
    }

    /// A batch that is not what the views' transform makes is a thrown error (it trapped reading shape[3]).
    func testViewsOfAWronglyShapedBatchAreAnError() throws {
        XCTAssertThrowsError(try TestTimeAugmentation.crops.views(Tensor.zeros([2, 3]))) { error in
            XCTAssertEqual("\(error)", "test-time augmentation crops takes a batch of shape [N, 15, H, W] (five crops "
                + "of 3 channels each, as its transform makes), got [2, 3]")
        }
        XCTAssertThrowsError(try TestTimeAugmentation.flip.probabilities(Tensor.zeros([2])) { $0 })
        XCTAssertThrowsError(try TestTimeAugmentation.crops.views(Tensor.zeros([2, 3, 8, 8])))
        XCTAssertEqual(try TestTimeAugmentation.flip.views(Tensor.zeros([2, 3, 8, 8])).count, 2)
    }
}
