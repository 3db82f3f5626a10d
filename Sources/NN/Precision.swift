import Foundation
import Torch

// Mixed precision with a per-layer policy. `withPrecision(policy)` turns LibTorch's CPU autocast on
// (so functional convolutions and matrix products outside the layers run in bf16 as autocast puts
// them) and makes `policy` the one the layers consult: each of `Conv2d`, `Linear`, `BatchNorm` and
// the activations runs its operation through `PrecisionPolicy.run(_:_:_:)`, which casts the input at
// the layer's boundary only when it is not already in the layer's dtype: a run of bf16 layers casts
// nothing, and an fp32 SiLU between two bf16 convolutions casts twice. Which dtype a layer type gets
// also depends on whether autograd records the layer (training) or not (inference, a frozen
// backbone): see `PrecisionPolicy`.

/// The layer types a `PrecisionPolicy` gives a dtype (`bench --precision-probe` times each).
public enum PrecisionLayerKind: String, CaseIterable, Codable, Sendable {
    /// `Conv2d` with `groups == inChannels` (> 1) and a kernel of at most 3×3: MobileNet's and
    /// EfficientNet's 3×3 depthwise convolutions.
    case depthwiseConv = "depthwise_conv2d"
    /// A depthwise `Conv2d` with a larger kernel (EfficientNet's 5×5, at any stride): oneDNN's bf16
    /// backward for it is 2× slower than fp32's, while the 3×3 one is 1.5× faster.
    case largeDepthwiseConv = "depthwise_conv2d_large"
    /// A 3×3 (or smaller) depthwise `Conv2d` with a stride above 1 (the first block of a stage): its
    /// bf16 backward is 2× faster than fp32's in LibTorch 1.13 and 4× slower in 2.13.
    case stridedDepthwiseConv = "depthwise_conv2d_strided"
    /// Every other `Conv2d`: dense (ResNet's 3×3), pointwise (1×1) and grouped convolutions.
    case conv = "conv2d"
    /// `Linear`.
    case linear
    /// `BatchNorm1d` / `BatchNorm2d`: a memory-bound pass over the activations.
    case batchNorm = "batch_norm"
    /// `ReLU` (ResNet, VGG, Inception): a memory-bound elementwise pass, as are the activations below.
    /// Each activation with its own kernel has its own kind, because their bf16 kernels differ: in
    /// LibTorch 1.13, ReLU is faster in bf16 both ways, ReLU6's forward is but its backward (a clamp's)
    /// is 7× slower, and the fused SiLU kernel is slower both ways (`Functional.silu` composes it).
    case relu
    /// `ReLU6` (MobileNetV2).
    case relu6
    /// `SiLU` (EfficientNet).
    case silu
    /// Every other `Activation` layer (Sigmoid, Hardswish, GELU, …).
    case activation

    /// The kind of a convolution: depthwise when each input channel is its own group; then large when
    /// its kernel is bigger than 3×3 in either direction, else strided when a stride is above 1.
    public static func convolution(inChannels: Int, groups: Int, kernelSize: (Int, Int) = (3, 3),
                                   stride: (Int, Int) = (1, 1)) -> PrecisionLayerKind {
        guard groups > 1 && groups == inChannels else { return .conv }
        if max(kernelSize.0, kernelSize.1) > 3 { return .largeDepthwiseConv }
        return max(stride.0, stride.1) > 1 ? .stridedDepthwiseConv : .depthwiseConv
    }

    /// Convolutions and `Linear` are in LibTorch's autocast lists: under autocast they cast their
    /// input and weights to bf16 themselves.
    var isAutocastOperation: Bool {
        self == .depthwiseConv || self == .largeDepthwiseConv || self == .stridedDepthwiseConv || self == .conv || self == .linear
    }
}

