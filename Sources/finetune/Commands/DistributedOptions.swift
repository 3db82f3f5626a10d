import ArgumentParser
import Foundation
import Torch
import Training
#if canImport(Glibc)
import Glibc
#endif

/// Data-parallel training flags of `finetune train` (docs/distributed.md). `--nproc-per-node N` makes
/// this process a launcher of N workers; otherwise the variables of torchrun, Kubeflow's PyTorchJob
/// or Slurm (`DistributedLaunch`) make it one rank of a group.
struct DistributedOptions: ParsableArguments {
    @Option(help: "Start N worker processes on this machine, one rank each (each gets --threads cores/N unless --threads is given), wait for them and forward Ctrl-C.")
    var nprocPerNode: Int?
    @Option(help: "Address of rank 0 (default: MASTER_ADDR; 127.0.0.1 with --nproc-per-node).")
    var masterAddr: String?
    @Option(help: "TCP port of rank 0's rendezvous (default: MASTER_PORT, else 29500).")
    var masterPort: Int?
    @Option(help: "Seconds to wait for the other ranks (joining, and each collective) before stopping with an error naming the lost rank.")
    var distTimeout: Double = 300
    @Flag(name: .customLong("sync-bn"), help: "Compute BatchNorm statistics over every rank's batch together (PyTorch's SyncBatchNorm), as one process with the whole batch would; by default each rank uses its own batch's, as DDP does.")
    var syncBatchNorm = false

    func validate() throws {
        if let n = nprocPerNode, !(1...256).contains(n) { throw ValidationError("--nproc-per-node must be 1 to 256, got \(n)") }
        if let p = masterPort, !(1...65535).contains(p) { throw ValidationError("--master-port must be 1 to 65535, got \(p)") }
        guard distTimeout > 0 && distTimeout <= 86_400 else {  // inf or 1e308 trapped converting to milliseconds
            throw ValidationError("--dist-timeout must be positive and at most 86400 seconds (a day), got \(distTimeout)")
        }
        if nprocPerNode != nil, let rank = ProcessInfo.processInfo.environment["RANK"] {
            throw ValidationError("--nproc-per-node starts its own ranks, but RANK=\(rank) is set: unset it or drop the flag")
        }
    }

    /// With `--nproc-per-node N`: runs the N workers and returns their exit status (the first failure's,
    /// else 0); nil for a worker or an ordinary run.
    func launchWorkers(threads: Int?) throws -> Int32? {
        guard let n = nprocPerNode else { return nil }
        var arguments = Array(CommandLine.arguments.dropFirst())
        if let i = arguments.firstIndex(of: "--nproc-per-node") {
            arguments.removeSubrange(i...min(i + 1, arguments.count - 1))
        }
        arguments.removeAll { $0.hasPrefix("--nproc-per-node=") }
        if threads == nil { arguments += ["--threads", String(max(1, Runtime.coreCount / n))] }
        let port = masterPort ?? DistributedLaunch.defaultPort
        var children: [pid_t: String?] = [:]
        // Ctrl-Z pauses the workers between two collectives (`WorkerProcess.suspendWithTheWorkers`).
        let pause = GroupPause.makeShared()
        WorkerProcess.pauseDescriptor = pause?.descriptor ?? -1
        for rank in 0..<n {
            var environment = ["RANK": rank, "LOCAL_RANK": rank, "WORLD_SIZE": n, WorkerProcess.launcherVariable: Int(getpid())]
                .mapValues(String.init)
            if let pause { environment[GroupPause.descriptorVariable] = String(pause.descriptor) }
            environment = environment
                .merging(["MASTER_ADDR": masterAddr ?? "127.0.0.1", "MASTER_PORT": String(port)]) { a, _ in a }
            let pid = try WorkerProcess.spawn(arguments: arguments, environment: environment)
            children[pid] = rank > 0 ? Self.privateFolder(rank: rank, process: pid) : nil
        }
        return WorkerProcess.wait(for: children)
    }

    /// This process's group when the environment makes it a rank (nil: an ordinary run). A worker of
    /// `--nproc-per-node` also stops when its launcher is gone (`WorkerProcess.followLauncher`).
    func join() throws -> DataParallel? {
        WorkerProcess.followLauncher()
        let launch = try DistributedLaunch.from(environment: ProcessInfo.processInfo.environment,
                                                masterAddress: masterAddr, masterPort: masterPort)
        guard let launch else { return nil }
        // A rank writes to its peers' sockets: one that died (killed, crashed) made Gloo's next write
        // raise SIGPIPE, which ended this rank too (status 141) before it could say which rank was
        // lost. Ignored, the write fails and the rank stops naming the lost one.
        signal(SIGPIPE, SIG_IGN)
        let parallel = try launch.connect(timeout: distTimeout)
        parallel.pause = GroupPause(environment: ProcessInfo.processInfo.environment)
        return parallel
    }

