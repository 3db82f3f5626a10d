import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Scratch bytes for a file that cannot be written front to back, such as one whose header states
/// how much follows before that is known: appended here first, then read back in order (behind the
/// header, through `AtomicFile.write`). The spool lies beside the destination, on its file system
/// rather than in a memory-backed /tmp, and is unlinked as soon as it is made, so that it goes with
/// its descriptor, also when the process is killed: nothing is ever left behind.
public final class SpoolFile {
    private let fd: Int32
    private let destination: String
    /// The bytes appended so far.
    public private(set) var byteCount = 0

    /// A new, empty spool in the folder of `destination`, which names it in errors.
    public init(beside destination: String) throws {
        let url = URL(fileURLWithPath: destination)
        let name = url.deletingLastPathComponent().path + "/.\(AtomicFile.temporaryStem(url.lastPathComponent))"
            + ".spool.\(getpid()).\(UInt32.random(in: 0 ... .max)).tmp"
        fd = open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw AtomicFileError(path: destination,
                                  reason: "cannot create the temporary file \(name): \(String(cString: strerror(errno)))")
        }
        unlink(name)
        self.destination = destination
    }

    deinit { close(fd) }

    /// Appends `bytes`.
    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        do { try FileDescriptorWriter.writeAll(fd: fd, bytes) } catch let error as FileWriteError {
            throw AtomicFileError(path: destination, reason: "cannot write its temporary copy: \(error.reason)")
        }
        byteCount += bytes.count
    }

    /// Everything appended, in order, in pieces of at most 8 MiB.
    public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        var offset = 0
        while offset < byteCount {
            let wanted = Swift.min(buffer.count, byteCount - offset)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, wanted, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let reason = n < 0 ? String(cString: strerror(errno)) : "it ended early"
                throw AtomicFileError(path: destination, reason: "cannot read its temporary copy back: \(reason)")
            }
            try buffer.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            offset += n
        }
    }
}
