import Data
import Foundation
import NN
import Optim
import TestSupport
import Torch
import Vision
import XCTest

// The Swift examples of the README ("Using it as a library"), verbatim between the markers below:
// `testTheReadmeShowsTheseExamples` fails when the README and this file drift apart, the compiler
// checks that they build, and the other tests run them.

func readmeLayersExample() throws -> (model: Sequential, loss: Tensor) {
// README EXAMPLE 1 BEGIN
let model = Sequential(
    try Conv2d(1, 32, kernelSize: 3, padding: 1), try BatchNorm2d(32), ReLU(),
    AdaptiveAvgPool2d(outputSize: 1), Flatten(), try Linear(32, 10))
let optimizer = try Adam(model.namedParameters(), learningRate: 1e-3)

let x = try Tensor.randn([8, 1, 28, 28])
let y = try Tensor([Int64](repeating: 3, count: 8))
let loss = try Functional.crossEntropy(model(x), target: y, labelSmoothing: 0.1)
try optimizer.zeroGrad()
try loss.backward()
try optimizer.step()

try model.freeze(["0", "1"])              // no gradients, and BatchNorm in inference mode
print(model.stateDict().keys)             // ["0.weight", "0.bias", "1.weight", …] as in PyTorch
// README EXAMPLE 1 END
    return (model, loss)
}

func readmePretrainedExample() throws -> (model: ImageClassifier, input: Tensor) {
// README EXAMPLE 2 BEGIN
let pretrained = try ModelZoo.make("mobilenet_v2", weights: "imagenet",
                                   options: ModelOptions(numClasses: 10))   // new 10-class head
try pretrained.model.freeze(pretrained.model.backboneGroups)               // head-only training
let input = try pretrained.preprocessing.evaluationTransform(Image(contentsOfFile: "photo.jpg"))
// README EXAMPLE 2 END
    return (pretrained.model, input)
}

final class ReadmeExamplesTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The README's ```swift blocks, in order: their import lines and the code after them.
    static func readmeBlocks() throws -> [(imports: [String], code: String)] {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        return readme.components(separatedBy: "```swift\n").dropFirst().map { part in
            let block = part.components(separatedBy: "```").first ?? ""
            let lines = block.components(separatedBy: "\n")
            let imports = lines.prefix { $0.hasPrefix("import ") || $0.isEmpty }
            return (imports.filter { !$0.isEmpty }, lines.dropFirst(imports.count).joined(separator: "\n"))
        }
    }

    func testTheReadmeShowsTheseExamples() throws {
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let imported = Set(source.components(separatedBy: "\n").filter { $0.hasPrefix("import ") })
        let blocks = try Self.readmeBlocks()
        XCTAssertEqual(blocks.count, 2, "a new Swift example in the README needs its copy here")
        for (index, block) in blocks.enumerated() {
            let n = index + 1
            let example = try XCTUnwrap(source.components(separatedBy: "// README EXAMPLE \(n) BEGIN\n").dropFirst()
                .first?.components(separatedBy: "// README EXAMPLE \(n) END").first, "example \(n)")
            XCTAssertEqual(block.code, example, "the README's Swift example \(n) differs from this file's")
            XCTAssertFalse(block.imports.isEmpty, "example \(n) names its modules")
            for line in block.imports {
                XCTAssertTrue(imported.contains(line), "example \(n): '\(line)' is not imported here")
            }
        }
        // Each example imports what it uses: the second one's Image(contentsOfFile:) lives in Data.
        XCTAssertEqual(blocks.map(\.imports), [["import NN", "import Optim", "import Torch"],
                                               ["import Data", "import Vision"]])
    }

    func testTheLayersExampleTrainsAndFreezes() throws {
        let (model, loss) = try readmeLayersExample()
        XCTAssertTrue(try loss.item().isFinite)
        XCTAssertEqual(Array(model.stateDict().keys.sorted().prefix(3)), ["0.bias", "0.weight", "1.bias"])
        for (name, parameter) in model.namedParameters() {
            XCTAssertEqual(parameter.requiresGrad, !(name.hasPrefix("0.") || name.hasPrefix("1.")), name)
        }
    }

    func testThePretrainedExampleBuildsAHeadOnlyModel() throws {
        guard RealAssets.mobileNetV2 != nil, let photos = RealAssets.foolboxData else {
            throw XCTSkip("MobileNetV2's ImageNet weights or foolbox's images are not in the cache: run scripts/setup")
        }
        let folder = try TRData.temporaryDirectory(self)
        try FileManager.default.copyItem(atPath: photos + "/imagenet_00_243.jpg", toPath: folder + "/photo.jpg")
        let previous = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(folder))
        defer { FileManager.default.changeCurrentDirectoryPath(previous) }
        let (model, input) = try readmePretrainedExample()
        XCTAssertEqual(input.shape, [3, 224, 224])
        XCTAssertEqual(model.numClasses, 10)
        let trainable = model.namedParameters().filter { $0.1.requiresGrad }.map(\.0).sorted()
        XCTAssertEqual(trainable, ["classifier.1.bias", "classifier.1.weight"])
    }
}
