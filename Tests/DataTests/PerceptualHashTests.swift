@testable import Data
import Foundation
import XCTest

/// The DCT under `PerceptualHash`: the separable product equals the 2-D DCT-II summed directly.
final class PerceptualHashTests: XCTestCase {
    func testLowFrequencyDCTEqualsTheDirectDoubleSum() {
        let n = 32, k = 8
        var state: UInt64 = 42
        let x = (0..<(n * n)).map { _ -> Double in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Double(state >> 40) / Double(1 << 24) * 255
        }
        let dct = PerceptualHash.lowFrequencyDCT(x, side: n, keep: k)
        XCTAssertEqual(dct.count, k * k)
        for u in 0..<k {
            for v in 0..<k {
                var sum = 0.0
                for i in 0..<n {
                    for j in 0..<n {
                        sum += x[i * n + j] * cos(Double.pi * Double(u) * (2 * Double(i) + 1) / (2 * Double(n)))
                            * cos(Double.pi * Double(v) * (2 * Double(j) + 1) / (2 * Double(n)))
                    }
                }
                XCTAssertEqual(dct[u * k + v], sum, accuracy: 1e-9 * max(1, abs(sum)), "coefficient (\(u), \(v))")
            }
        }
    }
}