    /// "all-reduce: … ms per step (… steps, … ranks); metric sums: … ms; waiting at batch agreement: … ms":
    /// rank 0's time per optimizer step in the gradient all-reduces, in the all-reduce of the epoch's
    /// metric sums, and in each batch's agreement (mostly waiting for the rank whose batch was ready last).
    static func allReduceReport(_ parallel: DataParallel) -> String {
        let steps = Double(max(parallel.allReduceSteps, 1))
        return String(format: "all-reduce: %.1f ms per step (%d steps, %d ranks); metric sums: %.2f ms; waiting at batch agreement: %.1f ms",
                      parallel.allReduceSeconds / steps * 1000, parallel.allReduceSteps, parallel.worldSize,
                      parallel.metricSumSeconds / steps * 1000, parallel.batchAgreementSeconds / steps * 1000)
    }

    /// The run as this rank trains it: ranks other than 0 write nothing to the run directory, so they
    /// train into a private folder of their own, removed at exit.
    static func specification(_ spec: TrainingRun.Specification, rank: Int) -> TrainingRun.Specification {
        guard rank > 0 else { return spec }
        var local = spec
        local.runDirectory = privateFolder(rank: rank, process: getpid())
        local.overwrite = true
        atexit { _ = try? FileManager.default.removeItem(atPath: DistributedOptions.privateFolder) }
        privateFolder = local.runDirectory
        return local
    }

    /// The run a rank resumes: rank 0 the run directory itself; the others a private copy of its
    /// config.json, checkpoints/last and checkpoints/best (taken before rank 0 can write again, which
    /// needs every rank). The best checkpoint is where early stopping finds the best weights of an
    /// epoch before the resume: every rank must restore the same weights, since the test evaluation
    /// that follows is shared among them.
    static func resumeFolder(_ run: String, rank: Int) throws -> String {
        guard rank > 0 else { return run }
        let folder = specification(TrainingRun.Specification(data: "", architecture: "", runDirectory: run), rank: rank)
            .runDirectory
        let files = FileManager.default
        try? files.removeItem(atPath: folder)
        try files.createDirectory(atPath: folder + "/checkpoints", withIntermediateDirectories: true)
        try files.copyItem(atPath: run + "/config.json", toPath: folder + "/config.json")
        try files.copyItem(atPath: run + "/checkpoints/last", toPath: folder + "/checkpoints/last")
        if let best = Checkpoint.locate(run + "/checkpoints/best") {
            try files.copyItem(atPath: best, toPath: folder + "/checkpoints/best")
        }
        return folder
    }

    /// The private folder of rank `rank` > 0 running as process `process`. The launcher of
    /// `--nproc-per-node` removes it when that worker ends: one killed with SIGKILL runs no exit handler.
    static func privateFolder(rank: Int, process: pid_t) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("finetune-rank\(rank)-\(process)").path
    }

    nonisolated(unsafe) static var privateFolder = ""
}

/// What one process of `train` prints of its run's notices. Information: rank 0 alone (every rank
/// trains alike). Warnings: until the run is made (`TrainingRun.create`/`resume`) every rank reads the
/// same data and settings and warns alike, so rank 0 prints them once; afterwards a rank's warnings
/// are its own (a file of its shard that could not be decoded, its lone image), and rank N > 0 prints
/// them as "rank N: warning: …". Until stop 41 every rank printed every warning. `lr-find` (one
/// process, rank 0) prints its notices the same way: information on standard output (standard error
/// with --json), warnings on standard error.
final class RankNotices {
    let rank: Int
    /// With --json, information goes to standard error (standard output holds the JSON summary).
    let json: Bool
    /// Set once the run is made: from then on, warnings of ranks other than 0 are printed.
    var runIsMade = false

    init(rank: Int, json: Bool) {
        self.rank = rank
        self.json = json
    }

    func notify(_ notice: TrainingRun.Notice) {
        switch notice {
        case .info(let text):
            guard rank == 0 else { return }
            if json { printError(text) } else { printLine(text); fflush(stdout) }
        case .warning(let text):
            if rank == 0 { printError("warning: " + text) } else if runIsMade { printError("rank \(rank): warning: " + text) }
        }
    }
}
