import Data
import Foundation
import TestSupport
import Training
import XCTest

extension TrainingRunTests {
    /// `finetune report` decodes a run's images as the run was trained: a run with `exif: ignore` sees
    /// a photo tagged "rotate 90°" as its stored pixels, so the tagged and the untagged file get the
    /// same loss in the report, as they do in `evaluate` and `predict`. The report used the process
    /// default (apply) whatever the run said.
    func testTheReportDecodesWithTheRunsEXIFSetting() throws {
        let data = try makeData()
        let out = try TRData.temporaryDirectory(self) + "/ignore"
        var spec = specification(data: data, out: out)
        spec.options.epochs = 1
        spec.options.exif = .ignore
        let run = try TrainingRun.create(spec, notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try run.run().status, "completed")
        XCTAssertEqual(ImageCodec.exifOrientation, .ignore, "the run set the process-wide setting")
        ImageCodec.exifOrientation = .apply  // as a fresh `finetune report` process starts
        defer { ImageCodec.exifOrientation = .apply }

        // The same classes, with a test split of the two photos (one class).
        let photos = try TRData.temporaryDirectory(self) + "/photos"
        for name in ["blue", "green", "red"] {
            try FileManager.default.createDirectory(atPath: "\(photos)/test/\(name)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(data)/train/\(name)", toPath: "\(photos)/train/\(name)")
            if name != "blue" {
                try FileManager.default.copyItem(atPath: "\(data)/test/\(name)/0.png", toPath: "\(photos)/test/\(name)/0.png")
            }
        }
        for orientation in [1, 6] {
            try FileManager.default.copyItem(atPath: Fixtures.path("images/orient_\(orientation).jpg"),
                                             toPath: "\(photos)/test/blue/\(orientation).jpg")
        }
        let report = try RunReport.make(run: out, options: RunReportOptions(data: photos, topLosses: 4, gradCAMCount: 0,
                                                                           workers: 0))
        let losses = report.topLosses.filter { $0.sample.path?.hasSuffix(".jpg") == true }.map(\.sample.loss)
        XCTAssertEqual(losses.count, 2)
        XCTAssertEqual(losses.first, losses.last, "both photos are the same stored pixels")
        XCTAssertEqual(ImageCodec.exifOrientation, .apply, "restored after the report")
    }
}
