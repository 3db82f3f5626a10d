import Data
import Foundation
import NN
import Torch

/// The learning-rate range test of fastai (`Learner.lr_find`) and Lightning (`Tuner.lr_find`): the
/// learning rate grows exponentially from `startLearningRate` to `endLearningRate` over `steps`
/// batches (step i uses `start · (end / start)^(i / steps)`), the loss is smoothed as fastai's
/// `AvgSmoothLoss` (β = 0.98, debiased), and the test stops early when the smoothed loss exceeds 4×
/// its minimum. The suggestion is fastai's `valley` (the longest descending stretch of the smoothed
/// curve, a third of the way plus a sixth into it), on the points `steps / 10 ..< count − 5`.
public struct LRFinder {
    /// The first step's learning rate (fastai's `start_lr`, 1e-7).
    public var startLearningRate = 1e-7
    /// The learning rate the last step would reach (fastai's `end_lr`, 10).
    public var endLearningRate = 10.0
    /// Steps of the test (fastai's `num_it`, 100).
    public var steps = 100
    /// Stop when the smoothed loss exceeds 4× its minimum (fastai's `stop_div`).
    public var stopOnDivergence = true

    /// The defaults of fastai.
    public init() {}

    /// What the test recorded.
    public struct Result: Codable, Equatable, Sendable {
        /// The learning rate of each step taken.
        public var learningRates: [Double]
        /// The smoothed loss after each step.
        public var losses: [Double]
        /// The suggested learning rate (fastai's valley); nil when too few steps ran.
        public var suggestion: Double?
        /// The index of the suggestion in `learningRates`.
        public var suggestionIndex: Int?
        /// Whether the test stopped before `steps` (divergence, or a non-finite loss).
        public var stoppedEarly: Bool

        /// A result with these values.
        public init(learningRates: [Double], losses: [Double], suggestion: Double?, suggestionIndex: Int?, stoppedEarly: Bool) {
            self.learningRates = learningRates
            self.losses = losses
            self.suggestion = suggestion
            self.suggestionIndex = suggestionIndex
            self.stoppedEarly = stoppedEarly
        }

