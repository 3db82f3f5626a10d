import Data
import Foundation
import TestSupport
import Training
import XCTest

extension TrainingRunTests {
    /// `data`'s training images, one test PNG for green and red, and blue's test split made of the
    /// fixture photos `orient_<n>.jpg` for `blueTestOrientations`.
    func photoData(from data: String, blueTestOrientations: [Int]) throws -> String {
        let photos = try TRData.temporaryDirectory(self) + "/photos"
        for name in ["blue", "green", "red"] {
            try FileManager.default.createDirectory(atPath: "\(photos)/test/\(name)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: "\(data)/train/\(name)", toPath: "\(photos)/train/\(name)")
            if name != "blue" {
                try FileManager.default.copyItem(atPath: "\(data)/test/\(name)/0.png", toPath: "\(photos)/test/\(name)/0.png")
            }
        }
        for orientation in blueTestOrientations {
            try FileManager.default.copyItem(atPath: Fixtures.path("images/orient_\(orientation).jpg"),
                                             toPath: "\(photos)/test/blue/\(orientation).jpg")
        }
        return photos
    }

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
        XCTAssertEqual(ImageCodec.exifOrientation, .apply, "a run leaves the process-wide setting alone")

        // The same classes, with a test split of the two photos (one class).
        let photos = try photoData(from: data, blueTestOrientations: [1, 6])
        let report = try RunReport.make(run: out, options: RunReportOptions(data: photos, topLosses: 4, gradCAMCount: 0,
                                                                           workers: 0))
        let losses = report.topLosses.filter { $0.sample.path?.hasSuffix(".jpg") == true }.map(\.sample.loss)
        XCTAssertEqual(losses.count, 2)
        XCTAssertEqual(losses.first, losses.last, "both photos are the same stored pixels")
        XCTAssertEqual(ImageCodec.exifOrientation, .apply, "restored after the report")
    }

    /// A library run decodes with its own `exif` from `create` to its last test image, whatever the
    /// process-wide setting is and whatever other runs of the process say. Before, `create` and
    /// `resume` set the process-wide setting, so a run created after this one (a sweep preparing its
    /// runs, a server) changed how this one's test split was decoded.
    func testARunDecodesWithItsOwnEXIFSettingBesideOtherRuns() throws {
        let data = try makeData()
        // Blue's test image: a photo tagged "rotate 90°" (its stored pixels are orient_1's).
        let photos = try photoData(from: data, blueTestOrientations: [6])
        let folder = try TRData.temporaryDirectory(self)
        var ignoring = specification(data: photos, out: folder + "/ignoring")
        ignoring.options.epochs = 1
        ignoring.options.exif = .ignore
        var applying = specification(data: data, out: folder + "/applying")
        applying.options.epochs = 1
        applying.options.exif = .apply

        let run = try TrainingRun.create(ignoring, notify: { _ in })
        let other = try TrainingRun.create(applying, notify: { _ in })
        other.release()
        XCTAssertEqual(ImageCodec.exifOrientation, .apply)
        ImageCodec.exifOrientation = .apply
        run.signalStop = SignalStop(signals: [])
        let summary = try run.run()
        let runLoss = try XCTUnwrap(summary.testReport?.loss)

        // The run's model on its test split, decoded each way.
        let directory = RunDirectory(folder + "/ignoring")
        let config = try directory.readConfig()
        let trainer = try Trainer(model: directory.loadModel(config))
        let splits = try RunSplits.load(photos, options: config.options)
        func loss(_ exif: EXIFOrientation) throws -> Double {
            let loader = try DataLoader(XCTUnwrap(splits.test), batchSize: 4, transform: EvaluationTransform(config.preprocessing),
                                        workers: 0, exif: exif)
            return try XCTUnwrap(trainer.evaluate(loader).loss)
        }
        XCTAssertEqual(runLoss, try loss(.ignore), "the run's test pass decoded as the run was trained")
        XCTAssertNotEqual(runLoss, try loss(.apply), "the photo turned upright gives another loss")
    }
}
