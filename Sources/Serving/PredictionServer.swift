import Foundation
import HTTPTypes
import Hummingbird
import ImagePreprocessing
import Logging
import NIOCore
import NIOPosix
import NIOHTTP1
import Torch
import Training

/// `finetune serve`: the models of a `ServeConfiguration` behind an HTTP API on Hummingbird 2.
///
/// Routes: `POST /v1/models/{name}:predict` (a raw JPEG/PNG body, or `multipart/form-data` with one or
/// more images; query `top_k`), `POST /v1/models/{name}:reload`, `GET /v1/models`, `GET /healthz`,
/// `GET /readyz`, `GET /metrics` (Prometheus text) and `GET /` (a page to try a photo). Errors are JSON
/// `{"error": "..."}`. Each request is logged as one line: method, path, status, milliseconds, images.
public final class PredictionServer: @unchecked Sendable {
    let configuration: ServeConfiguration
    let models: [String: ServedModel]
    let order: [String]
    let metrics = ServingMetrics()
    let decoder: DecodePool
    let log: @Sendable (String) -> Void
    let warmUp = WarmUpThread()

    /// Loads every model (errors name the run directory or weights); `run()` then serves them.
    /// `log` receives the per-request lines and server messages.
    public init(configuration: ServeConfiguration, log: @escaping @Sendable (String) -> Void) throws {
        try configuration.validate()
        self.configuration = configuration
        self.log = log
        var models: [String: ServedModel] = [:]
        for model in configuration.models {
            models[model.name] = try ServedModel(model, configuration: configuration, metrics: metrics)
        }
        self.models = models
        order = configuration.models.map(\.name)
        decoder = DecodePool(workers: configuration.decodeWorkers, maxPixels: configuration.maxPixels, metrics: metrics)
    }

    /// Whether every model has warmed up.
    public var ready: Bool { models.values.allSatisfy(\.ready) }

