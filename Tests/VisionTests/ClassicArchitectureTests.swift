import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import Vision
import XCTest

/// ResNet, VGG, AlexNet, GoogLeNet and Inception v3 against torchvision 0.14:
/// - `state_dict` keys (in order), shapes and parameter counts equal `Tests/Fixtures/model_keys.json`;
/// - with the formula weights of `DeterministicWeights` (times the fixture's power-of-two `weight_gain`
///   on conv/linear weights), eval-mode logits equal torchvision's on the formula input of
///   `tools/fixtures/make_classic_forward.py` (fixtures `forward_<arch>.safetensors`);
/// - headless models (`includeTop: false`), head replacement and layer groups behave as documented.
final class ClassicArchitectureTests: XCTestCase {
    // MARK: - Keys, shapes, parameter counts, structure

    func testResNetKeysAndParameterCounts() throws {
        try checkStructure(ResNet.resnet18(), "resnet18")
        try checkStructure(ResNet.resnet34(), "resnet34")
        try checkStructure(ResNet.resnet50(), "resnet50")
        try checkStructure(ResNet.resnet101(), "resnet101")
        try checkStructure(ResNet.resnet152(), "resnet152")
        XCTAssertEqual(try ResNet.make(depth: 50).architecture, "resnet50")
        XCTAssertThrowsError(try ResNet.make(depth: 42))
    }

    func testVGGKeysAndParameterCounts() throws {
        try checkStructure(VGG.vgg16(), "vgg16")
        try checkStructure(VGG.vgg16(batchNorm: true), "vgg16_bn")
        try checkStructure(VGG.vgg19(), "vgg19")
        try checkStructure(VGG.vgg19(batchNorm: true), "vgg19_bn")
    }

    func testVGGLayerGroupsFollowTheConvolutionBlocks() throws {
        let plain = try VGG.vgg16(ModelOptions(includeTop: false))
        XCTAssertEqual(plain.convBlocks, [["features.0", "features.2"], ["features.5", "features.7"],
                                          ["features.10", "features.12", "features.14"],
                                          ["features.17", "features.19", "features.21"],
                                          ["features.24", "features.26", "features.28"]])
        XCTAssertEqual(plain.layerGroups, plain.convBlocks.flatMap { $0 })
        let bn = try VGG.vgg16(batchNorm: true, ModelOptions(includeTop: false))
        XCTAssertEqual(bn.convBlocks.first, ["features.0", "features.1", "features.3", "features.4"])
        XCTAssertTrue(bn.module(at: "features.1") is BatchNorm2d)
        XCTAssertEqual(bn.convBlocks.count, 5)
    }

    func testAlexNetKeysAndParameterCount() throws {
        try checkStructure(AlexNet.alexnet(), "alexnet")
    }

    func testGoogLeNetKeysAndParameterCounts() throws {
        try checkStructure(GoogLeNet.googlenet(), "googlenet")
        let withAux = try GoogLeNet.googlenet(auxLogits: true)
        try checkStructure(withAux, "googlenet_aux")
        XCTAssertEqual(Array(withAux.layerGroups.suffix(3)), ["aux1", "aux2", "fc"])
        withAux.removeAuxHeads()
        XCTAssertFalse(withAux.auxLogits)
        XCTAssertEqual(withAux.stateDict().keys, try Self.keyFixture("googlenet").keys.map(\.0))
    }

    func testInceptionV3KeysAndParameterCounts() throws {
        let model = try InceptionV3.inceptionV3()
        XCTAssertTrue(model.auxLogits, "AuxLogits is present by default, as in torchvision")
        try checkStructure(model, "inception_v3")
        try checkStructure(InceptionV3.inceptionV3(auxLogits: false), "inception_v3_noaux")
        model.removeAuxLogits()
        XCTAssertEqual(model.stateDict().keys, try Self.keyFixture("inception_v3_noaux").keys.map(\.0))
    }

    // MARK: - Forward equivalence with torchvision

