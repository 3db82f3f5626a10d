import Foundation
import Optim
import TensorIO
import TestSupport
import Torch
import XCTest

/// Replays PyTorch trajectories from `Tests/Fixtures/optim_*.safetensors` (tools/fixtures/make_optim.py)
/// and checks state saving, loading and the optimizer contract.
///
/// Tolerance: against the Debian libtorch 1.13 that made the fixtures the results are bit-identical
/// (checked with atol 0). 1e-6 leaves room for another libtorch (2.x updates Adam's moments with
/// `lerp_`, and vectorized kernels may round differently) on float32 parameters of magnitude ~1,
/// while a wrong formula (bias correction, epsilon placement, dampening, AMSGrad's maximum) moves
/// them by more than 1e-5 in these fixtures (make_optim.py asserts that for the subtle ones).
final class OptimizerTests: XCTestCase {
    static let names = ["weight", "bias"]
    static let steps = 5

    typealias Factory = ([(String, Tensor)]) throws -> Optimizer

    /// Fresh, independent copies of a fixture's initial parameters (requiring grad, like module parameters).
    func initialParameters(_ fixture: StateDict) throws -> [(String, Tensor)] {
        try Self.names.map { name in
            (name, try Fixtures.tensor(fixture, "param.\(name).init").clone().setRequiresGrad(true))
        }
    }

    func setGradients(_ parameters: [(String, Tensor)], _ fixture: StateDict, step: Int) throws {
        for (name, p) in parameters { try p.setGrad(Fixtures.tensor(fixture, "grad.\(name).step\(step)").clone()) }
    }

    /// Steps through a fixture, comparing the parameters after every step, then PyTorch's final state
    /// (when the fixture has it) with `stateDict()` under the same names.
    /// A few float32 ulps relative to each value: the fixtures come from PyTorch 1.13, and the torch
    /// 2.13 wheel's kernels round the centred RMSprop's momentum 2 ulps differently (1.9e-6 at 15.1,
    /// above the absolute 1e-6 there).
    static let rtol = 5e-7

    /// With a `schedule`, it is applied before every step over a run of `steps` steps, as the trainer
    /// does (the fixture's scheduler steps after each `optimizer.step()`).
    func replay(_ config: String, atol: Double = 1e-6, schedule: (any LearningRateSchedule)? = nil,
                file: StaticString = #filePath, line: UInt = #line, _ make: Factory) throws {
        let fixture = try Fixtures.load("optim_\(config).safetensors")
        let parameters = try initialParameters(fixture)
        let optimizer = try make(parameters)
        let bases = optimizer.learningRates
        for step in 1...Self.steps {
            try setGradients(parameters, fixture, step: step)
            try schedule?.apply(to: optimizer, baseLearningRates: bases, step: step - 1, totalSteps: Self.steps)
            try optimizer.step()
            for (name, p) in parameters {
                assertClose(p, try Fixtures.tensor(fixture, "param.\(name).step\(step)"), atol: atol, rtol: Self.rtol,
                            "\(config): \(name) after step \(step)", file: file, line: line)
            }
        }
        let expectedKeys = fixture.keys.filter { $0.hasPrefix("state.") }.map { String($0.dropFirst("state.".count)) }
        guard !expectedKeys.isEmpty else { return }
        let state = optimizer.stateDict().tensors
        XCTAssertEqual(Set(state.keys), Set(expectedKeys), "\(config): state keys", file: file, line: line)
        for key in expectedKeys {
            guard let actual = state[key] else { continue }
            assertClose(actual, try Fixtures.tensor(fixture, "state.\(key)"), atol: atol, rtol: Self.rtol,
                        "\(config): state \(key)", file: file, line: line)
        }
    }

    // MARK: - PyTorch trajectories

    func testSGD() throws {
        try replay("sgd") { try SGD($0, learningRate: 0.1) }
    }

    func testSGDMomentumWeightDecay() throws {
        try replay("sgd_momentum") { try SGD($0, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-4) }
    }

