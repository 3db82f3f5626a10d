import NN
import Torch
import XCTest

/// Issue 18, finding 7: a state dict whose float weights are stored as integers, or hold NaN or
/// infinity, is refused (in strict mode), instead of being converted or loaded silently.
final class LoadValidationTests: XCTestCase {
    func testFloatWeightsStoredAsIntegersAreRefused() throws {
        let layer = try Linear(3, 2)
        var state = layer.stateDict()
        let weight = try XCTUnwrap(state["weight"])
        state["weight"] = try weight.to(.int32)
        XCTAssertThrowsError(try layer.load(state)) { error in
            XCTAssertTrue("\(error)".contains("dtype mismatch for weight"), "\(error)")
        }
        let report = try layer.load(state, strict: false)
        XCTAssertEqual(report.dtypeMismatched.map(\.key), ["weight"])
        XCTAssertEqual(report.loaded, 1)  // the bias
    }

    func testNaNOrInfiniteWeightsAreRefusedAndNothingIsLoaded() throws {
        let layer = try Linear(3, 2)
        let before = try layer.stateDict()["weight"].map { try $0.floats() }
        for bad in [Double.nan, .infinity, -.infinity] {
            var state = layer.stateDict()
            let poisoned = try Tensor.zeros([2, 3])
            try poisoned.fill_(1)
            let row = try poisoned.slice(dim: 0, start: 1, end: 2)
            try row.fill_(bad)
            state["weight"] = poisoned
            state["bias"] = try Tensor.zeros([2])
            XCTAssertThrowsError(try layer.load(state)) { error in
                XCTAssertTrue("\(error)".contains("NaN or infinite values in: weight"), "\(error)")
            }
            XCTAssertEqual(try layer.stateDict()["weight"].map { try $0.floats() }, before, "nothing loaded")
        }
    }

    /// Probe U: a BatchNorm running variance below 0 makes every output NaN (1/√(var + ε)); it passed
    /// every check, so `predict` printed NaN, `train --recipe full` ended with status 0, and `serve`
    /// reported ready. It is refused in strict mode and skipped otherwise.
    func testANegativeRunningVarianceIsRefused() throws {
        let bn = try BatchNorm2d(3)
        var state = bn.stateDict()
        state["running_var"] = try Tensor([Float(1), -1, 1])
        XCTAssertThrowsError(try bn.load(state)) { error in
            XCTAssertTrue("\(error)".contains("negative BatchNorm running variance in: running_var"), "\(error)")
        }
        XCTAssertEqual(try bn.stateDict()["running_var"]!.floats(), [1, 1, 1], "nothing loaded")
        let report = try bn.load(state, strict: false)
        XCTAssertEqual(report.negativeVariance, ["running_var"])
        XCTAssertEqual(try bn.stateDict()["running_var"]!.floats(), [1, 1, 1])
        state["running_var"] = try Tensor([Float(0), 2, 1])  // zero is a variance
        XCTAssertNoThrow(try bn.load(state))
    }
}
