import Foundation
import TensorIO
import Torch
import XCTest

/// Locates committed test fixtures under `Tests/Fixtures` (made by `tools/fixtures/*.py`).
public enum Fixtures {
    public static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    public static func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Loads `Tests/Fixtures/<name>` as safetensors.
    public static func load(_ name: String) throws -> StateDict {
        let p = path(name)
        guard FileManager.default.fileExists(atPath: p) else {
            throw TorchError("missing fixture \(p): run tools/fixtures/make-fixtures")
        }
        return try SafeTensors.load(p)
    }

    /// Fetches `key` from a fixture dictionary or fails with the key's name.
    public static func tensor(_ dict: StateDict, _ key: String) throws -> Tensor {
        guard let t = dict[key] else { throw TorchError("fixture has no tensor '\(key)'") }
        return t
    }
}

/// Asserts equal shapes and every element within `atol + rtol*|expected| + relativeToScale*max|expected|`;
/// reports the worst element and the scale.
///
/// `relativeToScale` is for whole-network outputs compared across LibTorch builds: kernels differ
/// (oneDNN version, Winograd, BLAS), rounding differences grow with depth, and a wiring bug shows up
/// as an error of the order of the outputs' scale, far above a small fraction of it.
public func assertClose(_ actual: Tensor, _ expected: Tensor, atol: Double = 1e-5, rtol: Double = 0,
                        relativeToScale: Double = 0,
                        _ message: @autoclosure () -> String = "", file: StaticString = #filePath,
                        line: UInt = #line) {
    XCTAssertEqual(actual.shape, expected.shape, "shape \(message())", file: file, line: line)
    guard actual.shape == expected.shape,
          let a = try? actual.to(.float64).toArray(Double.self),
          let e = try? expected.to(.float64).toArray(Double.self) else { return }
    var worst = 0.0, worstIndex = -1
    let scale = e.reduce(0.0) { Swift.max($0, Swift.abs($1)) }
    let floor = atol + relativeToScale * scale
    for i in 0..<a.count {
        let excess = Swift.abs(a[i] - e[i]) - (floor + rtol * Swift.abs(e[i]))
        if excess > worst || (a[i].isNaN != e[i].isNaN) { worst = Swift.max(excess, worst); worstIndex = i }
    }
    if worstIndex >= 0 {
        XCTFail("not close \(message()): element \(worstIndex) is \(a[worstIndex]), expected \(e[worstIndex]) " +
                "(atol \(atol), rtol \(rtol), relativeToScale \(relativeToScale), max |expected| \(scale))",
                file: file, line: line)
    }
}