    func testResNet18LogitsAndEmbeddingMatchTorchvision() throws {
        let model = try ResNet.resnet18()
        let fixture = try prepare(model, "resnet18")
        let x = try Self.formulaInput([2, 3, 64, 64])
        try withNoGrad {
            // Kernels differ between CPUs (seen: 3e-4 on logits of scale 1,265 on AMD EPYC): tolerance
            // relative to the output's scale, as the other whole-network comparisons here use.
            assertClose(try model(x), try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4,
                        relativeToScale: Self.crossBuildTolerance, "logits")
            let embedding = try model.embedding(x)
            XCTAssertEqual(embedding.shape, [2, model.embeddingSize])
            assertClose(embedding, try Fixtures.tensor(fixture, "embedding"), atol: 1e-4, rtol: 1e-4, "embedding")
        }
    }

    func testResNet50LogitsMatchTorchvision() throws {
        try checkLogits(ResNet.resnet50(), "resnet50", size: 64)
    }

    func testVGG16LogitsMatchTorchvisionAndForwardIsClassifyOfEmbedding() throws {
        let model = try VGG.vgg16()
        let fixture = try prepare(model, "vgg16")
        let x = try Self.formulaInput([2, 3, 64, 64])
        try withNoGrad {
            let logits = try model(x)
            assertClose(logits, try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4,
                        relativeToScale: Self.crossBuildTolerance, "logits")
            let embedding = try model.embedding(x)
            XCTAssertEqual(embedding.shape, [2, 4096])
            assertClose(try model.classify(embedding), logits, atol: 0, rtol: 0, "classify(embedding(x))")
        }
    }

    func testVGG16BNLogitsMatchTorchvision() throws {
        try checkLogits(VGG.vgg16(batchNorm: true), "vgg16_bn", size: 64)
    }

    func testAlexNetLogitsMatchTorchvision() throws {
        try checkLogits(AlexNet.alexnet(), "alexnet", size: 127)
        // The smallest input AlexNet takes (a 1x1 final map); the fixture uses 127 (see its script).
        let small = try AlexNet.alexnet(ModelOptions(numClasses: 3)).eval()
        try withNoGrad { XCTAssertEqual(try small(Self.formulaInput([2, 3, 63, 63])).shape, [2, 3]) }
    }

    func testGoogLeNetLogitsMatchTorchvisionWithAndWithoutTransformInput() throws {
        let model = try GoogLeNet.googlenet()
        XCTAssertFalse(model.transformInput)
        let fixture = try prepare(model, "googlenet")
        let x = try Self.formulaInput([2, 3, 64, 64])
        try withNoGrad {
            assertClose(try model(x), try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4, "logits")
            model.transformInput = true
            assertClose(try model(x), try Fixtures.tensor(fixture, "logits_transform_input"), atol: 1e-4, rtol: 1e-4,
                        "logits with transform_input")
        }
    }

    func testInceptionV3LogitsAndTrainingAuxLogitsMatchTorchvision() throws {
        let model = try InceptionV3.inceptionV3()
        let fixture = try prepare(model, "inception_v3")
        try withNoGrad {
            let x = try Self.formulaInput([2, 3, 75, 75])
            assertClose(try model(x), try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4, "logits")
            let evalOutputs = try model.forwardWithAux(x)
            XCTAssertNil(evalOutputs.aux, "no auxiliary logits in eval mode")
            assertClose(evalOutputs.logits, try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4)

            // Training mode at 299x299: the aux branch has no dropout, so its logits are deterministic.
            // In float64, as the fixture: its BatchNorms normalise each channel of a 1x1 map by the
            // statistics of these 2 samples, which in float32 magnifies a change of summation order (one
            // OpenBLAS thread instead of two moved an element by 0.03) past any tolerance that would
            // still catch a wiring bug. In float64 that noise stays near 1e-12.
            try model.to(dtype: .float64)
            model.train()
            let big = try Self.formulaInput([2, 3, 299, 299]).to(.float64)
            let (logits, aux) = try model.forwardWithAux(big)
            XCTAssertEqual(logits.shape, [2, 1000])
            let auxLogits = try XCTUnwrap(aux, "training mode computes the auxiliary logits")
            let expected = try Fixtures.tensor(fixture, "aux_logits_train")
            XCTAssertEqual(expected.dtype, .float64, "the fixture's training-mode AuxLogits are float64")
            assertClose(auxLogits, expected, atol: 1e-7, "AuxLogits in training mode")
        }
    }

