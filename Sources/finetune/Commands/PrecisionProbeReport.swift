import Foundation
import NN
import Torch

/// `finetune bench --precision-probe`: `NN.PrecisionProbe`'s table and the policy it implies, beside
/// the policy `--precision bf16` uses.
enum PrecisionProbeReport {
    /// `side`: the feature maps' side (56 for 224 px inputs, as MobileNetV2's and ResNet-50's stage 2).
    static func run(batchSize: Int, side: Int, iterations: Int, warmup: Int, channelsLast: Bool, json: Bool) throws {
        let probe = PrecisionProbe(batchSize: batchSize, iterations: iterations, warmup: warmup, channelsLast: channelsLast)
        let measurements = try probe.measure(probe.cases(side: side))
        let measured = PrecisionProbe.policy(from: measurements)
        let cpu = CPUFeatures.current
        if json {
            printEncodedJSON(Output(batchSize: batchSize, threads: Runtime.numThreads, libtorch: Runtime.libTorchVersion,
                                    iterations: iterations, warmup: warmup, channelsLast: channelsLast,
                                    nativeBF16: cpu.hasNativeBF16, layers: measurements.map(Output.Layer.init),
                                    measuredPolicy: measured.description, standardPolicy: PrecisionPolicy.standard.description))
            return
        }
        printLine("batch \(batchSize), \(Runtime.numThreads) threads, LibTorch \(Runtime.libTorchVersion) (\(Runtime.cpuCapability) kernels), "
            + "\(channelsLast ? "channels-last" : "NCHW"), native bf16: \(cpu.hasNativeBF16 ? "yes" : "no (emulated)"); "
            + "median of \(iterations) interleaved iterations after \(warmup) warm-up")
        func ms(_ x: Double) -> String { String(format: x < 10 ? "%.2f" : "%.1f", x) }
        printTable(["layer type", "case", "fp32 fwd ms", "bf16 fwd ms", "fp32 bwd ms", "bf16 bwd ms", "casts ms",
                    "bf16 speedup", "fwd only"],
                   measurements.map { m in
                       [m.kind.rawValue, m.layer, ms(m.fp32ForwardMs), ms(m.bf16ForwardMs), ms(m.fp32BackwardMs),
                        ms(m.bf16BackwardMs), ms(m.castMs), String(format: "%.2fx", m.bf16Speedup),
                        String(format: "%.2fx", m.bf16ForwardSpeedup)]
                   })
        printLine("(speedups count fp32's casts in and out, once per pass: an fp32 layer sits among bf16 ones)")
        printLine("measured policy: \(measured)")
        printLine("--precision bf16 uses: \(PrecisionPolicy.standard)")
    }

    /// `bench --precision-probe --json`.
    struct Output: Encodable {
        var batchSize: Int
        var threads: Int
        var libtorch: String
        var iterations: Int
        var warmup: Int
        var channelsLast: Bool
        var nativeBF16: Bool
        var layers: [Layer]
        var measuredPolicy: String
        var standardPolicy: String

        /// One case of the probe.
        struct Layer: Encodable {
            var kind: String
            var layer: String
            var inputShape: [Int]
            @JSONNumber var fp32ForwardMs: Double
            @JSONNumber var bf16ForwardMs: Double
            @JSONNumber var fp32BackwardMs: Double
            @JSONNumber var bf16BackwardMs: Double
            @JSONNumber var castMs: Double
            @JSONNumber var bf16Speedup: Double
            @JSONNumber var bf16ForwardSpeedup: Double

            init(_ m: PrecisionProbe.Measurement) {
                kind = m.kind.rawValue
                layer = m.layer
                inputShape = m.inputShape
                fp32ForwardMs = m.fp32ForwardMs
                bf16ForwardMs = m.bf16ForwardMs
                fp32BackwardMs = m.fp32BackwardMs
                bf16BackwardMs = m.bf16BackwardMs
                castMs = m.castMs
                bf16Speedup = m.bf16Speedup
                bf16ForwardSpeedup = m.bf16ForwardSpeedup
            }
        }
    }
}
