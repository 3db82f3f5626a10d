import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The request context of `finetune serve`: Hummingbird's basic one, and the connection the request
/// came on, so that a request refused for its size can close it instead of reading the rest of its body.
struct ServeRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Turns every error into a JSON `{"error": "..."}` body with its status (and `Retry-After` for 503).
/// A 413 also closes the connection once it is answered: the rest of the body is read and dropped for
/// up to `lingeringLimit` (`LingeringClose`), so that a client still sending it gets the answer. A 408
/// closes the connection's input at once (its client has stopped sending).
struct JSONErrorMiddleware: RouterMiddleware {
    typealias Context = ServeRequestContext

    /// How long a refused body is read and dropped at most (`--request-timeout-ms`).
    let lingeringLimit: TimeAmount
    /// The server's routes: a path that has some, but not the request's method, gets 405 and `Allow`.
    let routes: RouteMethods

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = routes.methods(for: request.uri.path)
            guard !allowed.isEmpty else {
                return PredictionServer.json(["error": "no route \(request.method) \(request.uri.path)"], status: .notFound)
            }
            // RFC 9110 §15.5.6, as nginx answers: the path exists, the method does not (it was 404 "no route").
            var response = PredictionServer.json(
                ["error": "\(request.method) is not allowed on \(request.uri.path); use \(allowed.joined(separator: " or "))"],
                status: .methodNotAllowed)
            response.headers[.allow] = allowed.joined(separator: ", ")
            return response
        } catch {
            let status = Self.status(of: error)
            var response = PredictionServer.json(["error": Self.message(of: error, request: request)],
                                                 status: HTTPResponse.Status(code: status))
            if case ServingError.unavailable(_, let seconds) = error {
                response.headers[HTTPField.Name("Retry-After")!] = String(seconds)
            }
            if let error = error as? ServingError, [413, 408].contains(error.status) {
                // Hummingbird would read the rest of the body, however long, to reach the next request
                // on the connection (whatever the response says).
                response.headers[.connection] = "close"
                if error.status == 413, (try? await LingeringClose.arm(on: context.channel, limit: lingeringLimit)) != nil {
                    return response
                }
                // Nothing more is read, and the connection closes once this response is written.
                context.channel.close(mode: .input, promise: nil)
            }
            return response
        }
    }

    static func status(of error: Error) -> Int {
        if let error = error as? ServingError { return error.status }
        if let error = error as? HTTPResponseError { return Int(error.status.code) }
        return 500
    }

    static func message(of error: Error, request: Request) -> String {
        if let error = error as? ServingError { return error.description }
        if let error = error as? HTTPError { return error.body ?? error.status.reasonPhrase }
        if let error = error as? HTTPResponseError { return "\(error.status.code) \(error.status.reasonPhrase)" }
        return "internal error: \(error)"
    }
}

/// The methods each of the server's paths answers, read from its router once every route is added
/// (HEAD wherever GET is: `autoGenerateHeadEndpoints` adds those when the server starts).
final class RouteMethods: @unchecked Sendable {
    private let lock = NSLock()
    private var routes: [(path: RouterPath, methods: Set<String>)] = []

    /// Records `router`'s routes; called once, before the server starts.
    func record<Context>(_ router: Router<Context>) {
        var byPath: [String: (path: RouterPath, methods: Set<String>)] = [:]
        for route in router.routes {
            byPath[route.path.description, default: (route.path, [])].methods.insert(route.method.rawValue)
            if route.method == .get { byPath[route.path.description]!.methods.insert(HTTPRequest.Method.head.rawValue) }
        }
        lock.withLock { routes = Array(byPath.values) }
    }

    /// The methods of the routes matching `path`, sorted; empty when no route has that path.
    func methods(for path: String) -> [String] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        let matching = lock.withLock { routes }.filter { route in
            route.path.components.count == segments.count && zip(route.path.components, segments).allSatisfy { $0 ~= $1 }
        }
        return matching.reduce(into: Set<String>()) { $0.formUnion($1.methods) }.sorted()
    }
}

/// Requires `Authorization: Bearer KEY` on every route but `/healthz`.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.uri.path != "/healthz" else { return try await next(request, context) }
        // The scheme is case-insensitive (RFC 9110 §11.1); the key is compared exactly.
        guard let header = request.headers[.authorization], let space = header.firstIndex(of: " "),
              header[..<space].lowercased() == "bearer",
              header[header.index(after: space)...].trimmingCharacters(in: .whitespaces) == key else {
            throw ServingError.unauthorized
        }
        return try await next(request, context)
    }
}

/// The response header through which a predict handler tells the log how many images it had.
let imagesHeader = HTTPField.Name("X-Images")!

/// One log line per request: method, path, status, milliseconds and images.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    let log: @Sendable (String) -> Void

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = InferenceLoop.now()
        func line(_ status: Int, _ images: String) {
            log("\(request.method) \(request.uri.path) \(status) "
                + String(format: "%.1fms", (InferenceLoop.now() - start) * 1000) + " \(images) images")
        }
        do {
            let response = try await next(request, context)
            line(Int(response.status.code), response.headers[imagesHeader] ?? "0")
            return response
        } catch {
            line(JSONErrorMiddleware.status(of: error), "0")
            throw error
        }
    }
}
