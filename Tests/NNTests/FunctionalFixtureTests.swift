import NN
import TestSupport
import Torch
import XCTest

/// `Functional` and joining ops against PyTorch 1.13 (fixtures `layers_f_*` from
/// `tools/fixtures/make_layers.py`): output and input gradients of `(output * loss_weight).sum()`.
final class FunctionalFixtureTests: XCTestCase {
    func testSoftmax() throws {
        try checkFunctional("f_softmax", inputs: ["x"]) { try Functional.softmax($0["x"]!, dim: 1) }
    }

    func testLogSoftmax() throws {
        try checkFunctional("f_log_softmax", inputs: ["x"]) { try Functional.logSoftmax($0["x"]!, dim: -1) }
    }

    func testCrossEntropyWithClassWeightsAndLabelSmoothing() throws {
        try checkFunctional("f_cross_entropy", inputs: ["logits"], constants: ["target", "weight"]) {
            try Functional.crossEntropy($0["logits"]!, target: $0["target"]!, weight: $0["weight"]!,
                                        labelSmoothing: 0.1)
        }
    }

    func testCrossEntropyPlain() throws {
        try checkFunctional("f_cross_entropy_plain", inputs: ["logits"], constants: ["target"]) {
            try Functional.crossEntropy($0["logits"]!, target: $0["target"]!)
        }
    }

    func testBinaryCrossEntropyWithLogitsAndPosWeight() throws {
        try checkFunctional("f_bce_with_logits", inputs: ["logits"], constants: ["target", "pos_weight"]) {
            try Functional.binaryCrossEntropyWithLogits($0["logits"]!, target: $0["target"]!,
                                                        posWeight: $0["pos_weight"]!)
        }
    }

    func testInterpolateBilinearAntialiasedDownsampling() throws {
        try checkFunctional("f_interp_bilinear_aa_down", inputs: ["x"]) {
            try Functional.interpolate($0["x"]!, size: (7, 5), mode: .bilinear, antialias: true)
        }
    }

    func testInterpolateBicubicAntialiasedDownsampling() throws {
        try checkFunctional("f_interp_bicubic_aa_down", inputs: ["x"]) {
            try Functional.interpolate($0["x"]!, size: (7, 5), mode: .bicubic, antialias: true)
        }
    }

    func testInterpolateBilinearUpsampling() throws {
        try checkFunctional("f_interp_bilinear_up", inputs: ["x"]) {
            try Functional.interpolate($0["x"]!, size: (11, 9), mode: .bilinear)
        }
    }

    func testCat() throws {
        try checkFunctional("f_cat", inputs: ["a", "b"]) { try Tensor.cat([$0["a"]!, $0["b"]!], dim: 1) }
    }

    func testStack() throws {
        try checkFunctional("f_stack", inputs: ["a", "b"]) { try Tensor.stack([$0["a"]!, $0["b"]!], dim: 1) }
    }

    /// `inputs` get gradients compared with `grad.<name>`; `constants` are passed as they are.
    private func checkFunctional(_ name: String, inputs: [String], constants: [String] = [],
                                 file: StaticString = #filePath, line: UInt = #line,
                                 _ body: ([String: Tensor]) throws -> Tensor) throws {
        let fixture = try Fixtures.load("layers_\(name).safetensors")
        var args: [String: Tensor] = [:]
        for key in inputs { args[key] = try Fixtures.tensor(fixture, key).clone().setRequiresGrad() }
        for key in constants { args[key] = try Fixtures.tensor(fixture, key) }
        let out = try body(args)
        assertClose(out, try Fixtures.tensor(fixture, "output"), "\(name): output", file: file, line: line)
        try (out * Fixtures.tensor(fixture, "loss_weight")).sum().backward()
        for key in inputs {
            guard let g = args[key]!.grad else { XCTFail("\(name): no gradient for \(key)", file: file, line: line); continue }
            assertClose(g, try Fixtures.tensor(fixture, "grad.\(key)"), "\(name): gradient of \(key)",
                        file: file, line: line)
        }
    }
}
