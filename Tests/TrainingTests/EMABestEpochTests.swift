import Foundation
import TensorIO
import Torch
import Training
import XCTest

extension TrainingRunTests {
    /// A run that keeps an EMA of its weights ends with the EMA's weights, so its best checkpoint and
    /// early stopping judge the EMA's metric (`val_loss_ema`), timm's rule, and early stopping keeps the
    /// best epoch's EMA. Until 2026-12-07 they judged the raw weights' `val_loss`, and the run ended with
    /// the last epoch's EMA: `--checkpoint best` loaded the EMA of an epoch chosen for other weights.
    func testARunWithAnEMAJudgesItsBestEpochByTheEMAsMetric() throws {
        let data = try makeData()
        let runs = try TRData.temporaryDirectory(self)
        var spec = specification(data: data, out: runs + "/ema", epochs: 8, patience: 2)
        spec.recipe.emaDecay = 0.9
        spec.recipe.learningRate = 0.005  // the validation loss goes up after epoch 2
        spec.recipe.schedule = .fixed
        let run = try TrainingRun.create(spec, notify: { _ in })
        run.signalStop = SignalStop(signals: [])
        let summary = try run.run()
        XCTAssertEqual(summary.status, "stopped", summary.stopReason ?? "")
        XCTAssertEqual(summary.monitor, "val_loss_ema")
        let directory = RunDirectory(runs + "/ema")
        let config = try directory.readConfig()
        XCTAssertEqual(config.training.monitor, "val_loss_ema")

        let history = try RunHistory(eventsFile: directory.events)
        let emaLosses = history.epochs.map { $0.metrics["val_loss_ema"] ?? .nan }
        let best = try XCTUnwrap(emaLosses.indices.min { emaLosses[$0] < emaLosses[$1] })
        XCTAssertLessThan(best + 1, history.epochs.count, "stopped \(history.epochs.count - best - 1) epochs after the best")
        XCTAssertTrue(summary.stopReason?.hasPrefix("early stopping: val_loss_ema did not improve") == true,
                      summary.stopReason ?? "")
        XCTAssertEqual(summary.bestEpoch, best + 1)
        let found = try XCTUnwrap(Checkpoint.locate(directory.checkpoints + "/best"))
        XCTAssertEqual(try Checkpoint.readManifest(found).state.epoch, best + 1)
        // The run ends with the best epoch's EMA, not the last epoch's.
        XCTAssertEqual(config.modelWeights, "ema")
        XCTAssertEqual(config.modelEpoch, best + 1)
        try TRData.assertIdentical(try SafeTensors.load(found + "/" + Checkpoint.emaFile),
                                   try SafeTensors.load(directory.model), "best epoch's EMA")

        // Resumed after its best epoch, the run finds that epoch's EMA in checkpoints/best (it is no
        // longer in memory), and ends with the same weights.
        spec.runDirectory = runs + "/resumed"
        let interrupted = try TrainingRun.create(spec, notify: { _ in })
        XCTAssertEqual(try runInterrupted(interrupted, afterStep: 3 * (best + 1) + 1).status, "interrupted")
        let resumed = try TrainingRun.resume(runs + "/resumed", notify: { _ in })
        resumed.signalStop = SignalStop(signals: [])
        XCTAssertEqual(try resumed.run().status, "stopped")
        try TRData.assertIdentical(try SafeTensors.load(directory.model), try SafeTensors.load(runs + "/resumed/model.safetensors"),
                                   "resumed run")
    }
}
