@testable import finetune
import Foundation
import XCTest

/// The launcher's account of its workers' ends (`WorkerFailures`): which failure it names and which
/// exit status it reports.
final class WorkerFailuresTests: XCTestCase {
    static func exited(_ code: Int32) -> Int32 { code << 8 }

    /// A rank that left the report of a shared error to rank 0 (`quietExitStatus`) and ended first is
    /// not named: rank 0, which printed the error, is, when it ends. Until 2026-12-07 the quiet rank
    /// exited with status 1, and on a loaded machine it could end before rank 0's process had, and be
    /// named (`testABadImageUnderOnBadImageFailIsReportedOnceByTheWorkers` failed so, 1 of 17 runs
    /// beside a benchmark).
    func testAQuietRankIsNotNamedAndRankZeroIs() {
        var failures = WorkerFailures()
        XCTAssertNil(failures.ended(rank: "1", pid: 11, status: Self.exited(WorkerProcess.quietExitStatus),
                                    interrupted: false, othersRemain: true))
        XCTAssertEqual(failures.result, 1)
        XCTAssertNotNil(failures.firstFailure, "the grace periods start with the first failure")
        XCTAssertEqual(failures.ended(rank: "0", pid: 10, status: Self.exited(1), interrupted: false, othersRemain: false),
                       "finetune: worker rank 0 (process 10) exited with status 1")
        XCTAssertEqual(failures.result, 1)

        // Rank 0 first: named at once, as before.
        var ordered = WorkerFailures()
        XCTAssertEqual(ordered.ended(rank: "0", pid: 10, status: Self.exited(1), interrupted: false, othersRemain: true),
                       "finetune: worker rank 0 (process 10) exited with status 1; stopping the others")
        XCTAssertNil(ordered.ended(rank: "1", pid: 11, status: Self.exited(WorkerProcess.quietExitStatus),
                                   interrupted: false, othersRemain: false))
        XCTAssertEqual(ordered.result, 1)
    }

    /// The first real failure is named and gives the status; later ones are not. A worker killed by a
    /// signal says how; workers that stop on a passed-on Ctrl-C are not named, and their status stays.
    func testTheFirstFailureIsNamedAndACleanStopIsNot() {
        var killed = WorkerFailures()
        XCTAssertEqual(killed.ended(rank: "1", pid: 11, status: SIGKILL, interrupted: false, othersRemain: true),
                       "finetune: worker rank 1 (process 11) was killed by signal 9 (Killed); stopping the others")
        XCTAssertNil(killed.ended(rank: "0", pid: 10, status: Self.exited(1), interrupted: false, othersRemain: false))
        XCTAssertEqual(killed.result, 137)

        var interrupted = WorkerFailures()
        XCTAssertNil(interrupted.ended(rank: "0", pid: 10, status: Self.exited(130), interrupted: true, othersRemain: true))
        XCTAssertNil(interrupted.ended(rank: "1", pid: 11, status: Self.exited(1), interrupted: true, othersRemain: false))
        XCTAssertEqual(interrupted.result, 130)

        var fine = WorkerFailures()
        XCTAssertNil(fine.ended(rank: "0", pid: 10, status: 0, interrupted: false, othersRemain: true))
        XCTAssertNil(fine.firstFailure)
        XCTAssertEqual(fine.result, 0)
    }
}
