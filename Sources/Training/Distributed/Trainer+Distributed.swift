import Data
import Foundation
import Torch

extension Trainer {
    /// Before the first batch on every rank: the data shards, the settings check, rank 0's weights
    /// and buffers to everyone, SyncBatchNorm when asked, and the world size recorded in the state (and
    /// so in checkpoints).
    func startDistributed(_ distributed: DataParallel, train: DataLoader, validation: DataLoader?, epochs: Int) throws {
        train.shard = distributed.trainingShard
        validation?.shard = distributed.evaluationShard
        // Everything that decides how many collectives a rank makes, and of what size: ranks that differ
        // would pair unrelated collectives (gloo then aborts the process, or they train out of step).
        var shared = configuration
        shared.checkpointDirectory = nil  // rank > 0 checkpoints into a private folder
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let trainable = model.namedParameters().filter { $0.1.requiresGrad }
        try distributed.checkSameSettings([
            ("classes", train.dataset.classNames.joined(separator: ",")),
            ("architecture", modelName),
            ("batch size", String(train.batchSize)),
            ("sync-bn", String(distributed.syncBatchNorm)),
            ("data", DataParallel.fingerprint(train.dataset) + " / "
                + (validation.map { DataParallel.fingerprint($0.dataset) } ?? "no validation")),
            ("epochs (--epochs)", String(epochs)),
            ("gradient accumulation (--accumulate-steps)", String(configuration.accumulationSteps)),
            ("trainable parameters (--recipe, --freeze-until, --trainable-scopes)",
             trainable.map { "\($0.0):\($0.1.count)" }.joined(separator: ",")),
            ("resume position (epoch, step, batch)", "\(state.epoch)/\(state.globalStep)/\(state.batchInEpoch)"),
            ("other training settings (recipe, optimizer, schedule, techniques)",
             String(decoding: try encoder.encode(shared), as: UTF8.self)),
        ])
        try distributed.broadcastState(of: model)
        model.synchronizeBatchNorm(over: distributed.syncBatchNorm ? distributed.group : nil)
        state.worldSize = distributed.worldSize
    }

    /// Whether any rank received a stop signal (Ctrl-C, SIGTERM), agreed by all ranks after every batch
    /// so they stop after the same batch; without `distributed`, this process's own flag.
    func agreeOnSignalStop() throws -> Bool {
        let local = signalStop?.isTriggered == true
        guard let distributed else { return local }
        let any = try distributed.sum([local ? 1 : 0])[0] > 0
        if any && !local { signalStop?.trigger(signal: SIGTERM) }
        return any
    }
}

/// A data-parallel rank's evaluation batches, which every rank stops together at a stop signal
/// (Ctrl-C) on any of them. After each of its batches, and while its shard has ended but another
/// rank's has not, a rank sums with the others its stop flag and whether it has a batch: any flag
/// ends every rank's stream in that round (and triggers the ranks that had none), and the streams
/// end when no rank has a batch left. Evaluation shards differ by up to a batch, so a rank that
/// ran out keeps taking part in the rounds. Whether the ranks stopped is `stopped`, the same on
/// every rank (a signal that comes after the last round is not: the next training batch's agreement
/// takes it). Until 2026-12-07 the ranks validated to the end.
final class AgreedStopBatches: BatchStream {
    let base: any BatchStream
    let stop: SignalStop
    let distributed: DataParallel
    /// Whether the ranks agreed to stop.
    private(set) var stopped = false

    init(base: any BatchStream, stop: SignalStop, distributed: DataParallel) {
        self.base = base
        self.stop = stop
        self.distributed = distributed
    }

    func nextBatch() throws -> Batch? {
        guard !stopped else { return nil }
        let batch = stop.isTriggered ? nil : try base.nextBatch()
        while true {
            let sums = try distributed.sum([stop.isTriggered ? 1 : 0, batch == nil ? 0 : 1])
            if sums[0] > 0 {
                if !stop.isTriggered { stop.trigger(signal: SIGTERM) }
                stopped = true
                base.cancel()
                return nil
            }
            if batch != nil || sums[1] == 0 { return batch }
        }
    }

    func cancel() { base.cancel() }
}

extension Trainer {
    /// Runs `body` (one batch, or the end of an epoch); when a rank is lost during it, rank 0 writes a
    /// resumable checkpoints/last first, then the error goes on. With `restoring` (a training step,
    /// which may have failed between backward and the optimizer step), the checkpoint is the state,
    /// generator and model buffers from before `body` (its forward pass had updated BatchNorm's
    /// running statistics), whose parameters the failed step never changed; otherwise the state as
    /// it is. Under gradient accumulation no checkpoint is written (a failed all-reduce may have
    /// changed pending gradients): the last one saved stays.
    func savingOnLostRank<R>(restoring: Bool, _ body: () throws -> R) throws -> R {
        guard let distributed else { return try body() }
        let saves = distributed.rank == 0 && configuration.accumulationSteps == 1 && configuration.checkpointDirectory != nil
        let saved = restoring ? state : nil
        let savedSums = sumsOverRanks  // the sums that go with `saved` (the step's own may be done already)
        let generator = restoring ? try Runtime.cpuRNGState() : nil
        let buffers = restoring && saves ? try withNoGrad { try model.namedBuffers().map { ($0.0, try $0.1.clone()) } } : []
        do {
            return try body()
        } catch let error as DistributedError {
            guard saves, let directory = configuration.checkpointDirectory else { throw error }
            if let saved, let generator {
                state = saved
                sumsOverRanks = savedSums
                try Runtime.setCPURNGState(generator)
                try optimizer.zeroGrad()
                let current = Dictionary(model.namedBuffers(), uniquingKeysWith: { a, _ in a })
                try withNoGrad { for (name, before) in buffers { try current[name]?.copy_(before) } }
            }
            state.status = "interrupted"
            try saveCheckpoint(to: URL(fileURLWithPath: directory).appendingPathComponent("last").path)
            throw error
        }
    }
}

extension DataParallel {
    /// An epoch's training counts summed over all ranks.
    func summed(_ accumulator: EpochAccumulator) throws -> EpochAccumulator {
        let started = Date()
        let s = try sum([accumulator.lossSum, Double(accumulator.samples), Double(accumulator.correct),
                         Double(accumulator.batches)])
        metricSumSeconds += Date().timeIntervalSince(started)
        var total = accumulator
        total.lossSum = s[0]
        total.samples = Int(s[1])
        total.correct = Int(s[2])
        total.batches = Int(s[3])
        return total
    }
}
