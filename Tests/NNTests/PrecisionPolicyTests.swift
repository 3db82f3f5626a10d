import NN
import TestSupport
import Torch
import Foundation
import XCTest

/// The per-layer precision policy: which dtype each layer type runs in (seen through `ModelSummary`'s
/// output dtypes), gradients under it, the `auto` decision from CPU flags, and the probe.
final class PrecisionPolicyTests: XCTestCase {
    /// A MobileNet-like stack: stem conv, BN, ReLU6; depthwise conv, BN, ReLU6; pointwise conv, BN;
    /// pooling and a Linear head.
    func mobileBlock() throws -> Sequential {
        Sequential(try Conv2d(3, 8, kernelSize: 3, stride: 2, padding: 1, bias: false), try BatchNorm2d(8), ReLU6(inplace: true),
                   try Conv2d(8, 8, kernelSize: 3, padding: 1, groups: 8, bias: false), try BatchNorm2d(8), ReLU6(inplace: true),
                   try Conv2d(8, 16, kernelSize: 1, bias: false), try BatchNorm2d(16),
                   AdaptiveAvgPool2d(outputSize: 1), Flatten(), try Linear(16, 5))
    }

    func dtypes(_ summary: ModelSummary) -> [String: String] {
        Dictionary(uniqueKeysWithValues: summary.rows.map { ($0.name, $0.outputDType ?? "-") })
    }

    func testStandardPolicyRunsEachLayerTypeInItsDType() throws {
        let model = try mobileBlock()
        // Training: autograd records every layer (the parameters want gradients).
        let summary = try ModelSummary(model, inputShape: [2, 3, 16, 16], precision: .standard, recordingGradients: true)
        XCTAssertEqual(dtypes(summary), [
            "0": "bfloat16", "1": "bfloat16", "2": "float32",  // dense conv and BN in bf16; ReLU6 casts to fp32
            "3": "bfloat16", "4": "bfloat16", "5": "float32",  // depthwise conv and BN in bf16, ReLU6 in fp32
            "6": "bfloat16", "7": "bfloat16",                  // pointwise conv and BN in bf16
            "8": "bfloat16", "9": "bfloat16", "10": "bfloat16", // pooling follows its input; Linear in bf16
        ], summary.render())
        XCTAssertEqual(summary.rows.first?.outputShape, [2, 8, 8, 8])
    }

    func testLayersAutogradDoesNotRecordFollowTheInferenceSet() throws {
        let model = try mobileBlock()
        let policy = try XCTUnwrap(PrecisionPolicy("conv2d=bf16 batch_norm=bf16; inference: conv2d=bf16 relu6=bf16"))
        XCTAssertEqual(policy.bf16, [.conv, .batchNorm])
        XCTAssertEqual(policy.inferenceBF16, [.conv, .relu6])
        let recorded = dtypes(try ModelSummary(model, inputShape: [1, 3, 16, 16], precision: policy, recordingGradients: true))
        XCTAssertEqual([recorded["0"], recorded["1"], recorded["2"], recorded["3"], recorded["6"]],
                       ["bfloat16", "bfloat16", "float32", "float32", "bfloat16"])
        // Inference: the inference set.
        let inference = dtypes(try ModelSummary(model, inputShape: [1, 3, 16, 16], precision: policy))
        XCTAssertEqual([inference["0"], inference["1"], inference["2"], inference["3"], inference["6"], inference["7"]],
                       ["bfloat16", "float32", "bfloat16", "float32", "bfloat16", "float32"])
        // A frozen model in training (gradient mode on, nothing requires grad) is not recorded either.
        for p in model.parameters() { try p.setRequiresGrad(false) }
        XCTAssertEqual(dtypes(try ModelSummary(model, inputShape: [1, 3, 16, 16], precision: policy, recordingGradients: true)),
                       inference)
        // The standard policy runs all of this block in bf16 in inference (ReLU6 too), so nothing casts.
        let standard = try ModelSummary(model, inputShape: [1, 3, 16, 16], precision: .standard)
        XCTAssertEqual(Set(dtypes(standard).values), ["bfloat16"], standard.render())
    }

    /// `Functional.silu` on bf16 (composed on LibTorch 1.x): SiLU to bf16's precision, with its gradient.
    func testBF16SiLUAgreesWithFloat32AndHasItsGradient() throws {
        Runtime.manualSeed(5)
        let x = try Tensor.randn([4, 8, 5, 5]) * 4
        let reference = try x.silu()
        let input = try x.to(.bfloat16).setRequiresGrad(true)
        let y = try Functional.silu(input)
        XCTAssertEqual(y.dtype, .bfloat16)
        let scale = try reference.abs().max().item()
        XCTAssertLessThan(try (y.to(.float32) - reference).abs().max().item(), 0.01 * scale)
        try y.to(.float32).sum().backward()
        // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
        let s = try x.sigmoid()
        let expected = try s * ((x * (s.neg() + 1)) + 1)
        let gradient = try XCTUnwrap(input.grad).to(.float32)
        XCTAssertLessThan(try (gradient - expected).abs().max().item(), 0.02 * (try expected.abs().max().item()))
    }

