import Data
import Foundation
import Torch
import XCTest

/// The data pipeline's public calls given what a library user gets wrong (a grey [H, W] tensor, a float
/// image in [0, 1], a ratio of 0, one magnitude bin, an index past the end) throw an error naming the
/// mistake. Each of these trapped the process (probe AB) or, for float images, gave wrong numbers.
final class MisuseThrowsTests: XCTestCase {
    func message(_ body: () throws -> Any) -> String {
        do {
            _ = try body()
            return "no error"
        } catch { return "\(error)" }
    }

    func testPreprocessingRefusesWhatIsNotAUint8RGBImage() throws {
        let p = Preprocessing.imagenet
        XCTAssertEqual(message { try p.evaluationTransform(Tensor.zeros([10, 10], dtype: .uint8)) },
                       "expected images of shape [C, H, W] or [N, C, H, W] with C = 3 (RGB) or 1 (grey), got shape [10, 10]")
        XCTAssertEqual(message { try p.resizeAndCrop(Tensor.zeros([10], dtype: .uint8)) },
                       "expected images of shape [C, H, W] or [N, C, H, W] with C = 3 (RGB) or 1 (grey), got shape [10]")
        XCTAssertEqual(message { try p.evaluationTransform(Tensor.zeros([2, 8, 8], dtype: .uint8)) },
                       "expected images of shape [C, H, W] or [N, C, H, W] with C = 3 (RGB) or 1 (grey), got shape [2, 8, 8]")
        // Grey is normalised as its RGB replica, as a tensor and as a decoded image.
        let grey = try Image(gray: (0..<(240 * 250)).map { UInt8($0 % 253) }, width: 250, height: 240)
        let rgb = try p.evaluationTransform(grey.rgb())
        XCTAssertEqual(try p.evaluationTransform(grey).floats(), try rgb.floats())
        XCTAssertEqual(try p.evaluationTransform(grey.toTensor()).floats(),
                       try p.evaluationTransform(grey.rgb().toTensor()).floats())
        XCTAssertEqual(message { try p.evaluationTransform(Tensor.zeros([3, 0, 5], dtype: .uint8)) },
                       "expected images of at least 1×1 pixels, got shape [3, 0, 5]")
        XCTAssertEqual(message { try Preprocessing.centerCrop(Tensor.zeros([5]), size: 2) },
                       "cannot centre-crop a tensor of shape [5]: it has no H and W")
        // torchvision's ToTensor output, [0, 1] floats: taken for 0–255 (a mean of −1.97 for 200/255).
        XCTAssertEqual(message { try p.evaluationTransform(Tensor.full([3, 8, 8], 200.0 / 255)) },
                       "expected uint8 images (0–255), got float32: scale float images to 0–255 and convert them "
                       + "to uint8 first")
        XCTAssertTrue(message { try p.normalize(Tensor.full([3, 8, 8], 0.5)) }.hasPrefix("expected uint8 images"))
        XCTAssertEqual(Preprocessing.resizedSize(height: 0, width: 5, shorterSide: 4).width, 4)
        XCTAssertEqual(p.withCropSize(Int.max).resizeSize, Int.max)
        XCTAssertThrowsError(try p.withCropSize(Int.max).validate())
        // What it takes still works: uint8 [3, H, W] and [N, 3, H, W].
        XCTAssertEqual(try p.evaluationTransform(Tensor.zeros([3, 300, 260], dtype: .uint8)).shape, [3, 224, 224])
        XCTAssertEqual(try p.evaluationTransform(Tensor.zeros([2, 3, 300, 260], dtype: .uint8)).shape, [2, 3, 224, 224])
    }

    func testImagesFromTensorsMustBeUint8AndCropsAndResizesStayInRange() throws {
        XCTAssertEqual(message { try Image(chw: Tensor.full([3, 2, 2], 300.0)) },
                       "expected a uint8 image tensor (0–255), got float32: scale float images to 0–255 and "
                       + "convert them to uint8 first")
        let image = try Image(rgb: [UInt8](repeating: 7, count: 12), width: 2, height: 2)
        XCTAssertEqual(try Image(chw: image.toTensor()), image)
        XCTAssertEqual(message { try image.cropped(top: 1, left: 0, height: Int.max, width: 1) },
                       "crop 1x9223372036854775807 at (0, 1) is outside a 2x2 image")
        XCTAssertEqual(message { try image.resized(height: 1 << 32, width: 1 << 32, interpolation: .nearest) },
                       "cannot resize to 4294967296x4294967296: more than 178956970 pixels")
    }

