import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on a folder itself (no lock file is added to it), held until the value is
/// released or freed, or the process ends. For writers that must not interleave in one folder:
/// two `convert` runs into one destination, two imports recording pins in one weights cache.
public final class FolderLock {
    /// Why a folder could not be locked: the folder, and the system's reason or "held by another process".
    public struct Failure: Error, CustomStringConvertible, Equatable {
        /// The folder.
        public let path: String
        /// Whether another process (or another descriptor of this one) holds the lock.
        public let isHeld: Bool
        /// The system's words, for a failure other than a held lock.
        public let reason: String
        /// `path: reason`.
        public var description: String { "\(path): \(isHeld ? "locked by another process" : reason)" }
    }

    private var descriptor: Int32

    /// Locks `path`, a folder. With `wait` false, a lock another holds fails at once (`Failure.isHeld`);
    /// with `wait` true, it waits for it.
    public init(_ path: String, wait: Bool) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw Failure(path: path, isHeld: false, reason: "cannot open the folder: " + String(cString: strerror(errno)))
        }
        var status: Int32
        repeat { status = flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) } while status != 0 && errno == EINTR
        guard status == 0 else {
            let held = errno == EWOULDBLOCK || errno == EAGAIN
            let reason = "cannot lock the folder: " + String(cString: strerror(errno))
            close(fd)
            throw Failure(path: path, isHeld: held, reason: reason)
        }
        descriptor = fd
    }

    /// Releases the lock now (it is released when the value is freed otherwise).
    public func release() {
        guard descriptor >= 0 else { return }
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