    /// Serves until SIGTERM, SIGINT or a notice signal (`shutdownSignals`), then stops accepting, answers the
    /// requests in flight, lets the inference loops finish and returns. `onListening` gets the bound
    /// address (with the real port when the configuration asked for port 0); the models warm up after
    /// that, and `/readyz` says when they have. The process's soft open-file limit is raised to its hard limit first, and a
    /// limit that leaves no descriptor for a connection is an error (`checkOpenFileLimit`).
    public func run(onListening: @escaping @Sendable (_ host: String, _ port: Int) -> Void) async throws {
        try checkOpenFileLimit()
        var logger = Logger(label: "finetune.serve")
        logger.logLevel = .error
        let app = Application(
            router: makeRouter(),
            // Idle connections (also one that sends nothing, or half a request) close a second after the
            // request timeout (a stalled body gets its 408 first): kept open for good, enough of them
            // used up the descriptors.
            server: .http1(configuration: .init(idleTimeout: .milliseconds(Int64(configuration.requestTimeoutMilliseconds) + 1000))),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "finetune"),
            onServerRunning: { [self] channel in
                onListening(configuration.host, channel.localAddress?.port ?? configuration.port)
                warmUp.begin()
                Thread.detachNewThread { [self] in
                    defer { warmUp.end() }
                    for name in order where !warmUp.isCancelled {
                        do { try models[name]!.start() } catch {
                            log("model \(name) failed to warm up: \(error)")
                        }
                    }
                    if ready { log("ready: \(order.joined(separator: ", "))") }
                }
            },
            logger: logger)
        // A stop during the warm-up waits for the model warming up (and starts no other): returning
        // under its forward pass let the process exit while oneDNN ran it (SIGSEGV, status 139).
        defer {
            warmUp.cancelAndWait()
            for model in models.values { model.loop.stop() }
        }
        do {
            try await app.runService(gracefulShutdownSignals: Self.shutdownSignals.map { number in
                switch number {
                case SIGINT: .sigint
                case SIGHUP: .sighup
                case SIGUSR1: .sigusr1
                case SIGUSR2: .sigusr2
                default: .sigterm
                }
            })
        } catch let error as IOError where [EADDRINUSE, EADDRNOTAVAIL, EACCES].contains(error.errnoCode) {
            let address = "\(configuration.host):\(configuration.port)"
            throw ServingError.badConfiguration(error.errnoCode == EADDRINUSE
                ? "--port \(configuration.port): \(address) is already in use; choose another port (0: any free one)"
                : error.errnoCode == EACCES
                    ? "--port \(configuration.port): not allowed to listen on \(address) (ports below 1024 need privileges)"
                    : "--host \(configuration.host): \(address) is not an address of this machine")
        } catch let error as SocketAddressError.UnknownHost {
            // NIO's own words named neither the flag nor what to do (probe AG).
            throw ServingError.badConfiguration("--host \(configuration.host): no address of that name (\(error.errorDescription)); "
                                                + "give an address of this machine or a name that resolves to one")
        }
    }

    func makeRouter() -> Router<ServeRequestContext> {
        // HEAD on every GET route, as GET without the body (RFC 9110 §9.3.2): uptime monitors and load
        // balancers check health with HEAD, which got 404 "no route" (probe AG).
        let router = Router(context: ServeRequestContext.self, options: .autoGenerateHeadEndpoints)
        router.add(middleware: RequestLogMiddleware(log: log))
        let routes = RouteMethods()
        router.add(middleware: JSONErrorMiddleware(
            lingeringLimit: .milliseconds(Int64(configuration.requestTimeoutMilliseconds)), routes: routes))
        if let key = configuration.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: IndexPage.html)))
        }
        router.get("/healthz") { _, _ in Self.json(["status": "ok"]) }
        router.get("/readyz") { [self] _, _ in
            let waiting = order.filter { !models[$0]!.ready }
            guard waiting.isEmpty else {
                throw ServingError.unavailable("not ready: warming up \(waiting.joined(separator: ", "))", retryAfterSeconds: 1)
            }
            return Self.json(["status": "ready"])
        }
        router.get("/metrics") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        router.get("/v1/models") { [self] _, _ in
            Self.json(ModelList(models: order.map { ModelInfo(models[$0]!) }))
        }
        router.post("/v1/models/{name}:predict") { [self] request, context in
            try await predict(request, name: Self.modelName(context), channel: context.channel)
        }
        router.post("/v1/models/{name}:reload") { [self] _, context in
            let name = Self.modelName(context)
            guard let model = models[name] else { throw ServingError.unknownModel(name) }
            // On a thread of its own: loading and warming up take seconds, and reloads of one model
            // wait for each other, which would hold the threads that answer requests.
            let version: ModelVersion
            do {
                version = try await withCheckedThrowingContinuation { continuation in
                    Thread.detachNewThread { continuation.resume(with: Result { try model.reload() }) }
                }
            } catch {
                log("\(error)")
                throw error
            }
            log("reloaded \(name): version \(version.number)")
            return Self.json(ModelInfo(model, version: version))
        }
        routes.record(router)
        return router
    }

    /// The `{name}` of a model route, percent-decoded: the router leaves it as the URL spells it, so a
    /// name with a letter outside ASCII ("é", sent as %C3%A9) was never found.
    static func modelName(_ context: ServeRequestContext) -> String {
        let raw = context.parameters.get("name") ?? ""
        return raw.removingPercentEncoding ?? raw
    }

    /// The `model` label of requests for a model that is not served.
    static let unknownModelLabel = "(unknown)"

    /// `POST /v1/models/{name}:predict`, counted in `finetune_requests_total` by model and status.
    func predict(_ request: Request, name: String, channel: (any Channel)? = nil) async throws -> Response {
        let start = InferenceLoop.now()
        // Parentheses are outside the names a model may have: a model named "unknown" shared the label.
        let label = models[name] == nil ? Self.unknownModelLabel : name
        do {
            let response = try await predictUncounted(request, name: name, start: start, channel: channel)
            metrics.request(model: label, status: Int(response.status.code), seconds: InferenceLoop.now() - start)
            return response
        } catch {
            metrics.request(model: label, status: JSONErrorMiddleware.status(of: error), seconds: InferenceLoop.now() - start)
            throw error
        }
    }

    private func predictUncounted(_ request: Request, name: String, start: Double,
                                  channel: (any Channel)?) async throws -> Response {
        guard let model = models[name] else { throw ServingError.unknownModel(name) }
        guard model.ready else { throw ServingError.unavailable("model \(name) is warming up", retryAfterSeconds: 1) }
        var k = configuration.defaultTopK
        if let text = request.uri.queryParameters.get("top_k") {
            guard let value = Int(text), value >= 1 else { throw ServingError.badRequest("top_k must be a whole number ≥ 1, not '\(text)'") }
            k = value
        }
        let parts = try await receivingWithin(configuration.requestTimeoutMilliseconds / 1000, channel: channel) {
            try await self.parts(of: request, channel: channel)
        }
        let version = model.version
        let deadline = start + configuration.requestTimeoutMilliseconds / 1000
        let milliseconds = configuration.requestTimeoutMilliseconds
        // The 504 comes at the deadline, also while an image is being decoded (an 8000 × 8000 JPEG took
        // 2 s, and a 0.3 s timeout answered then, probe AH); what is still under way ends unawaited.
        let results = try await FirstAnswer.of(by: deadline, else: ServingError.timeout(milliseconds)) { [decoder, loop = model.loop, k] in
            let inputs = try await decoder.inputs(parts, for: version, deadline: deadline, timeoutMilliseconds: milliseconds)
            return try await Gather.results(of: inputs, k: k, version: version, loop: loop, deadline: deadline,
                                            timeoutMilliseconds: milliseconds)
        }
        let answer = PredictAnswer(model: name, version: version.number,
                                   predictions: zip(parts, results).map { .init(part: $0.label, topK: $1) })
        var response = Self.json(answer)
        response.headers[imagesHeader] = String(parts.count)
        return response
    }

    /// Answers `Expect: 100-continue` (RFC 9110 §10.1.1) with `100 Continue`, which Hummingbird does
    /// not send: curl asks for it before a body over 1 MB and waited a second for it on every such
    /// upload, an ordinary phone photo (probe W). A body over `--max-body-bytes` gets its 413 instead.
    /// Written below the HTTP encoder, straight to the connection, ahead of the response.
    static func sendContinue(on channel: any Channel) async throws {
        let bytes = ByteBuffer(string: "HTTP/1.1 100 Continue\r\n\r\n")
        try await channel.eventLoop.flatSubmit {
            channel.pipeline.context(handlerType: HTTPResponseEncoder.self).flatMap { encoder in
                encoder.writeAndFlush(NIOAny(bytes))
            }
        }.get()
    }

    /// `receive`'s result (the request's body), or `ServingError.bodyTimeout` when the body has not
    /// arrived within `seconds`: a client that stalls its upload holds no request open beyond
    /// `--request-timeout-ms`. On a timeout the connection's input is closed, which ends the read.
    func receivingWithin<T: Sendable>(_ seconds: Double, channel: (any Channel)?,
                                      _ receive: @escaping @Sendable () async throws -> T) async throws -> T {
        let milliseconds = configuration.requestTimeoutMilliseconds
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await receive() }
            group.addTask {
                try await Task.sleep(nanoseconds: UInt64(max(0, seconds) * 1e9))
                channel?.close(mode: .input, promise: nil)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let value = first else { throw ServingError.bodyTimeout(milliseconds) }
            return value
        }
    }

    /// Each connection holds a descriptor. The soft open-file limit is raised to the hard one; then the
    /// event loops are made (their descriptors count) and what is left is checked: none left is an
    /// error naming `ulimit -n`, fewer than `fewDescriptors` a warning. With `ulimit -n 16` the server
    /// said it was listening and ready, and every client waited for an answer that never came
    /// (accepting failed with EMFILE, silently).
    func checkOpenFileLimit() throws {
        guard let limit = ProcessResources.raiseOpenFileLimit() else { return }
        _ = MultiThreadedEventLoopGroup.singleton.next()  // the event loops Hummingbird runs on
        guard let open = ProcessResources.openDescriptorCount() else { return }
        let left = limit.soft - open - Self.descriptorsOfRunning
        let advice = "raise it (ulimit -n 4096\(limit.hard < 4096 ? ", which needs a hard limit of at least 4096" : ""))"
        if left < 1 {
            throw ServingError.badConfiguration("the open-file limit (ulimit -n) is \(limit.soft) and \(open) descriptors "
                + "are in use before listening: no connection could be accepted; " + advice)
        }
        if left < Self.fewDescriptors {
            log("warning: the open-file limit (ulimit -n) is \(limit.soft) and \(open) descriptors are in use: at most "
                + "\(left) connection\(left == 1 ? "" : "s") can be open at once; " + advice)
        }
    }

    /// Fewer descriptors left than this for connections is warned about.
    static let fewDescriptors = 64

    /// The signals that start the graceful shutdown: SIGTERM and SIGINT, and the notice signals a run
    /// stops on too (SIGHUP: the terminal closed; SIGUSR1 and SIGUSR2: a batch scheduler's warning),
    /// unless ignored (`nohup`) or caught by the application embedding the server. A hang-up ended the
    /// server at once until 2026-12-07, and SIGUSR1 and SIGUSR2 until stop 51, dropping the requests in
    /// flight. (SIGXCPU, the CPU-time limit, is not among the signals the service lifecycle reads.)
    public static let shutdownSignals: [Int32] = [SIGTERM, SIGINT]
        + [SIGHUP, SIGUSR1, SIGUSR2].filter { !SignalStop.isHandledElsewhere($0) }

    /// Descriptors the server opens after `checkOpenFileLimit`: the listening socket and a signal source
    /// per shutdown signal (`/proc/PID/fd` of a running server).
    static var descriptorsOfRunning: Int { 1 + shutdownSignals.count }

    /// The images of a request: the body itself, or the parts of a multipart body.
    func parts(of request: Request, channel: (any Channel)? = nil) async throws -> [MultipartForm.Part] {
        let limit = configuration.maxBodyBytes
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw ServingError.tooLarge("the body is \(length) bytes, over --max-body-bytes \(limit)")
        }
        if let channel, request.headers[.expect]?.lowercased() == "100-continue" {
            try await Self.sendContinue(on: channel)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limit)
        } catch let error as HTTPResponseError where error.status == .contentTooLarge {
            throw ServingError.tooLarge("the body is over --max-body-bytes \(limit)")
        } catch HTTPParserError.invalidEOFState {
            throw ServingError.clientClosedRequest  // counted as the client's doing, not a server error
        } catch let error as HTTPParserError {
            throw ServingError.badRequest("the body could not be read: \(error)")
        }
        let body = Array(buffer.readableBytesView)
        guard !body.isEmpty else { throw ServingError.badRequest("the body is empty: send an image, or multipart/form-data with images") }
        guard let boundary = try MultipartForm.boundary(contentType: request.headers[.contentType] ?? "") else {
            return [MultipartForm.Part(label: "body", bytes: body[...])]
        }
        do {
            return try MultipartForm.parse(body, boundary: boundary, maxParts: configuration.maxQueue)
        } catch let error as MultipartForm.TooManyParts {
            throw ServingError.tooLarge("more than \(error.limit) images in one request, over --max-queue \(error.limit)")
        }
    }

    /// A JSON response (snake_case keys, sorted).
    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
        let data = (try? encoder.encode(value)) ?? Foundation.Data(#"{"error":"cannot encode the answer"}"#.utf8)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        return encoder
    }()
}

