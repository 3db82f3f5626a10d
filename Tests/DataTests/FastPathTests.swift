@testable import Data
import Foundation
import TestSupport
import Torch
import XCTest

/// The loader's fast path (`DirectSamplePlan`): windowed JPEG decoding, the AVX2 resampler and samples
/// written straight into the batch — each checked against the general path it replaces.
final class FastPathTests: XCTestCase {
    static let jpegs = ["big.jpg", "rgb_baseline.jpg", "rgb_progressive.jpg", "rgb_444.jpg", "gray.jpg", "cmyk.jpg"]
        + (1...8).map { "orient_\($0).jpg" }

    /// Forwards to a transform without its fast path, so the loader takes the general path.
    struct GeneralPath: SampleTransform {
        let inner: any SampleTransform
        var decodeMinSide: Int { inner.decodeMinSide }
        var decodeFast: Bool { inner.decodeFast }
        func tensor(from image: Image, random: inout SampleRandom) throws -> Tensor {
            try inner.tensor(from: image, random: &random)
        }
    }

    static let preprocessing = Preprocessing(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], resizeSize: 36,
                                             cropSize: 32)

    func bytes(_ path: String) throws -> Foundation.Data { try Foundation.Data(contentsOf: URL(fileURLWithPath: path)) }

    // MARK: - Windowed decoding

    func testWindowedDecodeEqualsDecodeThenCrop() throws {
        var random = SampleRandom(seed: 7)
        for name in Self.jpegs {
            let path = Fixtures.path("images/" + name)
            let data = try bytes(path)
            let upright = try Image(contentsOfFile: path)
            for fast in [false, true] {
                for scale in [8, 4, 2, 1] {
                    // The full decode at this scale: `minSide` = the shorter side it gives picks it.
                    let shorter = (min(upright.width, upright.height) * scale + 7) / 8
                    let full = try Image(contentsOfFile: path, minSide: scale == 8 ? 0 : shorter, fast: fast)
                    XCTAssertEqual(min(full.width, full.height), shorter, "\(name) at \(scale)/8")
                    var windows = [(0, 0, full.width, full.height), (full.width - 1, full.height - 1, 1, 1)]
                    for _ in 0..<10 {
                        let w = random.integer(in: 1...full.width), h = random.integer(in: 1...full.height)
                        windows.append((random.integer(in: 0...(full.width - w)), random.integer(in: 0...(full.height - h)), w, h))
                    }
                    for (left, top, w, h) in windows {
                        let window = try data.withUnsafeBytes {
                            try Image.decodeWindow($0, scale: scale, left: left, top: top, width: w, height: h,
                                                   label: name, fast: fast)
                        }
                        XCTAssertEqual(window, try full.cropped(top: top, left: left, height: h, width: w),
                                       "\(name), fast \(fast), scale \(scale)/8, \(w)x\(h) at (\(left), \(top))")
                    }
                }
            }
        }
    }

    /// Windows starting and ending on every row (libjpeg-turbo 2.1 can hang after skips that start or end
    /// inside an iMCU row with merged upsampling; the decoder never makes such skips).
    func testWindowsAtEveryRowDecode() throws {
        for name in ["big.jpg", "rgb_progressive.jpg"] {
            let path = Fixtures.path("images/" + name)
            let data = try bytes(path)
            let full = try Image(contentsOfFile: path, fast: true)
            for top in 0..<full.height {
                for height in Set([1, 2, 7, full.height - top]) where top + height <= full.height {
                    let window = try data.withUnsafeBytes {
                        try Image.decodeWindow($0, scale: 8, left: 3, top: top, width: full.width - 5, height: height,
                                               label: name, fast: true)
                    }
                    XCTAssertEqual(window, try full.cropped(top: top, left: 3, height: height, width: full.width - 5),
                                   "\(name), rows \(top)..<\(top + height)")
                }
            }
        }
    }

    func testWindowedDecodeFailsLikeAFullDecodeAndChecksItsArguments() throws {
        // A window at the top of a truncated baseline JPEG still fails: the rows below are read too.
        let truncated = try bytes(Fixtures.path("images/truncated.jpg"))
        XCTAssertThrowsError(try truncated.withUnsafeBytes {
            try Image.decodeWindow($0, scale: 8, left: 0, top: 0, width: 8, height: 8, label: "truncated.jpg", fast: true)
        }) { error in XCTAssertTrue("\(error)".contains("truncated"), "\(error)") }
        // A truncated progressive JPEG: all its scans are read before the first row, window or not.
        let progressive = try bytes(Fixtures.path("images/rgb_progressive.jpg"))
        let cut = progressive.prefix(progressive.count * 2 / 3)
        XCTAssertThrowsError(try Image(decoding: cut))
        XCTAssertThrowsError(try cut.withUnsafeBytes {
            try Image.decodeWindow($0, scale: 8, left: 0, top: 0, width: 4, height: 4, label: "cut.jpg", fast: true)
        }) { error in XCTAssertTrue("\(error)".contains("truncated"), "\(error)") }
        let big = try bytes(Fixtures.path("images/big.jpg"))
        XCTAssertThrowsError(try big.withUnsafeBytes {
            try Image.decodeWindow($0, scale: 8, left: 250, top: 0, width: 8, height: 8, label: "big.jpg")
        })
        XCTAssertThrowsError(try big.withUnsafeBytes {
            try Image.decodeWindow($0, scale: 3, left: 0, top: 0, width: 8, height: 8, label: "big.jpg")
        })
        // PNG: full size only, cropped after decoding.
        let png = Fixtures.path("images/rgb.png")
        let whole = try Image(contentsOfFile: png)
        let window = try bytes(png).withUnsafeBytes {
            try Image.decodeWindow($0, scale: 8, left: 1, top: 2, width: 3, height: 4, label: "rgb.png")
        }
        XCTAssertEqual(window, try whole.cropped(top: 2, left: 1, height: 4, width: 3))
        XCTAssertThrowsError(try bytes(png).withUnsafeBytes {
            try Image.decodeWindow($0, scale: 4, left: 0, top: 0, width: 2, height: 2, label: "rgb.png")
        })
    }

    // MARK: - Resampling

    /// An image of random size (each side 1…`maxSide`) and random pixels, drawn from `r`.
    func randomImage(channels: Int, maxSide: Int, _ r: inout SampleRandom) throws -> Image {
        let w = r.integer(in: 1...maxSide), h = r.integer(in: 1...maxSide)
        let pixels = (0..<(w * h * channels)).map { _ in UInt8(truncatingIfNeeded: r.next()) }
        return try Image(width: w, height: h, channels: channels, pixels: pixels)
    }

    /// The evaluation resize and crop resamples only the crop, with the pixels of the whole resize
    /// cropped (every size, both filters, identity resizes and crops that touch the edges), and so a
    /// very long image no longer asks for gigabytes: a 1×1,000,000 PNG of 4 KB made `predict` and
    /// `report` allocate 196 GB and abort.
    func testTheCropOfAResizeEqualsTheWholeResizeCroppedAndALongImageStaysSmall() throws {
        var r = SampleRandom(seed: 11)
        for trial in 0..<40 {
            let channels = trial % 5 == 0 ? 1 : 3
            let image = try randomImage(channels: channels, maxSide: 300, &r)
            let (w, h) = (image.width, image.height)
            let crop = r.integer(in: 1...64)
            let resize = trial % 7 == 0 ? min(w, h) : crop + r.integer(in: 0...40)
            for interpolation in ["bilinear", "bicubic"] {
                let p = Preprocessing(mean: [0, 0, 0], std: [1, 1, 1], resizeSize: max(resize, crop), cropSize: crop,
                                      interpolation: interpolation)
                let (sh, sw) = Preprocessing.resizedSize(height: h, width: w, shorterSide: p.resizeSize)
                let whole = try Preprocessing.centerCrop(
                    image.resized(width: sw, height: sh, filter: Image.Filter(name: interpolation)!).toTensor(), size: crop)
                let windowed = try p.resizeAndCrop(image)
                XCTAssertEqual(try windowed.toArray(UInt8.self), try whole.contiguous().toArray(UInt8.self),
                               "\(w)x\(h)x\(channels), resize \(p.resizeSize), crop \(crop), \(interpolation)")
                // The five crops equal the whole resize's corners and centre too.
                if channels == 3 {
                    let five = try FiveCropTransform(p).tensor(from: image, random: &r)
                    let resized = try image.resized(width: sw, height: sh, filter: Image.Filter(name: interpolation)!).toTensor()
                    let corner = try p.normalize(resized.slice(dim: 1, start: sh - crop, end: sh).slice(dim: 2, start: 0, end: crop)
                        .contiguous())
                    XCTAssertTrue(try five.slice(dim: 0, start: 6, end: 9).allClose(corner, rtol: 0, atol: 0))
                }
            }
        }
        let long = try Image(width: 1, height: 1_000_000, channels: 3, pixels: [UInt8](repeating: 90, count: 3_000_000))
        let crop = try Preprocessing.imagenet.resizeAndCrop(long)
        XCTAssertEqual(crop.shape, [3, 224, 224])
        XCTAssertEqual(try crop.toArray(UInt8.self).max(), 90)
        XCTAssertEqual(try FiveCropTransform(.imagenet).tensor(from: long, random: &r).shape, [15, 224, 224])
    }

    func testSIMDResamplingEqualsThePortableLoops() throws {
        guard Image.usesSIMDResampling else { throw XCTSkip("this CPU has no AVX2: only the portable loops run") }
        defer { Image.setSIMDResampling(true) }
        var r = SampleRandom(seed: 3)
        for trial in 0..<60 {
            let channels = trial % 4 == 0 ? 1 : 3
            let image = try randomImage(channels: channels, maxSide: 260, &r)
            let (w, h) = (image.width, image.height)
            let (ow, oh) = (r.integer(in: 1...240), r.integer(in: 1...240))
            for filter in [Image.Filter.bilinear, .bicubic] {
                Image.setSIMDResampling(true)
                let simd = try image.resized(width: ow, height: oh, filter: filter)
                Image.setSIMDResampling(false)
                let portable = try image.resized(width: ow, height: oh, filter: filter)
                XCTAssertEqual(simd, portable, "\(w)x\(h)x\(channels) → \(ow)x\(oh), \(filter)")
            }
        }
    }

    // MARK: - The loader

    /// JPEGs of every kind (and a PNG, and a truncated JPEG that is skipped mid-batch) in two classes.
    func jpegFolder() throws -> ImageFolderDataset {
        let root = try TestData.temporaryDirectory(self)
        let files = Self.jpegs + ["truncated.jpg", "rgb.png", "big.jpg", "rgb_progressive.jpg"]
        for (i, name) in files.enumerated() {
            let ext = (name as NSString).pathExtension
            try FileManager.default.createDirectory(atPath: "\(root)/c\(i % 2)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixtures.path("images/" + name), toPath: "\(root)/c\(i % 2)/\(i).\(ext)")
        }
        return try ImageFolderDataset(root: root)
    }

    func run(_ dataset: any ImageDataset, _ transform: any SampleTransform, workers: Int, dctScaling: Bool = true,
             cache: Bool = false, epochs: Int = 2) throws -> (loader: DataLoader, batches: [Batch]) {
        let loader = try DataLoader(dataset, batchSize: 5, shuffle: true, seed: 11, transform: transform,
                                    workers: workers, prefetch: 2, cacheDecoded: cache, dctScaling: dctScaling)
        var batches: [Batch] = []
        for epoch in 0..<epochs {
            let e = loader.epoch(epoch)
            while let b = try e.nextBatch() { batches.append(b) }
        }
        return (loader, batches)
    }

    func assertSameBatches(_ a: [Batch], _ b: [Batch], _ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(a.map(\.indices), b.map(\.indices), message, file: file, line: line)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.images.shape, y.images.shape, message, file: file, line: line)
            XCTAssertTrue(try x.images.floats() == y.images.floats(), "\(message): batch \(x.number)", file: file, line: line)
            XCTAssertEqual(try x.labels.toArray(Int64.self), try y.labels.toArray(Int64.self), message, file: file, line: line)
        }
    }

    func testFastPathIsUsedForTheStandardTransformsOnly() throws {
        let dataset = TestData.memoryDataset(counts: [2], side: 4)
        func plan(_ t: any SampleTransform) throws -> DirectSamplePlan? { try DataLoader(dataset, batchSize: 2, transform: t).direct }
        XCTAssertNotNil(try plan(TrainingTransform.standard(Self.preprocessing)))
        XCTAssertNotNil(try plan(TrainingTransform.standard(Self.preprocessing, horizontalFlip: false)))
        XCTAssertNotNil(try plan(EvaluationTransform(Self.preprocessing)))
        XCTAssertNil(try plan(TrainingTransform.standard(Self.preprocessing, colorJitter: ColorJitter(brightness: 0.2))))
        XCTAssertNil(try plan(TrainingTransform([RandomResizedCrop(size: 8, interpolation: .nearest)], output: .rescale(1))))
        XCTAssertNil(try plan(GeneralPath(inner: TrainingTransform.standard(Self.preprocessing))))
    }

    func testFastPathEqualsTheGeneralPathBitForBit() throws {
        let dataset = try jpegFolder()
        let transforms: [(String, any SampleTransform)] = [
            ("training", TrainingTransform.standard(Self.preprocessing)),
            ("training, bicubic, no flip",
             TrainingTransform.standard(Preprocessing(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resizeSize: 20,
                                                      cropSize: 20, interpolation: "bicubic"), horizontalFlip: false)),
            ("rescale", TrainingTransform([RandomResizedCrop(height: 12, width: 18), RandomHorizontalFlip()],
                                          output: .rescale(1.0 / 255))),
            ("evaluation", EvaluationTransform(Self.preprocessing)),
        ]
        for (name, transform) in transforms {
            // Without DCT scaling both paths decode at full size: identical pixels.
            let general = try run(dataset, GeneralPath(inner: transform), workers: 2, dctScaling: false)
            XCTAssertEqual(general.loader.skippedFiles.count, 1, "the truncated JPEG")
            for workers in [0, 2] {
                let fast = try run(dataset, transform, workers: workers, dctScaling: false)
                XCTAssertNotNil(fast.loader.direct)
                try assertSameBatches(fast.batches, general.batches, "\(name), \(workers) workers")
                XCTAssertEqual(fast.loader.skippedFiles, general.loader.skippedFiles)
                XCTAssertEqual(fast.loader.imagesDecoded, general.loader.imagesDecoded)
                // From decoded images (the cache) instead of files: the same.
                let cached = try run(dataset, transform, workers: workers, dctScaling: false, cache: true)
                try assertSameBatches(cached.batches, general.batches, "\(name), cached, \(workers) workers")
            }
        }
        // Evaluation decodes whole images either way, so DCT scaling changes nothing between the paths.
        let evaluation = EvaluationTransform(Self.preprocessing)
        try assertSameBatches(try run(dataset, evaluation, workers: 2).batches,
                              try run(dataset, GeneralPath(inner: evaluation), workers: 2).batches, "evaluation, DCT scaling")
    }

    /// `tensor(decoding:label:random:)`, the one-image form `finetune serve` decodes with, equals the
    /// transform applied to `Image(decoding:)` bit for bit: every JPEG and PNG fixture, the fast-path
    /// transforms (exact decoder even for training augmentation) and one without a fast path.
    func testOneImageFromBytesEqualsTheTransformOfTheDecodedImage() throws {
        let transforms: [(String, any SampleTransform)] = [
            ("evaluation", EvaluationTransform(Self.preprocessing)),
            ("five crops (general path)", FiveCropTransform(Self.preprocessing)),
            ("training", TrainingTransform.standard(Self.preprocessing)),
        ]
        let files = Self.jpegs + ["rgb.png", "palette.png", "gray16.png", "rgba.png"]
        for (name, transform) in transforms {
            for file in files {
                let data = try bytes(Fixtures.path("images/" + file))
                var a = SampleRandom(seed: 3), b = SampleRandom(seed: 3)
                let direct = try transform.tensor(decoding: data, label: file, random: &a)
                let general = try transform.tensor(from: Image(decoding: data, path: file), random: &b)
                XCTAssertEqual(direct.shape, general.shape, "\(name), \(file)")
                XCTAssertEqual(try direct.floats(), try general.floats(), "\(name), \(file)")
            }
        }
        // A decoding error names the image, as Image(decoding:)'s does.
        var r = SampleRandom(seed: 0)
        XCTAssertThrowsError(try EvaluationTransform(Self.preprocessing).tensor(
            decoding: try bytes(Fixtures.path("images/truncated.jpg")), label: "upload.jpg", random: &r)) { error in
            XCTAssertTrue("\(error)".contains("upload.jpg"), "\(error)")
        }
    }

    /// With DCT scaling the fast path decodes each random crop at its own scale: the same crops, the
    /// same flips, pixels close to the general path's (equal where the scale is the same).
    func testRandomCropsDecodedAtTheirOwnScaleStayCloseToTheGeneralPath() throws {
        let root = try TestData.temporaryDirectory(self)
        for i in 0..<12 {
            try FileManager.default.createDirectory(atPath: "\(root)/c\(i % 2)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Fixtures.path("images/big.jpg"), toPath: "\(root)/c\(i % 2)/\(i).jpg")
        }
        let dataset = try ImageFolderDataset(root: root)
        let transform = TrainingTransform.standard(Preprocessing(mean: [0, 0, 0], std: [1, 1, 1], resizeSize: 24, cropSize: 24))
        let fast = try run(dataset, transform, workers: 2, epochs: 3).batches
        let general = try run(dataset, GeneralPath(inner: transform), workers: 2, epochs: 3).batches
        XCTAssertEqual(fast.map(\.indices), general.map(\.indices))
        var equal = 0, samples = 0
        for (a, b) in zip(fast, general) {
            for i in 0..<a.count {
                let x = try a.images.select(dim: 0, index: i), y = try b.images.select(dim: 0, index: i)
                let meanDifference = try (x - y).abs().mean().item()
                XCTAssertLessThan(meanDifference, 6.0 / 255, "batch \(a.number), sample \(i)")
                if try x.floats() == y.floats() { equal += 1 }
                samples += 1
            }
        }
        XCTAssertEqual(samples, 36)
        XCTAssertGreaterThan(equal, 0, "small crops keep the general path's scale")
        XCTAssertLessThan(equal, samples, "large crops are decoded at a smaller scale")
    }

    func testRealPhotosTakeTheFastPathExactly() throws {
        guard let folder = RealAssets.foolboxData else { throw XCTSkip("foolbox sample images missing: run scripts/setup") }
        let root = try TestData.temporaryDirectory(self)
        for (i, name) in ["imagenet_00_243.jpg", "imagenet_10_541.jpg", "imagenet_05_853.jpg"].enumerated() {
            try FileManager.default.createDirectory(atPath: "\(root)/c\(i)", withIntermediateDirectories: true)
            for copy in 0..<3 {
                try FileManager.default.copyItem(atPath: folder + "/" + name, toPath: "\(root)/c\(i)/\(copy).jpg")
            }
        }
        let dataset = try ImageFolderDataset(root: root)
        for transform in [TrainingTransform.standard(.imagenet) as any SampleTransform, EvaluationTransform(.imagenet)] {
            try assertSameBatches(try run(dataset, transform, workers: 2, dctScaling: false, epochs: 1).batches,
                                  try run(dataset, GeneralPath(inner: transform), workers: 2, dctScaling: false,
                                          epochs: 1).batches, "\(type(of: transform))")
        }
    }

    func testBatchMemoryIsReusedOnlyAfterTheBatchIsReleased() throws {
        let dataset = try jpegFolder()
        let transform = TrainingTransform.standard(Self.preprocessing)
        let loader = try DataLoader(dataset, batchSize: 4, shuffle: true, seed: 2, transform: transform, workers: 2,
                                    prefetch: 2, dctScaling: false)
        // Batches held by the caller keep their memory: all of them are still intact at the end.
        var held: [Batch] = []
        for epoch in 0..<3 { for b in loader.epoch(epoch) { held.append(b) } }
        var expected: [Batch] = []
        let general = try DataLoader(dataset, batchSize: 4, shuffle: true, seed: 2, transform: GeneralPath(inner: transform),
                                     workers: 0, dctScaling: false)
        for epoch in 0..<3 { for b in general.epoch(epoch) { expected.append(b) } }
        try assertSameBatches(held, expected, "held batches")
        XCTAssertEqual(loader.pool.idleBlocks, 0, "every block is still in use")
        held.removeAll()
        XCTAssertGreaterThan(loader.pool.idleBlocks, 0)
        XCTAssertLessThanOrEqual(loader.pool.idleBlocks, loader.prefetch + 1)
        // Another epoch reuses them and still gives the same batches.
        let again = Array(loader.epoch(1))
        try assertSameBatches(again, Array(general.epoch(1)), "reused memory")
    }
}
