import Foundation
import NN
import Torch

/// Fills a module's state with the formula in `tools/fixtures/deterministic.py`, so forward passes
/// can be compared with torchvision's without shipping weights. Values are computed in float64
/// and converted, exactly as the Python side does.
public enum DeterministicWeights {
    public static func fill(_ module: Module) throws {
        try withNoGrad {
            for (i, entry) in module.stateDict().enumerated() {
                try entry.tensor.copy_(value(key: entry.key, index: i, shape: entry.tensor.shape))
            }
        }
    }

    static func value(key: String, index i: Int, shape: [Int]) throws -> Tensor {
        let n = shape.reduce(1, *)
        if key.hasSuffix("num_batches_tracked") { return try Tensor.zeros(shape, dtype: .int64) }
        let s = try (Tensor.arange(0, Double(n), dtype: .float64) * 0.7 + Double(i)).sin()
        let v: Tensor
        if key.hasSuffix("running_var") {
            v = try s.abs() * 0.5 + 1
        } else if key.hasSuffix("running_mean") {
            v = try s * 0.1
        } else if shape.count >= 2 {
            v = try s / (Double(n) / Double(shape[0])).squareRoot()
        } else if key.hasSuffix("weight") {
            v = try s * 0.1 + 1
        } else {
            v = try s * 0.1
        }
        return try v.reshape(shape)
    }
}