    // MARK: - Auxiliary heads and options

    func testGoogLeNetAuxHeadsRunOnlyInTrainingMode() throws {
        let model = try GoogLeNet.googlenet(ModelOptions(numClasses: 7), auxLogits: true)
        let x = try Self.formulaInput([2, 3, 64, 64])
        try withNoGrad {
            model.train()
            let training = try model.forwardWithAux(x)
            XCTAssertEqual(training.logits.shape, [2, 7])
            XCTAssertEqual(training.aux1?.shape, [2, 7])
            XCTAssertEqual(training.aux2?.shape, [2, 7])
            XCTAssertEqual(try model(x).shape, [2, 7], "forward returns the main logits only")
            model.eval()
            let inference = try model.forwardWithAux(x)
            XCTAssertNil(inference.aux1)
            XCTAssertNil(inference.aux2)
        }
    }

    func testInceptionV3WithoutAuxReturnsNoAuxLogitsInTraining() throws {
        let model = try InceptionV3.inceptionV3(ModelOptions(numClasses: 4), auxLogits: false)
        model.train()
        let outputs = try withNoGrad { try model.forwardWithAux(Self.formulaInput([2, 3, 75, 75])) }
        XCTAssertEqual(outputs.logits.shape, [2, 4])
        XCTAssertNil(outputs.aux)
    }

    func testDropoutOverride() throws {
        let alexnet = try AlexNet.alexnet(ModelOptions(dropout: 0.25))
        XCTAssertEqual((alexnet.module(at: "classifier.0") as? Dropout)?.p, 0.25)
        XCTAssertEqual((alexnet.module(at: "classifier.3") as? Dropout)?.p, 0.25)
        XCTAssertEqual((try GoogLeNet.googlenet().module(at: "dropout") as? Dropout)?.p, 0.2)
        XCTAssertEqual((try GoogLeNet.googlenet(ModelOptions(dropout: 0.4)).module(at: "dropout") as? Dropout)?.p, 0.4)
        XCTAssertEqual((try InceptionV3.inceptionV3().module(at: "dropout") as? Dropout)?.p, 0.5)
        // torchvision's ResNet has no dropout; asking for one adds a parameterless module before fc.
        let resnet = try ResNet.resnet18(ModelOptions(dropout: 0.3))
        XCTAssertEqual((resnet.module(at: "dropout") as? Dropout)?.p, 0.3)
        XCTAssertEqual(resnet.stateDict().keys, try Self.keyFixture("resnet18").keys.map(\.0))
        XCTAssertNil(try ResNet.resnet18().module(at: "dropout"))
    }

    // MARK: - Without a top

