import Foundation
@testable import Training
import XCTest

extension TrainingRunTests {
    /// A checkpoint replaced between finding it and reading it (a run that trains renames the old one
    /// aside, then the new one in) is looked for again: here the reader finds the one set aside, as a
    /// crash between the two renames leaves it. Until 2026-12-07 such a read failed ("cannot read it:
    /// … No such file"): `evaluate --checkpoint last` of a run that saves every step could meet it.
    func testACheckpointReplacedWhileItIsReadIsLookedForAgain() throws {
        let out = try TRData.temporaryDirectory(self) + "/run"
        let run = try TrainingRun.create(specification(data: try makeData(), out: out), notify: { _ in })
        XCTAssertEqual(try runInterrupted(run, afterStep: 5).status, "interrupted")
        let directory = RunDirectory(out)
        var replaced = false
        RunDirectory.beforeReadingCheckpointForTesting = { file in
            guard !replaced else { return }
            replaced = true
            let folder = (file as NSString).deletingLastPathComponent
            do { try FileManager.default.moveItem(atPath: folder, toPath: folder + ".old-test") } catch { XCTFail("\(error)") }
        }
        defer { RunDirectory.beforeReadingCheckpointForTesting = nil }
        let loaded = try directory.loadModel(directory.readConfig(), from: .best)
        XCTAssertTrue(replaced)
        XCTAssertEqual(loaded.weights, "checkpoints/best, epoch 1")
    }
}
