import Data
import Foundation
import XCTest

/// Issue 18, finding 7: EXIF orientation is applied by default (photos upright, as viewers show
/// them), and `ImageCodec.exifOrientation = .ignore` (`--exif ignore`) leaves the pixels as stored,
/// as torchvision's PIL loader and Keras' `load_img` do, in every decoding path.
final class EXIFPolicyTests: XCTestCase {
    static func fixture(_ name: String) -> String { ImageCodecTests.fixture(name) }

    override func tearDown() {
        ImageCodec.exifOrientation = .apply
        super.tearDown()
    }

    func testIgnoreKeepsTheStoredPixelsForEveryOrientation() throws {
        let stored = try Image(contentsOfFile: Self.fixture("orient_1.jpg"))
        let rotated = try Image(contentsOfFile: Self.fixture("orient_6.jpg"))
        XCTAssertEqual([rotated.width, rotated.height], [stored.height, stored.width], "applied by default")
        ImageCodec.exifOrientation = .ignore
        for orientation in 2...8 {
            let image = try Image(contentsOfFile: Self.fixture("orient_\(orientation).jpg"))
            XCTAssertEqual([image.width, image.height], [stored.width, stored.height], "orientation \(orientation)")
            XCTAssertTrue(image.pixels == stored.pixels, "orientation \(orientation): pixels as stored")
        }
    }

    func testTheLoadersFastPathFollowsThePolicy() throws {
        let preprocessing = Preprocessing(mean: [0, 0, 0], std: [1, 1, 1], resizeSize: 16, cropSize: 16)
        let dataset = LabeledDataset(samples: [LabeledSample(source: .file(Self.fixture("orient_1.jpg")), label: 0),
                                               LabeledSample(source: .file(Self.fixture("orient_6.jpg")), label: 0)],
                                     classNames: ["a"])
        func batch() throws -> [Float] {
            let loader = try DataLoader(dataset, batchSize: 2, transform: EvaluationTransform(preprocessing), workers: 0)
            return try XCTUnwrap(loader.epoch(0).next()).images.floats()
        }
        let applied = try batch()
        let half = applied.count / 2
        XCTAssertNotEqual(Array(applied[..<half]), Array(applied[half...]), "orientation 6 is turned upright")
        ImageCodec.exifOrientation = .ignore
        let ignored = try batch()
        XCTAssertEqual(Array(ignored[..<half]), Array(ignored[half...]), "both decode as stored")
    }

    /// A loader decodes, on its worker threads too, with the orientation setting in force where it
    /// was created (or the one it is given), not whatever the process-wide setting says later: a
    /// library user's loaders keep their own (before, every loader followed the global setting).
    func testALoaderKeepsTheOrientationItWasCreatedWith() throws {
        let preprocessing = Preprocessing(mean: [0, 0, 0], std: [1, 1, 1], resizeSize: 16, cropSize: 16)
        let dataset = LabeledDataset(samples: [LabeledSample(source: .file(Self.fixture("orient_1.jpg")), label: 0),
                                               LabeledSample(source: .file(Self.fixture("orient_6.jpg")), label: 0)],
                                     classNames: ["a"])
        func halvesEqual(_ loader: DataLoader) throws -> Bool {
            let images = try XCTUnwrap(loader.epoch(0).next()).images.floats()
            return Array(images[..<(images.count / 2)]) == Array(images[(images.count / 2)...])
        }
        for workers in [0, 2] {
            let transform = EvaluationTransform(preprocessing)
            let scoped = try ImageCodec.withEXIFOrientation(.ignore) {
                try DataLoader(dataset, batchSize: 2, transform: transform, workers: workers)
            }
            ImageCodec.exifOrientation = .ignore
            let ignoring = try DataLoader(dataset, batchSize: 2, transform: transform, workers: workers)
            let applying = try DataLoader(dataset, batchSize: 2, transform: transform, workers: workers, exif: .apply)
            ImageCodec.exifOrientation = .apply
            XCTAssertEqual(scoped.exifOrientation, .ignore)
            XCTAssertTrue(try halvesEqual(scoped), "workers \(workers): created inside an .ignore scope")
            XCTAssertTrue(try halvesEqual(ignoring), "workers \(workers): created while the process ignored EXIF")
            ImageCodec.exifOrientation = .ignore
            XCTAssertFalse(try halvesEqual(applying), "workers \(workers): given .apply")
            ImageCodec.exifOrientation = .apply
        }
    }

