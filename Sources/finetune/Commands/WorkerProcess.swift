import ArgumentParser
import Foundation
import Training
#if canImport(Glibc)
import Glibc
#endif

/// The workers of `--nproc-per-node`: the same executable, each in its own process group (so one
/// Ctrl-C reaches each worker once, forwarded by the launcher).
enum WorkerProcess {
    nonisolated(unsafe) static var running: [pid_t] = []
    /// Set when the launcher has forwarded an interrupt (SIGINT, SIGTERM, a notice signal) to the workers.
    nonisolated(unsafe) static var interrupted = false
    /// Set when the launcher has passed a notice signal (`SignalStop.noticeSignals`) on to the workers.
    nonisolated(unsafe) static var noticeForwarded = false

    static func spawn(arguments: [String], environment: [String: String]) throws -> pid_t {
        let executable = "/proc/self/exe"
        let env = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }.map { "\($0)=\($1)" }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        let argv = ([CommandLine.arguments[0]] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup($0) } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, nil, &attributes, argv, envp)
        guard status == 0 else { throw CommandFailure("--nproc-per-node: cannot start a worker: \(String(cString: strerror(status)))") }
        running.append(pid)
        ranks[pid] = environment["RANK"]
        return pid
    }

    /// The `RANK` of each worker started, by process ID (for the launcher's report of a failure).
    nonisolated(unsafe) static var ranks: [pid_t: String] = [:]

    /// Runs a worker's training. From its start, a SIGTERM nothing listens for is ignored, so once the
    /// run has ended the launcher's SIGTERM (sent when another worker failed) no longer kills this
    /// worker while it prints its error and exits: the default action cut that message off, and
    /// nothing said why the run stopped.
    static func finishing<T>(_ body: () throws -> T) rethrows -> T {
        // Set as the run starts: it listens for SIGTERM while it trains, and its end stops listening
        // (a SIGTERM just after killed the worker mid-message).
        if ProcessInfo.processInfo.environment[launcherVariable] != nil { SignalStop.ignoreWhenUnheard([SIGTERM]) }
        return try body()
    }

    /// Makes or resumes this rank's run (`body`), reporting a failure once for all ranks. Until the
    /// run is made every rank reads the same flags and data, so such an error (a bad image under
    /// `--on-bad-image fail`) is every rank's. The ranks then compare their outcomes (one all-gather,
    /// where the run's first collective would have waited for the slowest rank anyway):
    /// - a failed rank prints its error, unless it is above 0 and rank 0 failed with the same text;
    /// - rank 0, made but with others failed, names them; the other ranks made stop without a word;
    /// - a rank that stops without a word ends after rank 0 (`DataParallel.waitForRankZeroToEnd`), so the
    ///   launcher names rank 0, which said why;
    /// - an interruption (`ExitCode`) or an error about the ranks themselves (`DistributedError`) is
    ///   each rank's own, as it was.
    /// A rank that failed and cannot reach the others (gone, or past `--dist-timeout`) prints its own
    /// error. Until 2026-12-07 every rank printed a shared error; then ranks above 0 waited up to 10 s
    /// to be stopped by a launcher before printing it, which a hand-started group never did.
    static func reportingOnce<T>(parallel: DataParallel?, _ body: () throws -> T) throws -> T {
        guard let parallel, parallel.worldSize > 1 else { return try body() }
        let outcome = Result { try body() }
        var failure: Error?
        if case .failure(let error) = outcome { failure = error }
        let shared: SharedOutcome
        do { shared = try parallel.shareOutcome(failure: failure.map { "\($0)" }) } catch {
            if let failure { throw failure }
            throw error
        }
        if let failure {
            if failure is ExitCode || failure is DistributedError || parallel.rank == 0 || !shared.sameAsRankZero { throw failure }
            throw leavingTheReportToRankZero(parallel)  // rank 0 prints the same error
        }
        guard !shared.failedRanks.isEmpty else { return try outcome.get() }
        guard parallel.rank == 0 else {  // rank 0 names the failed ranks
            throw leavingTheReportToRankZero(parallel)
        }
        let ranks = shared.failedRanks
        throw CommandFailure("rank\(ranks.count == 1 ? "" : "s") \(ranks.map(String.init).joined(separator: ", ")) could not "
            + "make \(ranks.count == 1 ? "its" : "their") run (\(ranks.count == 1 ? "its" : "their") own output says why); every rank stops")
    }

    /// The exit status of a rank that leaves the report of its failure to rank 0, under the launcher:
    /// the launcher names no worker for it (rank 0, which said why, is named when it ends) and reports
    /// status 1. Waiting for rank 0 to end first was not enough: on a loaded machine rank 0's process
    /// could still be ending when the quiet rank's had, and the launcher named the quiet rank.
    static let quietExitStatus: Int32 = 3

    /// What a rank above 0 that leaves the report of its failure to rank 0 throws, once rank 0 has ended
    /// (`DataParallel.waitForRankZeroToEnd`, waited for with standard error silenced: this rank says
    /// nothing, and LibTorch 2.x logs the store's closed connection there, with a C++ backtrace,
    /// "[W … TCPStore.cpp:125] recvValue failed …"): `quietExitStatus` under the launcher, 1 in a
    /// group started by hand.
    static func leavingTheReportToRankZero(_ parallel: DataParallel) -> ExitCode {
        let saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY | O_CLOEXEC)
        if saved >= 0 && null >= 0 { dup2(null, STDERR_FILENO) }
        defer {
            if saved >= 0 && null >= 0 { dup2(saved, STDERR_FILENO) }
            if saved >= 0 { close(saved) }
            if null >= 0 { close(null) }
        }
        parallel.waitForRankZeroToEnd(atMost: stopGraceSeconds)
        return ProcessInfo.processInfo.environment[launcherVariable] != nil ? ExitCode(quietExitStatus) : .failure
    }

    /// How a worker ended, in words: "exited with status 1", "was killed by signal 9 (Killed)".
    static func describe(status: Int32) -> String {
        let signalNumber = status & 0x7f
        guard signalNumber != 0 else { return "exited with status \((status >> 8) & 0xff)" }
        return "was killed by signal \(signalNumber) (\(String(cString: strsignal(signalNumber))))"
    }

    /// How long workers get to stop after another failed, before they are killed.
    static let stopGraceSeconds = 15.0

    /// How long workers get to notice that another failed, before they are asked to stop.
    static let lossNoticeSeconds = 3.0

    /// The launcher's PID, in each worker's environment.
    static let launcherVariable = "FINETUNE_LAUNCHER_PID"

    /// In a worker of `--nproc-per-node`: stops this worker (SIGTERM, so it checkpoints as on Ctrl-C,
    /// then at exit after `stopGraceSeconds`) once its launcher is gone. A launcher killed with
    /// SIGKILL forwards nothing, and its workers trained on, orphaned, holding the port.
    static func followLauncher() {
        guard let text = ProcessInfo.processInfo.environment[launcherVariable], let launcher = pid_t(text) else { return }
        Thread.detachNewThread {
            while getppid() == launcher { usleep(250_000) }
            kill(getpid(), SIGTERM)
            Thread.sleep(forTimeInterval: stopGraceSeconds)
            // A worker stuck in a collective with a peer that stopped; `_exit` runs no exit handler.
            if !DistributedOptions.privateFolder.isEmpty {
                try? FileManager.default.removeItem(atPath: DistributedOptions.privateFolder)
            }
            _exit(143)
        }
    }

    /// The launcher's `GroupPause` file, shared with its workers (-1: none).
    nonisolated(unsafe) static var pauseDescriptor: Int32 = -1

    /// Ctrl-Z (SIGTSTP) of the launcher: asks the workers to pause (`GroupPause`: they finish their
    /// batch and wait, between two collectives), then stops the launcher itself as the terminal asked;
    /// once continued (`fg`, `bg`), lets them go on. The workers have process groups of their own, so
    /// the terminal's SIGTSTP reached the launcher alone: until 2026-12-07 the shell said "Stopped"
    /// while the workers trained on, printing to the terminal. (Signal context: only async-signal-safe
    /// calls.)
    static let suspendWithTheWorkers: @convention(c) (Int32) -> Void = { _ in
        if WorkerProcess.pauseDescriptor >= 0 { GroupPause.set(WorkerProcess.pauseDescriptor, paused: true) }
        signal(SIGTSTP, SIG_DFL)
        var stop = sigset_t()
        sigemptyset(&stop)
        sigaddset(&stop, SIGTSTP)
        pthread_sigmask(SIG_UNBLOCK, &stop, nil)
        raise(SIGTSTP)  // the launcher stops here, and goes on when continued
        signal(SIGTSTP, WorkerProcess.suspendWithTheWorkers)
        if WorkerProcess.pauseDescriptor >= 0 { GroupPause.set(WorkerProcess.pauseDescriptor, paused: false) }
    }

    /// Waits for every worker, forwarding SIGINT and SIGTERM to them, Ctrl-Z (`suspendWithTheWorkers`),
    /// and the first notice signal (SIGHUP, SIGUSR1, SIGUSR2, SIGXCPU) as SIGTERM unless it is ignored
    /// (a closed terminal or a scheduler's warning stops the run with a checkpoint instead of leaving
    /// the workers running unattended or killing the launcher alone; under `nohup` the run goes on).
    /// When a worker fails, the launcher names it, and the others are asked to stop (SIGTERM) after
    /// `lossNoticeSeconds` and killed `stopGraceSeconds` later, as torchrun does: a rank that hangs or
    /// still waits for a rendezvous does not keep the command running. The first non-zero exit status
    /// wins, except a quiet rank's (`WorkerFailures`). A worker's private folder (`children[pid]`, if any) is removed once it has ended, however
    /// it ended.
    static func wait(for children: [pid_t: String?]) -> Int32 {
        signal(SIGTSTP, suspendWithTheWorkers)
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
                WorkerProcess.interrupted = true
                for pid in WorkerProcess.running { kill(pid, number) }
            }
        }
        // Unless it is handled elsewhere (`nohup` ignores SIGHUP): the run then goes on after a hang-up,
        // as asked. (SIGHUP was forwarded anyway until 2026-12-07, so `nohup finetune train
        // --nproc-per-node 2 … &` stopped at logout.)
        // Passed on once, whichever comes: a hang-up often arrives twice (the kernel, then the shell),
        // SIGXCPU every CPU second past the limit, and a second SIGTERM ends a worker at once, without
        // its checkpoint.
        for number in SignalStop.noticeSignals where !SignalStop.isHandledElsewhere(number) {
            signal(number) { _ in
                guard !WorkerProcess.noticeForwarded else { return }
                WorkerProcess.noticeForwarded = true
                WorkerProcess.interrupted = true
                for pid in WorkerProcess.running { kill(pid, SIGTERM) }
            }
        }
        var failures = WorkerFailures()
        var remaining = Set(children.keys)
        var askedToStop = false
        while !remaining.isEmpty {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid > 0, remaining.remove(pid) != nil {
                if let folder = children[pid] ?? nil, FileManager.default.fileExists(atPath: folder) {
                    try? FileManager.default.removeItem(atPath: folder)
                }
                if let line = failures.ended(rank: ranks[pid], pid: pid, status: status, interrupted: WorkerProcess.interrupted,
                                             othersRemain: !remaining.isEmpty) {
                    printError(line)
                }
                continue
            }
            if pid < 0 && errno == ECHILD { break }
            if let failedAt = failures.firstFailure {
                // The others first get `lossNoticeSeconds` to see the loss themselves (a closed
                // connection fails their next collective at once) and say which rank they lost; a
                // SIGTERM at once made them stop as on Ctrl-C instead, without a word.
                let waited = Date().timeIntervalSince(failedAt)
                if waited > lossNoticeSeconds && !askedToStop {
                    askedToStop = true
                    for other in remaining { kill(other, SIGTERM) }
                }
                if waited > lossNoticeSeconds + stopGraceSeconds { for other in remaining { kill(other, SIGKILL) } }
            }
            usleep(20_000)
        }
        return failures.result
    }
}

