@testable import Data
import Foundation
import TensorIO
import TestSupport
import Torch
import XCTest

/// RandAugment and TrivialAugmentWide: every operation at fixed magnitudes against torchvision's
/// `_apply_op` (Tests/Fixtures/augment_ops.safetensors, tools/fixtures/make_augment_ops.py).
///
/// Tolerances: colour operations to ±1 grey level (torchvision's float32 tensor arithmetic is
/// reproduced, but LibTorch's vectorised sums — the contrast mean — and fused multiply-adds can round
/// a value that lands within a float32 ulp of an integer the other way before truncation). Geometric
/// operations (nearest-neighbour shear, translate, rotate) sample a neighbouring pixel where a source
/// coordinate falls on a half-pixel tie (torchvision's float32 grid rounds ties to even, ours is
/// float64): at most 2% of the pixels may differ, and the rest must be equal.
final class AugmentPolicyTests: XCTestCase {
    func testOperationsEqualTorchvision() throws {
        let fixture = try Fixtures.load("augment_ops.safetensors")
        let input = try Image(chw: Fixtures.tensor(fixture, "input"))
        XCTAssertEqual([input.height, input.width], [23, 37])
        let spaces: [(String, [(AugmentOp, [Double])], Int)] = [
            ("randaugment", AugmentSpace.randAugment(bins: 31, height: 23, width: 37), 9),
            ("trivialaugment", AugmentSpace.trivialAugmentWide(bins: 31), 20),
            ("autoaugment", AugmentSpace.autoAugment(bins: 10, height: 23, width: 37), 7),
        ]
        var compared = 0
        for (name, space, bin) in spaces {
            let absent: AugmentOp = name == "autoaugment" ? .identity : .invert  // Invert is AutoAugment's alone
            XCTAssertEqual(space.map(\.0.rawValue), AugmentOp.allCases.filter { $0 != absent }.map(\.rawValue))
            for (op, bins) in space {
                if !bins.isEmpty {
                    let expected = try Fixtures.tensor(fixture, "\(name).\(op.rawValue).bins").toArray(Float.self)
                    // torch.linspace's vectorised kernel may round a bin an ulp away from the scalar formula.
                    XCTAssertEqual(bins.count, expected.count)
                    for (x, y) in zip(bins, expected) { XCTAssertEqual(x, Double(y), accuracy: 2e-6 * Swift.max(1, abs(x)), "\(name) \(op) bins") }
                }
                let magnitude = bins.isEmpty ? 0 : bins[bin]
                for (sign, m) in op.signed ? [("pos", magnitude), ("neg", -magnitude)] : [("pos", magnitude)] {
                    let expected = try Fixtures.tensor(fixture, "\(name).\(op.rawValue).\(sign)")
                    let actual = try op.apply(input, magnitude: m).toTensor()
                    XCTAssertEqual(actual.shape, expected.shape)
                    let a = try actual.toArray(UInt8.self), e = try expected.toArray(UInt8.self)
                    let worst = zip(a, e).map { abs(Int($0) - Int($1)) }.max() ?? 0
                    let differing = zip(a, e).filter { $0 != $1 }.count
                    switch op {
                    case .shearX, .shearY, .translateX, .translateY, .rotate:
                        XCTAssertLessThanOrEqual(Double(differing) / Double(a.count), 0.02,
                                                 "\(name) \(op) \(sign): \(differing) of \(a.count) values differ")
                    default:
                        XCTAssertLessThanOrEqual(worst, 1, "\(name) \(op) \(sign): off by \(worst) (\(differing) values)")
                    }
                    compared += 1
                }
            }
        }
        XCTAssertEqual(compared, 3 * (14 + 9))
        // Control: the operations change the image.
        XCTAssertNotEqual(try AugmentOp.equalize.apply(input, magnitude: 0), input)
    }

    /// AutoAugment's ImageNet policy is torchvision's, step for step (the fixture's metadata), and a
    /// draw follows `AutoAugment.forward`: a sub-policy uniformly, each step with its probability, a
    /// signed magnitude negated half the time. Frequencies over 25,000 draws are within 4.5 standard
    /// deviations of those the table implies.
    func testAutoAugmentIsTorchvisionsImageNetPolicy() throws {
        let metadata = try SafeTensors.read(Fixtures.path("augment_ops.safetensors")).metadata
        let table = try JSONSerialization.jsonObject(with: Data(try XCTUnwrap(metadata["autoaugment.imagenet"]).utf8)) as? [[[Any]]]
        let reference = try XCTUnwrap(table)
        XCTAssertEqual(reference.count, 25)
        XCTAssertEqual(AutoAugment.imageNetPolicy.count, reference.count)
        for (ours, theirs) in zip(AutoAugment.imageNetPolicy, reference) {
            XCTAssertEqual(ours.count, 2)
            for (step, expected) in zip(ours, theirs) {
                XCTAssertEqual(step.op.rawValue, expected[0] as? String)
                XCTAssertEqual(step.probability, (expected[1] as? NSNumber)?.doubleValue)
                XCTAssertEqual(step.bin, (expected[2] as? NSNumber)?.intValue)
            }
        }
        // Expected frequency of each (operation, magnitude) being applied, from the table.
        let space = Dictionary(AugmentSpace.autoAugment(bins: 10, height: 23, width: 37).map { ($0.0, $0.1) },
                               uniquingKeysWith: { a, _ in a })
        var expected: [String: Double] = [:]
        for policy in AutoAugment.imageNetPolicy {
            for step in policy where step.probability > 0 {
                let magnitude = step.bin.map { space[step.op]![$0] } ?? 0
                for sign in step.op.signed ? [1.0, -1.0] : [1.0] {
                    expected["\(step.op) \(sign * magnitude)", default: 0] += step.probability / 25 / (step.op.signed ? 2 : 1)
                }
            }
        }
        var counts: [String: Int] = [:]
        var random = SampleRandom(seed: 3)
        let draws = 25_000
        for _ in 0..<draws {
            for (op, magnitude) in AutoAugment().operations(height: 23, width: 37, random: &random) {
                counts["\(op) \(magnitude)", default: 0] += 1
            }
        }
        XCTAssertEqual(Set(counts.keys), Set(expected.keys))
        for (key, p) in expected {
            let mean = p * Double(draws), sd = (Double(draws) * p * (1 - p)).squareRoot()
            XCTAssertLessThan(abs(Double(counts[key] ?? 0) - mean), 4.5 * sd + 1, "\(key): \(counts[key] ?? 0) against \(mean)")
        }
    }

    func testPoliciesAreSeeded() throws {
        let input = try Image(chw: Fixtures.tensor(try Fixtures.load("augment_ops.safetensors"), "input"))
        for policy in [RandAugment() as any ImageAugmentation, TrivialAugmentWide(), AutoAugment()] {
            var a = SampleRandom(seed: 5), b = SampleRandom(seed: 5)
            XCTAssertEqual(try policy.apply(input, random: &a), try policy.apply(input, random: &b))
            let outputs = try (0..<20).map { seed -> Image in
                var r = SampleRandom(seed: UInt64(seed))
                return try policy.apply(input, random: &r)
            }
            XCTAssertGreaterThan(Set(outputs.map(\.pixels)).count, 5, "different seeds, different operations")
        }
    }
}