/// Which layer types run in bf16 under `--precision bf16`; every other layer type runs in fp32.
///
/// A layer that autograd records (training: its input or its parameters want a gradient) runs its
/// forward and later its backward pass; a layer it does not record (inference, and a frozen backbone
/// whose input wants no gradient) runs only the forward pass. bf16 can pay in one and not in the other
/// (LibTorch 1.13's bf16 ReLU6 backward is 7× slower than fp32's while its forward is 1.8× faster), so
/// a policy has one set for each: `bf16` for recorded layers, `inferenceBF16` for the others.
public struct PrecisionPolicy: Equatable, Codable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    /// The layer types that run in bf16 where autograd records them (training).
    public var bf16: Set<PrecisionLayerKind>
    /// The layer types that run in bf16 where autograd does not record them (inference, frozen layers).
    public var inferenceBF16: Set<PrecisionLayerKind>

    /// A policy that runs the layer types in `bf16` in bfloat16 and the others in float32; layers that
    /// autograd does not record follow `inference` (default: the same set).
    public init(bf16: Set<PrecisionLayerKind>, inference: Set<PrecisionLayerKind>? = nil) {
        self.bf16 = bf16
        self.inferenceBF16 = inference ?? bf16
    }

    /// The policy `--precision bf16` uses with the LibTorch this process runs on: `standard1` for
    /// LibTorch 1.x, `standard2` for 2.x (their bf16 kernels differ; see there).
    public static let standard: PrecisionPolicy = Runtime.libTorchMajorVersion == 1 ? standard1 : standard2

    /// The policy for LibTorch 1.x, from `bench --precision-probe` on a CPU with native bf16 (AMD Zen 4,
    /// LibTorch 1.13.1; docs/benchmarks.md, "Precision policy"):
    /// - dense, pointwise and 3×3 depthwise convolutions (strided too), `Linear`, BatchNorm, ReLU, SiLU
    ///   (composed as `x * sigmoid(x)` in bf16, `Functional.silu`) and the other activations (measured:
    ///   Sigmoid, EfficientNet's gate) in bf16 everywhere;
    /// - 5×5 depthwise convolutions and ReLU6 in bf16 in inference only: their bf16 backward passes are
    ///   2× (5×5) and 7× (ReLU6, a clamp's) slower than fp32's.
    /// (Linear's inference is as fast either way, 1.01–1.05×; bf16 keeps the head in one dtype.)
    public static let standard1 = PrecisionPolicy(
        bf16: [.depthwiseConv, .stridedDepthwiseConv, .conv, .linear, .batchNorm, .relu, .silu, .activation],
        inference: Set(PrecisionLayerKind.allCases))

    /// The policy for LibTorch 2.x, from the same probe on the torch 2.13 wheel: as `standard1`, but
    /// strided depthwise convolutions train in fp32 (their bf16 backward is 4–5× slower there). (2.x's
    /// own bf16 SiLU kernel is 0.8× fp32's alone, faster than fp32 plus the casts around it.)
    public static let standard2 = PrecisionPolicy(
        bf16: [.depthwiseConv, .conv, .linear, .batchNorm, .relu, .silu, .activation],
        inference: Set(PrecisionLayerKind.allCases))

    /// Every layer type in bf16: what plain LibTorch autocast did before the policy (`bench --dtype bf16-all`).
    public static let allBF16 = PrecisionPolicy(bf16: Set(PrecisionLayerKind.allCases))

    /// The dtype `kind` runs in: `.bfloat16` or `.float32`, where autograd records the layer (`recorded`)
    /// or not.
    public func dtype(for kind: PrecisionLayerKind, recorded: Bool = true) -> DType {
        (recorded ? bf16 : inferenceBF16).contains(kind) ? .bfloat16 : .float32
    }

    /// `depthwise_conv2d=bf16 conv2d=bf16 linear=bf16 batch_norm=bf16 activation=fp32`, in a fixed order;
    /// where the inference set differs, `; inference: ` and its list follow.
    public var description: String {
        func list(_ set: Set<PrecisionLayerKind>) -> String {
            PrecisionLayerKind.allCases.map { "\($0.rawValue)=\(set.contains($0) ? "bf16" : "fp32")" }
                .joined(separator: " ")
        }
        return inferenceBF16 == bf16 ? list(bf16) : "\(list(bf16)); inference: \(list(inferenceBF16))"
    }

    /// Parses `description`'s form (`kind=bf16|fp32` pairs separated by spaces, optionally `; inference: `
    /// and a second list); a layer type left out is fp32. Nil for an unknown layer type or dtype.
    public init?(_ description: String) {
        func parse(_ text: Substring) -> Set<PrecisionLayerKind>? {
            var set: Set<PrecisionLayerKind> = []
            for pair in text.split(whereSeparator: { $0 == " " || $0 == "," }) {
                let parts = pair.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let kind = PrecisionLayerKind(rawValue: String(parts[0])) else { return nil }
                switch parts[1] {
                case "bf16": set.insert(kind)
                case "fp32": break
                default: return nil
                }
            }
            return set
        }
        let halves = description.components(separatedBy: ";")
        guard halves.count <= 2, let training = parse(Substring(halves[0])) else { return nil }
        var inference = training
        if halves.count == 2 {
            let rest = halves[1].trimmingCharacters(in: .whitespaces)
            guard rest.hasPrefix("inference:"), let set = parse(rest.dropFirst("inference:".count)) else { return nil }
            inference = set
        }
        self.init(bf16: training, inference: inference)
    }

    private enum CodingKeys: String, CodingKey { case bf16, inferenceBF16 = "inference_bf16" }

    /// Decodes `bf16` and, when present, `inference_bf16` (policies stored before it had one set).
    public init(from decoder: Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let bf16 = try container.decode(Set<PrecisionLayerKind>.self, forKey: .bf16)
        self.init(bf16: bf16, inference: try container.decodeIfPresent(Set<PrecisionLayerKind>.self, forKey: .inferenceBF16))
    }

    /// The policy active on this thread (set by `withPrecision`), nil outside one. Autocast is on
    /// whenever a policy is, so the common fp32 case costs one call into the shim.
    public static var active: PrecisionPolicy? {
        guard Autocast.isEnabled else { return nil }
        return Thread.current.threadDictionary[key] as? PrecisionPolicy
    }
    private static let key = "finetune.PrecisionPolicy"

    /// Runs `body` with `policy` active on this thread and CPU autocast (bf16) on; nil runs it in
    /// plain fp32 (autocast off). The previous state is restored afterwards.
    public static func with<R>(_ policy: PrecisionPolicy?, _ body: () throws -> R) throws -> R {
        let dictionary = Thread.current.threadDictionary
        let previous = dictionary[key]
        dictionary[key] = policy
        defer { dictionary[key] = previous }
        return try withAutocast(enabled: policy != nil, body)
    }

    /// One layer's operation `body` applied to `x` in the dtype the active policy gives `kind`. An fp32
    /// layer casts a bf16 input to fp32 and runs with autocast off; a bf16 layer leaves the casting of
    /// convolutions and `Linear` to autocast and casts an fp32 input of the other layer types. The layer
    /// counts as recorded when gradient mode is on (outside inference mode) and `x` or one of
    /// `parameters` requires grad. Without an active policy, `body(x)` as it is.
    public static func run(_ kind: PrecisionLayerKind, _ x: Tensor, parameters: [Tensor?] = [],
                           _ body: (Tensor) throws -> Tensor) throws -> Tensor {
        guard let policy = active else { return try body(x) }
        let recorded = GradMode.isEnabled && !GradMode.isInferenceMode
            && (x.requiresGrad || parameters.contains { $0?.requiresGrad == true })
        if policy.dtype(for: kind, recorded: recorded) == .float32 {
            let input = x.dtype == .bfloat16 ? try x.to(.float32) : x
            return try withAutocast(enabled: false) { try body(input) }
        }
        let input = !kind.isAutocastOperation && x.dtype == .float32 ? try x.to(.bfloat16) : x
        return try body(input)
    }

    /// The share of `model`'s convolution and `Linear` weights (a proxy for its arithmetic) in layer
    /// types this policy runs in bf16, from 0 to 1 (0 for a model without such layers).
    public func bf16Share(of model: Module) -> Double {
        var inBF16 = 0, total = 0
        for (_, module) in model.namedModules() {
            let kind: PrecisionLayerKind, count: Int
            if let conv = module as? Conv2d {
                (kind, count) = (.convolution(inChannels: conv.inChannels, groups: conv.groups, kernelSize: conv.kernelSize,
                                              stride: conv.stride),
                                 conv.weight.count)
            } else if let linear = module as? Linear {
                (kind, count) = (.linear, linear.weight.count)
            } else {
                continue
            }
            total += count
            if bf16.contains(kind) { inBF16 += count }
        }
        return total == 0 ? 0 : Double(inBF16) / Double(total)
    }
}