    func testHeadlessModelsPoolOrReturnFeatureMaps() throws {
        let cases: [(String, Int, [Int], (ModelOptions) throws -> ImageClassifier)] = [
            ("resnet18", 64, [512, 2, 2], { try ResNet.resnet18($0) }),
            ("resnet50", 64, [2048, 2, 2], { try ResNet.resnet50($0) }),
            ("vgg16", 64, [512, 2, 2], { try VGG.vgg16(batchNorm: false, $0) }),
            ("alexnet", 63, [256, 1, 1], { try AlexNet.alexnet($0) }),
            ("googlenet", 64, [1024, 2, 2], { try GoogLeNet.googlenet($0, auxLogits: true) }),
            ("inception_v3", 75, [2048, 1, 1], { try InceptionV3.inceptionV3($0) }),
        ]
        for (name, size, mapShape, build) in cases {
            let x = try Self.formulaInput([2, 3, size, size])
            var pooled: [GlobalPooling: Tensor] = [:]
            for pooling in GlobalPooling.allCases {
                let model = try build(ModelOptions(includeTop: false, pooling: pooling))
                XCTAssertNil(model.numClasses, name)
                XCTAssertEqual(model.featureChannels, mapShape[0], name)
                XCTAssertEqual(model.embeddingSize, mapShape[0], "\(name): the embedding is the pooled features")
                XCTAssertThrowsError(try model.replaceHead(numClasses: 3), "\(name) has no head")
                try DeterministicWeights.fill(model)
                model.eval()
                let y = try withNoGrad { try model(x) }
                switch pooling {
                case .none: XCTAssertEqual(y.shape, [2] + mapShape, "\(name) pooling none")
                case .avg, .max: XCTAssertEqual(y.shape, [2, mapShape[0]], "\(name) pooling \(pooling)")
                }
                pooled[pooling] = y
                try checkLayerGroups(model, name: name)
            }
            // The pooled vectors are the feature maps pooled.
            let maps = try XCTUnwrap(pooled[GlobalPooling.none])
            assertClose(try XCTUnwrap(pooled[.avg]), try maps.mean(dims: [2, 3]), atol: 1e-5, rtol: 1e-5, name)
            assertClose(try XCTUnwrap(pooled[.max]), try maps.max(dims: [2, 3]), atol: 0, rtol: 0, name)
        }
    }

    func testHeadlessModelsHaveBackboneKeysOnlyAndLoadFullStateDicts() throws {
        let cases: [(String, [String], () throws -> ImageClassifier)] = [
            ("resnet50", ["fc."], { try ResNet.resnet50(ModelOptions(includeTop: false)) }),
            ("vgg16_bn", ["classifier."], { try VGG.vgg16(batchNorm: true, ModelOptions(includeTop: false)) }),
            ("vgg19", ["classifier."], { try VGG.vgg19(batchNorm: false, ModelOptions(includeTop: false)) }),
            ("alexnet", ["classifier."], { try AlexNet.alexnet(ModelOptions(includeTop: false)) }),
            // torchvision's ImageNet file for GoogLeNet holds the (untrained) aux heads too.
            ("googlenet_aux", ["aux1.", "aux2.", "fc."],
             { try GoogLeNet.googlenet(ModelOptions(includeTop: false), auxLogits: true) }),
            ("inception_v3", ["AuxLogits.", "fc."], { try InceptionV3.inceptionV3(ModelOptions(includeTop: false)) }),
        ]
        for (name, headPrefixes, build) in cases {
            let model = try build()
            let fixture = try Self.keyFixture(name)
            let isHead = { (key: String) in headPrefixes.contains { key.hasPrefix($0) } }
            let backbone = fixture.keys.filter { !isHead($0.0) }
            XCTAssertEqual(model.stateDict().keys, backbone.map(\.0), "\(name): backbone keys only")
            // A full torchvision-shaped state_dict (zeros: only keys and shapes matter here).
            var full = StateDict()
            for (key, shape) in fixture.keys {
                full[key] = try Tensor.zeros(shape, dtype: key.hasSuffix("num_batches_tracked") ? .int64 : .float32)
            }
            let report = try model.load(full, strict: false)
            XCTAssertEqual(report.unexpected, fixture.keys.map(\.0).filter(isHead), "\(name): only the head's keys")
            XCTAssertEqual(report.missing, [], name)
            XCTAssertEqual(report.shapeMismatched.map(\.key), [], name)
            XCTAssertEqual(report.loaded, backbone.count, name)
            XCTAssertThrowsError(try model.load(full), "\(name): a strict load reports the head's keys")
        }
    }

    // MARK: - Head replacement

