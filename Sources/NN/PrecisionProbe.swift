import Dispatch
import Torch

/// Times each `PrecisionLayerKind` at representative shapes in fp32 and in bf16 (forward and
/// backward, medians of interleaved runs) and derives the `PrecisionPolicy` this CPU and LibTorch
/// favour: a layer type runs in bf16 only where bf16 is faster for it (`finetune bench --precision-probe`).
public struct PrecisionProbe {
    /// One layer at one input shape.
    public struct Case {
        /// The layer type the case stands for.
        public var kind: PrecisionLayerKind
        /// A short description, e.g. `1x1 conv 144→24, 56×56`.
        public var name: String
        /// The layer (random weights, training mode).
        public var layer: Module
        /// NCHW (or [N, features]) input shape.
        public var inputShape: [Int]
    }

    /// The medians of one case, in milliseconds.
    public struct Measurement: Codable, Equatable {
        /// The layer type.
        public var kind: PrecisionLayerKind
        /// The case's description.
        public var layer: String
        /// Its input shape.
        public var inputShape: [Int]
        public var fp32ForwardMs: Double
        public var bf16ForwardMs: Double
        public var fp32BackwardMs: Double
        public var bf16BackwardMs: Double
        /// Casting the layer's bf16 input to fp32 and its fp32 output to bf16: what running it in fp32
        /// between bf16 layers adds to each pass (the backward pass casts the gradient the same ways).
        public var castMs: Double

        /// A measurement of `layer` (a case of `kind` at `inputShape`) with these medians.
        public init(kind: PrecisionLayerKind, layer: String, inputShape: [Int], fp32ForwardMs: Double,
                    bf16ForwardMs: Double, fp32BackwardMs: Double, bf16BackwardMs: Double, castMs: Double = 0) {
            self.kind = kind
            self.layer = layer
            self.inputShape = inputShape
            self.fp32ForwardMs = fp32ForwardMs
            self.bf16ForwardMs = bf16ForwardMs
            self.fp32BackwardMs = fp32BackwardMs
            self.bf16BackwardMs = bf16BackwardMs
            self.castMs = castMs
        }

        /// fp32 time (with the casts) / bf16 time of forward + backward: above 1, bf16 is faster.
        public var bf16Speedup: Double {
            (fp32ForwardMs + fp32BackwardMs + 2 * castMs) / (bf16ForwardMs + bf16BackwardMs)
        }
        /// fp32 time (with the casts) / bf16 time of the forward pass alone (what inference runs).
        public var bf16ForwardSpeedup: Double { (fp32ForwardMs + castMs) / bf16ForwardMs }
    }

    /// Images per batch of the representative shapes.
    public var batchSize: Int
    /// Timed runs per case and dtype (interleaved: fp32, bf16, bf16, fp32, …).
    public var iterations: Int
    /// Untimed runs per case and dtype before the timed ones.
    public var warmup: Int
    /// Inputs in channels-last layout, as `finetune train` runs convolutions.
    public var channelsLast: Bool

    /// A probe of `batchSize` images, `iterations` timed runs after `warmup` untimed ones.
    public init(batchSize: Int = 16, iterations: Int = 10, warmup: Int = 2, channelsLast: Bool = true) {
        self.batchSize = batchSize
        self.iterations = iterations
        self.warmup = warmup
        self.channelsLast = channelsLast
    }

    /// The representative shapes: MobileNetV2's expanded 56×56 stage (depthwise 3×3 over 144
    /// channels, its 1×1 projection, BatchNorm and ReLU6 there), ResNet-50's 3×3 convolution at
    /// 56×56, its 1×1 expansion and its ReLU, EfficientNet's SiLU and Sigmoid (its squeeze-and-excitation
    /// gate; `.activation`) at the same size, and a 1,280 → 1,000 classifier. `side` scales the 56×56 maps
    /// (tests use a small one).
    public func cases(side: Int = 56) throws -> [Case] {
        let n = batchSize
        return [
            Case(kind: .depthwiseConv, name: "depthwise 3x3, 144 ch, \(side)x\(side)",
                 layer: try Conv2d(144, 144, kernelSize: 3, padding: 1, groups: 144, bias: false), inputShape: [n, 144, side, side]),
            Case(kind: .largeDepthwiseConv, name: "depthwise 5x5, 240 ch, \(side / 2)x\(side / 2)",
                 layer: try Conv2d(240, 240, kernelSize: 5, padding: 2, groups: 240, bias: false),
                 inputShape: [n, 240, side / 2, side / 2]),
            Case(kind: .stridedDepthwiseConv, name: "depthwise 3x3 stride 2, 96 ch, \(side * 2)x\(side * 2)",
                 layer: try Conv2d(96, 96, kernelSize: 3, stride: 2, padding: 1, groups: 96, bias: false),
                 inputShape: [n, 96, side * 2, side * 2]),
            Case(kind: .conv, name: "1x1 conv 144->24, \(side)x\(side)",
                 layer: try Conv2d(144, 24, kernelSize: 1, bias: false), inputShape: [n, 144, side, side]),
            Case(kind: .conv, name: "1x1 conv 64->256, \(side)x\(side)",
                 layer: try Conv2d(64, 256, kernelSize: 1, bias: false), inputShape: [n, 64, side, side]),
            Case(kind: .conv, name: "3x3 conv 64->64, \(side)x\(side)",
                 layer: try Conv2d(64, 64, kernelSize: 3, padding: 1, bias: false), inputShape: [n, 64, side, side]),
            Case(kind: .linear, name: "linear 1280->1000",
                 layer: try Linear(1280, 1000), inputShape: [n, 1280]),
            Case(kind: .batchNorm, name: "batch norm 144 ch, \(side)x\(side)",
                 layer: try BatchNorm2d(144), inputShape: [n, 144, side, side]),
            Case(kind: .relu, name: "relu 64 ch, \(side)x\(side)",
                 layer: ReLU(), inputShape: [n, 64, side, side]),
            Case(kind: .relu6, name: "relu6 144 ch, \(side)x\(side)",
                 layer: ReLU6(), inputShape: [n, 144, side, side]),
            Case(kind: .silu, name: "silu 144 ch, \(side)x\(side)",
                 layer: SiLU(), inputShape: [n, 144, side, side]),
            Case(kind: .activation, name: "sigmoid 144 ch, \(side)x\(side)",
                 layer: Sigmoid(), inputShape: [n, 144, side, side]),
        ]
    }

