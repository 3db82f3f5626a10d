import ArgumentParser
import Data
import Foundation
import NN
import Optim
import Torch
import Vision

/// `finetune bench [models]`: the cnn-benchmarks table (forward, backward, total ms and images/s) for
/// the zoo's architectures on this host, in fp32 and/or bf16 autocast, optionally channels-last.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Forward, backward and training-step times of the zoo's models (the cnn-benchmarks table).",
        discussion: """
            Random weights and inputs, random labels, cross-entropy loss, SGD with momentum 0.9. Each
            model runs `--warmup` untimed steps, then `--iterations` timed ones; medians are reported.
              forward_ms   train-mode forward + loss, with autograd
              backward_ms  backward of that loss
              total_ms     forward + backward (cnn-benchmarks' "total")
              step_ms      forward + backward + optimizer step; images/s = batch / step
              inference_ms eval() + inference-mode forward
            Examples:
              finetune bench --models resnet50,mobilenet_v2 --dtype both --channels-last
              finetune bench --quick --json          every model, batch 4, 3 iterations
            """)

    static let defaultModels = ["alexnet", "googlenet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
                                "resnet101", "resnet152", "mobilenet_v2", "efficientnet_b0", "inception_v3"]

    @Option(help: ArgumentHelp("Comma-separated architectures (default: the cnn-benchmarks set).",
                               valueName: "a,b,..."))
    var models: String?
    @Option(help: "Images per batch (default 16; 4 with --quick).") var batchSize: Int?
    @Option(help: "fp32, bf16 (CPU autocast) or both.") var dtype = "fp32"
    @Flag(help: "Convert weights and inputs to channels-last (NHWC) memory format.") var channelsLast = false
    @Option(help: "cpu, cuda, cuda:N, mps or auto.") var device = "auto"
    @Option(help: "Timed iterations per model (default 10; 3 with --quick).") var iterations: Int?
    @Option(help: "Untimed warm-up iterations per model (default 2; 1 with --quick).") var warmup: Int?
    @Option(help: "Input side in pixels (default: the crop size of the model's weights, 299 or 224).")
    var inputSize: Int?
    @Option(help: "Intra-op threads (default: every available core).") var threads: Int?
    @Flag(help: "Smaller batch and fewer iterations, so every model runs quickly.") var quick = false
    @Flag(help: "Skip the inference-mode measurement.") var noInference = false
    @Flag(help: "Skip the training step (inference only; its fields are null).") var noTraining = false
    @Flag(help: "Print one JSON object.") var json = false

    var modelList: [String] {
        models.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }
            ?? Self.defaultModels
    }
    var dtypes: [String] { dtype == "both" ? ["fp32", "bf16"] : [dtype] }
    var effectiveBatchSize: Int { batchSize ?? (quick ? 4 : 16) }
    var effectiveIterations: Int { iterations ?? (quick ? 3 : 10) }
    var effectiveWarmup: Int { warmup ?? (quick ? 1 : 2) }

    func validate() throws {
        let known = ModelZoo.architectures
        let list = modelList
        if list.isEmpty { throw ValidationError("--models is empty; valid models: \(known.joined(separator: ", "))") }
        for name in list where !known.contains(name) {
            throw ValidationError("--models: unknown model '\(name)'; valid models: \(known.joined(separator: ", "))")
        }
        guard ["fp32", "bf16", "both"].contains(dtype) else {
            throw ValidationError("--dtype: unknown value '\(dtype)'; valid values: fp32, bf16, both")
        }
        do { _ = try Device(parsing: device) } catch {
            throw ValidationError("--device: unknown device '\(device)'; valid values: cpu, cuda, cuda:N, mps, auto")
        }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if let warmup, warmup < 0 { throw ValidationError("--warmup must be 0 or more") }
        if let inputSize, inputSize < 16 { throw ValidationError("--input-size must be at least 16") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if noTraining && noInference { throw ValidationError("--no-training and --no-inference leave nothing to measure") }
    }

    func run() throws {
        try applyThreads(threads)
        let target = try Device(parsing: device)
        if target != .cpu && dtypes.contains("bf16") {
            throw ValidationError("--dtype bf16 uses CPU autocast; on \(target) only fp32 is supported")
        }
        let settings = ModelBenchmark.Settings(batchSize: effectiveBatchSize, iterations: effectiveIterations,
                                               warmup: effectiveWarmup, device: target,
                                               channelsLast: channelsLast, training: !noTraining,
                                               inference: !noInference)
        var results: [ModelBenchmark.Result] = []
        for name in modelList {
            for dt in dtypes {
                printError("\(name) \(dt)\(channelsLast ? " channels-last" : "") …")  // progress, on stderr
                let result = try ModelBenchmark.measure(name, bf16: dt == "bf16", inputSize: inputSize,
                                                        settings: settings)
                if let error = result.error { printError("\(name) \(dt): \(error)") }
                results.append(result)
            }
        }
        if json {
            printJSON(["batch_size": settings.batchSize, "device": target.description, "threads": Runtime.numThreads,
                       "libtorch": Runtime.libTorchVersion, "iterations": settings.iterations,
                       "warmup": settings.warmup, "results": results.map(\.json)])
            return
        }
        print("batch \(settings.batchSize), \(target), \(Runtime.numThreads) threads, LibTorch \(Runtime.libTorchVersion); "
            + "median of \(settings.iterations) iterations after \(settings.warmup) warm-up")
        func ms(_ x: Double) -> String { x.isFinite ? String(format: x < 100 ? "%.1f" : "%.0f", x) : "-" }
        let rate = ms
        let rows = results.map { r -> [String] in
            [r.model, r.dtype, r.channelsLast ? "NHWC" : "NCHW", String(r.inputSize), ms(r.forwardMs), ms(r.backwardMs),
             ms(r.totalMs), ms(r.stepMs), rate(r.imagesPerSecond),
             r.inferenceMs.map(ms) ?? "-", r.inferenceImagesPerSecond.map(rate) ?? "-"]
        }
        printTable(["model", "dtype", "layout", "input", "forward ms", "backward ms", "total ms", "step ms",
                    "train img/s", "infer ms", "infer img/s"], rows)
    }
}

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

        var json: [String: Any] {
            var object: [String: Any] = [
                "model": model, "dtype": dtype, "channels_last": channelsLast, "input_size": inputSize,
                "forward_ms": forwardMs, "backward_ms": backwardMs, "optimizer_ms": optimizerMs, "total_ms": totalMs,
                "step_ms": stepMs, "images_per_second": imagesPerSecond,
            ]
            object["inference_ms"] = inferenceMs as Any
            object["inference_images_per_second"] = inferenceImagesPerSecond as Any
            if let error { object["error"] = error }
            return object
        }
    }

    static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Waits for queued work on an asynchronous device (reading a value back drains its stream).
    static func synchronize(_ device: Device) throws {
        if device != .cpu { _ = try Tensor.zeros([1], device: device).item() }
    }

    static func milliseconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
    }

    /// Builds `architecture` with random weights and times its training step and inference pass. A
    /// failure of either (e.g. an operator LibTorch lacks for bf16) is recorded in the result.
    static func measure(_ architecture: String, bf16: Bool, inputSize: Int?, settings: Settings) throws -> Result {
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
        var result = Result(model: architecture, dtype: bf16 ? "bf16" : "fp32", channelsLast: settings.channelsLast,
                            inputSize: side, batchSize: settings.batchSize)
        if settings.training {
            do {
                (result.forwardMs, result.backwardMs, result.optimizerMs) =
                    try timeTrainingStep(model, images: images, bf16: bf16, settings: settings)
            } catch {
                result.error = "training step: \(error)"
            }
        }
        if settings.inference {
            do {
                result.inferenceMs = try timeInference(model, images: images, bf16: bf16, settings: settings)
            } catch {
                result.error = [result.error, "inference: \(error)"].compactMap { $0 }.joined(separator: "; ")
            }
        }
        return result
    }

    /// Medians of forward (+ loss), backward and optimizer (step + zero_grad) times, in ms.
    static func timeTrainingStep(_ model: Module, images: Tensor, bf16: Bool,
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
            let loss = try withAutocast(enabled: bf16) { () throws -> Tensor in
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
    static func timeInference(_ model: Module, images: Tensor, bf16: Bool, settings: Settings) throws -> Double {
        model.eval()
        var times: [Double] = []
        try withInferenceMode {
            for i in 0..<(settings.warmup + settings.iterations) {
                try synchronize(settings.device)
                let t0 = DispatchTime.now().uptimeNanoseconds
                _ = try withAutocast(enabled: bf16) { try model(images) }
                try synchronize(settings.device)
                if i >= settings.warmup { times.append(milliseconds(since: t0)) }
            }
        }
        return median(times)
    }
}
