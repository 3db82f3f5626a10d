import Foundation
import Torch
import Training

/// Collects the results of one request's images from the inference loop, or fails the request on
/// the first error or when an image expired in the queue (504); the caller bounds the wait (`FirstAnswer`).
final class Gather: @unchecked Sendable {
    private let lock = NSLock()
    private var results: [[RankedClass]?]
    private var remaining: Int
    private var continuation: CheckedContinuation<[[RankedClass]], Error>?
    private let timeoutMilliseconds: Double

    private init(count: Int, timeoutMilliseconds: Double) {
        results = Array(repeating: nil, count: count)
        remaining = count
        self.timeoutMilliseconds = timeoutMilliseconds
    }

    /// Queues `inputs` on `loop` and waits for their top-`k` classes; images still queued at
    /// `deadline` (uptime seconds, `InferenceLoop.now()`) are not run, and fail the request.
    static func results(of inputs: [Tensor], k: Int, version: ModelVersion, loop: InferenceLoop,
                        deadline: Double, timeoutMilliseconds: Double) async throws -> [[RankedClass]] {
        let gather = Gather(count: inputs.count, timeoutMilliseconds: timeoutMilliseconds)
        return try await withCheckedThrowingContinuation { continuation in
            gather.continuation = continuation
            let jobs = inputs.enumerated().map { i, input in
                InferenceLoop.Job(input: input, k: k, version: version, expires: deadline) { gather.complete(i, $0) }
            }
            do { try loop.submit(jobs) } catch { gather.finish(.failure(error)) }
        }
    }

    private func complete(_ i: Int, _ result: Result<[RankedClass], Error>) {
        switch result {
        case .failure(is InferenceLoop.Expired): finish(.failure(ServingError.timeout(timeoutMilliseconds)))
        case .failure(let error): finish(.failure(ServingError.internalError("inference failed: \(error)")))
        case .success(let ranked):
            lock.lock()
            results[i] = ranked
            remaining -= 1
            let done = remaining == 0
            lock.unlock()
            if done { finish(.success(results.map { $0! })) }
        }
    }

    private func finish(_ result: Result<[[RankedClass]], Error>) {
        lock.lock()
        let continuation = self.continuation
        self.continuation = nil
        lock.unlock()
        continuation?.resume(with: result)
    }
}

/// The result of an operation, or an error at a deadline if it has not finished by then, whichever
/// comes first; the operation then goes on unawaited (a decode in progress cannot be stopped) and its
/// result is dropped.
final class FirstAnswer<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, Error>?

    private init() {}

    /// `operation`'s result, or `timeoutError` once `deadline` (uptime seconds, `InferenceLoop.now()`) has passed.
    static func of(by deadline: Double, else timeoutError: Error,
                   _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
        let answer = FirstAnswer()
        var timer: Task<Void, Never>?
        defer { timer?.cancel() }
        return try await withCheckedThrowingContinuation { continuation in
            answer.continuation = continuation
            Task {
                do { answer.finish(.success(try await operation())) } catch { answer.finish(.failure(error)) }
            }
            timer = Task {
                try? await Task.sleep(nanoseconds: UInt64(max(0, deadline - InferenceLoop.now()) * 1e9))
                if !Task.isCancelled { answer.finish(.failure(timeoutError)) }
            }
        }
    }

    private func finish(_ result: Result<T, Error>) {
        lock.lock()
        let continuation = self.continuation
        self.continuation = nil
        lock.unlock()
        continuation?.resume(with: result)
    }
}