/// Runs `body` in `precision`: `.bf16` under `PrecisionPolicy.standard` (autocast on), `.fp32` plainly.
/// Resolve `.auto` first (`Precision.resolved`); an unresolved `.auto` runs in fp32.
public func withPrecision<R>(_ precision: Precision, policy: PrecisionPolicy = .standard,
                             _ body: () throws -> R) throws -> R {
    try PrecisionPolicy.with(precision == .bf16 ? policy : nil, body)
}

/// `--precision`: fp32, bf16 under the layer policy, or auto (bf16 where it pays, see `resolved`).
public enum Precision: String, CaseIterable, Codable, Sendable {
    /// Everything in float32.
    case fp32
    /// CPU autocast with `PrecisionPolicy.standard`.
    case bf16
    /// bf16 where the CPU has native bf16 and the policy is a win for the model, else fp32.
    case auto

    /// `.fp32` or `.bf16` for `model` on `device`. `.auto` is bf16 only on the CPU (the shim's autocast
    /// is CPU autocast; CUDA and MPS run fp32), only when `cpu` has native bf16 (`avx512_bf16` or AMX;
    /// without it LibTorch emulates bf16 and every layer type is slower, see the probe in
    /// docs/benchmarks.md), and only when `policy` puts at least half of the model's convolution and
    /// `Linear` weights in bf16 (below that, the casts at the boundaries eat the gain).
    public func resolved(for model: Module, device: Device = .cpu, cpu: CPUFeatures = .current,
                         policy: PrecisionPolicy = .standard) -> Precision {
        guard self == .auto else { return self }
        return Precision.autoDecision(for: model, device: device, cpu: cpu, policy: policy).precision
    }