        /// Every key, `suggestion` and `suggestionIndex` as null when there is none (`lr-find --json`
        /// documents them as always present).
        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(learningRates, forKey: .learningRates)
            try container.encode(losses, forKey: .losses)
            try container.encode(suggestion, forKey: .suggestion)
            try container.encode(suggestionIndex, forKey: .suggestionIndex)
            try container.encode(stoppedEarly, forKey: .stoppedEarly)
        }
    }

    func check() throws {
        guard startLearningRate > 0, endLearningRate > startLearningRate, (endLearningRate / startLearningRate).isFinite else {
            throw TrainingError.invalidConfiguration("the LR finder needs 0 < start LR < end LR with a finite end / start, got "
                + "\(startLearningRate) and \(endLearningRate)")
        }
        guard steps >= 2 else { throw TrainingError.invalidConfiguration("the LR finder needs at least 2 steps, got \(steps)") }
    }

    /// The learning rate of step `i` (0-based): fastai's `SchedExp` at `i / steps`.
    public func learningRate(step i: Int) -> Double {
        startLearningRate * Foundation.pow(endLearningRate / startLearningRate, Double(i) / Double(steps))
    }

    /// Runs the test with `trainer`'s model, configuration and loss on `loader`'s batches (as many
    /// epochs as needed), on a separate optimizer. The model's weights and buffers and LibTorch's
    /// generator are restored afterwards, so `trainer` is left as it was. `stop` is polled before
    /// every step: once it is triggered (Ctrl-C) the test ends with `TrainingError.interrupted`.
    public func run(_ trainer: Trainer, on loader: DataLoader, stop: SignalStop? = nil) throws -> Result {
        try check()
        let model = trainer.model
        var saved: [(Tensor, Tensor)] = []
        try withNoGrad { for (_, t) in model.stateDict() { saved.append((t, try t.detach().clone())) } }
        let rng = try Runtime.cpuRNGState()
        let wasTraining = model.isTraining
        defer {
            try? withNoGrad { for (t, value) in saved { try t.copy_(value) } }
            try? Runtime.setCPURNGState(rng)
            model.train(wasTraining)
        }
        var configuration = trainer.configuration
        configuration.freeze = nil  // the trainer's freeze state is already on the model
        configuration.seed = nil
        configuration.ema = nil
        configuration.accumulateSteps = nil
        configuration.schedule = .fixed  // the rate is the test's; momentum stays the optimizer's (fastai)
        let probe = try Trainer(model: model, configuration: configuration)
        probe.state.loader = LoaderPosition(loader)
        var lrs: [Double] = [], losses: [Double] = []
        var average = 0.0, best = Double.infinity, stopped = false
        let beta = 0.98
        var epoch = 0
        model.train()
        testing: while lrs.count < steps {
            let batches = loader.epoch(epoch)
            defer { batches.cancel() }
            var any = false
            while let batch = try batches.nextBatch() {
                // As in `Trainer.fit`: a last batch of one image is left out while BatchNorm trains.
                if batch.count == 1, loader.batchSize > 1, probe.batchNormTrains { continue }
                any = true
                if stop?.isTriggered == true { throw TrainingError.interrupted("during the learning-rate range test") }
                let lr = learningRate(step: lrs.count)
                probe.fixedLearningRate = lr
                let loss: Double
                do {
                    loss = try probe.trainStep(batch).loss
                } catch TrainingError.diverged {
                    stopped = true
                    break testing
                }
                average = loss + beta * (average - loss)  // torch.lerp(loss, average, beta)
                let smoothed = average / (1 - Foundation.pow(beta, Double(lrs.count + 1)))
                lrs.append(lr)
                losses.append(smoothed)
                if smoothed < best { best = smoothed }
                if stopOnDivergence && smoothed > 4 * best { stopped = lrs.count < steps; break testing }
                if lrs.count >= steps { break testing }
            }
            guard any else { throw TrainingError.noUsableData("the LR finder's training data gave no batch") }
            epoch += 1
        }
        let suggestion = Self.suggestion(learningRates: lrs, losses: losses, steps: steps)
        return Result(learningRates: lrs, losses: losses, suggestion: suggestion.map { lrs[$0] },
                      suggestionIndex: suggestion, stoppedEarly: stopped)
    }

    /// fastai's `lr_find` suggestion: `valley` on the points `steps / 10 ..< count − 5` (cut at the
    /// first NaN loss). Returns the index into the full arrays; nil when no point is left.
    public static func suggestion(learningRates: [Double], losses: [Double], steps: Int) -> Int? {
        let start = Swift.max(0, steps / 10), end = Swift.min(losses.count, learningRates.count) - 5
        guard end > start else { return nil }
        var window = Array(losses[start..<end])
        if let nan = window.firstIndex(where: { $0.isNaN }) { window = Array(window[..<nan]) }
        guard !window.isEmpty else { return nil }
        return start + valley(window)
    }

    /// fastai's `valley`: the index a third plus a sixth of the way into the longest strictly
    /// decreasing subsequence's span (the O(n²) longest-decreasing-subsequence scan, ties as fastai).
    public static func valley(_ losses: [Double]) -> Int {
        let n = losses.count
        var maxStart = 0, maxEnd = 0
        var lds = [Int](repeating: 1, count: n)
        for i in (n > 1 ? 1..<n : 0..<0) {
            for j in 0..<i {
                if losses[i] < losses[j] && lds[i] < lds[j] + 1 { lds[i] = lds[j] + 1 }
                if lds[maxEnd] < lds[i] {
                    maxEnd = i
                    maxStart = maxEnd - lds[maxEnd]
                }
            }
        }
        let sections = Double(maxEnd - maxStart) / 3
        return maxStart + Int(sections) + Int(sections / 2)
    }

    /// The range test's plot: smoothed loss against log10 of the learning rate, the suggestion marked.
    public static func plot(_ result: Result) -> String {
        var series = [PlotSeries(name: "smoothed loss", points: zip(result.learningRates, result.losses).map {
            (Foundation.log10($0), $1)
        })]
        if let i = result.suggestionIndex, result.learningRates.indices.contains(i), result.losses.indices.contains(i) {
            series.append(PlotSeries(name: String(format: "suggestion %.2e", result.learningRates[i]),
                                     points: [(Foundation.log10(result.learningRates[i]), result.losses[i])]))
        }
        return Plots.lineChart(title: plotTitle, xLabel: "log10(learning rate)", yLabel: "loss",
                               series: series)
    }

    /// The title of `plot`'s chart.
    static let plotTitle = "Learning-rate range test"

    /// Whether `text` (a file's beginning) is a file `lr-find` wrote: `lr_find.svg` (`plot`) begins with
    /// its chart's title; `lr_find.csv` (`csv`) is its header and `step,lr,loss` rows of numbers only (a
    /// last line without its line break is the end of what was read, and is not checked).
    public static func isOwnOutput(_ text: String, svg: Bool) -> Bool {
        if svg { return Plots.isOwnSVG(text, title: plotTitle) }
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 2, lines.first == "step,lr,loss" else { return false }
        lines.removeLast()  // "" after the last line break, or a line cut where the reading stopped
        return lines.dropFirst().allSatisfy { line in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            return cells.count == 3 && Int(cells[0]) != nil && Double(cells[1]) != nil && Double(cells[2]) != nil
        }
    }

    /// The recorded points as CSV: `step,lr,loss` (loss smoothed).
    public static func csv(_ result: Result) -> String {
        var text = "step,lr,loss\n"
        for (i, (lr, loss)) in zip(result.learningRates, result.losses).enumerated() {
            text += "\(i),\(lr),\(loss)\n"
        }
        return text
    }
}
