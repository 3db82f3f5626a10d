import Foundation

/// One pass over a `DataLoader`'s batches. Use `nextBatch()` (throws on strict-mode bad files and
/// transform errors) or `for batch in epoch` (stops at the first error, kept in `error`).
/// Dropping the epoch, breaking out of the loop or calling `cancel()` stops and joins its threads.
public final class DataLoaderEpoch: Sequence, IteratorProtocol {
    let run: EpochRun
    /// The epoch's number, as passed to `DataLoader.epoch(_:)` (it seeds the order and augmentations).
    public var number: Int { run.epoch }
    /// The error that ended a `for … in` loop early.
    public private(set) var error: Error?

    init(run: EpochRun) { self.run = run }

    deinit { run.cancel() }

    /// The next batch, or nil at the end of the epoch.
    public func nextBatch() throws -> Batch? { try run.next() }

    /// `IteratorProtocol`: the next batch, or nil at the end or after an error (then kept in `error`).
    public func next() -> Batch? {
        guard error == nil else { return nil }
        do { return try run.next() } catch {
            self.error = error
            return nil
        }
    }

    /// Stops the worker threads and waits for them; later calls return nil.
    public func cancel() { run.cancel() }

    /// Files skipped in the batches delivered so far.
    public var skipped: SkippedFiles { run.withLock { run.skipped } }

    /// The most batches in memory at once in this epoch (at most the loader's `prefetch`).
    public var peakBatchesInMemory: Int { run.withLock { run.peak } }

    /// Worker threads still running (0 once the epoch has ended or been cancelled).
    public var liveWorkers: Int { run.withLock { run.liveWorkers } }
}

/// The shared state of one epoch: a work cursor over (batch, slot) pairs handed to worker threads,
/// partially built batches, finished batches waiting for the consumer, and the prefetch bound.
final class EpochRun: @unchecked Sendable {
    let loader: DataLoader
    let epoch: Int
    let plan: [[DataLoader.PlanItem]]
    private let condition = NSCondition()

    // Guarded by `condition`.
    private var started = false
    private var finished = false
    private var cancelled = false
    private var cursorBatch = 0
    private var cursorSlot = 0
    private var building: [Int: [DataLoader.SampleOutcome?]] = [:]
    /// Fast-path batch tensors of the batches being built.
    private var buffers: [Int: DataLoader.BatchBuffer] = [:]
    private var remaining: [Int: Int] = [:]
    private var ready: [Int: DataLoader.BatchOutcome] = [:]
    private var consumed = 0
    /// After a failure in batch b no batch after b is started.
    private var stopAfter = Int.max
    fileprivate(set) var liveWorkers = 0
    fileprivate(set) var peak = 0
    fileprivate(set) var skipped = SkippedFiles()

    init(loader: DataLoader, epoch: Int, startingAtBatch first: Int = 0) {
        self.loader = loader
        self.epoch = epoch
        self.plan = loader.plan(epoch: epoch)
        // Batches before `first` are neither decoded nor returned; the rest are exactly the batches
        // a full run yields (sample randomness depends only on seed, epoch and index).
        consumed = min(max(0, first), plan.count)
        cursorBatch = consumed
    }

    func withLock<T>(_ body: () -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body()
    }

    func next() throws -> Batch? {
        if loader.workers == 0 { return try nextSynchronously() }
        condition.lock()
        if !started && !finished {
            started = true
            let threads = min(loader.workers, plan.reduce(0) { $0 + $1.count })
            liveWorkers = threads
            for i in 0..<threads {
                let thread = Thread { [self] in self.work() }
                thread.name = "finetune.loader.\(epoch).\(i)"
                thread.stackSize = 8 << 20
                thread.start()
            }
        }
        while true {
            if finished || cancelled || consumed >= plan.count {
                condition.unlock()
                finish()
                return nil
            }
            if let outcome = ready.removeValue(forKey: consumed) {
                consumed += 1
                condition.broadcast()
                switch outcome {
                case .batch(let batch, let s):
                    skipped.merge(s)
                    condition.unlock()
                    loader.record(skipped: s, peak: peak)
                    return batch
                case .empty(let s):
                    skipped.merge(s)
                    loader.record(skipped: s, peak: peak)
                    continue
                case .failure(let error):
                    condition.unlock()
                    finish()
                    throw error
                }
            }
            condition.wait()
        }
    }