    /// Why `.auto` resolves as it does for `model`, in words (what `train` prints).
    public static func autoReason(for model: Module, device: Device = .cpu, cpu: CPUFeatures = .current,
                                  policy: PrecisionPolicy = .standard) -> String {
        autoDecision(for: model, device: device, cpu: cpu, policy: policy).reason
    }

    static func autoDecision(for model: Module, device: Device, cpu: CPUFeatures,
                             policy: PrecisionPolicy) -> (precision: Precision, reason: String) {
        guard device == .cpu else { return (.fp32, "bf16 autocast is CPU-only; \(device) runs fp32") }
        guard cpu.hasNativeBF16 else { return (.fp32, "this CPU has no native bf16 (avx512_bf16 or amx_bf16)") }
        let share = policy.bf16Share(of: model)
        let percent = Int((share * 100).rounded())
        guard share >= 0.5 else {
            return (.fp32, "the policy would put only \(percent)% of the convolution and Linear weights in bf16")
        }
        return (.bf16, "native bf16; the policy puts \(percent)% of the convolution and Linear weights in bf16")
    }
}

/// The CPU's feature flags, as `/proc/cpuinfo` lists them (`flags` on x86, `Features` on Arm).
public struct CPUFeatures: Equatable, Sendable {
    /// Lowercase flag names, e.g. `avx2`, `avx512_bf16`, `amx_bf16`.
    public var flags: Set<String>

    /// Features from explicit flags (tests, or another machine's).
    public init(flags: Set<String>) { self.flags = Set(flags.map { $0.lowercased() }) }

    /// Parses the text of `/proc/cpuinfo`: the flags of its first `flags` (or `Features`) line.
    public init(cpuinfo: String) {
        let line = cpuinfo.split(separator: "\n").first {
            let key = $0.split(separator: ":", maxSplits: 1).first?.trimmingCharacters(in: .whitespaces)
            return key == "flags" || key == "Features"
        }
        let values = line?.split(separator: ":", maxSplits: 1).dropFirst().first ?? ""
        self.init(flags: Set(values.split(separator: " ").map(String.init)))
    }

    /// This machine's features: `/proc/cpuinfo` on Linux; none elsewhere (macOS has no native bf16 in
    /// LibTorch's CPU kernels that `auto` would rely on), so `auto` is fp32 there.
    public static let current: CPUFeatures = {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return CPUFeatures(flags: []) }
        return CPUFeatures(cpuinfo: text)
    }()

    /// Whether the CPU computes bf16 natively: AVX-512 BF16 (`avx512_bf16`, Zen 4, Cooper Lake) or AMX
    /// (`amx_bf16`, Sapphire Rapids). Without either, oneDNN emulates bf16 in fp32 with extra conversions.
    public var hasNativeBF16: Bool { flags.contains("avx512_bf16") || flags.contains("amx_bf16") }
}
