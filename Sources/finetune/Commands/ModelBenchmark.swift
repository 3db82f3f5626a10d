import Dispatch
import NN
import Optim
import Torch
import Vision

/// The measurement behind `finetune bench models`.
enum ModelBenchmark {
    struct Settings {
        var batchSize: Int
        var iterations: Int
        var warmup: Int
        var device: Device
        var channelsLast: Bool
        var training = true
        var inference: Bool
        /// The policy of the bf16 rows (`bench --policy`).
        var policy: PrecisionPolicy = .standard
    }

    struct Result {
        var model: String
        var dtype: String
        var channelsLast: Bool
        var inputSize: Int
        var batchSize: Int
        /// NaN where the step failed (see `error`).
        var forwardMs = Double.nan
        var backwardMs = Double.nan
        var optimizerMs = Double.nan
        var inferenceMs: Double?
        /// LibTorch's message when the training step or the inference pass could not run.
        var error: String?

        var totalMs: Double { forwardMs + backwardMs }
        var stepMs: Double { forwardMs + backwardMs + optimizerMs }
        var imagesPerSecond: Double { Double(batchSize) * 1000 / stepMs }
        var inferenceImagesPerSecond: Double? { inferenceMs.map { Double(batchSize) * 1000 / $0 } }

    }

    static func median(_ xs: [Double]) -> Double { PrecisionProbe.median(xs) }

    /// Waits for queued work on an asynchronous device (reading a value back drains its stream).
    static func synchronize(_ device: Device) throws {
        if device != .cpu { _ = try Tensor.zeros([1], device: device).item() }
    }

    static func milliseconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// Builds `architecture` with random weights and times its training step and inference pass. A
    /// failure of either (e.g. an operator LibTorch lacks for bf16) is recorded in the result.
    /// `precision` is resolved per model: bf16 runs `settings.policy` (the standard one unless `--policy`), bf16-all `.allBF16`, auto
    /// whichever `Precision.auto` picks for the model on this CPU (labelled `auto:fp32` or `auto:bf16`).
    static func measure(_ architecture: String, precision: BenchPrecision, inputSize: Int?,
                        settings: Settings) throws -> Result {
        let pretrained = try ModelZoo.make(architecture, weights: nil)
        let model = pretrained.model
        let side = inputSize ?? pretrained.preprocessing.cropSize
        let device = settings.device
        try model.to(device: device)
        var images = try Tensor.randn([settings.batchSize, 3, side, side], device: device)
        if settings.channelsLast {
            try model.useChannelsLast()  // as `finetune train` does; the input is converted here, untimed
            images = try images.contiguous(.channelsLast)
        }
        let policy: PrecisionPolicy?, label: String
        switch precision {
        case .bf16: (policy, label) = (settings.policy, "bf16")
        case .bf16All: (policy, label) = (.allBF16, "bf16-all")
        case .auto:
            let resolved = Precision.auto.resolved(for: model, device: device)
            (policy, label) = (resolved == .bf16 ? settings.policy : nil, "auto:\(resolved.rawValue)")
        default: (policy, label) = (nil, "fp32")
        }
        var result = Result(model: architecture, dtype: label, channelsLast: settings.channelsLast,
                            inputSize: side, batchSize: settings.batchSize)
        if settings.training {
            do {
                (result.forwardMs, result.backwardMs, result.optimizerMs) =
                    try timeTrainingStep(model, images: images, policy: policy, settings: settings)
            } catch {
                result.error = "training step: \(error)"
            }
        }
        if settings.inference {
            do {
                result.inferenceMs = try timeInference(model, images: images, policy: policy, settings: settings)
            } catch {
                result.error = [result.error, "inference: \(error)"].compactMap { $0 }.joined(separator: "; ")
            }
        }
        return result
    }

    /// Medians of forward (+ loss), backward and optimizer (step + zero_grad) times, in ms.
    static func timeTrainingStep(_ model: Module, images: Tensor, policy: PrecisionPolicy?,
                                 settings: Settings) throws -> (Double, Double, Double) {
        let device = settings.device
        let classes = (model as? ImageClassifier)?.options.numClasses ?? 1000
        let labels = try (Tensor.rand([settings.batchSize], device: device) * Double(classes)).floor().to(.int64)
        let optimizer = try SGD(model.trainableParameters(), learningRate: 0.01, momentum: 0.9)
        model.train()
        var forward: [Double] = [], backward: [Double] = [], update: [Double] = []
        for i in 0..<(settings.warmup + settings.iterations) {
            try synchronize(device)
            let t0 = DispatchTime.now().uptimeNanoseconds
            let loss = try PrecisionPolicy.with(policy) { () throws -> Tensor in
                let output = try model(images)
                let logits = output.dtype == .float32 ? output : try output.to(.float32)
                return try Functional.crossEntropy(logits, target: labels)
            }
            try synchronize(device)
            let t1 = DispatchTime.now().uptimeNanoseconds
            try loss.backward()
            try synchronize(device)
            let t2 = DispatchTime.now().uptimeNanoseconds
            try optimizer.step()
            try optimizer.zeroGrad()
            try synchronize(device)
            let t3 = DispatchTime.now().uptimeNanoseconds
            guard i >= settings.warmup else { continue }
            forward.append(Double(t1 - t0) / 1e6)
            backward.append(Double(t2 - t1) / 1e6)
            update.append(Double(t3 - t2) / 1e6)
        }
        try optimizer.zeroGrad()
        return (median(forward), median(backward), median(update))
    }

    /// Median of eval() + inference-mode forward times, in ms.
    static func timeInference(_ model: Module, images: Tensor, policy: PrecisionPolicy?, settings: Settings) throws -> Double {
        model.eval()
        var times: [Double] = []
        try withInferenceMode {
            for i in 0..<(settings.warmup + settings.iterations) {
                try synchronize(settings.device)
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try PrecisionPolicy.with(policy) { try model(images) }
                try synchronize(settings.device)
                if i >= settings.warmup { times.append(milliseconds(since: t0)) }
            }
        }
        return median(times)
    }
}

extension ModelBenchmark.Result: Encodable {
    enum CodingKeys: CodingKey {
        case model, dtype, channelsLast, inputSize, forwardMs, backwardMs, optimizerMs, totalMs, stepMs
        case imagesPerSecond, inferenceMs, inferenceImagesPerSecond, error
    }

    /// The times and rates are computed properties, so `Encodable` is written out. A time that was not
    /// measured (or failed) is `null`; `error` is there only when something failed.
    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(dtype, forKey: .dtype)
        try c.encode(channelsLast, forKey: .channelsLast)
        try c.encode(inputSize, forKey: .inputSize)
        let numbers: [(CodingKeys, Double?)] = [
            (.forwardMs, forwardMs), (.backwardMs, backwardMs), (.optimizerMs, optimizerMs), (.totalMs, totalMs),
            (.stepMs, stepMs), (.imagesPerSecond, imagesPerSecond), (.inferenceMs, inferenceMs),
            (.inferenceImagesPerSecond, inferenceImagesPerSecond),
        ]
        for (key, number) in numbers { try c.encodeNumber(number, forKey: key) }
        try c.encodeIfPresent(error, forKey: .error)
    }
}