    func testSGDNesterov() throws {
        try replay("sgd_nesterov") { try SGD($0, learningRate: 0.1, momentum: 0.9, dampening: 0, nesterov: true) }
    }

    func testAdamDefaults() throws {
        try replay("adam") { try Adam($0) }
    }

    func testAdamWeightDecayAMSGrad() throws {
        try replay("adam_amsgrad") { try Adam($0, learningRate: 0.1, weightDecay: 0.01, amsgrad: true) }
    }

    func testAdamWDefaultWeightDecay() throws {
        try replay("adamw") { try AdamW($0, learningRate: 1e-2) }
    }

    func testRMSpropDefaults() throws {
        try replay("rmsprop") { try RMSprop($0) }
    }

    func testRMSpropCenteredMomentumWeightDecay() throws {
        try replay("rmsprop_centered") {
            try RMSprop($0, learningRate: 1e-2, weightDecay: 1e-3, momentum: 0.9, centered: true)
        }
    }

    func testRMSpropEpsilonInsideSqrt() throws {
        try replay("rmsprop_tf") {
            try RMSprop($0, learningRate: 1e-2, alpha: 0.9, epsilon: 1.0, momentum: 0.9, epsilonInsideSqrt: true)
        }
    }

    func testRMSpropEpsilonInsideSqrtCentered() throws {
        try replay("rmsprop_tf_centered") {
            try RMSprop($0, learningRate: 1e-2, alpha: 0.9, epsilon: 0.1, weightDecay: 1e-3, momentum: 0.9,
                        centered: true, epsilonInsideSqrt: true)
        }
    }

    /// The weight uses the optimizer's defaults (nil in its group), the bias overrides both.
    func testSGDTwoGroups() throws {
        try replay("sgd_groups") { p in
            try SGD([ParameterGroup(parameters: [p[0]]),
                     ParameterGroup(parameters: [p[1]], learningRate: 0.5, weightDecay: 0)],
                    learningRate: 0.1, momentum: 0.9, weightDecay: 1e-2)
        }
    }

    func testAdamWTwoGroups() throws {
        try replay("adamw_groups") { p in
            try AdamW([ParameterGroup(parameters: [p[0]], learningRate: 1e-2),
                       ParameterGroup(parameters: [p[1]], weightDecay: 0)],
                      learningRate: 3e-3, weightDecay: 0.05)
        }
    }

    /// OneCycleLR cycles SGD's momentum and Adam's β1 with the rate (`cycle_momentum=True`); the
    /// fixtures' script checks that the trajectories differ from a constant momentum by more than 1e-5.
    func testOneCycleCyclesMomentumAndBeta1AsOneCycleLR() throws {
        try replay("sgd_onecycle", schedule: OneCycle()) { try SGD($0, learningRate: 0.1, momentum: 0.9) }
        try replay("adam_onecycle", schedule: OneCycle()) { try Adam($0, learningRate: 0.1) }
    }

    /// The cycled momentum is each group's own, recorded with its hyperparameters; an optimizer without
    /// momentum keeps none, and a schedule that does not cycle hands back the optimizer's own.
    func testCycledMomentumIsPerGroupAndSaved() throws {
        let p = try initialParameters(Fixtures.load("optim_sgd.safetensors"))
        let sgd = try SGD([ParameterGroup(parameters: [p[0]]), ParameterGroup(parameters: [p[1]])],
                          learningRate: 0.1, momentum: 0.9)
        try OneCycle().apply(to: sgd, baseLearningRates: [0.1, 0.01], step: 0, totalSteps: 10)
        XCTAssertEqual(sgd.parameterGroups.map(\.momentum), [0.95, 0.95])
        XCTAssertEqual(sgd.stateDict().hyperparameters.groups.map { $0.options["momentum"] }, [0.95, 0.95])
        try OneCycle().apply(to: sgd, baseLearningRates: [0.1, 0.01], step: 2, totalSteps: 10)
        XCTAssertEqual(sgd.parameterGroups[0].momentum ?? 0, 0.85, accuracy: 1e-15)  // the peak (step 0.3·10 − 1)
        try CosineAnnealing().apply(to: sgd, baseLearningRates: [0.1, 0.01], step: 3, totalSteps: 10)
        XCTAssertEqual(sgd.parameterGroups.map(\.momentum), [nil, nil])
        XCTAssertEqual(sgd.stateDict().hyperparameters.groups[0].options["momentum"], 0.9)

        let plain = try SGD(p, learningRate: 0.1)
        try OneCycle().apply(to: plain, baseLearningRates: [0.1], step: 0, totalSteps: 10)
        XCTAssertNil(plain.parameterGroups[0].momentum)
        let adam = try Adam(p)
        try OneCycle(momentumCycle: .init(base: 0.8, maximum: 0.9)).apply(to: adam, baseLearningRates: [0.1],
                                                                           step: 9, totalSteps: 10)
        XCTAssertEqual(adam.stateDict().hyperparameters.groups[0].options["betas.0"], 0.9)
        XCTAssertThrowsError(try SGD([ParameterGroup(parameters: p, momentum: 1)], learningRate: 0.1, momentum: 0.9))
    }