/// The answer of a predict request: one entry per image, in the order sent.
struct PredictAnswer: Encodable {
    struct Prediction: Encodable {
        var part: String
        var topK: [RankedClass]
    }
    var model: String
    var version: Int
    var predictions: [Prediction]
}

/// The thread that warms the models up after the server starts listening: `run()` cancels it and
/// waits for it to end before it returns.
final class WarmUpThread: @unchecked Sendable {
    private let condition = NSCondition()
    private var running = false
    private var cancelled = false

    /// Called before the thread starts.
    func begin() {
        condition.lock()
        running = true
        condition.unlock()
    }

    /// Called by the thread as it ends.
    func end() {
        condition.lock()
        running = false
        condition.broadcast()
        condition.unlock()
    }

    /// Whether the server is stopping (the thread warms no further model up).
    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// Asks the thread to stop after the model it warms up, and waits until it has ended.
    func cancelAndWait() {
        condition.lock()
        cancelled = true
        while running { condition.wait() }
        condition.unlock()
    }
}

/// `GET /v1/models`.
struct ModelList: Encodable { var models: [ModelInfo] }

/// One model of `GET /v1/models`.
struct ModelInfo: Encodable {
    var name: String
    var architecture: String
    var classes: [String]
    var preprocessing: Preprocessing
    var source: String
    var version: Int
    var loadedAt: String
    var ready: Bool
    /// `fp32` or `bf16`: what `--precision` (`auto` decided for this model on this CPU) runs.
    var precision: String

    /// `model`'s entry, for `version` (nil: the one it serves now).
    init(_ model: ServedModel, version: ModelVersion? = nil) {
        let version = version ?? model.version
        name = model.name
        architecture = version.predictor.architecture
        classes = version.predictor.classNames
        preprocessing = version.predictor.preprocessing
        switch model.source {
        case .run(let path, let weights):
            // The checkpoint as it was when this version loaded (a reload takes the newer one).
            let checkpoint = version.predictor.weights ?? weights.rawValue
            source = RunDirectory(path).path + (weights == .final ? "" : " (\(checkpoint))")
        case .zoo(let architecture, let weights): source = "zoo:\(architecture):\(weights ?? "none")"
        }
        self.version = version.number
        loadedAt = RunDirectory.timestamp(version.loadedAt)
        ready = model.ready
        precision = version.predictor.precision.rawValue
    }
}
