// libFuzzer target: a run directory's config.json (Training/Run/RunDirectory.swift readConfig, which
// decodes it and runs RunConfig.validate; reasonNotARun's header check). The input is the file.
// A config that reads, written back by RunDirectory.write and read again, must read the same.
//
// FINETUNE_FUZZ_SEEDS=DIR writes seed configs made by the library to DIR and exits (scripts/fuzz --seeds).
import Foundation
import FuzzSupport
import ImagePreprocessing
import Training
import Vision

private let runFolder: String = FuzzScratch.folder("run")

private func seedConfigs() throws -> [RunConfig] {
    var configs: [RunConfig] = []
    for (recipe, optimizer, binary) in [(RecipeName.full, OptimizerConfig.Kind.adam, false),
                                        (.twoPhase, .sgd, false), (.discriminative, .adamw, true),
                                        (.headOnly, .rmsprop, false)] {
        var options = RecipeOptions()
        options.recipe = recipe
        options.optimizer = optimizer
        options.binary = binary
        options.schedule = recipe == .full ? .fixed : .cosine(etaMin: 0, periodSteps: nil)
        let classes = binary ? ["cat", "dog"] : ["a", "b", "c"]
        let head = binary ? RunConfig.Head(numClasses: 2, spec: HeadSpec(outputs: 1, dropout: 0.2))
                          : RunConfig.Head(numClasses: 3)
        var config = RunConfig(
            architecture: recipe == .full ? "mobilenet_v2" : "resnet18", weights: recipe == .full ? nil : "imagenet",
            classNames: classes, preprocessing: .imagenet, head: head,
            training: try options.configuration(epochs: 4),
            options: TrainOptions(epochs: 4, batchSize: 8, valSplit: 0.1, earlyStoppingPatience: 2),
            data: .init(path: "/data/photos", hasSplitFolders: true, trainSamples: 30, validationSamples: 6,
                        testSamples: 6),
            createdAt: "2025-01-01T00:00:00Z", updatedAt: "2025-01-01T00:10:00Z", finetuneVersion: "fuzz",
            libtorchVersion: "2.x", status: "completed", epochsCompleted: 4)
        config.modelWeights = "final"
        config.modelEpoch = 4
        config.testAccuracy = 0.5
        configs.append(config)
    }
    return configs
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzRunConfigInitialize(_ argc: UnsafeMutablePointer<CInt>?,
                                    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    guard let seeds = fuzzSeedFolder() else { return 0 }
    do {
        for (i, config) in try seedConfigs().enumerated() {
            let dir = FuzzScratch.folder("seed\(i)")
            try RunDirectory(dir).write(config)
            let bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))
            FuzzScratch.write(bytes, to: seeds + "/config-\(i).json")
        }
    } catch {
        fatalError("cannot make seed configs: \(error)")
    }
    exit(0)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRunConfig(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let directory = RunDirectory(runFolder)
    FuzzScratch.write(UnsafeBufferPointer(start: data, count: size), to: directory.config)
    _ = directory.reasonNotARun()
    let config: RunConfig
    do {
        config = try directory.readConfig()
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    do {
        let first = try TrainingJSON.encoder.encode(config)
        try directory.write(config)
        let again = try directory.readConfig()
        let second = try TrainingJSON.encoder.encode(again)
        guard first == second else {
            fatalError("config.json changed when written and read back:\n\(String(decoding: first, as: UTF8.self))\n" +
                       String(decoding: second, as: UTF8.self))
        }
    } catch {
        fatalError("a config that reads cannot be written and read back: \(error)")
    }
    return 0
}
