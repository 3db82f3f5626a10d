import ArgumentParser
import AtomicFiles
import Data
import Foundation
import Training

/// `finetune convert cifar10|cifar100|mnist|fashion-mnist SRC DST`.
struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Write a packed dataset (CIFAR batches, MNIST IDX) as class folders of PNGs.",
        discussion: """
            The result is DST/train/<class>/<index>.png and DST/test/<class>/<index>.png with the real class names \
            ("/" in a name becomes "_": Fashion-MNIST's "T-shirt/top" → "T-shirt_top"). Files are written atomically; \
            re-running rewrites the same names.

            Examples:
              finetune convert fashion-mnist /usr/share/datasets/fashion-mnist data/fashion
              finetune convert cifar10 ~/cifar-10-batches-bin data/cifar10 \\
                  --limit-per-class 100
              finetune convert mnist ~/mnist data/mnist --dry-run --json
            """)

    @Argument(help: "Source format.")
    var format: ConvertDataset.Source
    @Argument(help: "Folder with the source files (IDX files, or CIFAR binary/python batches).") var source: String
    @Argument(help: "Destination folder.") var destination: String
    @Option(help: "Convert only the first N images of each class in each split.") var limitPerClass: Int?
    @Flag(help: "Count what would be written without writing.") var dryRun = false
    @Option(help: "Encoding threads (0 = all cores).") var workers = 0
    @Flag(help: "Print the summary as one JSON object.") var json = false

    func validate() throws {
        if let limitPerClass, limitPerClass < 1 { throw ValidationError("--limit-per-class must be at least 1") }
        guard workers >= 0 else { throw ValidationError("--workers must be 0 (all cores) or more") }
        if workers > 0 { try checkWorkers(workers) }
        // (A missing SRC was "no train-images-idx3-ubyte[.gz] in SRC".)
        guard FileManager.default.fileExists(atPath: source) else { throw ValidationError("SRC \(source) does not exist") }
        // A DST that is not convert's to write is a usage error (64), named before anything is read.
        try checkOutputDirectory(destination, flag: "DST")
        do { _ = try ConvertDataset.checkDestination(destination) } catch { throw ValidationError("DST: \(error)") }
    }

    func run() throws {
        // Ctrl-C removes what this run has written (it stayed as hidden folders until the next run);
        // a second Ctrl-C ends the process at once.
        StandardStreams.surviveClosedPipes()
        let stop = SignalStop()
        defer { stop.cancel() }
        let options = ConvertDataset.Options(limitPerClass: limitPerClass, dryRun: dryRun, workers: workers,
                                             shouldStop: { stop.isTriggered })
        var lastReport = Date.distantPast
        let summary: ConvertDataset.Summary
        do {
            summary = try ConvertDataset.run(format, from: source, to: destination, options: options) { progress in
                guard !json, Date().timeIntervalSince(lastReport) > 2 || progress.completed == progress.total else { return }
                lastReport = Date()
                printError("\(progress.split): \(progress.completed)/\(progress.total)")
            }
        } catch let interrupted as ConvertDataset.Interrupted {
            printError("\(interrupted)")
            throw ExitCode(130)
        }
        if json {
            printEncodedJSON(Output(destination: summary.destination, classes: summary.classNames, folders: summary.folderNames,
                                    counts: summary.counts, written: summary.written, dryRun: dryRun))
        } else {
            for split in ["train", "test"] {
                let counts = summary.counts[split] ?? []
                printLine("\(split): \(counts.reduce(0, +)) images in \(counts.count) classes")
            }
            printLine(dryRun ? "dry run: nothing written" : "wrote \(summary.written) PNGs under \(summary.destination)")
        }
    }

    /// `convert --json`: where the folders went, the real class names and their folder names, the
    /// images per class of each split (`train`, `test`), and the files written (0 for a dry run).
    struct Output: Encodable {
        var destination: String
        var classes: [String]
        var folders: [String]
        var counts: [String: [Int]]
        var written: Int
        var dryRun: Bool
    }
}
