import Foundation
import TestSupport
import Torch
import XCTest

/// Ctrl-Z of a data-parallel run pauses its workers with the launcher, and `fg`/`bg` continues them.
extension TrainCLITests {
    /// The one-letter state of process `pid` (`R`, `S`, `T` for stopped, …), nil once it is gone.
    static func processState(_ pid: pid_t) -> Character? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        return stat[stat.index(close, offsetBy: 2)...].first
    }

    /// The step of a run's last checkpoint (its `trainer.json`), nil before the first.
    static func checkpointStep(_ run: String) -> Int? {
        (try? checkpointState(run))??["globalStep"] as? Int
    }

    /// Until 2026-12-07 the terminal's SIGTSTP stopped the launcher alone (the workers have process
    /// groups of their own): the shell said "Stopped" while the workers trained on. Stopping them with
    /// SIGSTOP instead stopped them inside a collective, and a pause longer than --dist-timeout failed the
    /// run on continuing ("Operation timed out", 1 time in 3); here the pause is longer than that.
    func testCtrlZPausesADataParallelRunAndContinuingResumesIt() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDataset()
        let run = try temporaryFolder("suspend") + "/run"
        let launcher = try launchedUntilItsFirstCheckpoint(
            ["train", data, "--out", run, "--epochs", "4", "--save-every-steps", "1", "--nproc-per-node", "2",
             "--dist-timeout", "2", "--master-port", String(try FreePort.make())] + Self.common,
            run: run, errorOutput: run + ".log")
        kill(launcher.processIdentifier, SIGTSTP)
        let deadline = Date().addingTimeInterval(10)
        while Self.processState(launcher.processIdentifier) != "T" && Date() < deadline { usleep(10_000) }
        XCTAssertEqual(Self.processState(launcher.processIdentifier), "T")
        Thread.sleep(forTimeInterval: 1)  // the batch under way ends, and its checkpoint is written
        let paused = Self.checkpointStep(run)
        XCTAssertNotNil(paused)
        Thread.sleep(forTimeInterval: 2.5)  // longer than --dist-timeout
        XCTAssertEqual(Self.checkpointStep(run), paused, "trained while paused")
        kill(launcher.processIdentifier, SIGCONT)
        launcher.waitUntilExit()
        let log = (try? String(contentsOfFile: run + ".log", encoding: .utf8)) ?? ""
        XCTAssertEqual(launcher.terminationStatus, 0, log)
        let config = try JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: run + "/config.json")))
        XCTAssertEqual((config as? [String: Any])?["status"] as? String, "completed")
    }
}
