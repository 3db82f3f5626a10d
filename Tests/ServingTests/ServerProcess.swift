import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#endif
import TestSupport
import XCTest

struct ServeFailed: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A `finetune serve` process on a free port, its log lines, and an HTTP client for it.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    private(set) var base = ""
    private let lock = NSLock()
    private var stderrText = ""
    let session: URLSession

    /// The test runner sits next to the products in the build folder.
    static var binary: URL {
        #if os(Linux)
        let runner = URL(fileURLWithPath: ProcessInfo.processInfo.arguments[0]).resolvingSymlinksInPath()
        #else
        let runner = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }?.bundleURL ?? Bundle.main.bundleURL
        #endif
        return runner.deletingLastPathComponent().appendingPathComponent("finetune")
    }

    /// Starts `finetune serve arguments --port 0` and waits until it listens and (`waitUntilReady`)
    /// `/readyz` says ready.
    /// Starts `finetune serve arguments` (SIGHUP at its default action, or ignored as under `nohup`
    /// with `ignoringHangUp`, and SIGUSR1 and SIGUSR2 at theirs, whatever this test process has).
    init(_ arguments: [String], environment: [String: String] = [:], waitUntilReady: Bool = true,
         ignoringHangUp: Bool = false) throws {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
        process.executableURL = Self.binary
        process.arguments = ["serve"] + arguments + ["--port", "0", "--threads", "2"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        // SIGUSR1 and SIGUSR2 at their default action whatever earlier tests left in this process: an
        // ignored one would not shut the server down.
        try withSignals([SIGUSR1, SIGUSR2], ignored: false) {
            try withSignals([SIGHUP], ignored: ignoringHangUp) { try process.run() }
        }
        err.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.lock()
            self.stderrText += String(decoding: data, as: UTF8.self)
            self.lock.unlock()
        }
        var line = Foundation.Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Foundation.Data("\n".utf8) { break }
            line += byte
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("listening on ") else {
            process.waitUntilExit()
            Thread.sleep(forTimeInterval: 0.2)
            throw ServeFailed(message: "finetune serve did not start (status \(process.terminationStatus)): \(log)")
        }
        base = String(text.dropFirst("listening on ".count))
        guard waitUntilReady else { return }
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if let r = try? request("GET", "/readyz", headers: environment["FINETUNE_API_KEY"].map { ["Authorization": "Bearer \($0)"] } ?? [:]),
               r.status == 200 { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTFail("the server did not become ready: \(log)")
    }

    /// What the server wrote to standard error so far.
    var log: String { lock.lock(); defer { lock.unlock() }; return stderrText }

    struct Answer {
        var status: Int
        var headers: [String: String]
        var body: Foundation.Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// One request, waited for.
    func request(_ method: String, _ path: String, body: Foundation.Data? = nil, headers: [String: String] = [:]) throws -> Answer {
        let semaphore = DispatchSemaphore(value: 0)
        final class Box: @unchecked Sendable { var result: Result<Answer, Error>? }
        let box = Box()
        send(method, path, body: body, headers: headers) { box.result = $0; semaphore.signal() }
        semaphore.wait()
        return try box.result!.get()
    }

    /// One request; `done` gets the answer or the transport error.
    func send(_ method: String, _ path: String, body: Foundation.Data? = nil, headers: [String: String] = [:],
              done: @escaping @Sendable (Result<Answer, Error>) -> Void) {
        var request = URLRequest(url: URL(string: base + path)!)
        request.httpMethod = method
        request.httpBody = body
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        session.dataTask(with: request) { data, response, error in
            if let error { return done(.failure(error)) }
            let http = response as! HTTPURLResponse
            var fields: [String: String] = [:]
            for (k, v) in http.allHeaderFields { fields[String(describing: k).lowercased()] = String(describing: v) }
            done(.success(Answer(status: http.statusCode, headers: fields, body: data ?? Foundation.Data())))
        }.resume()
    }

    /// Sends SIGTERM and waits for the exit status.
    func terminate() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
    }

    /// A multipart/form-data body with one part per (filename, bytes).
    static func multipart(_ files: [(String, Foundation.Data)], boundary: String = "finetune-test-boundary") -> (Foundation.Data, String) {
        var body = Foundation.Data()
        for (name, bytes) in files {
            body += Foundation.Data("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\(name)\"\r\nContent-Type: image/jpeg\r\n\r\n".utf8)
            body += bytes
            body += Foundation.Data("\r\n".utf8)
        }
        body += Foundation.Data("--\(boundary)--\r\n".utf8)
        return (body, "multipart/form-data; boundary=\(boundary)")
    }
}

/// A plain TCP connection to the server, for what URLSession cannot show: what the server does before a
/// request has been sent in full (URLSession always sends the whole body).
final class RawConnection {
    private let fd: Int32
    /// The bytes read so far and not yet taken by `response`.
    private var pending: [UInt8] = []

    /// Connects to 127.0.0.1:`port`.
    init(port: Int) throws {
        #if os(Linux)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw ServeFailed(message: "socket: errno \(errno)") }
        #if !os(Linux)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, socklen_t(MemoryLayout<Int32>.size))
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else { close(fd); throw ServeFailed(message: "connect to port \(port): errno \(errno)") }
    }

    deinit { close(fd) }

    /// Sends all of `bytes`; false when the server has closed or reset the connection first.
    @discardableResult
    func send(_ bytes: [UInt8]) -> Bool {
        var sent = 0
        while sent < bytes.count {
            #if os(Linux)
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            #else
            let n = bytes.withUnsafeBytes { Darwin.send(fd, $0.baseAddress! + sent, bytes.count - sent, 0) }
            #endif
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return false }
            sent += n
        }
        return true
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    enum Read: Equatable { case data([UInt8]), closed, timedOut }

    /// The next bytes, `.closed` on end of file or a reset, `.timedOut` when nothing comes in `seconds`.
    func read(within seconds: Double) -> Read {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, Int32(seconds * 1000))
        guard ready > 0 else { return .timedOut }
        var buffer = [UInt8](repeating: 0, count: 65536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return n > 0 ? .data(Array(buffer[..<n])) : .closed
    }

    /// One HTTP/1.1 response with a Content-Length body, read within `seconds`; nil if the connection
    /// closed or the time ran out first.
    func response(within seconds: Double) -> ServerProcess.Answer? {
        let deadline = Date().addingTimeInterval(seconds)
        func more() -> Bool {
            guard case .data(let bytes) = read(within: max(0, deadline.timeIntervalSinceNow)) else { return false }
            pending += bytes
            return true
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while headEnd == nil {
            headEnd = pending.count < 4 ? nil : (0...(pending.count - 4)).first { Array(pending[$0..<$0 + 4]) == separator }
            if headEnd == nil, !more() { return nil }
        }
        let lines = String(decoding: pending[..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        let statusWords = lines[0].split(separator: " ")
        guard statusWords.count >= 2, let status = Int(statusWords[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headEnd! + 4
        while pending.count < bodyStart + length { if !more() { return nil } }
        let body = Foundation.Data(pending[bodyStart..<bodyStart + length])
        pending.removeFirst(bodyStart + length)
        return ServerProcess.Answer(status: status, headers: headers, body: body)
    }

    /// Whether the server closes the connection within `seconds` (end of file or a reset), with nothing
    /// more sent on it.
    func closes(within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            switch read(within: max(0, deadline.timeIntervalSinceNow)) {
            case .closed: return true
            case .timedOut: return false
            case .data: continue
            }
        }
    }
}
