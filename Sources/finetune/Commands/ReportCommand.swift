import ArgumentParser
import AtomicFiles
import Data
import Foundation
import Training

/// `finetune report RUN_DIR [DATA] --out report.html`: a self-contained HTML report of a run.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Write a self-contained HTML report of a run: curves, confusion matrix, per-class metrics, top losses, Grad-CAM, data check.",
        discussion: """
            RUN_DIR is a folder written by `finetune train`. DATA (default: the data the run trained on) is evaluated \
            on --split as `finetune evaluate` reads it: the run's own split where the run chose among the images (its \
            --val-split hold-out; every split of its own DATA with --limit-per-class).

            The page holds the run's settings and results, learning curves (loss, accuracy, AUC, learning rate; a \
            two-phase run's phase boundary marked), the confusion matrix, precision, recall, F1, support and AUC per \
            class, the most confused pairs, the images with the largest loss (as `evaluate --per-sample --json` ranks \
            them), Grad-CAM heat maps at the model's last convolutional stage, and the `check-data` report. Images are \
            embedded as data URIs and charts as inline SVG: the file needs nothing else to open. An existing --out \
            file is replaced only when it is a finetune report.

            Examples:
              finetune report runs/flowers --out flowers.html
              finetune report runs/flowers data/flowers --split val --top-losses 24 \\
                  --out val.html
            """)

    @Argument(help: "Run directory written by `finetune train`.") var runDir: String
    @Argument(help: "Class-folder root or path,label CSV file (default: the run's own data).") var data: String?
    @Option(help: ArgumentHelp("The split to evaluate, as for `evaluate`: test (the default), val, train or all; a plain folder or CSV file is used whole.", valueName: "split"))
    var split: DataSplit?
    @Option(help: "The HTML file to write.") var out: String
    @Option(help: "Images in the top-losses grid.") var topLosses = 16
    @Option(help: "Grad-CAM pictures of top losses, and of confident correct predictions (each).") var gradCam = 4
    @Flag(help: "Leave out the data check (it decodes every image of DATA once more).") var noDataCheck = false
    @Option(help: "How the data check finds near-duplicates: auto (MobileNetV2 ImageNet embeddings when the weights are cached, else phash), embedding, phash.")
    var nearMethod: NearDuplicateMethod = .auto
    @Option(help: "Images per forward pass.") var batchSize = 32
    @Option(help: "Decoding threads.") var workers = 2
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @OptionGroup var precisionOptions: PrecisionOptions
    @OptionGroup var runWeights: RunWeightsOption

    func validate() throws {
        if out.isEmpty { throw ValidationError("--out must name the file to write") }
        guard RunDirectory.isRun(runDir) else {
            throw ValidationError("RUN_DIR \(runDir) is not a run directory (no config.json); train one with `finetune train`")
        }
        if let data, !FileManager.default.fileExists(atPath: data) {
            throw ValidationError("DATA \(data) does not exist (expected a class-folder root or a path,label CSV file)")
        }
        guard (0...1000).contains(topLosses) else { throw ValidationError("--top-losses must be 0 to 1000, got \(topLosses)") }
        guard (0...100).contains(gradCam) else { throw ValidationError("--grad-cam must be 0 to 100, got \(gradCam)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        try checkWorkers(workers)
        try checkReplaceable(out, flag: "--out", what: "a finetune report", isOurs: RunReport.isReport)
    }

    func run() throws {
        try applyThreads(threads)
        let options = RunReportOptions(data: data, split: split, topLosses: topLosses, gradCAMCount: gradCam,
                                       batchSize: batchSize, workers: workers, checkData: !noDataCheck,
                                       nearDuplicateMethod: nearMethod, precision: precisionOptions.choice,
                                       weights: runWeights.checkpoint)
        let report: RunReport
        do {
            report = try RunReport.make(run: runDir, options: options)
        } catch RunError.invalidSetting(let setting, let reason) {
            throw ValidationError(setting == "split" ? "--split \(reason)" : setting == "data" ? "DATA: \(reason)" : "--\(setting): \(reason)")
        } catch let error as DataError {
            throw ValidationError("DATA \(data ?? "(the run's data)"): \(error)")
        }
        do {
            try AtomicFile.write(Foundation.Data(report.html().utf8), to: out)
        } catch {
            throw CommandFailure("--out \(out): \(error)")  // a full disk is a failure (1), not a usage error
        }
        precisionOptions.announce(report.evaluationPrecision)
        printLine("report: \(out) (\(report.evaluation.sampleCount) \(report.split) images, accuracy "
                  + String(format: "%.2f%%", report.evaluation.accuracy * 100) + ", \(report.evaluationPrecision.rawValue))")
    }
}
