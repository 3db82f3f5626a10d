import Data
import Foundation
import Torch
import Training

/// Decoding and preprocessing on worker threads (at most `workers` at once), off the server's event
/// loops and the inference threads.
final class DecodePool: @unchecked Sendable {
    private let queue = OperationQueue()
    private let maxPixels: Int
    private let metrics: ServingMetrics

    init(workers: Int, maxPixels: Int, metrics: ServingMetrics) {
        queue.maxConcurrentOperationCount = workers
        queue.name = "finetune-decode"
        self.maxPixels = maxPixels
        self.metrics = metrics
    }

    /// The model input of each part, decoded in parallel; a bad part is a 400 naming it. A part
    /// whose turn comes after `deadline` (uptime seconds, `InferenceLoop.now()`) is not decoded: its
    /// request fails with the 504 at once, and the workers go on to requests that can still be answered.
    func inputs(_ parts: [MultipartForm.Part], for version: ModelVersion, deadline: Double = .infinity,
                timeoutMilliseconds: Double = 0) async throws -> [Tensor] {
        try await withThrowingTaskGroup(of: (Int, Tensor).self) { group in
            for (i, part) in parts.enumerated() {
                group.addTask {
                    (i, try await self.input(part, for: version, deadline: deadline, timeoutMilliseconds: timeoutMilliseconds))
                }
            }
            var inputs = [Tensor?](repeating: nil, count: parts.count)
            for try await (i, tensor) in group { inputs[i] = tensor }
            return inputs.map { $0! }
        }
    }

    private func input(_ part: MultipartForm.Part, for version: ModelVersion, deadline: Double,
                       timeoutMilliseconds: Double) async throws -> Tensor {
        try await withCheckedThrowingContinuation { continuation in
            queue.addOperation { [self] in
                guard InferenceLoop.now() < deadline else {
                    metrics.expired(count: 1)
                    return continuation.resume(throwing: ServingError.timeout(timeoutMilliseconds))
                }
                continuation.resume(with: Result { try decode(part, for: version) })
            }
        }
    }

    private func decode(_ part: MultipartForm.Part, for version: ModelVersion) throws -> Tensor {
        do {
            guard !part.bytes.isEmpty else { throw ServingError.badRequest("'\(part.label)' is empty") }
            let info = try ImageCodec.probe(data: part.bytes, path: part.label)
            guard info.format.isDecodable else {
                throw ServingError.badRequest("'\(part.label)' is \(info.format), not a JPEG or PNG image")
            }
            try checkPixels(info.storedWidth, info.storedHeight, of: part)
            let tensor = try version.predictor.input(decoding: part.bytes, label: part.label)
            metrics.decoded()
            return tensor
        } catch let error as ServingError {
            metrics.decodeFailed()
            throw error
        } catch {
            metrics.decodeFailed()
            // An image over the decoders' own limit is over --max-pixels too: say so, not "cannot be decoded".
            if let size = ImageCodec.declaredSize(data: part.bytes) { try checkPixels(size.width, size.height, of: part) }
            throw ServingError.badRequest("'\(part.label)' cannot be decoded: \(error)")
        }
    }

    /// Throws the 400 for an image of `width` × `height` over --max-pixels.
    private func checkPixels(_ width: Int, _ height: Int, of part: MultipartForm.Part) throws {
        guard width.multipliedReportingOverflow(by: height).partialValue <= maxPixels, width <= maxPixels, height <= maxPixels else {
            throw ServingError.badRequest("'\(part.label)' is \(width)×\(height) pixels, over the --max-pixels limit of \(maxPixels)")
        }
    }
}
