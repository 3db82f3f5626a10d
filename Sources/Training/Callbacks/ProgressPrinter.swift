import AtomicFiles
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Prints training progress. On a terminal (stdout is a tty and `CI` is unset) a Keras-style
/// progress bar (`Epoch 2/2 [=====>....] 6/25 - loss: … - accuracy: … - lr: … - 41 img/s - ETA: 3.2s`)
/// is redrawn in place with carriage returns; otherwise (pipes, files, CI logs) plain
/// lines are printed every `lineEvery` batches (default: about ten per epoch) and at each epoch's end.
public final class ProgressPrinter: TrainingCallback {
    /// How progress is shown.
    public enum Style: Equatable, Sendable {
        /// `bar`: one line per epoch redrawn in place (Keras' `verbose=1`); `lines`: plain lines that
        /// survive pipes and log files.
        case bar, lines
    }

    /// The style in use (chosen by `defaultStyle()` unless given).
    public let style: Style
    /// With `.lines`, print a batch line every this many batches (nil: about ten per epoch).
    public let lineEvery: Int?
    /// Characters of the bar (at least 5; 30 by default, as Keras).
    public let barWidth: Int
    private let write: (String) -> Void
    private var epochs = 0
    private var batchesPerEpoch = 0
    private var epochStarted = Date()
    private var firstBatchOfRun: Int?
    /// Images trained since `epochStarted` (for images per second).
    private var imagesThisEpoch = 0
    private var lastLength = 0

    /// - Parameters:
    ///   - style: nil picks `.bar` on an interactive terminal, `.lines` otherwise.
    ///   - write: where text goes (default: standard output, unbuffered).
    public init(style: Style? = nil, lineEvery: Int? = nil, barWidth: Int = 30, write: ((String) -> Void)? = nil) {
        self.style = style ?? Self.defaultStyle()
        self.lineEvery = lineEvery
        self.barWidth = Swift.max(5, barWidth)
        self.write = write ?? StandardStreams.writeOutput
    }

    /// `.bar` when stdout is a terminal and the `CI` environment variable is unset, else `.lines`.
    public static func defaultStyle(isTerminal: Bool = isatty(STDOUT_FILENO) != 0,
                                    environment: [String: String] = ProcessInfo.processInfo.environment) -> Style {
        isTerminal && environment["CI"] == nil ? .bar : .lines
    }

