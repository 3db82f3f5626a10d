import Data
import Foundation
import Torch
import XCTest

/// Random erasing against torchvision 0.14's `RandomErasing` (timm draws its rectangles the same way).
/// The generators differ, so the rectangles' distribution is what is compared: the means and standard
/// deviations printed by `tools/fixtures/make_random_erasing.py` from 200,000 of torchvision's draws.
final class RandomErasingTests: XCTestCase {
    /// (mean, std) of torchvision's erased height, width, area fraction, top and left.
    static let torchvision: [String: [String: (Double, Double)]] = [
        "224x224": ["height": (95.6055, 43.9433), "width": (95.5471, 43.8655), "fraction": (0.1757, 0.0902),
                    "top": (64.2957, 45.1481), "left": (64.1566, 45.0779)],
        "32x48": ["height": (15.7497, 6.6078), "width": (17.0116, 7.8954), "fraction": (0.1703, 0.0888),
                  "top": (8.1333, 6.2760), "left": (15.4818, 10.3094)],
    ]

    func testRectanglesAreDistributedAsTorchvisionDrawsThem() {
        let draws = 20_000
        let erasing = RandomErasing(probability: 1)
        for (height, width) in [(224, 224), (32, 48)] {
            var values: [String: [Double]] = [:]
            for index in 0..<draws {
                var random = SampleRandom(seed: 5, epoch: 0, index: index)
                guard let box = erasing.rectangle(height: height, width: width, random: &random) else {
                    XCTFail("no rectangle at \(height)x\(width) (torchvision's miss rate is 0)")
                    return
                }
                XCTAssertTrue(box.top >= 0 && box.top + box.height <= height && box.left >= 0
                              && box.left + box.width <= width, "\(box) outside \(height)x\(width)")
                values["height", default: []].append(Double(box.height))
                values["width", default: []].append(Double(box.width))
                values["fraction", default: []].append(Double(box.height * box.width) / Double(height * width))
                values["top", default: []].append(Double(box.top))
                values["left", default: []].append(Double(box.left))
            }
            for (name, (mean, std)) in Self.torchvision["\(height)x\(width)"]! {
                let v = values[name]!
                let m = v.reduce(0, +) / Double(v.count)
                let s = (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot()
                // Five standard errors of the difference of two sample means.
                let tolerance = 5 * std * (1 / Double(draws) + 1 / 200_000).squareRoot()
                XCTAssertEqual(m, mean, accuracy: tolerance, "\(height)x\(width) \(name): mean")
                XCTAssertEqual(s, std, accuracy: 0.03 * std, "\(height)x\(width) \(name): std")
            }
        }
    }

    func testProbabilityIsTheShareOfImagesErased() {
        let erasing = RandomErasing(probability: 0.25)
        var erased = 0
        for index in 0..<8000 {
            var random = SampleRandom(seed: 9, epoch: 3, index: index)
            if erasing.rectangle(height: 64, width: 64, random: &random) != nil { erased += 1 }
        }
        // Binomial(8000, 0.25): standard deviation 39, so ±200 is five of them.
        XCTAssertEqual(Double(erased), 2000, accuracy: 200)
    }

    /// Only the rectangle changes: zeros (const), one normal value per channel (rand), standard normal
    /// noise (pixel); the input tensor is not changed, and the same sample stream erases the same way.
    func testModesFillOnlyTheRectangle() throws {
        let image = try Tensor.full([3, 40, 50], 7)
        for mode in RandomErasing.Mode.allCases {
            let erasing = RandomErasing(probability: 1, mode: mode)
            var random = SampleRandom(seed: 1, epoch: 0, index: 3)
            var again = random
            let box = erasing.rectangle(height: 40, width: 50, random: &again)!
            again = random
            let out = try erasing.apply(image, random: &random)
            XCTAssertEqual(try image.floats(), [Float](repeating: 7, count: 6000), "\(mode): input changed")
            XCTAssertEqual(try erasing.apply(image, random: &again).floats(), try out.floats(), "\(mode): not deterministic")
            let values = try out.floats()
            var inside: [[Float]] = [[], [], []]
            for c in 0..<3 {
                for y in 0..<40 {
                    for x in 0..<50 {
                        let v = values[(c * 40 + y) * 50 + x]
                        if (box.top..<box.top + box.height).contains(y) && (box.left..<box.left + box.width).contains(x) {
                            inside[c].append(v)
                        } else {
                            XCTAssertEqual(v, 7, "\(mode): outside the rectangle at \(c),\(y),\(x)")
                        }
                    }
                }
            }
            let all = inside.flatMap { $0 }
            XCTAssertFalse(all.isEmpty)
            switch mode {
            case .const:
                XCTAssertEqual(Set(all), [0])
            case .rand:
                for c in 0..<3 { XCTAssertEqual(Set(inside[c]).count, 1, "one value per channel") }
                XCTAssertFalse(all.contains(7))
            case .pixel:
                let mean = all.reduce(0, +) / Float(all.count)
                let variance = all.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(all.count)
                XCTAssertGreaterThan(all.count, 30)
                XCTAssertEqual(Double(mean), 0, accuracy: 5 / Double(all.count).squareRoot())
                XCTAssertEqual(Double(variance), 1, accuracy: 0.5)
                XCTAssertGreaterThan(Set(all).count, all.count / 2, "per-pixel values")
            }
        }
    }

    func testStandardNormalDraws() {
        var random = SampleRandom(seed: 3)
        let values = (0..<100_000).map { _ in random.normal() }
        let mean = values.reduce(0, +) / Double(values.count)
        let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
        XCTAssertEqual(Double(values.filter { abs($0) < 1.959964 }.count) / Double(values.count), 0.95, accuracy: 0.005)
    }
}
