import Foundation
import Prometheus

/// The server's Prometheus metrics (swift-prometheus), rendered by `GET /metrics`.
final class ServingMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let imagesDecoded: Counter
    private let decodeFailures: Counter

    init() {
        imagesDecoded = registry.makeCounter(name: "finetune_images_decoded_total",
                                             help: "Images decoded and preprocessed for prediction.")
        decodeFailures = registry.makeCounter(name: "finetune_decode_failures_total",
                                              help: "Images that could not be decoded (bad data, over --max-pixels).")
    }

    /// Counts a finished predict (or reload) request of `model` with its status, and its latency.
    func request(model: String, status: Int, seconds: Double) {
        registry.makeCounter(name: "finetune_requests_total", labels: [("model", model), ("status", String(status))],
                             help: "Prediction requests by model and HTTP status.").increment()
        registry.makeValueHistogram(name: "finetune_request_duration_seconds", labels: [("model", model)],
                                    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
                                    help: "Prediction request latency in seconds.").record(seconds)
    }

    /// Records one forward pass of `size` images and the images left waiting.
    func batch(model: String, size: Int, queueDepth: Int) {
        registry.makeValueHistogram(name: "finetune_batch_size", labels: [("model", model)],
                                    buckets: [1, 2, 4, 8, 16, 32, 64, 128], help: "Images per forward pass.")
            .record(Double(size))
        queue(model: model, depth: queueDepth)
    }

    /// Sets the number of images waiting for `model`'s inference loop.
    func queue(model: String, depth: Int) {
        registry.makeGauge(name: "finetune_queue_depth", labels: [("model", model)],
                           help: "Decoded images waiting for inference.").set(Double(depth))
    }

    func decoded() { imagesDecoded.increment() }
    func decodeFailed() { decodeFailures.increment() }

    /// The Prometheus text exposition.
    func render() -> String { registry.emitToString() }
}
