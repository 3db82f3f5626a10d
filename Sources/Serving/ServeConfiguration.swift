import Data
import Foundation
import NN
import Torch
import Training

/// Everything `finetune serve` was asked for: the models, where to listen, the batching and the limits.
public struct ServeConfiguration: Sendable {
    /// Where a served model comes from.
    public enum ModelSource: Sendable, Equatable {
        /// A run directory written by `finetune train`, with its final weights or a checkpoint's (a
        /// reload then loads that checkpoint as it is now: the best epoch so far of a run that trains).
        case run(path: String, weights: RunWeights = .final)
        /// A zoo architecture with weights (a catalog tag or name, or a weights file; nil: random).
        case zoo(architecture: String, weights: String?)
    }

    /// A model to serve under `name` (the URL's `{name}`).
    public struct Model: Sendable, Equatable {
        /// The name in `/v1/models/{name}:predict`.
        public var name: String
        /// Where it is loaded from (and reloaded from).
        public var source: ModelSource

        /// A model named `name`.
        public init(name: String, source: ModelSource) {
            self.name = name
            self.source = source
        }
    }

    /// The models, in the order `/v1/models` lists them.
    public var models: [Model]
    /// The address to bind (127.0.0.1 unless asked otherwise).
    public var host = "127.0.0.1"
    /// The port (0: any free port, printed once listening).
    public var port = 8080
    /// The most images one forward pass takes.
    public var maxBatchSize = 16
    /// How long the inference loop waits for a batch to fill, in milliseconds.
    public var maxBatchDelayMilliseconds = 5.0
    /// The most decoded images waiting for inference, per model; more gets 503 with `Retry-After`.
    public var maxQueue = 256
    /// The largest request body; more gets 413, and the rest of the body is read and dropped before
    /// the connection closes (`LingeringClose`).
    public var maxBodyBytes = 20_000_000
    /// The largest image, in pixels (width × height), decoded (decompression-bomb guard).
    public var maxPixels = 40_000_000
    /// How long a predict request may take, in milliseconds, before 504.
    public var requestTimeoutMilliseconds = 30_000.0
    /// Images decoded and preprocessed at once, on worker threads.
    public var decodeWorkers = Runtime.coreCount
    /// When set, every route but `/healthz` requires `Authorization: Bearer <apiKey>`.
    public var apiKey: String?
    /// The `top_k` of a request that does not say.
    public var defaultTopK = 5
    /// The precision of the forward passes (`.auto` is resolved per model when it loads, as `predict` does).
    public var precision: Precision = .fp32
    /// How every model decodes JPEG EXIF orientation; nil: each run as it was trained (its `--exif`),
    /// and zoo models as `ImageCodec.exifOrientation` says.
    public var exif: EXIFOrientation?

    /// A configuration serving `models` with the defaults.
    public init(models: [Model]) {
        self.models = models
    }

    /// The longest `requestTimeoutMilliseconds`: a day (longer ones overflowed the timer and crashed
    /// the server at its first request).
    public static let longestRequestTimeoutMilliseconds = 86_400_000.0
    /// The largest `maxBatchSize` (the warm-up runs a full batch; 2⁶³ − 1 crashed the server, and the
    /// memory estimate at load refuses smaller ones that do not fit).
    public static let largestBatchSize = 65_536
    /// The longest `maxBatchDelayMilliseconds`: a minute.
    public static let longestBatchDelayMilliseconds = 60_000.0

