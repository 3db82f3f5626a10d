@testable import Data
import Foundation
import TestSupport
import Torch
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
        // The unreadable file is not counted as an image of its class (it was: 3 and 2, ratio 1.5).
        XCTAssertEqual(report.splits.map(\.classCounts), [[2, 2], [3, 3]])
        XCTAssertEqual(report.splits.map(\.images), [4, 6])
        XCTAssertEqual(report.imbalanceRatio, 1)
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

    /// A JPEG cut short with its end marker put back decodes without an error: libjpeg (like PIL)
    /// makes the lost part up. The check names it as damaged (it said nothing: 0 problems), and a
    /// JPEG with extraneous bytes between markers, which loses nothing, is not damaged.
    func testAJPEGCutShortWithItsEndMarkerIsNamedAsDamaged() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: photos[8]))
        let cut = bytes.prefix(bytes.count / 2) + Foundation.Data([0xFF, 0xD9])
        try cut.write(to: URL(fileURLWithPath: "\(root)/train/a/cut.jpg"))
        // Two bytes of padding before the end marker: libjpeg's "extraneous bytes" warning only.
        let padded = bytes.prefix(bytes.count - 2) + Foundation.Data([0x00, 0x00, 0xFF, 0xD9])
        XCTAssertEqual(bytes.suffix(2), Foundation.Data([0xFF, 0xD9]))
        try padded.write(to: URL(fileURLWithPath: "\(root)/train/b/padded.jpg"))

        // The cut file decodes (training uses it), far from the photo (the lost part is made up).
        let (original, decoded) = (try Image(contentsOfFile: photos[8]), try Image(contentsOfFile: "\(root)/train/a/cut.jpg"))
        XCTAssertEqual([decoded.width, decoded.height], [original.width, original.height])
        let difference = zip(original.pixels, decoded.pixels).map { abs(Int($0) - Int($1)) }.max() ?? 0
        XCTAssertGreaterThan(difference, 40)

        let report = try DataCheck.run(root)
        XCTAssertTrue(report.unreadable.isEmpty, report.rendered())
        XCTAssertEqual(report.damaged.map(\.path), ["\(root)/train/a/cut.jpg"], report.rendered())
        XCTAssertEqual(report.damaged.first?.reason, "Corrupt JPEG data: premature end of data segment")
        XCTAssertEqual(report.splits.map(\.classCounts), [[3, 3], [2, 2]], "a damaged image still counts")
        XCTAssertEqual(report.problemCount, 1)
        XCTAssertTrue(report.hints.contains { $0.contains("1 JPEG is damaged") }, "\(report.hints)")
        XCTAssertTrue(report.summaryLine.contains("1 damaged"), report.summaryLine)
        let json = try JSONEncoder().encode(report)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: json) as? [String: Any])
        XCTAssertEqual((object["damaged"] as? [[String: Any]])?.count, 1)
        XCTAssertEqual(try JSONDecoder().decode(DataCheckReport.self, from: json), report)
    }

    /// A `path,label` CSV file is checked as one set (the run report of a CSV run checks its data;
    /// the check read class folders only, so that report failed with "does not exist or is not a
    /// folder"). Relative paths resolve against `imageRoot`.
    func testACSVFileIsCheckedAsOneSet() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: photos[8]))
        try bytes.prefix(bytes.count * 4 / 10).write(to: URL(fileURLWithPath: "\(root)/train/a/cut.jpg"))
        try FileManager.default.copyItem(atPath: "\(root)/train/a/0.jpg", toPath: "\(root)/test/b/copy.jpg")
        let rows = ["train/a/0.jpg,cat", "train/a/1.jpg,cat", "train/a/cut.jpg,cat", "train/b/0.jpg,dog",
                    "test/b/copy.jpg,dog", "test/b/1.jpg,dog"]
        let csv = root + "/list.csv"
        try ("path,label\n" + rows.joined(separator: "\n") + "\n").write(toFile: csv, atomically: true, encoding: .utf8)

        let report = try DataCheck.run(csv)
        XCTAssertEqual(report.splits.map(\.name), ["csv"])
        XCTAssertEqual(report.splits.map(\.classCounts), [[2, 3]], "cut.jpg does not count")
        XCTAssertEqual(report.classNames, ["cat", "dog"])
        XCTAssertEqual(report.unreadable.map(\.path), ["\(root)/train/a/cut.jpg"], report.rendered())
        XCTAssertEqual(report.exactDuplicates.map { Set($0.map(\.path)) },
                       [["\(root)/train/a/0.jpg", "\(root)/test/b/copy.jpg"]])

        let elsewhere = root + "/lists"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: csv, toPath: elsewhere + "/list.csv")
        XCTAssertThrowsError(try DataCheck.run(elsewhere + "/list.csv"), "relative to the CSV's folder the files are missing")
        let rooted = try DataCheck.run(elsewhere + "/list.csv", options: DataCheckOptions(imageRoot: root))
        XCTAssertEqual(rooted.exactDuplicates.count, 1, rooted.rendered())
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

