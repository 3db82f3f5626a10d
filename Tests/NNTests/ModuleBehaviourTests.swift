import Foundation
import NN
import TensorIO
import TestSupport
import Torch
import XCTest

/// Structure, loading, freezing and replacement behaviour of modules built from the layers.
final class ModuleBehaviourTests: XCTestCase {
    /// `features` (conv, bn, relu) + pooling + `classifier` (dropout, linear), keyed like torchvision.
    private func namedNetwork() throws -> Sequential {
        try Sequential(named: [
            ("features", Sequential(try Conv2d(3, 4, kernelSize: 3, padding: 1, bias: false), try BatchNorm2d(4),
                                    ReLU())),
            ("pool", AdaptiveAvgPool2d(outputSize: 1)),
            ("flatten", Flatten()),
            ("classifier", Sequential(try Dropout(p: 0.2), try Linear(4, 3))),
        ])
    }

    private func snapshot(_ module: Module) throws -> [(String, Tensor)] {
        try module.stateDict().map { ($0.key, try $0.tensor.clone()) }
    }

    private func assertBitIdentical(_ a: [(String, Tensor)], _ b: [(String, Tensor)],
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(a.map(\.0), b.map(\.0), file: file, line: line)
        for ((key, x), (_, y)) in zip(a, b) {
            XCTAssertEqual(x.dtype, y.dtype, key, file: file, line: line)
            XCTAssertEqual(try x.to(.float64).toArray(Double.self), try y.to(.float64).toArray(Double.self),
                           "\(key) changed", file: file, line: line)
        }
    }

    // MARK: - state_dict

