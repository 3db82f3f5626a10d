import Foundation
import XCTest

extension TrainCLITests {
    /// A class none of whose training images can be decoded (each file truncated: the scan reads only
    /// headers) is named after the first epoch, and a run left with one class stops there, as a
    /// one-class dataset is refused up front. Probe AF: a class of truncated files trained a
    /// two-class model on one class, saying only that each file was skipped.
    func testAClassWhoseImagesCannotBeReadIsNamedAndOneReadableClassStopsTheRun() throws {
        let data = try makeDataset()
        func truncate(_ name: String) throws {
            for i in 0..<8 {
                let url = URL(fileURLWithPath: "\(data)/train/\(name)/\(i).png")
                let png = try Foundation.Data(contentsOf: url)
                try png.prefix(png.count / 2).write(to: url)
            }
        }
        let runs = try temporaryFolder("unread-class")
        try truncate(Self.classes[1])
        let two = try run(["train", data, "--out", runs + "/two", "--epochs", "2"] + Self.common)
        XCTAssertEqual(two.status, 0, two.stderr)
        let named = "class '\(Self.classes[1])': none of its 6 training images could be read, so the model is not trained on it"
        XCTAssertEqual(two.stderr.components(separatedBy: named).count, 2, "once: \(two.stderr)")
        XCTAssertFalse(two.stderr.contains("'\(Self.classes[0])': none"), two.stderr)

        try truncate(Self.classes[2])
        let one = try run(["train", data, "--out", runs + "/one", "--epochs", "2"] + Self.common)
        XCTAssertNotEqual(one.status, 0, one.stderr)
        XCTAssertTrue(one.stderr.contains("only 1 class has training images that could be read; "
                                          + "a classifier needs at least two classes"), one.stderr)
    }
}
