import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// finetune as process 1 of its PID namespace, as a container's entrypoint started without `--init`
/// (`docker run -it image finetune …`): the kernel gives SIGINT and SIGTERM no default action there.
extension CLITests {
    /// Until 2026-12-07 Ctrl-C and `docker stop` did nothing to a command that does not listen for
    /// them (here `bench`), which ran on until Docker's SIGKILL; now each ends it as the default action
    /// would elsewhere, with status 128 + the signal's number.
    func testAsProcessOneCtrlCAndSIGTERMStillEndACommand() throws {
        let unshare = "/usr/bin/unshare"
        guard geteuid() == 0, FileManager.default.isExecutableFile(atPath: unshare) else {
            throw XCTSkip("needs root and util-linux's unshare to start finetune as process 1 of a PID namespace")
        }
        for (number, status) in [(SIGINT, Int32(130)), (SIGTERM, Int32(143))] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: unshare)
            process.arguments = ["--pid", "--fork", "--mount-proc", Self.binary.path, "bench", "models", "--models", "resnet18",
                                 "--iterations", "1000000", "--batch-size", "1", "--input-size", "32", "--threads", "1"]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            // At their default action, whatever this test process has (a test run in the background of a
            // script ignores SIGINT, and a signal ignored at start stays ignored).
            try withSignals([SIGINT, SIGTERM], ignored: false) { try process.run() }
            defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
            // finetune, process 1 inside, once it has its handlers (a signal before is dropped there).
            var inner: pid_t?
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline, process.isRunning {
                inner = ProcessInspection.children(of: process.processIdentifier).first
                if let inner, ProcessInspection.catches(inner, number) { break }
                usleep(10_000)
            }
            let pid = try XCTUnwrap(inner, "finetune did not start in the namespace")
            let ready = ProcessInspection.catches(pid, number)
            kill(pid, number)
            let ended = Date().addingTimeInterval(20)
            while process.isRunning && Date() < ended { usleep(20_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
            XCTAssertTrue(ready, "signal \(number): finetune never caught it")
            XCTAssertEqual(process.terminationStatus, status, "signal \(number)")
        }
    }
}
