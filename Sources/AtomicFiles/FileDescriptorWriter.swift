import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A `write(2)` that failed: the system's error number and its text.
public struct FileWriteError: Error, CustomStringConvertible, Equatable {
    /// `errno` after the failed call (`EIO` when `write` wrote nothing without reporting an error).
    public let code: Int32
    /// The system's text for `code` (`strerror`), e.g. "No space left on device".
    public var reason: String { String(cString: strerror(code)) }
    /// The same as `reason`.
    public var description: String { reason }
}

/// The one loop that writes a buffer completely to a file descriptor: `write(2)` may write fewer
/// bytes than asked (a short write), be interrupted by a signal (`EINTR`), or find a non-blocking
/// descriptor full (`EAGAIN`: it waits with `poll`); all are continued.
public enum FileDescriptorWriter {
    /// Writes every byte of `bytes` to `fd`, or throws `FileWriteError` (some bytes may have been
    /// written by then).
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while !rest.isEmpty {
            #if canImport(Glibc)
            let n = Glibc.write(fd, rest.baseAddress, rest.count)
            #else
            let n = Darwin.write(fd, rest.baseAddress, rest.count)
            #endif
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                // A non-blocking descriptor (a stdout pipe another program set so) that is full: wait for room.
                var ready = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&ready, 1, -1)
                continue
            }
            guard n > 0 else { throw FileWriteError(code: n < 0 ? errno : EIO) }
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// Writes every byte of `data` to `fd` (see `writeAll(fd:_:)`).
    public static func writeAll(fd: Int32, _ data: Data) throws {
        try data.withUnsafeBytes { try writeAll(fd: fd, $0) }
    }
}