/// The launcher's account of its workers' ends (`WorkerProcess.wait(for:)`): which failure it names,
/// as torchrun does, and the exit status it reports. The first failure is named and its status is the
/// result, except:
/// - a quiet rank's (`WorkerProcess.quietExitStatus`), which left the report to rank 0: nothing is
///   named for it, and the next failure (rank 0's) is named and gives the status (1 if none comes);
/// - a worker that stopped on the interrupt the launcher passed on (exit status 130 or 143, after its
///   checkpoint and "Interrupted" line) has not failed: saying so read as a crash after a clean
///   Ctrl-C (probe AF). Its status is still the result.
struct WorkerFailures {
    /// The exit status to report: 0 until a worker fails.
    private(set) var result: Int32 = 0
    /// When the first worker failed (quiet or not): the others' grace periods count from it.
    private(set) var firstFailure: Date?
    private var resultIsQuiet = false

    /// Records that worker `rank` (process `pid`) ended with wait status `status`; returns the line
    /// that names it when it is the failure to name ("finetune: worker rank 0 (process 12) exited with
    /// status 1; stopping the others").
    mutating func ended(rank: String?, pid: pid_t, status: Int32, interrupted: Bool, othersRemain: Bool,
                        now: Date = Date()) -> String? {
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code != 0 else { return nil }
        let quiet = code == WorkerProcess.quietExitStatus && (status & 0x7f) == 0
        let first = result == 0 || (resultIsQuiet && !quiet)
        if first {
            result = quiet ? 1 : code
            resultIsQuiet = quiet
            firstFailure = firstFailure ?? now
        }
        if quiet || !first || (interrupted && (code == 130 || code == 143)) { return nil }
        // Which worker failed first, and how (a killed worker says nothing).
        return "finetune: worker rank \(rank ?? "?") (process \(pid)) \(WorkerProcess.describe(status: status))"
            + (othersRemain ? "; stopping the others" : "")
    }
}
