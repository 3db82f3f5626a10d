import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
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

    /// Starts `finetune serve arguments --port 0` and waits until it listens and `/readyz` says ready.
    init(_ arguments: [String], environment: [String: String] = [:]) throws {
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
        try process.run()
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
