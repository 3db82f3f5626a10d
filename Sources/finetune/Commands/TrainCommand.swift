import ArgumentParser
import AtomicFiles
import Data
import Foundation
import Optim
import Torch
import Training
import Vision

/// `finetune train DATA --arch A --weights imagenet --out RUN_DIR`: fine-tunes a zoo model on a
/// class-folder dataset and writes a run directory (see docs/cli.md). It parses flags into a
/// `TrainingRun.Specification` and prints what the run reports.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fine-tune a pretrained classifier on class folders and write a run directory.",
        discussion: """
            DATA is a folder of class folders, either with train/, val/ (or validation/, valid/) and test/ \
            splits, or plain class folders (then carve out a validation set with --val-split), or a \
            path,label CSV file (all training data; relative paths start at --image-root). The head is \
            replaced to fit DATA's classes; the weights' own preprocessing is used for training and \
            evaluation. Ctrl-C saves a resumable checkpoint (RUN_DIR/checkpoints/last).

            Examples:
              finetune train data/flowers --arch mobilenet_v2 --weights imagenet \\
                  --out runs/flowers
              finetune train data/pets --arch resnet50 --recipe two-phase \\
                  --phase1-epochs 3 --epochs 10 --val-split 0.2 --out runs/pets --json
              finetune train --resume runs/pets --epochs 15
            """)

    @Option(help: "Run directory to create (an existing one is replaced only with --overwrite, and only if it is a finetune run).")
    var out: String?
    @Flag(help: "Replace --out if it holds an earlier finetune run (a folder holding anything else is never replaced).")
    var overwrite = false
    @Option(help: "Continue the run in RUN_DIR exactly from RUN_DIR/checkpoints/last (its saved settings are used; --epochs may extend it).")
    var resume: String?
    @OptionGroup var runOptions: RunOptions
    @OptionGroup(title: "Data-parallel training (docs/distributed.md)") var distributed: DistributedOptions
    @OptionGroup(title: "Pseudo-labelling") var pseudoLabel: PseudoLabelOptions
    @Flag(help: "Print the final summary as one JSON object (progress goes to standard error).") var json = false

    func validate() throws {
        if resume == nil {
            guard runOptions.data != nil else { throw ValidationError("give the DATA folder (or --resume RUN_DIR)") }
            guard runOptions.arch != nil else { throw ValidationError("--arch is required (e.g. --arch mobilenet_v2)") }
            guard out != nil else { throw ValidationError("--out RUN_DIR is required") }
        }
        if let resume, !RunDirectory.isRun(resume) {
            throw ValidationError("--resume: \(resume) is not a run directory (no config.json)")
        }
        try runOptions.check(resuming: resume != nil)
    }

    /// The run the flags describe.
    func specification() throws -> TrainingRun.Specification {
        var spec = try runOptions.specification(runDirectory: out ?? "")
        spec.overwrite = overwrite
        pseudoLabel.apply(to: &spec.options)
        if distributed.syncBatchNorm { spec.options.syncBatchNorm = true }
        return spec
    }

    /// `RunOptions.mapErrors`, naming --resume for the run directory's errors when resuming; rank 0
    /// alone says that a stop came before the run existed.
    func mapErrors<T>(rank: Int = 0, _ body: () throws -> T) throws -> T {
        try runOptions.mapErrors(runFlag: resume != nil ? "--resume" : "--out", quietInterruption: rank > 0, body)
    }

    func run() throws {
        // Ctrl-C of `train … | tee log` ends `tee` first: the run (and a launcher's workers, who inherit
        // this) must still reach its checkpoint rather than die of SIGPIPE at its next line.
        StandardStreams.surviveClosedPipes()
        // Refused before any worker starts or any folder is made: the run directory was created and
        // left "failed", so the next plain `train` needed --overwrite (probe AI).
        let pseudoLabelling = resume == nil && pseudoLabel.unlabeled != nil
        if pseudoLabelling, (distributed.nprocPerNode ?? 1) > 1 {
            throw ValidationError("--unlabeled: pseudo-labelling does not run data-parallel yet; train without --nproc-per-node")
        }
        if let status = try distributed.launchWorkers(threads: runOptions.threads) { if status != 0 { throw ExitCode(status) }; return }
        let parallel = try distributed.join(), rank = parallel?.rank ?? 0
        if pseudoLabelling, let parallel, parallel.worldSize > 1 {
            throw ValidationError("--unlabeled: pseudo-labelling does not run data-parallel yet; train with one process "
                                  + "(no RANK or WORLD_SIZE)")
        }
        // A resumed run keeps its own thread count unless --threads says otherwise (bit-exact resume).
        if resume == nil || runOptions.threads != nil { try applyThreads(runOptions.threads) }
        let notices = RankNotices(rank: rank, json: json)
        let notify = notices.notify
        // Listening before the run is made: Ctrl-C during `--lr find`'s range test, or before the run
        // directory exists, stops with nothing made; after that, the run stops at once, resumable.
        let stop = SignalStop()
        defer { stop.cancel() }
        let trainingRun = try WorkerProcess.reportingOnce(parallel: parallel) { try mapErrors(rank: rank) { () -> TrainingRun in
            if let resume {
                ResumeFlags.warnAboutIgnored(rank: rank)
                let changes = TrainingRun.ResumeChanges(data: runOptions.data, epochs: runOptions.epochs, workers: runOptions.workers,
                                                        onBadImage: runOptions.onBadImage, threads: runOptions.threads,
                                                        imageRoot: runOptions.techniques.imageRoot)
                let resumed = try TrainingRun.resume(try DistributedOptions.resumeFolder(resume, rank: rank), changes: changes,
                                                     notify: notify)
                resumed.signalStop = stop
                return resumed
            }
            return try TrainingRun.create(DistributedOptions.specification(try specification(), rank: rank),
                                          finetuneVersion: finetuneVersion, notify: notify, stop: stop)
        } }
        notices.runIsMade = true
        trainingRun.trainer.distributed = parallel
        // With --json, progress goes to standard error: its style follows that stream.
        let style = ProgressPrinter.defaultStyle(isTerminal: isatty(json ? STDERR_FILENO : STDOUT_FILENO) != 0)
        trainingRun.extraCallbacks = rank > 0 ? [] : [ProgressPrinter(style: style, write: json ? StandardStreams.writeError : StandardStreams.writeOutput)]
        let summary: TrainingRunSummary
        do {
            summary = try mapErrors { try WorkerProcess.finishing { try trainingRun.run() } }
        } catch let error where rank == 0 && !(error is ExitCode) && !(error is ValidationError) {
            throw Self.withAdvice(error, trainingRun.directory, processes: parallel?.worldSize ?? 1)
        }
        if let parallel, rank == 0 { notify(.info(DistributedOptions.allReduceReport(parallel))) }
        if let notice = summary.interruptionNotice(processes: parallel?.worldSize ?? 1) {
            if json && rank == 0 { printEncodedJSON(summary) }  // status `interrupted`: a script tells it from a crash
            notify(.info(notice))
            throw ExitCode(130)
        }
        if summary.status == "diverged" {
            // Ranks other than 0 train into a private folder, removed at exit: rank 0 names the checkpoint.
            if rank > 0 { throw CommandFailure("training diverged on rank \(rank): \(summary.stopReason ?? "non-finite loss")") }
            if json { printEncodedJSON(summary) }
            let last = trainingRun.directory.lastCheckpoint
            let checkpoint = Checkpoint.isComplete(last) ? "The last good checkpoint is \(last) ; "
                : "It diverged before its first checkpoint; "
            throw CommandFailure("training diverged: \(summary.stopReason ?? "non-finite loss"); the step was not applied. "
                + checkpoint + "lower the learning rates (--lr, and the backbone's through --lr-factor, --layer-decay or "
                + "--phase2-lr where given) or clip gradients with --clip-grad-norm, and train again")
        }
        if rank > 0 { return }
        if json { printEncodedJSON(summary); return }
        printLine("Training \(summary.status)\(summary.stopReason.map { " (\($0))" } ?? "") after \(summary.epochs) epochs, "
                  + "\(summary.globalStep) steps " + String(format: "(%.1f s)", summary.seconds)
                  + " on \(summary.trainSamples) training images")
        // The best epoch's metric is printed once, by the progress printer ("Best val_loss: …").
        if let accuracy = summary.validationAccuracy { printLine(String(format: "validation accuracy: %.2f%%", accuracy * 100)) }
        printLine("model.safetensors: \(summary.modelWeights ?? "final") weights (epoch \(summary.modelEpoch ?? summary.epochs))")
        if let r = summary.testReport {
            printLine(String(format: "test accuracy: %.2f%% (%d images)", r.accuracy * 100, r.sampleCount))
        }
        printLine("run directory: \(summary.run)")
    }

    /// A run that failed while training (out of memory, a disk error, an image that could not be read
    /// under `--on-bad-image fail`, a lost rank) keeps its last checkpoint: the error says so and how to
    /// continue once its cause is fixed, and for memory, what needs less. Until 2026-12-07 it said only
    /// what failed, in LibTorch's words for memory ("DefaultCPUAllocator: can't allocate memory: you
    /// tried to allocate 144506880 bytes"), and the run looked lost. A run that failed before its first
    /// checkpoint gets no resume advice.
    static func withAdvice(_ error: Error, _ directory: RunDirectory, processes: Int) -> Error {
        var advice: [String] = []
        if let torch = error as? TorchError, torch.isOutOfMemory {
            advice.append("LibTorch ran out of memory: free some, raise the limit (`ulimit -v`, the container's), or "
                + "train again with a smaller --batch-size or --input-size (a resumed run keeps its own)")
        }
        if (try? directory.readConfig().status) == "failed", let (_, description) = try? directory.weightsFile(.last) {
            advice.append("The run's last checkpoint is intact (\(description)): once the cause is fixed, continue with "
                + "`finetune train --resume \(directory.path)" + (processes > 1 ? " --nproc-per-node \(processes)`" : "`"))
        }
        return advice.isEmpty ? error : CommandFailure(([String(describing: error)] + advice).joined(separator: "\n"))
    }
}
