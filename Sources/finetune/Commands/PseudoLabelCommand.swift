import ArgumentParser
import AtomicFiles
import Data
import Foundation
import Training

/// `finetune pseudo-label RUN_DIR UNLABELED --out DIR`: a finished run's model labels a folder of
/// unlabelled images for a person to review (`PseudoLabelReview` does the work).
struct PseudoLabelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pseudo-label",
        abstract: "Label a folder of unlabelled images with a run's model, for review.",
        discussion: """
            The run's model labels every image under UNLABELED (recursively) with its evaluation transform. The images \
            whose top-class probability reaches --threshold are written to --out as class folders of symbolic links \
            (copies with --copy) and listed in DIR/pseudo_labels.csv (file, class, confidence), least confident first. \
            --out must be new or empty: nothing finetune did not create is replaced.

            Example:
              finetune pseudo-label runs/flowers photos/unsorted --out review/flowers \\
                  --threshold 0.95
            """)

    @Argument(help: "A run directory written by `finetune train`.") var runDir: String
    @Argument(help: "A folder of images (read recursively).") var unlabeled: String
    @Option(help: "Folder to write the class folders and the CSV into (new or empty).") var out: String
    @Option(help: "Top-class probability an image needs, in (0, 1].") var threshold = 0.9
    @Flag(help: "Copy the images instead of linking to them.") var copy = false
    @Option(help: "Images per forward pass.") var batchSize = 32
    @Option(help: "Decoding threads.") var workers = 2
    @OptionGroup var runOptions: ModelRunOptions
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var runWeights: RunWeightsOption
    @Flag(help: "Print a summary as one JSON object.") var json = false

    struct Summary: Encodable {
        var out: String
        var csv: String
        var threshold: Double
        var candidates: Int
        var labelled: Int
        var classes: [String: Int]
        @NullIfMissing var folderAccuracy: Double? = nil
    }

    func validate() throws {
        guard threshold > 0 && threshold <= 1 else { throw ValidationError("--threshold must be in (0, 1], got \(threshold)") }
        guard batchSize > 0 else { throw ValidationError("--batch-size must be at least 1") }
        try checkWorkers(workers)
        guard RunDirectory.isRun(runDir) else { throw ValidationError("RUN_DIR: \(runDir) is not a run directory (no config.json)") }
        try checkOutputDirectory(out, flag: "--out")
    }

    func run() throws {
        try runOptions.applyThreads()
        let directory = RunDirectory(runDir)
        runOptions.applyEXIF(run: try directory.readConfig())
        let reporter = SkippedFileReporter { _, entry in
            printError("warning: skipping \(entry.path): \(entry.reason)")
        }
        do { try PseudoLabelReview.checkDestination(out, unlabeledRoot: unlabeled) } catch let error as RunError {
            throw ValidationError("--out: \(error)")
        }
        let result: PseudoLabelReview.Result
        do {
            result = try PseudoLabelReview.label(run: directory, unlabeled: unlabeled, threshold: threshold,
                                                 batchSize: batchSize, workers: workers, reporter: reporter,
                                                 precision: precisionOptions.choice, weights: runWeights.weights)
        } catch let error as DataError {
            throw ValidationError("UNLABELED: \(error)")
        } catch let error as RunError {
            throw ValidationError("RUN_DIR: \(error)")
        }
        precisionOptions.announce(result.precision)
        guard !result.entries.isEmpty else {
            throw ValidationError("--threshold: no image reaches \(threshold) (of \(result.candidates); the highest "
                + "confidence is \(result.highestConfidence.map { String(format: "%.3f", $0) } ?? "none")); "
                + "nothing written; lower --threshold")
        }
        let csv: String
        do {
            csv = try PseudoLabelReview.write(result.entries, unlabeledRoot: unlabeled, to: out, copy: copy)
        } catch let error as RunError {
            throw CommandFailure("--out: \(error)")  // a full disk is a failure (1), not a usage error
        }
        var classes: [String: Int] = [:]
        for entry in result.entries { classes[entry.className, default: 0] += 1 }
        if json {
            var summary = Summary(out: out, csv: csv, threshold: threshold, candidates: result.candidates,
                                  labelled: result.entries.count, classes: classes)
            summary.folderAccuracy = result.folderAccuracy
            printEncodedJSON(summary)
            return
        }
        printLine("\(result.entries.count) of \(result.candidates) images at or above \(threshold): \(out) "
                  + "(\(copy ? "copies" : "symbolic links") by class), \(csv)")
        for (name, count) in classes.sorted(by: { $0.key < $1.key }) { printLine("  \(name): \(count)") }
        if let accuracy = result.folderAccuracy {
            printLine(String(format: "accuracy against the folder names: %.2f%%", accuracy * 100))
        }
    }
}