    func testAugmentationsNameTheirBadSettings() throws {
        let image = try Image(rgb: (0..<(16 * 12 * 3)).map { UInt8($0 % 251) }, width: 16, height: 12)
        var random = SampleRandom(seed: 1)
        func applied(_ augmentation: any ImageAugmentation) -> String {
            message { try augmentation.apply(image, random: &random) }
        }
        XCTAssertEqual(applied(RandomResizedCrop(size: 8, ratio: 0...1)),
                       "RandomResizedCrop: ratio must be positive, at most 1e6, got 0.0...1.0")
        XCTAssertEqual(applied(RandomResizedCrop(size: 8, scale: -1...(-0.5))),
                       "RandomResizedCrop: scale must be within 0...1, got -1.0...-0.5")
        XCTAssertEqual(applied(RandomResizedCrop(size: 8, scale: 1...1e308)),
                       "RandomResizedCrop: scale must be within 0...1, got 1.0...1e+308")
        XCTAssertEqual(applied(RandAugment(m: 0, bins: 1)), "RandAugment: bins must be within 2...10000, got 1")
        XCTAssertEqual(applied(RandAugment(n: -1)), "RandAugment: n (operations) must be within 0...1000, got -1")
        XCTAssertEqual(applied(RandAugment(m: -1)), "RandAugment: m (magnitude bin) must be within 0...30, got -1")
        XCTAssertEqual(applied(TrivialAugmentWide(bins: 1)), "TrivialAugmentWide: bins must be within 2...10000, got 1")
        XCTAssertEqual(applied(ColorJitter(brightness: 1e308)), "ColorJitter: brightness must be within 0.0...1000000.0, got 1e+308")
        XCTAssertEqual(applied(ColorJitter(contrast: -0.5)), "ColorJitter: contrast must be within 0.0...1000000.0, got -0.5")
        // The parameter draws themselves never trap, whatever they are given.
        var r = SampleRandom(seed: 2)
        let crop = RandomResizedCrop.parameters(imageHeight: 12, imageWidth: 16, scale: 0...1, ratio: 0...1, random: &r)
        XCTAssertTrue(crop.height >= 1 && crop.height <= 12 && crop.width >= 1 && crop.width <= 16, "\(crop)")
        XCTAssertNil(RandomErasing(probability: 1, ratio: 0...1e-300).rectangle(height: 8, width: 8, random: &r))

        let tensor = try Tensor.zeros([3, 8, 8])
        XCTAssertEqual(message { try RandomErasing(probability: 1, ratio: 0...1).apply(tensor, random: &random) },
                       "RandomErasing: ratio must be positive, at most 1e6, got 0.0...1.0")
        XCTAssertEqual(message { try RandomErasing(probability: 1.5).apply(tensor, random: &random) },
                       "RandomErasing: probability must be within 0.0...1.0, got 1.5")
        // Sound settings are untouched.
        XCTAssertEqual(try RandomResizedCrop(size: 8).apply(image, random: &random).width, 8)
        XCTAssertEqual(try RandAugment().apply(image, random: &random).width, 16)
    }

    func testLoadersSamplersAndDatasetsRefuseOutOfRangeValues() throws {
        let store = try ImageStore(bytes: [UInt8](repeating: 9, count: 4 * 27), count: 4, width: 3, height: 3, channels: 3)
        let dataset = LabeledDataset(samples: (0..<4).map { LabeledSample(source: .memory(store, index: $0), label: $0 % 2) },
                                     classNames: ["a", "b"])
        XCTAssertEqual(message { try DataLoader(dataset, batchSize: 2, transform: TrainingTransform([], output: .rescale(1)),
                                                workers: 0, prefetch: Int.max) },
                       "prefetch must be 1 to 4096 batches, got \(Int.max)")
        XCTAssertEqual(message { try dataset.loadImage(at: 999) }, "no sample 999: the dataset has 4")
        XCTAssertEqual(BalancedSampler(labels: [0, 1], classCount: 2, numSamples: -1, seed: 0).indices(epoch: 0), [])
        // One stray label of 10⁹ sized an array of 10⁹ counts (8 GB); it is one more class now.
        let stray = BalancedSampler(labels: [0, 0, 1, 1_000_000_000], classCount: 2, numSamples: 3_000, seed: 1)
        let drawn = stray.indices(epoch: 0)
        XCTAssertEqual(drawn.count, 3_000)
        let share = Double(drawn.filter { $0 == 3 }.count) / 3_000
        XCTAssertEqual(share, 1.0 / 3, accuracy: 0.05)
    }
}