    /// Checks the values, naming the flag of a bad one.
    public func validate() throws {
        func check(_ ok: Bool, _ message: String) throws { if !ok { throw ServingError.badConfiguration(message) } }
        try check(!models.isEmpty, "give at least one run directory (or --arch)")
        try check(Set(models.map(\.name)).count == models.count,
                  "two models are named the same (\(models.map(\.name).joined(separator: ", "))): use --name")
        for model in models {
            try check(!model.name.isEmpty && model.name.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) },
                      "model name '\(model.name)' must be letters, digits, '-', '_' or '.' (use --name)")
        }
        try check((0...65535).contains(port), "--port must be 0...65535")
        try check((1...Self.largestBatchSize).contains(maxBatchSize),
                  "--max-batch-size must be 1 to \(Self.largestBatchSize), got \(maxBatchSize)")
        try check((0...Self.longestBatchDelayMilliseconds).contains(maxBatchDelayMilliseconds),
                  "--max-batch-delay-ms must be 0 to \(Int(Self.longestBatchDelayMilliseconds)) (a minute), got \(maxBatchDelayMilliseconds)")
        try check(maxQueue >= 1, "--max-queue must be at least 1")
        try check(maxBodyBytes >= 1, "--max-body-bytes must be at least 1")
        try check(maxPixels >= 1, "--max-pixels must be at least 1")
        // 0 or less failed every request that gave no ?top_k with a 500.
        try check(defaultTopK >= 1, "the default top_k must be at least 1, got \(defaultTopK)")
        try check(requestTimeoutMilliseconds > 0 && requestTimeoutMilliseconds <= Self.longestRequestTimeoutMilliseconds,
                  "--request-timeout-ms must be positive and at most \(Int(Self.longestRequestTimeoutMilliseconds)) (a day), "
                  + "got \(requestTimeoutMilliseconds)")
        // Each worker holds a decoded image: 10⁶ passed here and was blamed on --max-batch-size at load.
        try check((1...Runtime.maxThreads).contains(decodeWorkers),
                  "--decode-workers must be 1 to \(Runtime.maxThreads) (4 × \(Runtime.coresDescription), at least 8), "
                  + "got \(decodeWorkers)")
        try check(apiKey.map { !$0.isEmpty } ?? true, "--api-key (or FINETUNE_API_KEY) must not be empty")
    }
}

/// Why a request or the server failed; each has its HTTP status and a message for `{"error": ...}`.
public enum ServingError: Error, CustomStringConvertible, Equatable {
    /// A flag or argument of `serve` is wrong.
    case badConfiguration(String)
    /// 400: the request is wrong (bad image, malformed multipart, empty body, bad query).
    case badRequest(String)
    /// 401: missing or wrong API key.
    case unauthorized
    /// 404: no such model.
    case unknownModel(String)
    /// 413: the body is over `--max-body-bytes`, or has more images than `--max-queue`.
    case tooLarge(String)
    /// 503: the queue is full (retry after the given seconds), or the model is not ready.
    case unavailable(String, retryAfterSeconds: Int)
    /// 504: the request took longer than `--request-timeout-ms`.
    case timeout(Double)
    /// 408: the request's body did not arrive within `--request-timeout-ms` (a stalled upload).
    case bodyTimeout(Double)
    /// 499 (nginx's "client closed request"): the client closed the connection before its body
    /// arrived; no one reads the answer, and the metrics count it as the client's doing, not a 500.
    case clientClosedRequest
    /// 500: inference failed.
    case internalError(String)
    /// 422: a reload could not load or warm up the model's files (the current version keeps serving).
    case reloadFailed(model: String, version: Int, reason: String)

    static func milliseconds(_ ms: Double) -> String { (ms == ms.rounded() ? "\(Int(ms))" : "\(ms)") + " ms" }

    /// The HTTP status code.
    public var status: Int {
        switch self {
        case .badConfiguration, .badRequest: return 400
        case .unauthorized: return 401
        case .unknownModel: return 404
        case .tooLarge: return 413
        case .unavailable: return 503
        case .timeout: return 504
        case .bodyTimeout: return 408
        case .clientClosedRequest: return 499
        case .internalError: return 500
        case .reloadFailed: return 422
        }
    }

    public var description: String {
        switch self {
        case .badConfiguration(let m), .badRequest(let m), .tooLarge(let m), .internalError(let m): return m
        case .unavailable(let m, _): return m
        case .unauthorized: return "missing or wrong API key: send the header 'Authorization: Bearer KEY'"
        case .unknownModel(let name): return "no model named '\(name)' (GET /v1/models lists them)"
        case .timeout(let ms):
            return "the request took longer than --request-timeout-ms (\(Self.milliseconds(ms)))"
        case .clientClosedRequest: return "the client closed the connection before its request's body arrived"
        case .bodyTimeout(let ms):
            return "the request's body did not arrive within --request-timeout-ms (\(Self.milliseconds(ms)))"
        case .reloadFailed(let model, let version, let reason):
            return "reloading \(model) failed; version \(version) keeps serving: \(reason)"
        }
    }
}