/// An embedding for the tests: each image's normalised 32×32 grey thumbnail (`ImageFingerprint`), so
/// the pairing logic is checked without a network.
struct ThumbnailEmbedding: ImageEmbedding {
    var name: String { "thumbnail" }
    func embed(_ dataset: any ImageDataset) throws -> (features: Tensor, valid: [Bool]) {
        var rows: [Float] = [], valid: [Bool] = []
        for sample in dataset.samples {
            let print = try? ImageFingerprint(Image(contentsOfFile: sample.source.path ?? ""))
            rows += print?.thumbnail ?? [Float](repeating: 0, count: 1024)
            valid.append(print != nil)
        }
        return (try Tensor(rows, shape: [dataset.count, 1024]), valid)
    }
}

extension DataCheckTests {
    /// With an embedding, near-duplicates are the cross-split pairs whose centred cosine reaches the
    /// threshold: the planted copy is found (with its cosine), the clean folder has none, and the
    /// report names the method.
    func testEmbeddingFindsThePlantedNearDuplicateAndNoneInACleanFolder() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        let clean = try DataCheck.run(root, embedding: ThumbnailEmbedding())
        XCTAssertEqual(clean.nearDuplicates, [], clean.rendered())
        XCTAssertTrue(clean.nearDuplicateMethod.hasPrefix("thumbnail embeddings, centred cosine ≥ 0.9"), clean.nearDuplicateMethod)