    // MARK: - Contract

    func testGroupsResolveDefaults() throws {
        let p = try initialParameters(Fixtures.load("optim_sgd.safetensors"))
        let optimizer = try AdamW([ParameterGroup(parameters: [p[0]], learningRate: 1e-2),
                                   ParameterGroup(parameters: [p[1]], weightDecay: 0)], learningRate: 3e-3)
        XCTAssertEqual(optimizer.parameterGroups.map(\.learningRate), [1e-2, 3e-3])
        XCTAssertEqual(optimizer.parameterGroups.map(\.weightDecay), [1e-2, 0])
        XCTAssertEqual(optimizer.learningRates, [1e-2, 3e-3])
    }

    func testParameterWithoutGradientIsUntouched() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let parameters = try initialParameters(fixture)
        let (weight, bias) = (parameters[0].1, parameters[1].1)
        let biasBefore = try bias.floats()
        let optimizer = try Adam(parameters, learningRate: 0.1, weightDecay: 0.1)
        for step in 1...3 {
            try weight.setGrad(Fixtures.tensor(fixture, "grad.weight.step\(step)").clone())
            try optimizer.step()
        }
        XCTAssertNil(bias.grad)
        XCTAssertEqual(try bias.floats(), biasBefore, "a parameter without grad must not move (not even by weight decay)")
        let state = optimizer.stateDict().tensors
        XCTAssertEqual(state.keys, ["weight.step", "weight.exp_avg", "weight.exp_avg_sq"])
        XCTAssertEqual(try state["weight.step"]?.item(), 3)