    /// Times every case of `cases` (default: `cases()`).
    public func measure(_ cases: [Case]? = nil) throws -> [Measurement] {
        try (cases ?? self.cases()).map(measure)
    }

    /// Times one case: its layer on a random input in fp32, then on the input in bf16 under a policy
    /// that puts the case's kind in bf16 (the weights stay fp32, as in training; autocast casts them).
    public func measure(_ probe: Case) throws -> Measurement {
        let layer = probe.layer
        if channelsLast && probe.inputShape.count == 4 { try layer.to(memoryFormat: .channelsLast) }
        var base = try Tensor.randn(probe.inputShape)
        if channelsLast && probe.inputShape.count == 4 { base = try base.contiguous(.channelsLast) }
        let policy = PrecisionPolicy(bf16: [probe.kind])
        let bf16Input = try base.to(.bfloat16).setRequiresGrad(true)
        let fp32Input = try base.setRequiresGrad(true)

        // One forward + backward; the gradient has the output's shape, dtype and layout.
        func step(bf16: Bool) throws -> (Double, Double) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let output = try PrecisionPolicy.with(bf16 ? policy : nil) { try layer(bf16 ? bf16Input : fp32Input) }
            let t1 = DispatchTime.now().uptimeNanoseconds
            var gradient = try Tensor.ones(output.shape, dtype: output.dtype)
            if output.rank == 4 && output.isContiguous(.channelsLast) { gradient = try gradient.contiguous(.channelsLast) }
            let t2 = DispatchTime.now().uptimeNanoseconds
            try output.backward(gradient: gradient)
            let t3 = DispatchTime.now().uptimeNanoseconds
            return (Double(t1 - t0) / 1e6, Double(t3 - t2) / 1e6)
        }
        // Casting in and out, as an fp32 layer between bf16 layers does (bf16 input → fp32; fp32 output → bf16).
        let fp32Output = try withNoGrad { try layer(fp32Input) }
        func casts() throws -> Double {
            let t0 = DispatchTime.now().uptimeNanoseconds
            _ = try bf16Input.detach().to(.float32)
            _ = try fp32Output.to(.bfloat16)
            return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        }
        var forward: [Bool: [Double]] = [false: [], true: []], backward: [Bool: [Double]] = [false: [], true: []]
        var castTimes: [Double] = []
        for i in 0..<(warmup + iterations) {
            let cast = try casts()
            if i >= warmup { castTimes.append(cast) }
            // Interleaved, alternating which dtype goes first, so drift in the machine's load hits both.
            for bf16 in i % 2 == 0 ? [false, true] : [true, false] {
                let (f, b) = try step(bf16: bf16)
                if i >= warmup {
                    forward[bf16]!.append(f)
                    backward[bf16]!.append(b)
                }
            }
            for tensor in layer.parameters() + [fp32Input, bf16Input] { try tensor.setGrad(nil) }
        }
        return Measurement(kind: probe.kind, layer: probe.name, inputShape: probe.inputShape,
                           fp32ForwardMs: Self.median(forward[false]!), bf16ForwardMs: Self.median(forward[true]!),
                           fp32BackwardMs: Self.median(backward[false]!), bf16BackwardMs: Self.median(backward[true]!),
                           castMs: Self.median(castTimes))
    }

    /// The policy the measurements favour. For layers autograd records (training), a layer type is bf16
    /// when bf16's forward + backward, summed over that type's cases, is at least `margin` times faster
    /// than fp32's; for layers it does not record (inference), the same with the forward passes alone.
    /// fp32's side includes casting in and out (`castMs`, once per pass): on a CPU with native bf16 most
    /// of a network's time is in bf16 convolutions, so an fp32 layer sits among bf16 ones. The margin
    /// (1.05) keeps noise from flipping a layer type that is as fast either way.
    public static func policy(from measurements: [Measurement], margin: Double = 1.05) -> PrecisionPolicy {
        func kinds(_ time: (Measurement, Bool) -> Double) -> Set<PrecisionLayerKind> {
            Set(PrecisionLayerKind.allCases.filter { kind in
                let rows = measurements.filter { $0.kind == kind }
                guard !rows.isEmpty else { return false }
                let fp32 = rows.reduce(0) { $0 + time($1, false) }
                let bf16 = rows.reduce(0) { $0 + time($1, true) }
                return bf16 * margin <= fp32
            })
        }
        let training = kinds { m, bf16 in
            bf16 ? m.bf16ForwardMs + m.bf16BackwardMs : m.fp32ForwardMs + m.fp32BackwardMs + 2 * m.castMs
        }
        let inference = kinds { m, bf16 in bf16 ? m.bf16ForwardMs : m.fp32ForwardMs + m.castMs }
        return PrecisionPolicy(bf16: training, inference: inference)
    }

    /// The median of `xs` (the mean of the middle two for an even count; NaN when empty).
    public static func median(_ xs: [Double]) -> Double {
        let s = xs.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
