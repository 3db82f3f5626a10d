// libFuzzer target: checkpoint loading (Training/Checkpoint.swift: readManifest, read, which reads
// trainer.json, optimizer.json through OptimizerState, and the safetensors files).
//
// Input: up to five files separated by `fuzzFileSeparator`, written to a checkpoint folder in this
// order: trainer.json, optimizer.json, model.safetensors, optimizer.safetensors, rng.safetensors.
//
// FINETUNE_FUZZ_SEEDS=DIR writes seed checkpoints (a tiny model saved by Trainer.saveCheckpoint, one
// per optimizer) to DIR and exits (scripts/fuzz --seeds).
import Foundation
import FuzzSupport
import NN
import Training

private let fileNames = [Checkpoint.trainerFile, Checkpoint.optimizerHyperparametersFile, Checkpoint.modelFile,
                         Checkpoint.optimizerFile, Checkpoint.rngFile]

@_cdecl("LLVMFuzzerInitialize")
public func fuzzCheckpointInitialize(_ argc: UnsafeMutablePointer<CInt>?,
                                     _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    guard let seeds = fuzzSeedFolder() else { return 0 }
    do {
        let optimizers: [OptimizerConfig] = [.sgd(learningRate: 0.1), .adam(), .adamw(), .rmsprop()]
        for (i, optimizer) in optimizers.enumerated() {
            let model = Sequential(try Linear(2, 2), ReLU(), try Linear(2, 2))
            let trainer = try Trainer(model: model, configuration: TrainingConfiguration(
                optimizer: optimizer, schedule: i % 2 == 0 ? .fixed : .cosine(etaMin: 0, periodSteps: 10), seed: 1))
            let dir = FuzzScratch.directory + "/seed\(i)"
            try trainer.saveCheckpoint(to: dir)
            let files = try fileNames.map { Array(try Foundation.Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0))) }
            FuzzScratch.write(fuzzJoin(files), to: seeds + "/checkpoint-\(optimizer.kind.rawValue).bin")
        }
    } catch {
        fatalError("cannot make seed checkpoints: \(error)")
    }
    exit(0)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCheckpoint(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let dir = FuzzScratch.folder("checkpoint")
    for (name, part) in zip(fileNames, fuzzSplit(UnsafeBufferPointer(start: data, count: size), limit: fileNames.count)) {
        FuzzScratch.write(part, to: dir + "/" + name)
    }
    _ = try? Checkpoint.readManifest(dir)
    do {
        let checkpoint = try Checkpoint.read(from: dir)
        _ = checkpoint.model.count
        _ = checkpoint.optimizer.tensors.count
        _ = checkpoint.rngState?.shape
    } catch {
        // a refusal
    }
    return 0
}