        // Its own step counter starts when it first gets a gradient.
        try bias.setGrad(Fixtures.tensor(fixture, "grad.bias.step1").clone())
        try weight.setGrad(nil)
        try optimizer.step()
        XCTAssertEqual(try optimizer.stateDict().tensors["bias.step"]?.item(), 1)
        XCTAssertEqual(try optimizer.stateDict().tensors["weight.step"]?.item(), 3)
        XCTAssertNotEqual(try bias.floats(), biasBefore)
    }

    func testLearningRateChangeTakesEffect() throws {
        let fixture = try Fixtures.load("optim_sgd.safetensors")
        let parameters = try initialParameters(fixture)
        let optimizer = try SGD(parameters, learningRate: 0.1)
        try setGradients(parameters, fixture, step: 1)
        try optimizer.step()
        let weight = parameters[0].1
        let before = try weight.detach().clone()
        optimizer.parameterGroups[0].learningRate = 0.003
        try setGradients(parameters, fixture, step: 2)
        try optimizer.step()
        let expected = try before.add(Fixtures.tensor(fixture, "grad.weight.step2"), alpha: -0.003)
        assertClose(weight, expected, atol: 0, "after changing the learning rate to 0.003")
        XCTAssertEqual(optimizer.learningRates, [0.003])
    }

    func testNesterovRequiresMomentumWithoutDampening() throws {
        let p = try initialParameters(Fixtures.load("optim_sgd.safetensors"))
        XCTAssertThrowsError(try SGD(p, learningRate: 0.1, momentum: 0.9, dampening: 0.1, nesterov: true)) { error in
            guard case OptimizerError.invalidHyperparameter(let message) = error else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertTrue(message.contains("Nesterov"), message)
        }
        XCTAssertThrowsError(try SGD(p, learningRate: 0.1, nesterov: true))
        XCTAssertNoThrow(try SGD(p, learningRate: 0.1, momentum: 0.9, nesterov: true))
    }

    func testInvalidConstructionThrows() throws {
        let p = try initialParameters(Fixtures.load("optim_sgd.safetensors"))
        XCTAssertThrowsError(try SGD(p, learningRate: -1))
        XCTAssertThrowsError(try Adam(p, betas: (1.0, 0.999)))
        XCTAssertThrowsError(try RMSprop(p, momentum: -0.5))
        XCTAssertThrowsError(try SGD([(String, Tensor)](), learningRate: 0.1))
        XCTAssertThrowsError(try SGD([ParameterGroup(parameters: p), ParameterGroup(parameters: [p[0]])],
                                     learningRate: 0.1)) { error in
            XCTAssertEqual(error as? OptimizerError, .invalidParameters("parameter 'weight' appears more than once"))
        }
    }

    func testZeroGrad() throws {
        let fixture = try Fixtures.load("optim_sgd.safetensors")
        let parameters = try initialParameters(fixture)
        let optimizer = try SGD(parameters, learningRate: 0.1)
        try setGradients(parameters, fixture, step: 1)
        try optimizer.zeroGrad(setToNone: false)
        for (_, p) in parameters { XCTAssertEqual(try p.grad?.floats(), [Float](repeating: 0, count: p.count)) }
        try optimizer.zeroGrad()
        for (_, p) in parameters { XCTAssertNil(p.grad) }
    }

    func testMaximizeEqualsNegatedGradient() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let a = try initialParameters(fixture), b = try initialParameters(fixture)
        let maximizing = try Adam(a, learningRate: 0.01, weightDecay: 0.1, maximize: true)
        let plain = try Adam(b, learningRate: 0.01, weightDecay: 0.1)
        for step in 1...3 {
            try setGradients(a, fixture, step: step)
            for (name, p) in b { try p.setGrad(Fixtures.tensor(fixture, "grad.\(name).step\(step)").neg()) }
            try maximizing.step()
            try plain.step()
        }
        // Negation is exact, so both runs compute the same numbers.
        for i in a.indices { XCTAssertEqual(try a[i].1.floats(), try b[i].1.floats(), a[i].0) }
        XCTAssertNotEqual(try a[0].1.floats(), try initialParameters(fixture)[0].1.floats())
    }

    // MARK: - Saving and loading

    /// Optimizers whose state is non-trivial, by name.
    static let resumable: [(String, Factory)] = [
        ("SGD nesterov", { try SGD($0, learningRate: 0.1, momentum: 0.9, weightDecay: 1e-3, nesterov: true) }),
        ("Adam amsgrad", { try Adam($0, learningRate: 0.05, weightDecay: 0.01, amsgrad: true) }),
        ("AdamW", { try AdamW($0, learningRate: 0.01) }),
        ("RMSprop centered", { try RMSprop($0, weightDecay: 1e-3, momentum: 0.9, centered: true) }),
        ("RMSprop TF", { try RMSprop($0, alpha: 0.9, epsilon: 1.0, momentum: 0.9, epsilonInsideSqrt: true) }),
    ]

    /// Save after 2 steps (through a safetensors file and JSON, as a checkpoint does), load into a new
    /// optimizer over copies of the parameters, and run 3 more steps: bit-for-bit the uninterrupted run.
    func testStateRoundTripResumesBitForBit() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("optim-tests-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }

        for (label, make) in Self.resumable {
            let reference = try initialParameters(fixture)
            let uninterrupted = try make(reference)
            for step in 1...Self.steps {
                try setGradients(reference, fixture, step: step)
                try uninterrupted.step()
            }

            let first = try initialParameters(fixture)
            let before = try make(first)
            for step in 1...2 {
                try setGradients(first, fixture, step: step)
                try before.step()
            }
            let saved = before.stateDict()
            let path = directory.appendingPathComponent("state.safetensors").path
            let json = try saved.hyperparametersJSON()
            try SafeTensors.write(saved.tensors, metadata: ["optimizer": String(decoding: json, as: UTF8.self)],
                                  to: path)
            let file = try SafeTensors.read(path)
            let restored = try OptimizerState(tensors: file.tensors,
                                              hyperparametersJSON: Data(file.metadata["optimizer"]!.utf8))
            XCTAssertEqual(restored.hyperparameters, saved.hyperparameters, label)

            let resumedParameters = try first.map { ($0.0, try $0.1.detach().clone().setRequiresGrad(true)) }
            let after = try make(resumedParameters)
            try after.load(restored)
            XCTAssertEqual(Set(after.stateDict().tensors.keys), Set(saved.tensors.keys), label)
            for step in 3...Self.steps {
                try setGradients(resumedParameters, fixture, step: step)
                try after.step()
            }
            for i in reference.indices {
                XCTAssertEqual(try resumedParameters[i].1.floats(), try reference[i].1.floats(),
                               "\(label): \(reference[i].0) after resuming")
            }
            for (key, tensor) in uninterrupted.stateDict().tensors {
                XCTAssertEqual(try after.stateDict().tensors[key]?.floats(), try tensor.floats(), "\(label): \(key)")
            }
        }
    }

    func testLoadRestoresGroupHyperparametersByName() throws {
        let fixture = try Fixtures.load("optim_adamw_groups.safetensors")
        let p = try initialParameters(fixture)
        let before = try AdamW([ParameterGroup(parameters: [p[0]], learningRate: 1e-2),
                                ParameterGroup(parameters: [p[1]], weightDecay: 0)], learningRate: 3e-3)
        before.parameterGroups[1].learningRate = 7e-4  // as a scheduler would
        try setGradients(p, fixture, step: 1)
        try before.step()
        // The groups come in another order now: matching is by parameter name.
        let after = try AdamW([ParameterGroup(parameters: [p[1]]), ParameterGroup(parameters: [p[0]])])
        try after.load(before.stateDict())
        XCTAssertEqual(after.learningRates, [7e-4, 1e-2])
        XCTAssertEqual(after.parameterGroups.map(\.weightDecay), [0, 1e-2])
    }

    /// State saved while only the head was trained loads into an optimizer over more parameters.
    func testLoadIntoOptimizerWithMoreParameters() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let p = try initialParameters(fixture)
        let headOnly = try Adam([p[1]], learningRate: 0.01)
        for step in 1...2 {
            try p[1].1.setGrad(Fixtures.tensor(fixture, "grad.bias.step\(step)").clone())
            try headOnly.step()
        }
        let saved = headOnly.stateDict()
        let all = try Adam([ParameterGroup(parameters: [p[0]], learningRate: 1e-4),
                            ParameterGroup(parameters: [p[1]])], learningRate: 0.5)
        try all.load(saved)
        XCTAssertEqual(all.learningRates, [1e-4, 0.01])
        let state = all.stateDict().tensors
        XCTAssertEqual(state.keys, ["bias.step", "bias.exp_avg", "bias.exp_avg_sq"])
        XCTAssertEqual(try state["bias.exp_avg"]?.floats(), try saved.tensors["bias.exp_avg"]?.floats())
        XCTAssertEqual(try state["bias.step"]?.item(), 2)
        try setGradients(p, fixture, step: 3)
        try all.step()
        XCTAssertEqual(try all.stateDict().tensors["weight.step"]?.item(), 1)
        XCTAssertEqual(try all.stateDict().tensors["bias.step"]?.item(), 3)
    }

    func testLoadingStateOfUnknownParameterThrows() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let p = try initialParameters(fixture)
        let optimizer = try Adam(p)
        try setGradients(p, fixture, step: 1)
        try optimizer.step()
        var saved = optimizer.stateDict()
        saved.tensors = saved.tensors.renamingKeys { $0.replacingOccurrences(of: "weight", with: "classifier.1.weight") }
        let other = try Adam(try initialParameters(fixture))
        XCTAssertThrowsError(try other.load(saved)) { error in
            XCTAssertEqual(error as? OptimizerError,
                           .unknownParameter(key: "classifier.1.weight.step", parameter: "classifier.1.weight"))
            XCTAssertTrue("\(error)".contains("classifier.1.weight"), "\(error)")
        }
        XCTAssertTrue(other.stateDict().tensors.isEmpty, "a failed load must change nothing")
    }

    func testLoadingStateWithWrongShapeThrows() throws {
        let fixture = try Fixtures.load("optim_sgd_momentum.safetensors")
        let p = try initialParameters(fixture)
        let optimizer = try SGD(p, learningRate: 0.1, momentum: 0.9)
        try setGradients(p, fixture, step: 1)
        try optimizer.step()
        var saved = optimizer.stateDict()
        saved.tensors["bias.momentum_buffer"] = try Tensor.zeros([5])
        XCTAssertThrowsError(try optimizer.load(saved)) { error in
            XCTAssertEqual(error as? OptimizerError,
                           .shapeMismatch(key: "bias.momentum_buffer", expected: [4], found: [5]))
            XCTAssertTrue("\(error)".contains("bias.momentum_buffer"), "\(error)")
        }
        // The live state is untouched by the failed load.
        XCTAssertEqual(optimizer.stateDict().tensors["bias.momentum_buffer"]?.shape, [4])
    }

    func testLoadingIncompatibleStateThrows() throws {
        let fixture = try Fixtures.load("optim_adam.safetensors")
        let p = try initialParameters(fixture)
        let adam = try Adam(p)
        try setGradients(p, fixture, step: 1)
        try adam.step()
        let saved = adam.stateDict()
        // Another optimizer.
        XCTAssertThrowsError(try AdamW(p).load(saved)) { error in
            guard case OptimizerError.incompatibleState = error else { return XCTFail("unexpected \(error)") }
        }
        // A configuration that keeps more state (AMSGrad's maximum is missing).
        XCTAssertThrowsError(try Adam(p, amsgrad: true).load(saved)) { error in
            XCTAssertTrue("\(error)".contains("weight.max_exp_avg_sq"), "\(error)")
        }
        // Probe U: damaged values were loaded; a NaN ended the resumed run as "diverged", integers
        // were truncated silently. Each is refused, naming the tensor, and nothing is loaded.
        let moments = try Fixtures.tensor(saved.tensors, "weight.exp_avg_sq").floats()
        for (key, damaged, expected) in [
            ("weight.exp_avg", try Tensor.full([3, 4], .nan), "holds NaN or infinite values"),
            ("weight.exp_avg", try Tensor.full([3, 4], .infinity), "holds NaN or infinite values"),
            ("weight.exp_avg_sq", try Tensor.full([3, 4], -1), "holds negative values"),
            ("weight.exp_avg", try Tensor.zeros([3, 4], dtype: .int64), "stored as int64"),
        ] {
            var bad = saved
            bad.tensors[key] = damaged
            let fresh = try Adam(p)
            try fresh.load(saved)
            XCTAssertThrowsError(try fresh.load(bad)) { error in
                XCTAssertTrue("\(error)".contains("'\(key)' ") && "\(error)".contains(expected), "\(key): \(error)")
            }
            XCTAssertEqual(try Fixtures.tensor(fresh.stateDict().tensors, "weight.exp_avg_sq").floats(), moments)
        }
        // A state name this optimizer does not keep.
        var extra = saved
        extra.tensors["weight.momentum_buffer"] = try Tensor.zeros([3, 4])
        XCTAssertThrowsError(try Adam(p).load(extra)) { error in
            XCTAssertTrue("\(error)".contains("momentum_buffer"), "\(error)")
        }
    }
}