    /// `workers == 0`: build each batch on the calling thread.
    private func nextSynchronously() throws -> Batch? {
        while true {
            let number: Int? = withLock {
                guard !finished && !cancelled && consumed < plan.count else { return nil }
                consumed += 1
                peak = max(peak, 1)
                return consumed - 1
            }
            guard let number else {
                finish()
                return nil
            }
            let items = plan[number]
            let buffer = loader.makeBuffer(count: items.count)
            var outcomes: [DataLoader.SampleOutcome] = []
            for (slot, item) in items.enumerated() {
                let outcome = loader.process(item, epoch: epoch, buffer: buffer, slot: slot)
                outcomes.append(outcome)
                if case .failed = outcome { break }
            }
            switch loader.assemble(number, Array(items.prefix(outcomes.count)), outcomes, buffer: buffer) {
            case .batch(let batch, let s):
                withLock { skipped.merge(s) }
                loader.record(skipped: s, peak: 1)
                return batch
            case .empty(let s):
                withLock { skipped.merge(s) }
                loader.record(skipped: s, peak: 1)
            case .failure(let error):
                finish()
                throw error
            }
        }
    }

    /// Marks the epoch done and joins the workers.
    private func finish() {
        condition.lock()
        finished = true
        cancelled = true
        condition.broadcast()
        while liveWorkers > 0 { condition.wait() }
        ready.removeAll()
        building.removeAll()
        buffers.removeAll()
        let p = peak
        condition.unlock()
        loader.record(skipped: SkippedFiles(), peak: p)
    }

    func cancel() { finish() }

    /// A worker thread: take the next (batch, slot), process it, and assemble the batch when its
    /// last sample is done. Opening a new batch waits while `prefetch` batches are in memory.
    private func work() {
        while true {
            condition.lock()
            var job: (batch: Int, slot: Int)?
            var buffer: DataLoader.BatchBuffer?
            while !cancelled && cursorBatch < plan.count && cursorBatch <= stopAfter {
                if cursorSlot == 0 && cursorBatch - consumed >= loader.prefetch {
                    condition.wait()
                    continue
                }
                job = (cursorBatch, cursorSlot)
                if cursorSlot == 0 {
                    building[cursorBatch] = Array(repeating: nil, count: plan[cursorBatch].count)
                    remaining[cursorBatch] = plan[cursorBatch].count
                    buffers[cursorBatch] = loader.makeBuffer(count: plan[cursorBatch].count)
                    peak = max(peak, cursorBatch + 1 - consumed)
                }
                buffer = buffers[cursorBatch]
                cursorSlot += 1
                if cursorSlot == plan[cursorBatch].count {
                    cursorBatch += 1
                    cursorSlot = 0
                }
                break
            }
            guard let job else {
                liveWorkers -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            condition.unlock()

            let outcome = loader.process(plan[job.batch][job.slot], epoch: epoch, buffer: buffer, slot: job.slot)

            condition.lock()
            guard !cancelled, building[job.batch] != nil else {
                condition.unlock()
                continue
            }
            building[job.batch]![job.slot] = outcome
            remaining[job.batch]! -= 1
            if case .failed = outcome { stopAfter = min(stopAfter, job.batch) }
            var complete: [DataLoader.SampleOutcome]?
            if remaining[job.batch] == 0 {
                complete = building.removeValue(forKey: job.batch)!.map { $0! }
                remaining[job.batch] = nil
                buffers[job.batch] = nil
            }
            condition.unlock()

            if let complete {
                let result = loader.assemble(job.batch, plan[job.batch], complete, buffer: buffer)
                condition.lock()
                if !cancelled { ready[job.batch] = result }
                condition.broadcast()
                condition.unlock()
            }
        }
    }
}
