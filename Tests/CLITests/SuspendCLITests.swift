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

    /// The processes whose parent is `pid`.
    static func children(of pid: pid_t) -> [pid_t] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(pid_t.init).filter { child in
            guard let stat = try? String(contentsOfFile: "/proc/\(child)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == pid
        }
    }

    /// Waits up to 10 s for every process of `pids` to be in (or out of) the stopped state.
    func waitUntil(_ pids: [pid_t], stopped: Bool) -> Bool {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if pids.allSatisfy({ (Self.processState($0) == "T") == stopped }) { return true }
            usleep(10_000)
        }
        return false
    }

    /// Until 2026-12-07 the terminal's SIGTSTP stopped the launcher alone (the workers have process
    /// groups of their own): the shell said "Stopped" while the workers trained on.
    func testCtrlZPausesADataParallelRunAndContinuingResumesIt() throws {
        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        let data = try makeDataset()
        let run = try temporaryFolder("suspend") + "/run"
        let launcher = try launchedUntilItsFirstCheckpoint(
            ["train", data, "--out", run, "--epochs", "3", "--save-every-steps", "2", "--nproc-per-node", "2",
             "--master-port", String(try FreePort.make())] + Self.common, run: run, errorOutput: run + ".log")
        let workers = Self.children(of: launcher.processIdentifier)
        XCTAssertEqual(workers.count, 2)
        kill(launcher.processIdentifier, SIGTSTP)
        XCTAssertTrue(waitUntil([launcher.processIdentifier] + workers, stopped: true),
                      "states: \((workers).map { Self.processState($0).map(String.init) ?? "gone" })")
        let history = try? String(contentsOfFile: run + "/history.csv", encoding: .utf8)
        Thread.sleep(forTimeInterval: 1)
        XCTAssertEqual(try? String(contentsOfFile: run + "/history.csv", encoding: .utf8), history, "trained while paused")
        kill(launcher.processIdentifier, SIGCONT)
        XCTAssertTrue(waitUntil(workers, stopped: false))
        launcher.waitUntilExit()
        let log = (try? String(contentsOfFile: run + ".log", encoding: .utf8)) ?? ""
        XCTAssertEqual(launcher.terminationStatus, 0, log)
        let config = try JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: URL(fileURLWithPath: run + "/config.json")))
        XCTAssertEqual((config as? [String: Any])?["status"] as? String, "completed")
    }
}
