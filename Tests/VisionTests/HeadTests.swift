import NN
import TestSupport
import Torch
import Vision
import XCTest

/// `configureHead`: Keras-style heads (pooling, BatchNorm → Dropout → Dense) on zoo models.
final class HeadTests: XCTestCase {
    func testCustomHeadKeysShapesAndUntouchedBackbone() throws {
        Runtime.manualSeed(0)
        let model = try ResNet.resnet18(ModelOptions(numClasses: 1000))
        let before = model.stateDict()
        let spec = HeadSpec(outputs: 3, batchNorm: true, dropout: 0.5, hiddenUnits: [16])
        try model.configureHead(spec)
        XCTAssertEqual(spec.description, "avg pool → BatchNorm1d → Dropout(0.5) → Dense(16, relu) → Dropout(0.5) → Dense(3)")
        let after = model.stateDict()
        // Like `model.fc = nn.Sequential(BatchNorm1d, Dropout, Linear, ReLU, Dropout, Linear)`.
        let headKeys = after.keys.filter { $0.hasPrefix("fc.") }.sorted()
        XCTAssertEqual(headKeys, ["fc.0.bias", "fc.0.num_batches_tracked", "fc.0.running_mean", "fc.0.running_var",
                                  "fc.0.weight", "fc.2.bias", "fc.2.weight", "fc.5.bias", "fc.5.weight"])
        XCTAssertEqual(after["fc.2.weight"]?.shape, [16, 512])
        XCTAssertEqual(after["fc.5.weight"]?.shape, [3, 16])
        for (key, tensor) in before where !key.hasPrefix("fc.") {
            assertClose(tensor, try XCTUnwrap(after[key]), atol: 0, key)
        }
        XCTAssertEqual(model.numClasses, 3)
        model.train()
        let x = try Tensor.randn([4, 3, 32, 32])
        XCTAssertEqual(try model(x).shape, [4, 3])
        // The head still splits as embedding → classify.
        model.eval()
        let direct = try withNoGrad { try model(x) }
        let split = try withNoGrad { try model.classify(model.embedding(x)) }
        assertClose(direct, split, atol: 0)
        // replaceHead goes back to a single Linear.
        try model.replaceHead(numClasses: 5)
        XCTAssertTrue(model.module(at: "fc") is Linear)
        XCTAssertEqual(model.numClasses, 5)
    }

    /// A head with its own dropout replaces the architecture's (MobileNetV2's and EfficientNet's
    /// `classifier.0`, GoogLeNet's and Inception's `dropout`, EfficientNet-Lite's `_dropout`): in training
    /// only the head's rate applies. Without a dropout in the spec the architecture's stays; VGG's dense
    /// top keeps its dropouts between fully connected layers.
    func testTheHeadsDropoutReplacesTheArchitecturesOwn() throws {
        func activeRates(_ model: ImageClassifier) -> [String: Double] {
            Dictionary(uniqueKeysWithValues: model.namedModules().compactMap { name, module in
                (module as? Dropout).flatMap { $0.p > 0 ? (name, $0.p) : nil }
            })
        }
        let expected: [(String, String)] = [("mobilenet_v2", "classifier.0"), ("efficientnet_b0", "classifier.0"),
                                            ("googlenet", "dropout"), ("inception_v3", "dropout"),
                                            ("efficientnet_lite0", "_dropout")]
        for (architecture, own) in expected {
            let plain = try ModelZoo.make(architecture, options: ModelOptions(numClasses: 3))
            try plain.configureHead(HeadSpec(outputs: 3, batchNorm: true))
            XCTAssertNotNil(activeRates(plain)[own], "\(architecture): no head dropout given, its own stays")
            let model = try ModelZoo.make(architecture, options: ModelOptions(numClasses: 3))
            try model.configureHead(HeadSpec(outputs: 3, dropout: 0.5))
            let rates = activeRates(model).filter { !$0.key.hasPrefix("aux") && !$0.key.hasPrefix("AuxLogits") }
            XCTAssertEqual(Array(rates.values), [0.5], "\(architecture): \(rates)")
            XCTAssertTrue(rates.keys.allSatisfy { $0.hasPrefix(model.headPath + ".") }, "\(architecture): \(rates)")
            let none = try ModelZoo.make(architecture, options: ModelOptions(numClasses: 3))
            try none.configureHead(HeadSpec(outputs: 3, dropout: 0))
            XCTAssertEqual(activeRates(none).filter { !$0.key.hasPrefix("aux") && !$0.key.hasPrefix("AuxLogits") }, [:],
                           "\(architecture): --head-dropout 0 leaves no dropout in front of the head")
        }
        let vgg = try ModelZoo.make("vgg16", options: ModelOptions(numClasses: 3))
        try vgg.configureHead(HeadSpec(outputs: 3, dropout: 0.3))
        XCTAssertEqual(activeRates(vgg).count, 3, "VGG's two dense-top dropouts stay beside the head's")
    }

    func testMaxPoolingHeadPoolsTheFeatureMapsByMaximum() throws {
        Runtime.manualSeed(1)
        for model in [try ResNet.resnet18(ModelOptions(numClasses: 4)) as ImageClassifier,
                      try MobileNetV2(ModelOptions(numClasses: 4))] {
            try model.configureHead(HeadSpec(outputs: 4, pooling: .max))
            model.eval()
            let x = try Tensor.randn([2, 3, 32, 32])
            let maps = try withNoGrad { try model.forwardFeatures(x) }
            let expected = try maps.max(dims: [2, 3])
            assertClose(try withNoGrad { try model.embedding(x) }, expected, atol: 0)
            XCTAssertTrue(model.module(at: model.headPath) is Linear, "a plain head keeps torchvision's keys")
        }
    }

    func testSpatialClassifiersRejectMaxPoolingAndBadSpecsAreNamed() throws {
        let vgg = try VGG.vgg11(ModelOptions(numClasses: 2))
        XCTAssertThrowsError(try vgg.configureHead(HeadSpec(outputs: 2, pooling: .max))) {
            XCTAssertTrue("\($0)".contains("only avg pooling"), "\($0)")
        }
        let resnet = try ResNet.resnet18()
        XCTAssertThrowsError(try resnet.configureHead(HeadSpec(outputs: 2, dropout: 1.5))) {
            XCTAssertTrue("\($0)".contains("dropout"), "\($0)")
        }
        XCTAssertThrowsError(try resnet.configureHead(HeadSpec(outputs: 2, hiddenUnits: [0]))) {
            XCTAssertTrue("\($0)".contains("unit"), "\($0)")
        }
    }
}
