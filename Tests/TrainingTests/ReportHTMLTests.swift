import Foundation
import Training
import XCTest

extension TrainingRunTests {
    /// The report's run section writes values of any size to 4 significant digits (an lr of 1e-5 read
    /// `lr 0.0000`); evaluate's notes stand under the per-class table (the report left them out); and
    /// for a run that has not finished since its model was written, the run section says that the
    /// evaluation is of that earlier model (only standard error said so).
    func testTheReportShowsSmallValuesEvaluateNotesAndAnOlderModel() throws {
        let data = try makeData()
        try FileManager.default.removeItem(atPath: data + "/test/red")  // a class without test images: AUC notes
        let out = try TRData.temporaryDirectory(self) + "/run"
        var spec = specification(data: data, out: out)
        spec.options.epochs = 1
        spec.recipe.learningRate = 1e-5
        spec.recipe.schedule = .fixed
        let run = try TrainingRun.create(spec, notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try run.run().status, "completed")
        run.release()
        let options = RunReportOptions(topLosses: 2, gradCAMCount: 0, workers: 0)
        let html = try RunReport.make(run: out, options: options).html()
        XCTAssertTrue(html.contains("lr 1e-05"), "the final metrics row")
        // `report --out` replaces a report, not a file that mentions the words.
        XCTAssertTrue(RunReport.isReport(String(html.prefix(4096))))
        XCTAssertFalse(RunReport.isReport("Notes: the <title>finetune report: …</title> tag marks reports.\n"))
        let note = html.components(separatedBy: "per-class").last.map { String($0.prefix(3000)) } ?? ""
        XCTAssertTrue(html.contains("<p class=\"note\">one-vs-rest AUC skipped for classes absent from the labels"), note)
        XCTAssertFalse(html.contains("the evaluation is of these weights"))

        let directory = RunDirectory(out)
        var config = try directory.readConfig()
        config.status = "interrupted"  // as a resume that trained on and was stopped before its end
        try directory.write(config)
        let older = try RunReport.make(run: out, options: options).html()
        XCTAssertTrue(older.contains("Note: model.safetensors holds the weights of epoch 1"), "in the run section")
        // A negative Grad-CAM count is none (probe AC: it trapped taking a negative prefix).
        XCTAssertFalse(try RunReport.make(run: out, options: RunReportOptions(topLosses: 2, gradCAMCount: -1, workers: 0))
            .html().isEmpty)
    }

    /// A run that has not finished training (interrupted here) is reported with its best checkpoint,
    /// named in the run section. Until 2026-12-07 `report` refused it: "not a finetune run directory".
    func testAnUnfinishedRunIsReportedWithItsBestCheckpoint() throws {
        let out = try TRData.temporaryDirectory(self) + "/run"
        let run = try TrainingRun.create(specification(data: try makeData(), out: out), notify: { _ in })
        let steps = 4  // 14 training images in batches of 4: epoch 1 ends after 4 steps
        XCTAssertEqual(try runInterrupted(run, afterStep: steps + 1).status, "interrupted")
        run.release()
        let report = try RunReport.make(run: out, options: RunReportOptions(topLosses: 2, gradCAMCount: 1, workers: 0))
        XCTAssertEqual(report.evaluatedCheckpoint, "checkpoints/best, epoch 1")
        XCTAssertEqual(report.evaluation.sampleCount, 6, "the test split")
        let html = try report.html()
        XCTAssertTrue(html.contains("checkpoints/best, epoch 1: the run has not finished training (status interrupted)"))
    }
}