    /// The data check decodes on many threads, each with the EXIF handling in force for its caller.
    /// orient_6.jpg holds orient_1.jpg's pixels with a 90° tag: inside an `.ignore` scope the two decode
    /// alike and the check pairs them as near-duplicates across splits, as the process-wide `.ignore`
    /// gives; applied, one is turned and they are not (before, the check's threads followed the
    /// process-wide `.apply` inside the scope).
    func testTheDataCheckFollowsTheCallersScope() throws {
        let root = NSTemporaryDirectory() + "exif-check-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        // 32 copies of orient_6.jpg, so that the check's worker threads decode some of them.
        let copies = (0..<32).map { "test/a/orient_6-\($0).jpg" }
        for (path, name) in [("train/a/orient_1.jpg", "orient_1.jpg"), ("train/b/gray.jpg", "gray.jpg"),
                             ("test/b/cmyk.jpg", "cmyk.jpg")] + copies.map { ($0, "orient_6.jpg") } {
            let target = root + "/" + path
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Self.fixture(name), toPath: target)
        }
        /// The copies found near orient_1.jpg.
        func nearTheOriginal() throws -> Set<String> {
            Set(try DataCheck.run(root).nearDuplicates.filter { $0.first.path.hasSuffix("/orient_1.jpg") }
                .map { String($0.second.path.dropFirst(root.count + 1)) })
        }
        XCTAssertEqual(try nearTheOriginal(), [], "applied: every copy is turned")
        XCTAssertEqual(try ImageCodec.withEXIFOrientation(.ignore) { try nearTheOriginal() }, Set(copies))
        ImageCodec.exifOrientation = .ignore
        XCTAssertEqual(try nearTheOriginal(), Set(copies), "the process-wide setting gives the same")
    }

    /// `withEXIFOrientation` decides for the decodes inside it, on its thread only: a server's models
    /// each decode as their own runs were trained while the process-wide setting stays.
    func testAScopedOrientationOverridesTheProcessSettingOnItsThreadOnly() throws {
        let stored = try Image(contentsOfFile: Self.fixture("orient_1.jpg"))
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: Self.fixture("orient_6.jpg")))
        let inside = try ImageCodec.withEXIFOrientation(.ignore) { () throws -> (Image, Image, Image) in
            final class Box: @unchecked Sendable { var image: Image? }
            let other = Box()
            let thread = Thread { other.image = try? Image(decoding: bytes) }  // outside the scope
            thread.start()
            while !thread.isFinished { usleep(1000) }
            return (try Image(contentsOfFile: Self.fixture("orient_6.jpg")), try Image(decoding: bytes),
                    try XCTUnwrap(other.image))
        }
        XCTAssertTrue(inside.0.pixels == stored.pixels && inside.1.pixels == stored.pixels, "as stored inside the scope")
        XCTAssertEqual([inside.2.width, inside.2.height], [stored.height, stored.width], "another thread still applies")
        XCTAssertEqual(ImageCodec.exifOrientation, .apply)
        let after = try Image(decoding: bytes)
        XCTAssertEqual([after.width, after.height], [stored.height, stored.width], "applied again after the scope")

        ImageCodec.exifOrientation = .ignore
        let applied = try ImageCodec.withEXIFOrientation(.apply) { try Image(decoding: bytes) }
        XCTAssertEqual([applied.width, applied.height], [stored.height, stored.width], "the scope wins over .ignore too")
    }
}