        let photo = try Image(contentsOfFile: "\(root)/train/b/1.jpg")
        let smaller = try photo.resized(width: photo.width * 3 / 5, height: photo.height * 3 / 5, filter: .bicubic)
        try smaller.pngData().write(to: URL(fileURLWithPath: "\(root)/test/a/resized.png"))
        // An exact copy within one split is an exact duplicate, never a near one.
        try FileManager.default.copyItem(atPath: "\(root)/test/b/0.jpg", toPath: "\(root)/train/a/copy.jpg")
        let report = try DataCheck.run(root, embedding: ThumbnailEmbedding())
        XCTAssertEqual(report.nearDuplicates.map { Set([$0.first.path, $0.second.path]) },
                       [["\(root)/train/b/1.jpg", "\(root)/test/a/resized.png"]], report.rendered())
        XCTAssertGreaterThan(try XCTUnwrap(report.nearDuplicates.first?.cosine), 0.99)
        XCTAssertEqual(report.exactDuplicates.count, 1)
        XCTAssertTrue(report.rendered().contains("near-duplicates by thumbnail embeddings"), report.rendered())
        // A threshold above every pair finds none; the perceptual hash (no embedding) finds the same pair.
        XCTAssertEqual(try DataCheck.run(root, options: DataCheckOptions(nearDuplicateCosine: 1.01),
                                         embedding: ThumbnailEmbedding()).nearDuplicates, [])
        let hashed = try DataCheck.run(root)
        XCTAssertEqual(hashed.nearDuplicates.map { Set([$0.first.path, $0.second.path]) },
                       report.nearDuplicates.map { Set([$0.first.path, $0.second.path]) })
        XCTAssertNil(hashed.nearDuplicates.first?.cosine)
    }

    /// The search compares one image per digest, then pairs the copies (probe W: 5,000 copies of one
    /// placeholder took 100 s, 20,000 never finished; now 2 s, docs/benchmarks.md). Every copy of a
    /// near-duplicate is paired with it across splits, never within one, by either method, and a copy
    /// in the same split as the near-duplicate is left out.
    func testCopiesOfANearDuplicateAreEachPairedAcrossSplits() throws {
        let photos = try photos()
        try makeCleanFolder(photos)
        let photo = try Image(contentsOfFile: "\(root)/train/b/1.jpg")
        let smaller = try photo.resized(width: photo.width * 3 / 5, height: photo.height * 3 / 5, filter: .bicubic)
        try smaller.pngData().write(to: URL(fileURLWithPath: "\(root)/test/a/resized.png"))
        for name in ["copy1.jpg", "copy2.jpg"] {
            try FileManager.default.copyItem(atPath: "\(root)/train/b/1.jpg", toPath: "\(root)/train/a/\(name)")
        }
        try FileManager.default.copyItem(atPath: "\(root)/train/b/1.jpg", toPath: "\(root)/test/b/copy3.jpg")
        let expected: Set<Set<String>> = Set(["train/b/1.jpg", "train/a/copy1.jpg", "train/a/copy2.jpg"].map {
            Set(["\(root)/\($0)", "\(root)/test/a/resized.png"])
        })
        for report in [try DataCheck.run(root), try DataCheck.run(root, embedding: ThumbnailEmbedding())] {
            XCTAssertEqual(Set(report.nearDuplicates.map { Set([$0.first.path, $0.second.path]) }), expected,
                           report.rendered())
            XCTAssertEqual(report.nearDuplicates.count, 3)
            XCTAssertEqual(report.exactDuplicates.map(\.count), [4])
        }
    }

    /// Probe W: file names reached the terminal raw, so an ESC sequence in a name set the window's
    /// title and colours, and a line break forged a line of the report. The text report (and the
    /// skipped-files warning) shows them escaped; the JSON keeps the names as they are.
    func testControlCharactersInFileNamesAreShownEscaped() throws {
        try makeCleanFolder(try photos())
        let names = ["e\u{1B}]0;pwned\u{07}\u{1B}[31mred.png", "nl\nfake: 0 unreadable.png"]
        for name in names { try Foundation.Data("junk".utf8).write(to: URL(fileURLWithPath: "\(root)/train/a/\(name)")) }
        let report = try DataCheck.run(root)
        let text = report.rendered()
        XCTAssertFalse(text.unicodeScalars.contains { $0.value == 0x1B || $0.value == 0x07 }, text)
        XCTAssertFalse(text.split(separator: "\n").contains { $0.hasPrefix("fake:") }, text)
        XCTAssertTrue(text.contains("e\\u{1b}]0;pwned\\u{7}\\u{1b}[31mred.png"), text)
        XCTAssertTrue(text.contains("nl\\nfake: 0 unreadable.png"), text)
        XCTAssertEqual(Set(report.unreadable.map { ($0.path as NSString).lastPathComponent }), Set(names))
        var skipped = SkippedFiles()
        skipped.append(path: "\(root)/\(names[0])", reason: "bad\u{1B}[2J")
        XCTAssertFalse(try XCTUnwrap(skipped.warning()).unicodeScalars.contains { $0.value == 0x1B })
    }

    /// The block-wise search returns exactly the pairs at or above the threshold, across the 512-row
    /// block boundary, each once (i < j within one set).
    func testEmbeddingNeighboursFindsExactlyThePairsAboveTheThreshold() throws {
        // 600 unit vectors in 3-D at angles k·0.3° (a half turn); pairs within 0.6° have a cosine ≥ cos(0.6°).
        let vectors: [[Float]] = (0..<600).map { k in
            let a = Double(k) * 0.3 * .pi / 180
            return [Float(cos(a)), Float(sin(a)), 0]
        }
        let threshold = cos(0.6 * .pi / 180) - 1e-6
        let found = try EmbeddingNeighbours.pairs(vectors, Array(0..<600), Array(0..<600), threshold: threshold, sameSet: true)
        let expected = Set((0..<600).flatMap { i in [i + 1, i + 2].filter { $0 < 600 }.map { [i, $0] } })
        XCTAssertEqual(Set(found.map { [$0.0, $0.1] }), expected)
        XCTAssertEqual(found.count, expected.count)
        let across = try EmbeddingNeighbours.pairs(vectors, [0, 510, 599], Array(500..<600), threshold: threshold, sameSet: false)
        XCTAssertEqual(Set(across.map { [$0.0, $0.1] }), [[510, 508], [510, 509], [510, 510], [510, 511], [510, 512],
                                                         [599, 597], [599, 598], [599, 599]])
    }
}

extension DataCheckTests {
    /// A class whose every image is unreadable is named in a hint (it said "imbalanced (largest/smallest
    /// inf)"), and the imbalance hint is left out: the ratio means nothing then.
    func testAClassWithNoUsableImageIsNamed() throws {
        let photos = try photos()
        let fm = FileManager.default
        for cls in ["a", "b", "c"] { try fm.createDirectory(atPath: "\(root)/\(cls)", withIntermediateDirectories: true) }
        for i in 0..<3 { try fm.copyItem(atPath: photos[i], toPath: "\(root)/a/\(i).jpg") }
        try fm.copyItem(atPath: photos[3], toPath: "\(root)/b/3.jpg")
        let whole = try XCTUnwrap(fm.contents(atPath: photos[4]))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: "\(root)/c/cut.jpg"))
        let report = try DataCheck.run(root)
        XCTAssertEqual(report.splits[0].classCounts, [3, 1, 0])
        XCTAssertEqual(report.imbalanceRatio, .infinity)
        XCTAssertEqual(report.hints.filter { $0.contains("usable image") },
                       ["class 'c' has no usable image in the folder: the model cannot learn it; add images, or "
                        + "remove the class folder"])
        XCTAssertFalse(report.hints.contains { $0.contains("imbalanced") || $0.contains("inf") }, "\(report.hints)")
        XCTAssertTrue(report.rendered().contains("(imbalance ∞)"), report.rendered())
    }
}