    func testReplaceHeadKeepsTheBackboneAndTorchvisionKeys() throws {
        let cases: [(String, [String], () throws -> ImageClassifier)] = [
            ("resnet18", ["fc."], { try ResNet.resnet18() }),
            ("alexnet", ["classifier.6."], { try AlexNet.alexnet() }),
            ("googlenet_aux", ["aux1.fc2.", "aux2.fc2.", "fc."], { try GoogLeNet.googlenet(auxLogits: true) }),
            ("inception_v3", ["AuxLogits.fc.", "fc."], { try InceptionV3.inceptionV3() }),
        ]
        for (name, headPrefixes, build) in cases {
            let model = try build()
            let isHead = { (key: String) in headPrefixes.contains { key.hasPrefix($0) } }
            let before = model.stateDict()
            var snapshot: [String: Tensor] = [:]
            for (key, tensor) in before where !isHead(key) { snapshot[key] = try tensor.clone() }

            try model.replaceHead(numClasses: 5)

            XCTAssertEqual(model.numClasses, 5, name)
            let after = model.stateDict()
            let fixture = try Self.keyFixture(name)
            XCTAssertEqual(after.keys, fixture.keys.map(\.0), "\(name): keys still torchvision's, in order")
            for (key, shape) in fixture.keys {
                let tensor = try XCTUnwrap(after[key], key)
                if isHead(key) {
                    XCTAssertEqual(tensor.shape, [5] + shape.dropFirst(), "\(name): \(key) resized")
                    XCTAssertFalse(tensor === before[key], "\(name): \(key) is a new tensor")
                } else {
                    XCTAssertEqual(tensor.shape, shape, key)
                    XCTAssertTrue(tensor === before[key], "\(name): \(key) kept")
                    let original = try XCTUnwrap(snapshot[key])
                    XCTAssertTrue(try tensor.eq(original).to(.int64).sum().itemInt() == tensor.count,
                                  "\(name): \(key) values unchanged")
                }
            }
            XCTAssertTrue(model.module(at: model.headPath) is Linear)
            try checkLayerGroups(model, name: name)
        }
        let resnet = try ResNet.resnet18()
        try resnet.replaceHead(numClasses: 5)
        resnet.eval()
        XCTAssertEqual(try withNoGrad { try resnet(Self.formulaInput([2, 3, 64, 64])) }.shape, [2, 5])
        XCTAssertThrowsError(try resnet.replaceHead(numClasses: 0))
    }

    // MARK: - Helpers

    struct KeyFixture {
        var parameters: Int
        var keys: [(String, [Int])]
    }

