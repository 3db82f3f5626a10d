import Data
import Foundation
import TestSupport
import Training
import XCTest

/// `check-data`'s near-duplicate search with its real embedding: MobileNetV2's ImageNet features of
/// foolbox's photos, through the feature cache.
final class BackboneEmbeddingTests: XCTestCase {
    /// Ten distinct photos in train/{a,b} and test/{a,b}, plus two planted copies in test: one resized
    /// to 60 % and re-encoded as PNG, one resized to 70 %. Both are found, with no other pair, and a
    /// second check reads the features back from the cache.
    func testFindsResizedCopiesAcrossSplitsAndNoDistinctPhotos() throws {
        guard RealAssets.mobileNetV2 != nil else {
            return XCTFail("MobileNetV2's ImageNet weights are not in the cache: run scripts/setup")
        }
        guard let folder = RealAssets.foolboxData else { return XCTFail("foolbox sample images missing: run scripts/setup") }
        let root = NSTemporaryDirectory() + "embedding-check-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: root) }
        let fm = FileManager.default
        let photos = try fm.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("imagenet_") }.sorted()
            .map { folder + "/" + $0 }
        XCTAssertEqual(photos.count, 20)
        let layout = [("train", "a", 3), ("train", "b", 3), ("test", "a", 2), ("test", "b", 2)]
        var next = 0
        for (split, cls, count) in layout {
            try fm.createDirectory(atPath: "\(root)/\(split)/\(cls)", withIntermediateDirectories: true)
            for j in 0..<count {
                try fm.copyItem(atPath: photos[next], toPath: "\(root)/\(split)/\(cls)/\(j).jpg")
                next += 1
            }
        }
        for (source, target, scale) in [("train/b/1.jpg", "test/a/resized.png", 0.6), ("train/a/0.jpg", "test/b/smaller.png", 0.7)] {
            let photo = try Image(contentsOfFile: "\(root)/\(source)")
            try photo.resized(width: Int(Double(photo.width) * scale), height: Int(Double(photo.height) * scale), filter: .bicubic)
                .pngData().write(to: URL(fileURLWithPath: "\(root)/\(target)"))
        }
        let cache = root + "-features"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: cache) }

        let report = try DataCheck.run(root, embedding: BackboneEmbedding(cacheDirectory: cache))
        XCTAssertEqual(Set(report.nearDuplicates.map { Set([$0.first.path, $0.second.path]) }),
                       [["\(root)/train/b/1.jpg", "\(root)/test/a/resized.png"],
                        ["\(root)/train/a/0.jpg", "\(root)/test/b/smaller.png"]], report.rendered())
        for pair in report.nearDuplicates {
            XCTAssertGreaterThanOrEqual(try XCTUnwrap(pair.cosine), 0.9, report.rendered())
        }
        XCTAssertTrue(report.nearDuplicateMethod.hasPrefix("mobilenet_v2 (imagenet weights, 224 px) embeddings"),
                      report.nearDuplicateMethod)
        let cached = try fm.contentsOfDirectory(atPath: cache).filter { $0.hasSuffix(".safetensors") }
        XCTAssertEqual(cached.count, 2, "one cache file per split")
        let again = try DataCheck.run(root, embedding: BackboneEmbedding(cacheDirectory: cache))
        XCTAssertEqual(again, report)
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: cache).filter { $0.hasSuffix(".safetensors") }.sorted(), cached.sorted())
    }
}
