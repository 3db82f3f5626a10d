import HummingbirdCore
import NIOCore
import NIOHTTPTypes

/// nginx's "lingering close" for a request refused for its size (413): the rest of its body is read
/// and dropped, unparsed by the application, and the connection closes once the body has ended, the
/// client has sent nothing for `quietPeriod`, or `limit` has passed, whichever comes first.
///
/// Closing at once (the input shut, the socket closed) made the kernel answer the bytes still coming
/// with a reset: a client that sends its whole body before it reads (Python's `http.client` and
/// `urllib`) got "connection reset by peer" instead of the 413 and its message. Curl, which reads while
/// it sends, saw the 413 either way. A client that stops sending is closed on `quietPeriod`, as before
/// it was closed at once.
///
/// Installed behind Hummingbird's `HTTPConnectionStateHandler` by `arm(on:limit:)`, so it sees
/// request parts (not bytes) and passes none of them on: Hummingbird, waiting to drain the body
/// before the next request, waits until the connection closes. A request that said
/// `Connection: close` (urllib's do) makes Hummingbird close the connection right after the response:
/// that close waits here until the lingering ends.
final class LingeringClose: ChannelDuplexHandler {
    typealias InboundIn = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// How long the client may send nothing before the connection closes.
    static let quietPeriod = TimeAmount.seconds(2)

    private let deadline: NIODeadline
    private var responseEnded = false
    private var requestEnded = false
    private var lastRead = NIODeadline.now()
    private var timer: Scheduled<Void>?
    /// Set once the handler has closed the connection (or let a close through).
    private var finished = false
    /// The promises of closes asked for while lingering, completed with the handler's own close.
    private var heldCloses: [EventLoopPromise<Void>] = []

    private init(limit: TimeAmount) {
        deadline = .now() + limit
    }

    /// Installs the handler on `channel`'s pipeline, behind Hummingbird's connection-state handler;
    /// the connection then closes within `limit` at the latest.
    static func arm(on channel: any Channel, limit: TimeAmount) async throws {
        try await channel.eventLoop.submit {
            let pipeline = channel.pipeline.syncOperations
            let state = try pipeline.handler(type: HTTPConnectionStateHandler.self)
            try pipeline.addHandler(LingeringClose(limit: limit), position: .after(state))
        }.get()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        schedule(context)
        context.read()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        // The connection went (the client closed it): the held closes are done.
        for promise in heldCloses { promise.succeed() }
        heldCloses = []
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, !finished else { return context.close(mode: mode, promise: promise) }
        if let promise { heldCloses.append(promise) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        lastRead = .now()
        if case .end = unwrapInboundIn(data) {
            requestEnded = true
            closeIfDone(context)
        }
    }

    /// Asks for more: Hummingbird, done with a request that said `Connection: close`, reads no more,
    /// and what is not read stays in the socket (and resets the connection when it closes).
    func channelReadComplete(context: ChannelHandlerContext) {
        if !finished { context.read() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {  // the client has sent all it will
            requestEnded = true
            closeIfDone(context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let isEnd: Bool
        if case .end = unwrapOutboundIn(data) { isEnd = true } else { isEnd = false }
        context.write(data, promise: promise)
        if isEnd {
            context.flush()
            responseEnded = true
            closeIfDone(context)
        }
    }

    /// Closes once the response is out and the request's body has ended (nothing more will come).
    private func closeIfDone(_ context: ChannelHandlerContext) {
        if responseEnded && requestEnded { finish(context) }
    }

    /// Closes the connection, completing the closes held meanwhile.
    private func finish(_ context: ChannelHandlerContext) {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        let held = heldCloses
        heldCloses = []
        let promise = context.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { result in
            for waiting in held { waiting.completeWith(result) }
        }
        context.close(promise: promise)
    }

    /// Closes at the deadline, or once the client has sent nothing for `quietPeriod` (after the
    /// response is out).
    private func schedule(_ context: ChannelHandlerContext) {
        let now = NIODeadline.now(), quietEnds = lastRead + Self.quietPeriod
        let wake = min(deadline, quietEnds > now ? quietEnds : now + Self.quietPeriod)
        timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: wake) { [self] in
            timer = nil
            let now = NIODeadline.now()
            if now >= deadline || (responseEnded && now >= lastRead + Self.quietPeriod) {
                finish(context)
            } else {
                schedule(context)
            }
        }
    }
}