    func testPolicyDescriptionsParseBackAndBadOnesAreRefused() throws {
        for policy in [PrecisionPolicy.standard, .allBF16, PrecisionPolicy(bf16: []), PrecisionPolicy(bf16: [.silu], inference: [.relu])] {
            XCTAssertEqual(PrecisionPolicy(policy.description), policy, policy.description)
            let json = try JSONEncoder().encode(policy)
            XCTAssertEqual(try JSONDecoder().decode(PrecisionPolicy.self, from: json), policy)
        }
        XCTAssertEqual(PrecisionPolicy("conv2d=bf16,linear=bf16"), PrecisionPolicy(bf16: [.conv, .linear]))
        XCTAssertEqual(PrecisionPolicy("conv2d=bf16 relu=fp32"), PrecisionPolicy(bf16: [.conv]))
        // A policy stored before the inference set existed decodes with the same set for both.
        let old = try JSONDecoder().decode(PrecisionPolicy.self, from: Data(#"{"bf16":["conv2d","linear"]}"#.utf8))
        XCTAssertEqual(old, PrecisionPolicy(bf16: [.conv, .linear], inference: [.conv, .linear]))
        for bad in ["conv3d=bf16", "conv2d=fp16", "conv2d", "conv2d=bf16; training: relu=bf16", "a; b; c"] {
            XCTAssertNil(PrecisionPolicy(bad), bad)
        }
    }

    func testWithoutAPolicyEverythingIsFloat32AndEveryLayerTypeCanBeBF16() throws {
        let model = try mobileBlock()
        let plain = try ModelSummary(model, inputShape: [1, 3, 16, 16])
        XCTAssertEqual(Set(dtypes(plain).values), ["float32"])
        let all = try ModelSummary(model, inputShape: [1, 3, 16, 16], precision: .allBF16)
        XCTAssertEqual(Set(dtypes(all).values), ["bfloat16"], all.render())
        let depthwiseOnly = try ModelSummary(model, inputShape: [1, 3, 16, 16],
                                             precision: PrecisionPolicy(bf16: [.depthwiseConv, .batchNorm]))
        let d = dtypes(depthwiseOnly)
        XCTAssertEqual([d["0"], d["1"], d["3"], d["4"], d["6"], d["7"], d["10"]],
                       ["float32", "bfloat16", "bfloat16", "bfloat16", "float32", "bfloat16", "float32"])
        XCTAssertFalse(Autocast.isEnabled)
        XCTAssertNil(PrecisionPolicy.active)
    }

    func testOutputAndGradientsUnderThePolicyAgreeWithFloat32WithinBF16Tolerance() throws {
        Runtime.manualSeed(3)
        let model = try mobileBlock()
        let x = try Tensor.randn([4, 3, 16, 16])
        func run(_ policy: PrecisionPolicy?) throws -> (Tensor, [Tensor]) {
            for p in model.parameters() { try p.setGrad(nil) }
            let y = try PrecisionPolicy.with(policy) { try model(x).to(.float32) }
            try y.square().sum().backward()
            return (y, try model.parameters().map { try XCTUnwrap($0.grad) })
        }
        let (reference, referenceGrads) = try run(nil)
        let (y, grads) = try run(.standard)
        XCTAssertEqual(y.dtype, .float32)
        // bf16 keeps 8 significant bits (relative precision 2^-8 ≈ 0.4 %) in each bf16 layer.
        let scale = try reference.abs().max().item()
        XCTAssertLessThan(try (y - reference).abs().max().item(), 0.03 * scale + 1e-3)
        XCTAssertGreaterThan(try (y - reference).abs().max().item(), 0, "the policy changed nothing")
        // bf16 backward of the bf16 layers (BatchNorm's too): within 10 % of each parameter's largest
        // gradient, plus 0.1 % of the model's largest for a parameter whose gradient is near zero.
        let largest = try referenceGrads.map { try $0.abs().max().item() }.max() ?? 0
        for (g, r) in zip(grads, referenceGrads) {
            XCTAssertEqual(g.dtype, .float32, "parameters and their gradients stay float32")
            let s = try r.abs().max().item()
            XCTAssertLessThan(try (g - r).abs().max().item(), 0.1 * s + 1e-3 * largest)
        }
    }

    func testAutoIsBF16OnlyWithNativeBF16OnTheCPUAndAModelMostlyInBF16Layers() throws {
        let model = try mobileBlock()   // the pointwise, stem and Linear weights outweigh the depthwise ones
        let zen4 = CPUFeatures(cpuinfo: """
            processor\t: 0
            vendor_id\t: AuthenticAMD
            flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512vl
            bogomips\t: 4800.00

            processor\t: 1
            flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512vl
            """)
        XCTAssertTrue(zen4.hasNativeBF16)
        let zen2 = CPUFeatures(flags: ["fpu", "sse2", "avx2", "fma"])
        let sapphireRapids = CPUFeatures(flags: ["avx512f", "AMX_BF16", "amx_tile"])
        XCTAssertFalse(zen2.hasNativeBF16)
        XCTAssertTrue(sapphireRapids.hasNativeBF16)
        XCTAssertEqual(Precision.auto.resolved(for: model, cpu: zen4), .bf16)
        XCTAssertEqual(Precision.auto.resolved(for: model, cpu: sapphireRapids), .bf16)
        XCTAssertEqual(Precision.auto.resolved(for: model, cpu: zen2), .fp32)
        XCTAssertEqual(Precision.auto.resolved(for: model, device: .mps, cpu: zen4), .fp32)
        XCTAssertEqual(Precision.auto.resolved(for: model, device: .cuda(0), cpu: zen4), .fp32)
        XCTAssertTrue(Precision.autoReason(for: model, cpu: zen2).contains("no native bf16"))
        // Explicit choices are kept whatever the CPU.
        XCTAssertEqual(Precision.bf16.resolved(for: model, cpu: zen2), .bf16)
        XCTAssertEqual(Precision.fp32.resolved(for: model, cpu: zen4), .fp32)
        // A model that is mostly depthwise convolutions that a policy keeps in fp32 gains too little from it:
        // the standard policy trains 5×5 depthwise convolutions in fp32 and 3×3 ones in bf16.
        let depthwise5 = Sequential(try Conv2d(64, 64, kernelSize: 5, groups: 64), try Conv2d(64, 2, kernelSize: 1))
        let depthwise3 = Sequential(try Conv2d(64, 64, kernelSize: 3, groups: 64), try Conv2d(64, 2, kernelSize: 1))
        XCTAssertLessThan(PrecisionPolicy.standard.bf16Share(of: depthwise5), 0.5)
        XCTAssertEqual(Precision.auto.resolved(for: depthwise5, cpu: zen4), .fp32)
        XCTAssertEqual(Precision.auto.resolved(for: depthwise3, cpu: zen4), .bf16)
        let denseOnly = PrecisionPolicy(bf16: [.conv, .linear])
        XCTAssertEqual(Precision.auto.resolved(for: depthwise3, cpu: zen4, policy: denseOnly), .fp32)
        XCTAssertEqual(PrecisionPolicy.allBF16.bf16Share(of: depthwise5), 1)
    }

    func testProbeMeasuresEveryLayerTypeAndThePolicyFollowsTheMeasurements() throws {
        let probe = PrecisionProbe(batchSize: 1, iterations: 1, warmup: 0)
        let measurements = try probe.measure(probe.cases(side: 8))
        XCTAssertEqual(Set(measurements.map(\.kind)), Set(PrecisionLayerKind.allCases))
        for m in measurements {
            for t in [m.fp32ForwardMs, m.bf16ForwardMs, m.fp32BackwardMs, m.bf16BackwardMs] {
                XCTAssertTrue(t > 0 && t.isFinite, "\(m)")
            }
        }
        // Derived from the times: bf16 where its forward + backward is at least 5 % faster.
        func row(_ kind: PrecisionLayerKind, fp32: Double, bf16: Double) -> PrecisionProbe.Measurement {
            .init(kind: kind, layer: kind.rawValue, inputShape: [1], fp32ForwardMs: fp32, bf16ForwardMs: bf16,
                  fp32BackwardMs: fp32, bf16BackwardMs: bf16)
        }
        let policy = PrecisionProbe.policy(from: [
            row(.depthwiseConv, fp32: 1, bf16: 2), row(.conv, fp32: 3, bf16: 1), row(.conv, fp32: 1, bf16: 1.5),
            row(.linear, fp32: 1, bf16: 0.97), row(.batchNorm, fp32: 2, bf16: 1), row(.activation, fp32: 1, bf16: 1),
        ])
        XCTAssertEqual(policy, PrecisionPolicy(bf16: [.conv, .batchNorm]))
        // Forward alone decides the inference set; fp32 pays its casts in and out once per pass.
        let split = PrecisionProbe.policy(from: [
            .init(kind: .relu6, layer: "relu6", inputShape: [1], fp32ForwardMs: 2, bf16ForwardMs: 1,
                  fp32BackwardMs: 2, bf16BackwardMs: 20),
            .init(kind: .silu, layer: "silu", inputShape: [1], fp32ForwardMs: 1.0, bf16ForwardMs: 1.2,
                  fp32BackwardMs: 1.0, bf16BackwardMs: 1.2, castMs: 0.5),
            .init(kind: .activation, layer: "sigmoid", inputShape: [1], fp32ForwardMs: 1.0, bf16ForwardMs: 1.2,
                  fp32BackwardMs: 1.0, bf16BackwardMs: 1.2, castMs: 0.1),
        ])
        XCTAssertEqual(split, PrecisionPolicy(bf16: [.silu], inference: [.relu6, .silu]))
        XCTAssertEqual(PrecisionProbe.policy(from: measurements),
                       PrecisionProbe.policy(from: measurements.reversed()))
    }
}
