import ArgumentParser
import Foundation
import NN
import Torch
import Vision

/// `finetune bench [models]`: the cnn-benchmarks table (forward, backward, total ms and images/s) for
/// the zoo's architectures on this host, in fp32 and/or bf16 autocast, optionally channels-last.
struct ModelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Forward, backward and training-step times of the zoo's models (the cnn-benchmarks table).",
        discussion: """
            Random weights and inputs, random labels, cross-entropy loss, SGD with momentum 0.9. Each model runs \
            `--warmup` untimed steps, then `--iterations` timed ones; medians are reported.
              forward_ms   train-mode forward + loss, with autograd
              backward_ms  backward of that loss
              total_ms     forward + backward (cnn-benchmarks' "total")
              step_ms      forward + backward + optimizer step; images/s = batch / step
              inference_ms eval() + inference-mode forward

            Examples:
              finetune bench --models resnet50,mobilenet_v2 --dtype both --channels-last
              finetune bench --quick --json          every model, batch 4, 3 iterations
              finetune bench --models mobilenet_v2 --precision all --channels-last
              finetune bench --precision-probe       time each layer type in fp32 and bf16,
                                                     print the policy
            """)

    static let defaultModels = ["alexnet", "googlenet", "vgg16", "vgg19", "resnet18", "resnet34", "resnet50",
                                "resnet101", "resnet152", "mobilenet_v2", "efficientnet_b0", "inception_v3"]

    @Option(help: ArgumentHelp("Comma-separated architectures (default: the cnn-benchmarks set).",
                               valueName: "a,b,..."))
    var models: String?
    @Option(help: "Images per batch (default 16; 4 with --quick).") var batchSize: Int?
    @Option(help: "Precision: fp32, bf16 (autocast with the layer policy), bf16-all (every layer in bf16), auto, both (fp32 and bf16 rows) or all.")
    var dtype: BenchPrecision?
    @Option(help: "The same as --dtype, under train's flag name.") var precision: BenchPrecision?
    @Flag(help: "Time each layer type in fp32 and bf16 (forward, backward) and print the policy that follows.")
    var precisionProbe = false
    @Option(help: ArgumentHelp("""
        The layer policy the bf16 rows run (default: the standard policy), in the probe's form, e.g. \
        "conv2d=bf16 linear=bf16; inference: conv2d=bf16 linear=bf16 activation=bf16"; unnamed layer types are fp32.
        """, valueName: "policy"))
    var policy: PrecisionPolicy?
    @Flag(help: "Convert weights and inputs to channels-last (NHWC) memory format.") var channelsLast = false
    @Option(help: "Device (default: auto: CUDA, then MPS, then CPU).") var device: Device?
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
    var effectiveBatchSize: Int { batchSize ?? (quick ? 4 : 16) }
    var effectiveIterations: Int { iterations ?? (quick ? 3 : 10) }
    var effectiveWarmup: Int { warmup ?? (quick ? 1 : 2) }

    /// `--dtype` or `--precision` (fp32 when neither is given).
    var rowPrecision: BenchPrecision { dtype ?? precision ?? .fp32 }

    func validate() throws {
        if dtype != nil && precision != nil { throw ValidationError("--dtype and --precision are the same option; give one") }
        let known = ModelZoo.architectures
        let list = modelList
        if list.isEmpty { throw ValidationError("--models is empty; valid models: \(known.joined(separator: ", "))") }
        for name in list where !known.contains(name) {
            throw ValidationError("--models: unknown model '\(name)'; valid models: \(known.joined(separator: ", "))")
        }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let iterations, iterations < 1 { throw ValidationError("--iterations must be at least 1") }
        if let warmup, warmup < 0 { throw ValidationError("--warmup must be 0 or more") }
        if let inputSize, inputSize < 16 { throw ValidationError("--input-size must be at least 16") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if noTraining && noInference { throw ValidationError("--no-training and --no-inference leave nothing to measure") }
        do { try device?.checkAvailable() } catch { throw ValidationError("--device: \(error)") }
    }

    func run() throws {
        try applyThreads(threads)
        let target = device ?? .auto
        if target != .cpu && rowPrecision.rows.contains(where: { $0 != .fp32 && $0 != .auto }) {
            throw ValidationError("--dtype \(rowPrecision.rawValue) uses CPU autocast; on \(target) only fp32 is supported")
        }
        if precisionProbe {
            return try PrecisionProbeReport.run(batchSize: effectiveBatchSize, side: (inputSize ?? 224) / 4,
                                                iterations: effectiveIterations, warmup: effectiveWarmup,
                                                channelsLast: channelsLast, json: json)
        }
        let settings = ModelBenchmark.Settings(batchSize: effectiveBatchSize, iterations: effectiveIterations,
                                               warmup: effectiveWarmup, device: target,
                                               channelsLast: channelsLast, training: !noTraining,
                                               inference: !noInference, policy: policy ?? .standard)
        var results: [ModelBenchmark.Result] = []
        for name in modelList {
            for precision in rowPrecision.rows {
                let dt = precision.rawValue
                printError("\(name) \(dt)\(channelsLast ? " channels-last" : "") …")  // progress, on stderr
                let result = try ModelBenchmark.measure(name, precision: precision, inputSize: inputSize,
                                                        settings: settings)
                if let error = result.error { printError("\(name) \(dt): \(error)") }
                results.append(result)
            }
        }
        if json {
            printEncodedJSON(Output(batchSize: settings.batchSize, device: target.description, threads: Runtime.numThreads,
                                    libtorch: Runtime.libTorchVersion, iterations: settings.iterations,
                                    warmup: settings.warmup, results: results))
            return
        }
        printLine("batch \(settings.batchSize), \(target), \(Runtime.numThreads) threads, LibTorch \(Runtime.libTorchVersion) (\(Runtime.cpuCapability) kernels); "
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

    /// `bench --json`: the settings, and one result per model and dtype.
    struct Output: Encodable {
        var batchSize: Int
        var device: String
        var threads: Int
        var libtorch: String
        var iterations: Int
        var warmup: Int
        var results: [ModelBenchmark.Result]
    }
}
