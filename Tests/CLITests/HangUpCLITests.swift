import Foundation
import TestSupport
import Torch
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A hang-up (SIGHUP: the terminal closed, an ssh connection dropped) stops a run as Ctrl-C does, with
/// a resumable checkpoint, unless SIGHUP is ignored as `nohup` asks, when the run goes on.
extension TrainCLITests {
    /// Starts `finetune arguments` with SIGHUP ignored (as under `nohup`) or at its default action,
    /// whatever this test process has (a test run under `nohup` passes SIGHUP on ignored).
    func startWithHangUp(ignored: Bool, _ arguments: [String], errorOutput: String) throws -> Process {
        var chosen = sigaction(), previous = sigaction()
        #if canImport(Darwin)
        chosen.__sigaction_u.__sa_handler = ignored ? SIG_IGN : SIG_DFL
        #else
        chosen.__sigaction_handler.sa_handler = ignored ? SIG_IGN : SIG_DFL
        #endif
        sigaction(SIGHUP, &chosen, &previous)
        defer { sigaction(SIGHUP, &previous, nil) }
        return try CLITests.start(arguments, errorOutput: errorOutput)
    }

    /// Sends SIGHUP to a run once its first checkpoint is written, twice as a closing terminal may (the
    /// kernel to the foreground process group, the shell to its jobs), and waits for it to end.
    func hangUp(ignored: Bool, _ arguments: [String], run: String) throws -> (process: Process, errors: String) {
        let log = run + ".log"
        let process = try startWithHangUp(ignored: ignored, arguments, errorOutput: log)
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline && (try? Self.checkpointState(run)) == nil {
            Thread.sleep(forTimeInterval: 0.005)
        }
        XCTAssertTrue(process.isRunning, "the run ended before its first checkpoint was seen")
        kill(process.processIdentifier, SIGHUP)
        usleep(20_000)
        kill(process.processIdentifier, SIGHUP)
        process.waitUntilExit()
        return (process, (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Until 2026-12-07 a hang-up ended `train` at once (killed by the signal): nothing since the last
    /// checkpoint was kept, and `config.json` said `running` for good. And the data-parallel launcher
    /// passed SIGHUP on as SIGTERM even under `nohup`, so `nohup finetune train --nproc-per-node 2 … &`
    /// stopped at logout.
    func testAHangUpStopsARunWithACheckpointUnlessNohupIgnoresIt() throws {
        let data = try makeDataset()
        let runs = try temporaryFolder("hang-up")
        func arguments(_ name: String, epochs: Int, processes: Int = 1) throws -> [String] {
            var list = ["train", data, "--out", runs + "/" + name, "--epochs", String(epochs), "--save-every-steps", "2"]
                + Self.common
            if processes > 1 {
                list += ["--nproc-per-node", String(processes), "--master-port", String(try FreePort.make())]
            }
            return list
        }
        func configStatus(_ name: String) throws -> String? {
            let data = try Foundation.Data(contentsOf: URL(fileURLWithPath: runs + "/" + name + "/config.json"))
            return (try JSONSerialization.jsonObject(with: data) as? [String: Any])?["status"] as? String
        }

        // At its default action: the run stops at the next step with a checkpoint, as on Ctrl-C.
        let stopped = try hangUp(ignored: false, try arguments("stopped", epochs: 200), run: runs + "/stopped")
        XCTAssertEqual(stopped.process.terminationReason, .exit, stopped.errors)
        XCTAssertEqual(stopped.process.terminationStatus, 130, stopped.errors)
        XCTAssertEqual(try Self.checkpointState(runs + "/stopped")?["status"] as? String, "interrupted")
        XCTAssertEqual(try configStatus("stopped"), "interrupted")

        // Ignored (nohup): the run trains to its end.
        let kept = try hangUp(ignored: true, try arguments("kept", epochs: 3), run: runs + "/kept")
        XCTAssertEqual(kept.process.terminationReason, .exit, kept.errors)
        XCTAssertEqual(kept.process.terminationStatus, 0, kept.errors)
        XCTAssertEqual(try configStatus("kept"), "completed")

        try XCTSkipUnless(ProcessGroup.isGlooAvailable, "this LibTorch build has no c10d Gloo")
        // The launcher of a data-parallel run passes a hang-up on to its workers as SIGTERM…
        let parallelStopped = try hangUp(ignored: false, try arguments("parallel-stopped", epochs: 200, processes: 2),
                                         run: runs + "/parallel-stopped")
        XCTAssertEqual(parallelStopped.process.terminationStatus, 130, parallelStopped.errors)
        XCTAssertEqual(try configStatus("parallel-stopped"), "interrupted")
        // … unless it is ignored.
        let parallelKept = try hangUp(ignored: true, try arguments("parallel-kept", epochs: 3, processes: 2),
                                      run: runs + "/parallel-kept")
        XCTAssertEqual(parallelKept.process.terminationReason, .exit, parallelKept.errors)
        XCTAssertEqual(parallelKept.process.terminationStatus, 0, parallelKept.errors)
        XCTAssertEqual(try configStatus("parallel-kept"), "completed")
    }
}
