import Foundation
import Prometheus

/// The server's Prometheus metrics (swift-prometheus), rendered by `GET /metrics`. Every name is
/// `finetune_<metric>[_<unit>]`.
final class ServingMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let imagesDecoded: Counter
    private let decodeFailures: Counter
    private let imagesExpired: Counter

    private static let requests = descriptor("requests", unit: "total", help: "Prediction requests by model and HTTP status.")
    private static let requestDuration = descriptor("request_duration", unit: "seconds",
                                                    help: "Prediction request latency in seconds.")
    private static let batchSize = descriptor("batch_size", help: "Images per forward pass.")
    private static let queueDepth = descriptor("queue_depth", help: "Decoded images waiting for inference.")

    init() {
        imagesDecoded = registry.makeCounter(
            descriptor: Self.descriptor("images_decoded", unit: "total", help: "Images decoded and preprocessed for prediction."))
        decodeFailures = registry.makeCounter(
            descriptor: Self.descriptor("decode_failures", unit: "total",
                                        help: "Images that could not be decoded (bad data, over --max-pixels)."))
        imagesExpired = registry.makeCounter(
            descriptor: Self.descriptor("images_expired", unit: "total",
                                        help: "Images not decoded or not run because their request passed --request-timeout-ms first."))
    }

    /// `finetune_<name>_<unit>` (`_<unit>` left out when `unit` is empty), with its `# HELP` text.
    private static func descriptor(_ name: String, unit: String = "", help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "finetune", metricName: name, unitName: unit, helpText: help)
    }

    /// Counts a finished predict (or reload) request of `model` with its status, and its latency.
    func request(model: String, status: Int, seconds: Double) {
        registry.makeCounter(descriptor: Self.requests, labels: [("model", model), ("status", String(status))]).increment()
        registry.makeValueHistogram(descriptor: Self.requestDuration, labels: [("model", model)],
                                    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
            .record(seconds)
    }

    /// Records one forward pass of `size` images and the images left waiting.
    func batch(model: String, size: Int, queueDepth: Int) {
        registry.makeValueHistogram(descriptor: Self.batchSize, labels: [("model", model)],
                                    buckets: [1, 2, 4, 8, 16, 32, 64, 128])
            .record(Double(size))
        queue(model: model, depth: queueDepth)
    }

    /// Sets the number of images waiting for `model`'s inference loop.
    func queue(model: String, depth: Int) {
        registry.makeGauge(descriptor: Self.queueDepth, labels: [("model", model)]).set(Double(depth))
    }

    func decoded() { imagesDecoded.increment() }
    func decodeFailed() { decodeFailures.increment() }
    func expired(count: Int) { imagesExpired.increment(by: Int64(count)) }

    /// The Prometheus text exposition.
    func render() -> String { registry.emitToString() }
}
