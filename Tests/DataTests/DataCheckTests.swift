import Data
import Foundation
import TestSupport
import XCTest

/// `DataCheck` on folders built from real photos (foolbox's ImageNet JPEGs): every planted problem is
/// found, and a clean folder of distinct photos reports none.
final class DataCheckTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "datacheck-\(UUID().uuidString)"
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func photos() throws -> [String] {
        guard let folder = RealAssets.foolboxData else { throw XCTSkip("foolbox sample images missing: run scripts/setup") }
        return (0..<20).compactMap { i in
            let name = try? FileManager.default.contentsOfDirectory(atPath: folder)
                .first { $0.hasPrefix(String(format: "imagenet_%02d_", i)) }
            return name.map { folder + "/" + $0 }
        }
    }

    /// train/{a,b} and test/{a,b} with two distinct photos each (photos 0–7).
    func makeCleanFolder(_ photos: [String]) throws {
        let fm = FileManager.default
        for (k, (split, cls)) in [("train", "a"), ("train", "b"), ("test", "a"), ("test", "b")].enumerated() {
            try fm.createDirectory(atPath: "\(root)/\(split)/\(cls)", withIntermediateDirectories: true)
            for j in 0..<2 {
                try fm.copyItem(atPath: photos[k * 2 + j], toPath: "\(root)/\(split)/\(cls)/\(j).jpg")
            }
        }
    }

    func testCleanFolderOfDistinctPhotosHasNoProblems() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        let report = try DataCheck.run(root)
        XCTAssertEqual(report.splits.map(\.name), ["train", "test"])
        XCTAssertEqual(report.splits.map(\.classCounts), [[2, 2], [2, 2]])
        XCTAssertEqual(report.imbalanceRatio, 1)
        XCTAssertEqual(report.problemCount, 0, report.rendered())
        XCTAssertEqual(report.modes, ["RGB": 8])
        XCTAssertTrue(report.hints.isEmpty, "\(report.hints)")
    }

    func testDistinctPhotosAreFarApartAndCopiesClose() throws {
        // The 20 distinct photos: no pair near either threshold.
        let photos = try photos()
        let prints = try photos.map { try ImageFingerprint(Image(contentsOfFile: $0)) }
        var closest = 64, mostSimilar = -1.0
        for i in prints.indices {
            for j in prints.indices where j > i {
                closest = min(closest, prints[i].hash.distance(to: prints[j].hash))
                mostSimilar = max(mostSimilar, prints[i].similarity(to: prints[j]))
            }
        }
        XCTAssertGreaterThan(closest, DataCheckOptions().nearDuplicateDistance * 2, "closest pair of distinct photos")
        XCTAssertLessThan(mostSimilar, 0.9, "most similar pair of distinct photos")
        // A copy resized to half and back: within a few bits and above 0.999.
        let photo = try Image(contentsOfFile: photos[0])
        let copy = try photo.resized(width: photo.width / 2, height: photo.height / 2).resized(width: 300, height: 300)
        let print0 = try ImageFingerprint(copy)
        XCTAssertLessThanOrEqual(print0.hash.distance(to: prints[0].hash), 4)
        XCTAssertGreaterThan(print0.similarity(to: prints[0]), 0.999)
    }

    func testFindsPlantedCorruptFileExactDuplicateAndNearDuplicate() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        // A corrupt file: a photo cut off after 40 % of its bytes.
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: photos[8]))
        try bytes.prefix(bytes.count * 4 / 10).write(to: URL(fileURLWithPath: "\(root)/train/a/cut.jpg"))
        // An exact duplicate across splits: train/a/0.jpg copied into test/b.
        try FileManager.default.copyItem(atPath: "\(root)/train/a/0.jpg", toPath: "\(root)/test/b/copy.jpg")
        // A near-duplicate across splits: train/b/1.jpg decoded, resized and re-encoded as PNG into test/a.
        let photo = try Image(contentsOfFile: "\(root)/train/b/1.jpg")
        let smaller = try photo.resized(width: photo.width * 3 / 5, height: photo.height * 3 / 5, filter: .bicubic)
        try smaller.pngData().write(to: URL(fileURLWithPath: "\(root)/test/a/resized.png"))

        let report = try DataCheck.run(root)
        XCTAssertEqual(report.unreadable.map(\.path), ["\(root)/train/a/cut.jpg"], report.rendered())
        XCTAssertTrue(report.unreadable[0].reason.contains("truncated"), report.unreadable[0].reason)
        XCTAssertEqual(report.exactDuplicates.map { Set($0.map(\.path)) },
                       [["\(root)/train/a/0.jpg", "\(root)/test/b/copy.jpg"]])
        XCTAssertEqual(report.nearDuplicates.count, 1, report.rendered())
        let pair = try XCTUnwrap(report.nearDuplicates.first)
        XCTAssertEqual(Set([pair.first.path, pair.second.path]), ["\(root)/train/b/1.jpg", "\(root)/test/a/resized.png"])
        XCTAssertEqual(Set([pair.first.split, pair.second.split]), ["train", "test"])
        XCTAssertGreaterThan(pair.similarity, 0.999)
        XCTAssertEqual(report.problemCount, 3)
        XCTAssertTrue(report.hints.contains { $0.contains("more than one split") }, "\(report.hints)")
        // The JSON round-trips with the documented keys.
        let json = try JSONEncoder().encode(report)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any])
        XCTAssertNotNil(object["near_duplicates"])
        XCTAssertEqual(try JSONDecoder().decode(DataCheckReport.self, from: json), report)
    }

    func testImbalanceAndModesAreReported() throws {
        let photos = try photos()
        let fm = FileManager.default
        for cls in ["a", "b"] { try fm.createDirectory(atPath: "\(root)/\(cls)", withIntermediateDirectories: true) }
        for i in 0..<6 { try fm.copyItem(atPath: photos[i], toPath: "\(root)/a/\(i).jpg") }
        let grey = try Image(contentsOfFile: photos[6])
        let luma = (0..<(grey.width * grey.height)).map { grey.pixels[$0 * 3] }
        try Image(gray: luma, width: grey.width, height: grey.height).pngData()
            .write(to: URL(fileURLWithPath: "\(root)/b/grey.png"))
        try fm.copyItem(atPath: photos[7], toPath: "\(root)/b/7.jpg")
        let report = try DataCheck.run(root)
        XCTAssertEqual(report.splits.map(\.name), ["folder"])
        XCTAssertEqual(report.imbalanceRatio, 3)
        XCTAssertEqual(report.modes, ["RGB": 7, "grey": 1])
        XCTAssertTrue(report.hints.contains { $0.contains("imbalanced") }, "\(report.hints)")
        XCTAssertEqual(report.problemCount, 0, report.rendered())
    }
}