    func testSequentialStateDictKeysMatchPyTorchInOrder() throws {
        let file = try SafeTensors.read(Fixtures.path("layers_sequential.safetensors"))
        let info = try XCTUnwrap(file.metadata["fixture"], "fixture metadata")
        let json = try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any]
        let expected = try XCTUnwrap(json?["state_dict_keys"] as? [String])
        let model = try LayerTests.smallNetwork()
        XCTAssertEqual(model.stateDict().keys, expected)
        XCTAssertEqual(expected, ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                  "1.num_batches_tracked", "5.weight", "5.bias"])
        for (key, t) in model.stateDict() {
            XCTAssertEqual(t.shape, try Fixtures.tensor(file.tensors, "state.\(key)").shape, key)
        }
        XCTAssertEqual(model.namedParameters().map(\.0), ["0.weight", "1.weight", "1.bias", "5.weight", "5.bias"])
        XCTAssertEqual(model.namedBuffers().map(\.0), ["1.running_mean", "1.running_var", "1.num_batches_tracked"])
        XCTAssertEqual(model.stateDict()["1.num_batches_tracked"]?.dtype, .int64)
        XCTAssertEqual(model.stateDict()["1.num_batches_tracked"]?.shape, [])
    }

    func testNestedKeysAndParameterCount() throws {
        let model = try namedNetwork()
        XCTAssertEqual(model.stateDict().keys, [
            "features.0.weight", "features.1.weight", "features.1.bias", "features.1.running_mean",
            "features.1.running_var", "features.1.num_batches_tracked", "classifier.1.weight", "classifier.1.bias",
        ])
        XCTAssertEqual(model.parameterCount, 4 * 3 * 9 + 4 + 4 + 3 * 4 + 3)
        XCTAssertTrue(model.module(at: "classifier.1") is Linear)
        XCTAssertNil(model.module(at: "classifier.2"))
    }

    // MARK: - load

    func testStrictLoadReportNamesTheKeysAndLeavesModelUnmodified() throws {
        let model = try namedNetwork()
        let original = try snapshot(model)
        // Random values, but variances as a variance is: not negative (a negative one is refused).
        var incoming = StateDict(try model.stateDict().map {
            ($0.key, $0.key.hasSuffix("running_var") ? try Tensor.rand($0.tensor.shape) : try Tensor.randn($0.tensor.shape))
        })
        incoming["features.1.num_batches_tracked"] = try Tensor(scalar: 7, dtype: .int64)
        incoming["classifier.1.weight"] = try Tensor.randn([10, 4])   // wrong shape
        incoming["classifier.1.bias"] = nil                           // missing
        incoming["classifier.2.weight"] = try Tensor.randn([3])       // unexpected

        XCTAssertThrowsError(try model.load(incoming, strict: true)) { error in
            guard case NNError.loadFailed(let report)? = error as? NNError else {
                return XCTFail("unexpected error \(error)")
            }
            XCTAssertEqual(report.missing, ["classifier.1.bias"])
            XCTAssertEqual(report.unexpected, ["classifier.2.weight"])
            XCTAssertEqual(report.shapeMismatched.map(\.key), ["classifier.1.weight"])
            XCTAssertEqual(report.shapeMismatched.first?.expected, [3, 4])
            XCTAssertEqual(report.shapeMismatched.first?.found, [10, 4])
            let text = "\(error)"
            // Not "loaded 0 tensors", as if no key had matched.
            XCTAssertEqual(report.matched, model.stateDict().count - 2)
            XCTAssertTrue(text.contains("\(report.matched) tensors fit, but nothing was loaded"), text)
            for key in ["classifier.1.bias", "classifier.2.weight", "classifier.1.weight"] {
                XCTAssertTrue(text.contains(key), "message lacks \(key): \(text)")
            }
        }
        try assertBitIdentical(try snapshot(model), original)

        // Non-strict: the matching keys load, the report lists the rest.
        let report = try model.load(incoming, strict: false)
        XCTAssertEqual(report.loaded, 6)
        XCTAssertEqual(report.missing, ["classifier.1.bias"])
        assertClose(try XCTUnwrap(model.stateDict()["features.0.weight"]),
                    try XCTUnwrap(incoming["features.0.weight"]), atol: 0)
        XCTAssertEqual(try model.stateDict()["features.1.num_batches_tracked"]?.itemInt(), 7)
    }

    func testLoadKeepsTensorIdentityAndRenames() throws {
        let conv = try Conv2d(2, 2, kernelSize: 1)
        let weight = conv.weight
        let source = StateDict([("w", try Tensor.ones([2, 2, 1, 1])), ("b", try Tensor.zeros([2]))])
        try conv.load(source, rename: { ["w": "weight", "b": "bias"][$0] })
        XCTAssertTrue(conv.weight === weight)
        XCTAssertEqual(try weight.floats(), [1, 1, 1, 1])
        XCTAssertTrue(weight.requiresGrad)
    }

    // MARK: - Freezing

    /// The fixture's small network (BatchNorm at index 1 with running statistics), an input, and its
    /// output in eval mode; the network is left in training mode.
    private func fixtureNetworkAndEvalOutput() throws -> (model: Sequential, bn: BatchNorm2d, x: Tensor, reference: Tensor) {
        let model = try LayerTests.smallNetwork()
        try model.load(Fixtures.load("layers_sequential.safetensors").renamingKeys {
            $0.hasPrefix("state.") ? String($0.dropFirst(6)) : nil
        })
        let bn = try XCTUnwrap(model[1] as? BatchNorm2d)
        let x = try Tensor.randn([2, 3, 6, 6])
        model.eval()
        let reference = try withNoGrad { try model(x) }
        model.train()
        return (model, bn, x, reference)
    }

    func testFrozenBatchNormUsesAndKeepsRunningStatisticsInTrainingMode() throws {
        let (model, bn, x, reference) = try fixtureNetworkAndEvalOutput()
        try model.freeze(["1"])
        XCTAssertTrue(bn.isTraining)
        XCTAssertFalse(bn.usesTrainingBehaviour)
        XCTAssertTrue(model[0].usesTrainingBehaviour)
        let before = try snapshot(bn)

        let out = try model(x)
        assertClose(out, reference, atol: 1e-6, "frozen BN in training mode must equal eval")
        try (out * out).sum().backward()
        try assertBitIdentical(try snapshot(bn), before)
        XCTAssertNil(bn.weight?.grad)
        XCTAssertNil(bn.bias?.grad)
        XCTAssertNotNil((model[0] as? Conv2d)?.weight.grad)
        XCTAssertNotNil((model[5] as? Linear)?.weight.grad)
        XCTAssertEqual(model.trainableParameters().map(\.0), ["0.weight", "5.weight", "5.bias"])
        XCTAssertEqual(model.frozenScopes(), ["1"])

        // Unfreezing restores batch statistics and their updates.
        try model.unfreeze(["1"])
        _ = try model(x)
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), try before[4].1.itemInt() + 1)
    }

    func testFreezeKeepingBatchNormTrainingStillUpdatesStatistics() throws {
        let model = try LayerTests.smallNetwork()
        try model.freeze(keepBatchNormTraining: true)
        let bn = try XCTUnwrap(model[1] as? BatchNorm2d)
        XCTAssertTrue(bn.usesTrainingBehaviour)
        XCTAssertFalse(try XCTUnwrap(bn.weight).requiresGrad)
        _ = try model(try Tensor.randn([2, 3, 6, 6]))
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), 1)
        XCTAssertNotEqual(try XCTUnwrap(bn.runningMean).floats(), [0, 0, 0, 0])
        XCTAssertTrue(model.trainableParameters().isEmpty)
    }

    /// Keras' fine-tuning advice: BatchNorm in inference behaviour while everything trains. The
    /// output equals eval mode's, the running statistics stay bit-identical, and BatchNorm's weight
    /// and bias still get gradients (unlike a frozen BatchNorm).
    func testFrozenBatchNormStatisticsKeepInferenceBehaviourWhileTheParametersTrain() throws {
        let (model, bn, x, reference) = try fixtureNetworkAndEvalOutput()
        XCTAssertFalse(model.batchNormStatisticsFrozen)
        model.freezeBatchNormStatistics()
        XCTAssertTrue(model.batchNormStatisticsFrozen)
        XCTAssertFalse(bn.usesTrainingBehaviour)
        XCTAssertFalse(bn.isFrozen)
        XCTAssertTrue(model[0].usesTrainingBehaviour, "only BatchNorm layers are kept in inference behaviour")
        let before = try snapshot(bn)
        let out = try model(x)
        assertClose(out, reference, atol: 1e-6, "BatchNorm with frozen statistics must compute what eval does")
        try (out * out).sum().backward()
        try assertBitIdentical(try snapshot(bn), before)
        XCTAssertNotNil(bn.weight?.grad, "BatchNorm's weight still trains")
        XCTAssertNotNil(bn.bias?.grad, "BatchNorm's bias still trains")
        XCTAssertEqual(model.trainableParameters().count, model.parameters().count)
        XCTAssertEqual(model.frozenScopes(), [], "nothing is frozen")

        model.freezeBatchNormStatistics(true, except: ["1"])
        XCTAssertTrue(bn.usesTrainingBehaviour, "a BatchNorm inside an excluded scope keeps training behaviour")
        model.freezeBatchNormStatistics()
        model.freezeBatchNormStatistics(false)
        XCTAssertTrue(bn.usesTrainingBehaviour)
        _ = try model(x)
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), try before[4].1.itemInt() + 1)
    }

    func testFreezeWithUnknownScopeThrowsInStrictMode() throws {
        let model = try namedNetwork()
        XCTAssertThrowsError(try model.freeze(["head"]))
        XCTAssertThrowsError(try model.freeze(["feature"]))   // whole path components only
        XCTAssertTrue(model.trainableParameters().count == 5, "a failed strict freeze must not freeze anything")
        XCTAssertNoThrow(try model.freeze(["head"], strict: false))
        XCTAssertNoThrow(try model.freeze(["features"]))
        XCTAssertEqual(model.trainableParameters().map(\.0), ["classifier.1.weight", "classifier.1.bias"])
        XCTAssertEqual(model.frozenScopes(), ["features"])
    }

    func testFrozenDropoutIsOff() throws {
        let dropout = try Dropout(p: 0.9)
        let x = try Tensor.ones([1000])
        let trained = try dropout(x)
        XCTAssertLessThan(try trained.eq(0).to(.float32).sum().item(), 1000)
        XCTAssertGreaterThan(try trained.eq(0).to(.float32).sum().item(), 800)
        try dropout.freeze()
        XCTAssertEqual(try dropout(x).floats(), try x.floats())
        try dropout.unfreeze()
        dropout.eval()
        XCTAssertTrue(try dropout(x) === x)
    }

    // MARK: - Replacing modules

    func testReplacingTheHeadIsReflectedInStateDict() throws {
        let model = try namedNetwork()
        try model.replaceModule(at: "classifier.1", with: try Linear(4, 10))
        XCTAssertEqual(model.stateDict()["classifier.1.weight"]?.shape, [10, 4])
        XCTAssertEqual(model.stateDict()["classifier.1.bias"]?.shape, [10])
        model.eval()
        XCTAssertEqual(try model(try Tensor.randn([2, 3, 5, 5])).shape, [2, 10])

        try model.setChild("classifier", to: Identity())
        XCTAssertFalse(model.stateDict().keys.contains { $0.hasPrefix("classifier") })
        XCTAssertEqual(try model(try Tensor.randn([2, 3, 5, 5])).shape, [2, 4])

        let small = try LayerTests.smallNetwork()
        try small.setChild("3", to: AdaptiveMaxPool2d(outputSize: 1))
        XCTAssertTrue(small[3] is AdaptiveMaxPool2d)
        small[5] = try Linear(4, 7)
        XCTAssertEqual(small.stateDict()["5.weight"]?.shape, [7, 4])
        XCTAssertThrowsError(try small.setChild("6", to: ReLU()))
        XCTAssertThrowsError(try model.replaceModule(at: "nothing.0", with: ReLU()))
        XCTAssertThrowsError(try model.replaceModule(at: "pool.0", with: ReLU()))   // a leaf has no children
    }

    func testSequentialAppendCountAndSubscript() throws {
        let seq = Sequential()
        XCTAssertEqual(seq.count, 0)
        seq.append(try Linear(3, 4))
        seq.append(ReLU())
        seq.append(try Linear(4, 2))
        XCTAssertEqual(seq.count, 3)
        XCTAssertEqual(seq.namedChildren.map(\.0), ["0", "1", "2"])
        XCTAssertEqual(seq.stateDict().keys, ["0.weight", "0.bias", "2.weight", "2.bias"])
        XCTAssertTrue(seq[1] is ReLU)
        XCTAssertEqual(try seq(try Tensor.randn([5, 3])).shape, [5, 2])
        XCTAssertThrowsError(try Sequential(named: [("a", ReLU()), ("a", ReLU())]))
        XCTAssertThrowsError(try Sequential(named: [("a.b", ReLU())]))
    }

    // MARK: - dtype and device

    func testToDtypeKeepsTensorIdentity() throws {
        let model = try LayerTests.smallNetwork()
        let held = model.parameters()             // what an optimizer keeps
        let bn = try XCTUnwrap(model[1] as? BatchNorm2d)
        try model.to(dtype: .float64)
        let after = model.parameters()
        XCTAssertEqual(held.count, after.count)
        for (a, b) in zip(held, after) {
            XCTAssertTrue(a === b)
            XCTAssertEqual(a.dtype, .float64)
            XCTAssertTrue(a.requiresGrad)
        }
        XCTAssertEqual(bn.runningMean?.dtype, .float64)
        XCTAssertEqual(bn.numBatchesTracked?.dtype, .int64)
        let out = try model(try Tensor.randn([2, 3, 6, 6], dtype: .float64))
        XCTAssertEqual(out.dtype, .float64)
        try out.sum().backward()
        XCTAssertEqual(held[0].grad?.dtype, .float64)
    }

    // MARK: - Initialisation and configuration

    func testDefaultInitialisationMatchesPyTorchBounds() throws {
        let conv = try Conv2d(16, 8, kernelSize: 3, groups: 2)
        let fanIn = 8 * 9
        let bound = 1 / Double(fanIn).squareRoot()
        XCTAssertEqual(Initialization.kaimingUniformBound(fanIn: fanIn), bound, accuracy: 1e-12)
        let w = try conv.weight.toArray(Float.self).map(Double.init)
        XCTAssertEqual(conv.weight.shape, [8, 8, 3, 3])
        XCTAssertLessThanOrEqual(w.map(Swift.abs).max()!, bound)
        XCTAssertGreaterThan(w.map(Swift.abs).max()!, 0.9 * bound)
        let std = (w.map { $0 * $0 }.reduce(0, +) / Double(w.count)).squareRoot()
        XCTAssertEqual(std, bound / 3.0.squareRoot(), accuracy: 0.1 * bound)
        let b = try XCTUnwrap(conv.bias).toArray(Float.self).map(Double.init)
        XCTAssertLessThanOrEqual(b.map(Swift.abs).max()!, bound)
        XCTAssertTrue(conv.weight.requiresGrad && conv.bias!.requiresGrad)
        XCTAssertTrue(conv.weight.isLeaf)

        let linear = try Linear(100, 50)
        let lw = try linear.weight.toArray(Float.self)
        XCTAssertLessThanOrEqual(lw.map(Swift.abs).max()!, 0.1)
        XCTAssertGreaterThan(lw.map(Swift.abs).max()!, 0.09)
        XCTAssertLessThanOrEqual(try XCTUnwrap(linear.bias).toArray(Float.self).map(Swift.abs).max()!, 0.1)

        let bn = try BatchNorm2d(3)
        XCTAssertEqual(try bn.weight?.floats(), [1, 1, 1])
        XCTAssertEqual(try bn.bias?.floats(), [0, 0, 0])
        XCTAssertEqual(try bn.runningMean?.floats(), [0, 0, 0])
        XCTAssertEqual(try bn.runningVar?.floats(), [1, 1, 1])
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), 0)
        XCTAssertTrue(bn.weight!.requiresGrad)
        XCTAssertFalse(bn.runningMean!.requiresGrad)
    }

    func testBatchNormCountsTrainingBatchesOnly() throws {
        let bn = try BatchNorm2d(2)
        let x = try Tensor.randn([3, 2, 4, 4])
        _ = try bn(x)
        _ = try bn(x)
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), 2)
        bn.eval()
        _ = try bn(x)
        XCTAssertEqual(try bn.numBatchesTracked?.itemInt(), 2)
        XCTAssertThrowsError(try bn(try Tensor.randn([2, 4, 4])))
        bn.train()
        XCTAssertThrowsError(try bn(try Tensor.randn([1, 2, 1, 1])))

        let untracked = try BatchNorm2d(2, affine: false, trackRunningStats: false)
        XCTAssertTrue(untracked.stateDict().isEmpty)
        untracked.eval()
        let y = try untracked(x)   // batch statistics even in eval mode, as PyTorch
        XCTAssertEqual(try y.mean(dims: [0, 2, 3]).abs().max().item(), 0, accuracy: 1e-5)
    }

    func testTFSamePadding() throws {
        XCTAssertTrue(Conv2d.samePadding(input: 7, kernel: 3, stride: 2, dilation: 1) == (1, 1))
        XCTAssertTrue(Conv2d.samePadding(input: 8, kernel: 3, stride: 2, dilation: 1) == (0, 1))
        XCTAssertTrue(Conv2d.samePadding(input: 9, kernel: 5, stride: 2, dilation: 1) == (2, 2))
        XCTAssertTrue(Conv2d.samePadding(input: 8, kernel: 1, stride: 2, dilation: 1) == (0, 0))
        XCTAssertTrue(Conv2d.samePadding(input: 10, kernel: 3, stride: 1, dilation: 2) == (2, 2))
        let conv = try Conv2d(1, 1, kernelSize: 3, stride: 2, padding: .same)
        XCTAssertEqual(try conv(try Tensor.randn([1, 1, 224, 223])).shape, [1, 1, 112, 112])
        XCTAssertThrowsError(try Conv2d(3, 4, kernelSize: 3, groups: 2))
        // A kernel whose area overflows Int is an error (the fan-in computation trapped).
        XCTAssertThrowsError(try Conv2d(1, 1, kernelSize: (1 << 32, 1 << 32))) { error in
            XCTAssertEqual("\(error)", "Conv2d: kernel size (4294967296, 4294967296) is too large")
        }
    }

    func testDescriptionsReadLikePyTorch() throws {
        XCTAssertEqual(try Conv2d(3, 32, kernelSize: 3, stride: 2, padding: 1, bias: false).description,
                       "Conv2d(3, 32, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), bias=False)")
        XCTAssertEqual(try Conv2d(32, 32, kernelSize: 3, padding: .same, groups: 32).description,
                       "Conv2d(32, 32, kernel_size=(3, 3), stride=(1, 1), padding=same, groups=32)")
        XCTAssertEqual(try BatchNorm2d(32).description,
                       "BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)")
        XCTAssertEqual(try Linear(1280, 10).description, "Linear(in_features=1280, out_features=10, bias=True)")
        XCTAssertEqual(MaxPool2d(kernelSize: 3, stride: 2, padding: 1).description,
                       "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)")
        XCTAssertEqual(try Dropout(p: 0.2).description, "Dropout(p=0.2, inplace=False)")
        XCTAssertEqual(ReLU().description, "ReLU()")
        XCTAssertEqual(Softmax(dim: 1).description, "Softmax(dim=1)")
        let seq = Sequential(ReLU(), Sequential(Flatten(), Identity()))
        XCTAssertEqual(seq.description, """
            Sequential(
              (0): ReLU()
              (1): Sequential(
                (0): Flatten(start_dim=1, end_dim=-1)
                (1): Identity()
              )
            )
            """)
        let types = try LayerTests.smallNetwork().namedModules().map { $0.1.typeName }
        XCTAssertEqual(types, ["Sequential", "Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten", "Linear"])
    }
}
