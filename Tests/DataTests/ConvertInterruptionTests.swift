@testable import Data
import Foundation
import TestSupport
import XCTest

/// A `convert` interrupted while it replaces an earlier conversion leaves a destination the next
/// run accepts (probe AF: a Ctrl-C between the marker and the renames left the new marker beside
/// the earlier splits, and one inside the marker's write left its temporary file; every later run
/// refused both, blaming files "convert did not write").
final class ConvertInterruptionTests: XCTestCase {
    struct Interrupted: Error {}

    override func tearDown() {
        ConvertDataset.interruptForTesting = nil
        super.tearDown()
    }

    func testARunInterruptedAnywhereInTheSwapIsFollowedByOneThatWorks() throws {
        let source = try TestData.temporaryDirectory(self)
        _ = try TestData.writeMNIST(in: source, train: 12, test: 4, width: 6, height: 5, gzip: false)
        let root = try TestData.temporaryDirectory(self)
        let fm = FileManager.default
        for stage in ["renames", "marker"] {
            let destination = root + "/" + stage
            XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination).written, 16)
            ConvertDataset.interruptForTesting = { if $0 == stage { throw Interrupted() } }
            XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: destination,
                                                        options: .init(limitPerClass: 1))) { XCTAssertTrue($0 is Interrupted) }
            ConvertDataset.interruptForTesting = nil
            // Before the renames the earlier splits (12 images) are in place, after them the new (1 of each of the 10 classes).
            let counted = try ImageFolderDataset.splits(root: destination).train.count
            XCTAssertEqual(counted, stage == "renames" ? 12 : 10, stage)
            XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination).written, 16, stage)
            XCTAssertEqual(try ImageFolderDataset.splits(root: destination).train.count, 12, stage)
            // The marker records the new files only once the run has ended: a user's image in a class folder
            // is refused again, though that folder's count is that of the earlier conversion.
            let folder = destination + "/train/" + (try fm.contentsOfDirectory(atPath: destination + "/train").sorted().first!)
            let extra = folder + "/" + (try fm.contentsOfDirectory(atPath: folder).sorted().first!)
            try fm.copyItem(atPath: extra, toPath: folder + "/mine.png")
            XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: destination)) {
                XCTAssertTrue("\($0)".contains("whose files are not those convert wrote there"), "\($0)")
            }
        }

        // The marker's own temporary file, left by an interruption inside its atomic write.
        let destination = root + "/temporary"
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination).written, 16)
        let leftover = destination + "/." + ConvertDataset.markerName + ".29421.1032857093.tmp"
        try Foundation.Data("{".utf8).write(to: URL(fileURLWithPath: leftover))
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination).written, 16)
        XCTAssertFalse(fm.fileExists(atPath: leftover))
    }

    /// `Options.shouldStop` (Ctrl-C in `finetune convert`) while the new splits are written, or once
    /// they are whole: the run removes them and the earlier conversion is as it was (the hidden
    /// `.train.tmp-<UUID>` stayed until the next run).
    func testAStopWhileTheSplitsAreWrittenLeavesTheDestinationAsItWas() throws {
        let source = try TestData.temporaryDirectory(self)
        _ = try TestData.writeMNIST(in: source, train: 12, test: 4, width: 6, height: 5, gzip: false)
        let destination = try TestData.temporaryDirectory(self) + "/out"
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination,
                                              options: .init(limitPerClass: 1)).written, 14)
        func listing() throws -> [String] { try FileManager.default.subpathsOfDirectory(atPath: destination).sorted() }
        let before = try listing()
        let marker = FileManager.default.contents(atPath: destination + "/" + ConvertDataset.markerName)
        // Asked before each chunk of each split (one chunk each here), then once the splits are whole.
        for stopAt in 1...3 {
            let asked = Counter()
            var options = ConvertDataset.Options()
            options.shouldStop = { asked.next() >= stopAt }
            XCTAssertThrowsError(try ConvertDataset.run(.fashionMNIST, from: source, to: destination, options: options)) { error in
                XCTAssertTrue(error is ConvertDataset.Interrupted, "\(stopAt): \(error)")
            }
            XCTAssertEqual(asked.value, stopAt)
            XCTAssertEqual(try listing(), before, "stopped at \(stopAt)")
            XCTAssertEqual(FileManager.default.contents(atPath: destination + "/" + ConvertDataset.markerName), marker)
        }
        XCTAssertEqual(try ConvertDataset.run(.fashionMNIST, from: source, to: destination).written, 16)
    }

    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var count = 0
        var value: Int { lock.withLock { count } }
        func next() -> Int { lock.withLock { count += 1; return count } }
    }
}
