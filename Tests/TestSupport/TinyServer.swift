import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An HTTP server on 127.0.0.1 for download tests: it answers `count` requests, `GET path` with
/// `body` and anything else with 404, then stops listening.
public final class TinyServer: @unchecked Sendable {
    /// The port it listens on.
    public let port: Int
    /// Signalled as each request arrives (before the answer).
    public let requested = DispatchSemaphore(value: 0)
    private let fd: Int32

    /// `announcesLength` false: no `Content-Length`, the end of the connection ends the body.
    /// `stallAfter`: only that many bytes of the body are sent, then nothing for 20 s (a stalled line).
    public init(body: [UInt8], count: Int, path: String = "/toy.pth", announcesLength: Bool = true,
                stallAfter: Int? = nil) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        self.fd = fd
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0, listen(fd, 4) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        port = Int(UInt16(bigEndian: address.sin_port))
        let listener = fd, requested = requested
        Thread.detachNewThread {
            for _ in 0..<count {
                let client = accept(listener, nil, nil)
                guard client >= 0 else { return }
                var request = [UInt8](repeating: 0, count: 4096)
                let n = read(client, &request, request.count)
                requested.signal()
                let line = String(decoding: request.prefix(max(0, n)), as: UTF8.self)
                let found = line.hasPrefix("GET \(path) ")
                let payload = found ? body : Array("no such file".utf8)
                let head = "HTTP/1.1 \(found ? "200 OK" : "404 Not Found")\r\n"
                    + (announcesLength ? "Content-Length: \(payload.count)\r\n" : "") + "Connection: close\r\n\r\n"
                let bytes = Array(head.utf8) + (stallAfter.map { Array(payload.prefix($0)) } ?? payload)
                _ = bytes.withUnsafeBytes { write(client, $0.baseAddress, $0.count) }
                if stallAfter != nil { Thread.sleep(forTimeInterval: 20) }
                close(client)
            }
        }
    }

    deinit { close(fd) }
}