    /// Prints a header at `fitStart`, progress at each `batchEnd` and the epoch's metrics at `epochEnd`.
    public func handle(_ event: TrainingEvent, trainer: Trainer) throws {
        switch event {
        case .fitStart(let info):
            epochs = info.epochs
            batchesPerEpoch = info.batchesPerEpoch
            var line = "Training \(trainer.modelName) for \(info.epochs) epoch\(info.epochs == 1 ? "" : "s")"
            if info.resumed {
                line += " (resuming at epoch \(info.startEpoch + 1)"
                    + (info.startBatch > 0 ? ", batch \(info.startBatch + 1)" : "") + ", step \(info.startStep))"
            }
            write(line + "\n")
        case .epochStart(let epoch, let resumedAt):
            epochStarted = Date()
            imagesThisEpoch = 0
            firstBatchOfRun = resumedAt
            if style == .lines { write("Epoch \(epoch + 1)/\(epochs)\n") }
        case .batchEnd(let r):
            let done = r.batch + 1
            imagesThisEpoch += r.samples
            let rate = imagesPerSecond()
            switch style {
            case .bar:
                let fraction = batchesPerEpoch > 0 ? Double(done) / Double(batchesPerEpoch) : 1
                let filled = Swift.min(barWidth, Int(fraction * Double(barWidth)))
                let bar = String(repeating: "=", count: filled)
                    + (filled < barWidth ? ">" + String(repeating: ".", count: barWidth - filled - 1) : "")
                var line = "Epoch \(r.epoch + 1)/\(epochs) [\(bar)] \(done)/\(batchesPerEpoch)"
                    + " - loss: \(Self.format(r.epochLoss)) - accuracy: \(Self.format(r.epochAccuracy))"
                if let lr = r.learningRates.last { line += " - lr: \(Self.formatRate(lr))" }
                if let rate { line += " - \(Self.formatImagesPerSecond(rate))" }
                if let eta = eta(done: done) { line += " - ETA: \(Self.duration(eta))" }
                redraw(line)
            case .lines:
                let every = lineEvery ?? Swift.max(1, batchesPerEpoch / 10)
                guard done % every == 0 || done == batchesPerEpoch else { return }
                var line = "  batch \(done)/\(batchesPerEpoch) - step \(r.step) - loss: \(Self.format(r.epochLoss))"
                    + " - accuracy: \(Self.format(r.epochAccuracy))"
                if let lr = r.learningRates.last { line += " - lr: \(Self.formatRate(lr))" }
                if let rate { line += " - \(Self.formatImagesPerSecond(rate))" }
                write(line + "\n")
            }
        case .validationStart:
            if style == .bar { redraw("Epoch \(trainer.state.epoch + 1)/\(epochs) - validating…") }
        case .epochEnd(let r):
            let line = "Epoch \(r.epoch + 1)/\(epochs) - \(Self.duration(r.seconds)) - " + Self.summary(r.metrics)
                + (r.improved ? " *" : "")
            if style == .bar {
                redraw(line)
                write("\n")
                lastLength = 0
            } else {
                write(line + "\n")
            }
        case .phaseChange(let p):
            if style == .bar && lastLength > 0 { write("\n"); lastLength = 0 }
            write("Phase \(p.phase) from epoch \(p.epoch + 1)" + (p.reason.map { " (\($0))" } ?? "")
                + ": \(p.trainableParameters.count) trainable parameter "
                + "tensors, optimizer state " + (p.carriedOptimizerState ? "carried over" : "fresh") + "\n")
        case .fitEnd(let result):
            if style == .bar && lastLength > 0 { write("\n"); lastLength = 0 }
            switch result.status {
            case .completed: break
            case .stopped(let reason): write("Stopped after epoch \(result.epochs): \(reason)\n")
            case .interrupted(let path):
                write("Interrupted at step \(result.globalStep)"
                    + (path.map { "; resumable checkpoint written to \($0)" } ?? "; no checkpoint directory configured")
                    + "\n")
            case .diverged(let step, let loss):
                write("Diverged at step \(step): the loss is \(FitStatus.describe(loss: loss)); the step was not applied\n")
            }
            if let best = result.best, let value = best.best, let epoch = best.bestEpoch {
                write("Best \(best.metric): \(Self.format(value)) (epoch \(epoch + 1))\n")
            }
        default:
            break
        }
    }

    private func redraw(_ line: String) {
        let padding = String(repeating: " ", count: Swift.max(0, lastLength - line.count))
        write("\r" + line + padding)
        lastLength = line.count
    }

    /// Images per second since the epoch started (nil before any time has passed).
    private func imagesPerSecond() -> Double? {
        let elapsed = Date().timeIntervalSince(epochStarted)
        return elapsed > 0 && imagesThisEpoch > 0 ? Double(imagesThisEpoch) / elapsed : nil
    }

    /// `123 img/s`, or with one decimal below 10 (`4.2 img/s`).
    static func formatImagesPerSecond(_ rate: Double) -> String {
        rate < 10 ? String(format: "%.1f img/s", rate) : String(format: "%.0f img/s", rate)
    }

    private func eta(done: Int) -> Double? {
        let trained = done - (firstBatchOfRun ?? 0)
        guard trained > 0, batchesPerEpoch > done else { return batchesPerEpoch == done ? 0 : nil }
        return Date().timeIntervalSince(epochStarted) / Double(trained) * Double(batchesPerEpoch - done)
    }

    /// `loss: … - accuracy: … - <other training metrics> - val_…`, in that order.
    static func summary(_ metrics: [String: Double]) -> String {
        let first = ["loss", "accuracy"].filter { metrics[$0] != nil }
        let rest = metrics.keys.filter { !first.contains($0) && $0 != "lr" && !$0.hasPrefix("val_") }.sorted()
        let validation = ["val_loss", "val_accuracy"].filter { metrics[$0] != nil }
            + metrics.keys.filter { $0.hasPrefix("val_") && $0 != "val_loss" && $0 != "val_accuracy" }.sorted()
        var parts = (first + rest + validation).map { "\($0): \(format(metrics[$0]!))" }
        if let lr = metrics["lr"] { parts.append("lr: \(formatRate(lr))") }
        return parts.joined(separator: " - ")
    }

    static func format(_ x: Double) -> String { x.isFinite ? String(format: "%.4f", x) : "\(x)" }
    static func formatRate(_ x: Double) -> String { String(format: "%.3g", x) }

    static func duration(_ seconds: Double) -> String {
        if seconds < 60 { return String(format: "%.1fs", seconds) }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60)
                         : String(format: "%d:%02d", s / 60, s % 60)
    }
}
