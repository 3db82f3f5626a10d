import Foundation
import Torch
import Training

/// One loaded version of a served model: a reload makes a new one, and each queued image keeps the
/// version it was preprocessed for, so a batch never mixes two.
final class ModelVersion: @unchecked Sendable {
    let predictor: Predictor
    let loadedAt: Date
    let number: Int

    init(predictor: Predictor, number: Int) {
        self.predictor = predictor
        self.loadedAt = Date()
        self.number = number
    }
}

/// The dynamic batcher of one model: a bounded queue of preprocessed images and one dedicated
/// inference thread that runs them in batches of up to `maxBatchSize`, waiting at most `maxDelay`
/// after the oldest image arrived for a batch to fill. Results do not depend on the batch: each image
/// gets its own rows of the output.
final class InferenceLoop: @unchecked Sendable {
    /// One image waiting for inference; `done` is called once, on the inference thread. A job still
    /// waiting at `expires` (uptime seconds, `now()`) is not run: its request has had its 504, and
    /// the forward pass would only delay the images behind it. Its `done` gets `Expired`.
    struct Job {
        let input: Tensor
        let k: Int
        let version: ModelVersion
        var expires = Double.infinity
        let done: @Sendable (Result<[RankedClass], Error>) -> Void
    }

    /// The failure of a job taken from the queue after it expired.
    struct Expired: Error {}

    private let condition = NSCondition()
    private var pending: [Job] = []
    private var oldestArrival: [Double] = []  // seconds (uptime) per pending job
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private let maxBatchSize: Int
    private let maxDelay: Double
    private let maxQueue: Int
    private let onBatch: @Sendable (_ size: Int, _ queueDepth: Int) -> Void
    private let onQueued: @Sendable (_ queueDepth: Int) -> Void
    private let onExpired: @Sendable (_ count: Int) -> Void

    /// `onBatch` hears of each forward pass and the images left waiting, `onQueued` of the images
    /// waiting after each submission (the queue-depth gauge showed 0 while images waited), and
    /// `onExpired` of the images dropped because their request ran out of time.
    init(maxBatchSize: Int, maxDelaySeconds: Double, maxQueue: Int,
         onBatch: @escaping @Sendable (_ size: Int, _ queueDepth: Int) -> Void,
         onQueued: @escaping @Sendable (_ queueDepth: Int) -> Void = { _ in },
         onExpired: @escaping @Sendable (_ count: Int) -> Void = { _ in }) {
        self.maxBatchSize = maxBatchSize
        self.maxDelay = maxDelaySeconds
        self.maxQueue = maxQueue
        self.onBatch = onBatch
        self.onQueued = onQueued
        self.onExpired = onExpired
    }

    /// Starts the inference thread.
    func start(name: String) {
        let thread = Thread { [self] in loop() }
        thread.name = "finetune-inference-\(name)"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// The images waiting now.
    var depth: Int { condition.lock(); defer { condition.unlock() }; return pending.count }

    /// Queues all `jobs` or none: throws 503 when they do not fit in `maxQueue`. Jobs whose request
    /// has expired leave the queue first: they held its places until a batch was taken (probe AH: 503
    /// "queue is full" for images whose requests had all had their 504).
    func submit(_ jobs: [Job]) throws {
        condition.lock()
        guard !stopping else {
            condition.unlock()
            throw ServingError.unavailable("the server is shutting down", retryAfterSeconds: 1)
        }
        let expired = removeExpired(now: Self.now())
        defer { finish(expired) }
        guard pending.count + jobs.count <= maxQueue else {
            let waiting = pending.count
            condition.unlock()
            onQueued(waiting)
            throw ServingError.unavailable("the queue is full (\(waiting) of --max-queue \(maxQueue) images waiting)",
                                           retryAfterSeconds: 1)
        }
        let now = Self.now()
        pending += jobs
        oldestArrival += Array(repeating: now, count: jobs.count)
        let depth = pending.count
        condition.broadcast()
        condition.unlock()
        onQueued(depth)
    }

    /// Lets the thread finish what is queued, and waits for it to end.
    func stop() {
        condition.lock()
        let started = thread != nil && !stopping
        stopping = true
        condition.broadcast()
        condition.unlock()
        if started { finished.wait() }
    }

    /// Takes the jobs that expired by `now` out of the queue (the lock held).
    private func removeExpired(now: Double) -> [Job] {
        guard pending.contains(where: { $0.expires <= now }) else { return [] }
        let expired = pending.filter { $0.expires <= now }
        let live = pending.indices.filter { pending[$0].expires > now }
        pending = live.map { pending[$0] }
        oldestArrival = live.map { oldestArrival[$0] }
        return expired
    }

    /// Ends jobs taken out as expired (the lock released).
    private func finish(_ expired: [Job]) {
        guard !expired.isEmpty else { return }
        onExpired(expired.count)
        for job in expired { job.done(.failure(Expired())) }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopping { condition.wait() }
            if pending.isEmpty && stopping { condition.unlock(); finished.signal(); return }
            let deadline = oldestArrival[0] + maxDelay
            while pending.count < maxBatchSize && !stopping {
                let left = deadline - Self.now()
                if left <= 0 { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: left))
            }
            // Jobs whose request has timed out leave the queue unrun, so the batch is of live ones.
            let expired = removeExpired(now: Self.now())
            guard !pending.isEmpty else {
                condition.unlock()
                finish(expired)
                onQueued(0)
                continue
            }
            // The first jobs, up to the batch size, of the same model version.
            let version = pending[0].version
            var n = 0
            while n < min(maxBatchSize, pending.count) && pending[n].version === version { n += 1 }
            let batch = Array(pending[..<n])
            pending.removeFirst(n)
            oldestArrival.removeFirst(n)
            let depth = pending.count
            condition.unlock()

            finish(expired)
            onBatch(n, depth)
            let result = Result { try version.predictor.predict(batch.map(\.input), k: batch.map(\.k)) }
            for (i, job) in batch.enumerated() {
                job.done(result.map { $0[i] })
            }
        }
    }
}