    private static let keyFixtures: Result<[String: KeyFixture], Error> = Result {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("model_keys.json")))
        guard let json = try JSONSerialization.jsonObject(with: data) as? [String: [String: Any]] else {
            throw TorchError("model_keys.json: unexpected layout")
        }
        var out: [String: KeyFixture] = [:]
        for (name, entry) in json {
            guard let parameters = entry["parameters"] as? Int, let keys = entry["keys"] as? [[Any]] else {
                throw TorchError("model_keys.json: bad entry \(name)")
            }
            out[name] = KeyFixture(parameters: parameters, keys: try keys.map { pair in
                guard pair.count == 2, let key = pair[0] as? String, let shape = pair[1] as? [Int] else {
                    throw TorchError("model_keys.json: bad key in \(name)")
                }
                return (key, shape)
            })
        }
        return out
    }

    static func keyFixture(_ name: String) throws -> KeyFixture {
        guard let fixture = try keyFixtures.get()[name] else { throw TorchError("model_keys.json has no '\(name)'") }
        return fixture
    }

    /// Keys in order, shapes, parameter count, registry name, head and layer groups.
    private func checkStructure(_ model: ImageClassifier, _ name: String, file: StaticString = #filePath,
                                line: UInt = #line) throws {
        let fixture = try Self.keyFixture(name)
        let dict = model.stateDict()
        XCTAssertEqual(dict.keys, fixture.keys.map(\.0), "\(name): state_dict keys", file: file, line: line)
        let wrongShapes = fixture.keys.filter { dict[$0.0].map { t in t.shape } != $0.1 }.map(\.0)
        XCTAssertEqual(wrongShapes, [], "\(name): shapes", file: file, line: line)
        XCTAssertEqual(model.parameterCount, fixture.parameters, "\(name): parameters", file: file, line: line)
        XCTAssertEqual(model.architecture, name.replacingOccurrences(of: "_aux", with: "")
            .replacingOccurrences(of: "_noaux", with: ""), file: file, line: line)
        XCTAssertTrue(model.module(at: model.headPath) is Linear, "\(name): head", file: file, line: line)
        XCTAssertEqual(model.numClasses, 1000, file: file, line: line)
        try checkLayerGroups(model, name: name, file: file, line: line)
    }

    /// Every layer group is a module path `freeze` accepts; together they cover every parameter; the head's
    /// group is last with a top and absent without one.
    private func checkLayerGroups(_ model: ImageClassifier, name: String, file: StaticString = #filePath,
                                  line: UInt = #line) throws {
        let groups = model.layerGroups
        XCTAssertFalse(groups.isEmpty, file: file, line: line)
        XCTAssertEqual(Set(groups).count, groups.count, "\(name): duplicate groups", file: file, line: line)
        for group in groups {
            XCTAssertNotNil(model.module(at: group), "\(name): layer group '\(group)'", file: file, line: line)
        }
        let uncovered = model.namedParameters().map(\.0).filter { key in
            !groups.contains { key.hasPrefix($0 + ".") }
        }
        XCTAssertEqual(uncovered, [], "\(name): parameters outside every layer group", file: file, line: line)
        let headGroup = String(model.headPath.split(separator: ".")[0])
        if model.options.includeTop {
            XCTAssertEqual(groups.last, headGroup, "\(name): head group last", file: file, line: line)
            XCTAssertEqual(model.backboneGroups, Array(groups.dropLast()), file: file, line: line)
        } else {
            XCTAssertFalse(groups.contains(headGroup), file: file, line: line)
            XCTAssertEqual(model.backboneGroups, groups, file: file, line: line)
        }
        try model.freeze(groups)
        XCTAssertTrue(model.trainableParameters().isEmpty, "\(name): freezing every group", file: file, line: line)
        try model.unfreeze()
    }

    /// Fills `model` like the fixture script (formula weights, conv/linear weights times `weight_gain`),
    /// puts it in eval mode and returns the fixture.
    private func prepare(_ model: ImageClassifier, _ name: String) throws -> StateDict {
        let fixture = try Fixtures.load("forward_\(name).safetensors")
        let gain = try Fixtures.tensor(fixture, "weight_gain").item()
        try DeterministicWeights.fill(model)
        try withNoGrad {
            for (_, tensor) in model.stateDict() where tensor.rank >= 2 { try tensor.mul_(gain) }
        }
        model.eval()
        return fixture
    }

    private func checkLogits(_ model: ImageClassifier, _ name: String, size: Int, file: StaticString = #filePath,
                             line: UInt = #line) throws {
        let fixture = try prepare(model, name)
        let logits = try withNoGrad { try model(Self.formulaInput([2, 3, size, size])) }
        assertClose(logits, try Fixtures.tensor(fixture, "logits"), atol: 1e-4, rtol: 1e-4,
                    relativeToScale: Self.crossBuildTolerance, "\(name) logits", file: file, line: line)
    }

    /// Fraction of the logits' scale allowed on top of 1e-4 for whole networks. The fixtures come from
    /// LibTorch 1.13 (where these match to 1e-4); other builds pick other conv/GEMM kernels, and the
    /// fixture's amplified weights grow their rounding differences through 8-20 layers.
    static let crossBuildTolerance = 1e-3

    /// `(sin(0.37 k) * 1.5) * cos(0.011 k + 0.5)` over the flat index k, in float64, rounded to float32:
    /// the input of `tools/fixtures/make_classic_forward.py`.
    static func formulaInput(_ shape: [Int]) throws -> Tensor {
        let k = try Tensor.arange(0, Double(shape.reduce(1, *)), dtype: .float64)
        let x = try ((k * 0.37).sin() * 1.5) * (k * 0.011 + 0.5).cos()
        return try x.reshape(shape).to(.float32)
    }
}
