import Data
import Foundation
import TestSupport
import XCTest

/// Inputs that crashed a fuzz target (scripts/fuzz; docs/reliability.md, "Fuzzing"), kept as fixtures
/// in Tests/Fixtures/fuzz/: each must now be refused with an error, or read, without crashing.
final class FuzzRegressionTests: XCTestCase {
    func fixture(_ name: String) throws -> Foundation.Data {
        try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("fuzz/" + name)))
    }

    /// FuzzCSV: an integer label of Int.max made `0...largest` overflow (a trap) while naming the
    /// classes; any huge label asked for billions of class names.
    func testCSVWithAHugeIntegerLabelIsRefused() throws {
        let root = try TestData.temporaryDirectory(self)
        try TestData.write(try fixture("csv-label-int-max.csv"), to: root + "/list.csv")  // "id,9223372036854775807,…"
        XCTAssertThrowsError(try CSVDataset(csv: root + "/list.csv")) { error in
            XCTAssertTrue("\(error)".contains("label 9223372036854775807 is too large"), "\(error)")
            XCTAssertTrue("\(error)".contains(root + "/list.csv"), "\(error)")
        }
        // The largest index allowed still works; one more is refused.
        try TestData.writePNG(root + "/a.png", seed: 1)
        let largest = CSVDataset.maxIntegerClasses - 1
        try TestData.write("a.png,\(largest)\n", to: root + "/edge.csv")
        XCTAssertEqual(try CSVDataset(csv: root + "/edge.csv").classNames.count, CSVDataset.maxIntegerClasses)
        try TestData.write("a.png,\(largest + 1)\n", to: root + "/over.csv")
        XCTAssertThrowsError(try CSVDataset(csv: root + "/over.csv"))
    }
}
