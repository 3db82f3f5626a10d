import ArgumentParser
import AtomicFiles
import Foundation
import Training

/// `finetune lr-find DATA --arch A --out DIR [train flags]`: the learning-rate range test of fastai and
/// Lightning on the run `finetune train` would start, without training it. Writes DIR/lr_find.svg
/// and DIR/lr_find.csv and prints the suggestion (fastai's valley).
struct LRFindCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lr-find",
        abstract: "Run the learning-rate range test (fastai's lr_find) and suggest a learning rate.",
        discussion: """
            The learning rate grows exponentially from --start-lr to --end-lr over --steps batches of the \
            run `finetune train` would start with the same flags (data, model, recipe, augmentation); the \
            loss is smoothed as fastai does and the test stops when it exceeds 4× its minimum. The \
            suggestion is fastai's "valley". Nothing is trained: the model is restored afterwards. \
            --out DIR receives lr_find.svg (loss against log10 LR, the suggestion marked) and \
            lr_find.csv; it must be new, empty, or hold only those files.

            Example:
              finetune lr-find data/flowers --arch mobilenet_v2 --recipe head-only \\
                  --out runs/flowers-lr
            """)

    @Option(help: "The first step's learning rate.") var startLr = 1e-7
    @Option(help: "The learning rate the schedule ends at (fastai's end_lr: step i of N trains at start·(end/start)^(i/N)).")
    var endLr = 10.0
    @Option(help: "Steps (batches) of the test.") var steps = 100
    @Option(help: "Folder for lr_find.svg and lr_find.csv (new, empty, or holding only those files).") var out: String?
    @Flag(help: "Print the result as one JSON object (progress goes to standard error).") var json = false
    @OptionGroup(title: "Run (the flags of finetune train)") var runOptions: RunOptions

    func validate() throws {
        guard runOptions.data != nil else { throw ValidationError("give the DATA folder") }
        guard runOptions.arch != nil else { throw ValidationError("--arch is required (e.g. --arch mobilenet_v2)") }
        guard let out else { throw ValidationError("--out DIR is required") }
        guard startLr > 0, endLr > startLr, (endLr / startLr).isFinite else {
            throw ValidationError("--start-lr and --end-lr: need 0 < start < end, with end / start finite")
        }
        guard steps >= 2 else { throw ValidationError("--steps must be at least 2") }
        try checkOutputDirectory(out, flag: "--out")
        try runOptions.check(resuming: false)  // the run's flags, then its inputs (DATA, --arch)
    }

    func run() throws {
        try applyThreads(runOptions.threads)
        let out = out ?? "."
        let fm = FileManager.default
        let outputs = ["lr_find.svg", "lr_find.csv"]
        if let contents = try? fm.contentsOfDirectory(atPath: out), let other = contents.first(where: { !outputs.contains($0) }) {
            throw ValidationError("--out: \(out) holds \(other); give a new or empty folder (only lr_find.svg/csv are replaced)")
        }
        for name in outputs where fm.fileExists(atPath: out) {  // lr-find's own earlier files only: a user's lr_find.csv was replaced
            try checkReplaceable(out + "/" + name, flag: "--out", what: "lr-find's own \(name)") { LRFinder.isOwnOutput($0, svg: name.hasSuffix(".svg")) }
        }
        var finder = LRFinder()
        finder.startLearningRate = startLr
        finder.endLearningRate = endLr
        finder.steps = steps
        StandardStreams.surviveClosedPipes()
        let stop = SignalStop()  // Ctrl-C ends the range test (status 130) with nothing written
        defer { stop.cancel() }
        let result = try runOptions.mapErrors {
            try TrainingRun.findLearningRate(runOptions.specification(runDirectory: out), finder: finder,
                                             notify: RankNotices(rank: 0, json: json).notify, stop: stop)
        }
        do {
            try fm.createDirectory(atPath: out, withIntermediateDirectories: true)
            try Plots.write(LRFinder.plot(result), to: out + "/lr_find.svg")
            try AtomicFile.write(Data(LRFinder.csv(result).utf8), to: out + "/lr_find.csv")
        } catch {
            throw CommandFailure("--out: cannot write \(out): \(FileErrorReason.of(error, path: out))")
        }
        if json { printEncodedJSON(result); return }
        if let lr = result.suggestion {
            printLine(String(format: "suggested learning rate: %.3g (fastai's valley; %d steps%@)", lr, result.losses.count,
                             result.stoppedEarly ? ", stopped early as the loss diverged" : ""))
        } else {
            printLine("no suggestion: the test stopped after \(result.losses.count) steps (try a lower --end-lr or more data)")
        }
        printLine("plot: \(out)/lr_find.svg, points: \(out)/lr_find.csv")
    }
}
