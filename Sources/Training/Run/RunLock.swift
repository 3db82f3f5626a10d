import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive, advisory lock on a run directory: `flock` on `RUN_DIR/.lock`, held from creation
/// until `release()` or deinit (and by the kernel until the process ends, however it ends).
///
/// A run directory has one writer: `train` and `train --resume` take the lock for the whole run, so a
/// second writer fails at once with `RunError.locked`, naming the process that holds it. The lock
/// file holds the holder's PID (for that message only: the lock itself is the `flock`). Readers
/// (`evaluate`, `predict`) need no lock, because every file of a run is written atomically.
public final class RunLock {
    /// The lock file's name inside a run directory.
    public static let fileName = ".lock"

    /// The locked run directory.
    public let directory: String
    private var descriptor: Int32

    /// Takes the lock of `directory` (which must exist), without waiting.
    /// - Throws: `RunError.locked` when another process (or another `RunLock` of this one) holds it.
    public convenience init(directory: String) throws {
        try self.init(directory: directory, beforeLocking: nil)
    }

    /// `beforeLocking` runs between opening the lock file and locking it (tests use it to replace the
    /// run meanwhile, as `train --overwrite` in another process may).
    init(directory: String, beforeLocking: (() throws -> Void)?) throws {
        self.directory = directory
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        // The file locked must still be the one the path names: another `--overwrite` may have moved
        // the run aside (and deleted it) between this open and the lock, and the lock of a deleted
        // file guards nothing (probe V: two writers ran in one folder, one deleting the other's run).
        // Then the path's new lock file is tried, a few times at most.
        var attempt = 0
        while true {
            attempt += 1
            let fd = try Self.lockFile(path, directory: directory, beforeLocking: attempt == 1 ? beforeLocking : nil)
            if Self.stillNamed(path, by: fd) {
                descriptor = fd
                break
            }
            _ = flock(fd, LOCK_UN)
            close(fd)
            guard attempt < 5 else {
                throw RunError.io(path: path, reason: "the run directory was replaced while it was being locked; try again")
            }
        }
        // Record our PID for the next writer's error message.
        let text = "\(getpid())\n"
        _ = ftruncate(descriptor, 0)
        _ = text.withCString { pwrite(descriptor, $0, strlen($0), 0) }
    }

    /// Whether `path` still names the file open as `fd` (same device and inode, not deleted).
    private static func stillNamed(_ path: String, by fd: Int32) -> Bool {
        var open = stat(), named = stat()
        guard fstat(fd, &open) == 0, open.st_nlink > 0, lstat(path, &named) == 0 else { return false }
        return open.st_dev == named.st_dev && open.st_ino == named.st_ino
    }

    /// Opens the lock file at `path` and locks it: the locked descriptor.
    private static func lockFile(_ path: String, directory: String, beforeLocking: (() throws -> Void)?) throws -> Int32 {
        // Never through a symbolic link (the PID would be written into its target, a user's file),
        // and only a regular file with no other name (a FIFO or device is not a lock file, and a
        // hard link to a user's file is that file).
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let reason = errno == ELOOP ? "it is a symbolic link; finetune does not write through it (remove it)"
                : String(cString: strerror(errno))
            throw RunError.io(path: path, reason: "cannot open the lock file: \(reason)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw RunError.io(path: path, reason: "cannot open the lock file: it is not a regular file (remove it)")
        }
        guard info.st_nlink == 1 else {
            close(fd)
            throw RunError.io(path: path, reason: "cannot open the lock file: it is a hard link to another file (remove it)")
        }
        do {
            try beforeLocking?()
        } catch {
            close(fd)
            throw error
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let reason = errno
            let holder = Self.readPID(fd)
            close(fd)
            if reason == EWOULDBLOCK || reason == EAGAIN {
                throw RunError.locked(directory: directory, pid: holder)
            }
            throw RunError.io(path: path, reason: "cannot lock: \(String(cString: strerror(reason)))")
        }
        return fd
    }

    /// The PID recorded by the process that holds (or last held) the lock file `fd`.
    private static func readPID(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 31, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The process that holds `directory`'s lock now, as the kernel lists it (`/proc/locks`, Linux);
    /// nil when none does or it cannot be told. Without taking the lock: a reader that locked, even
    /// briefly, would make a writer starting at that moment fail.
    public static func holder(of directory: String) -> Int32? {
        let path = (directory as NSString).appendingPathComponent(fileName)
        var info = stat()
        guard lstat(path, &info) == 0,
              let locks = try? String(contentsOfFile: "/proc/locks", encoding: .utf8) else { return nil }
        // "1: FLOCK  ADVISORY  WRITE 17377 fe:00:16220670 0 EOF": the device as major:minor in hex.
        let device = UInt64(truncatingIfNeeded: info.st_dev)
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & 0xffff_f000)
        let minor = (device & 0xff) | ((device >> 12) & 0xffff_ff00)
        let file = String(format: "%02llx:%02llx:%llu", major, minor, UInt64(info.st_ino))
        for line in locks.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1] == "FLOCK", fields[3] == "WRITE", fields[5] == file,
                  let pid = Int32(fields[4]), pid > 0 else { continue }
            return pid
        }
        return nil
    }

    /// Whether this lock is still held.
    public var isHeld: Bool { descriptor >= 0 }

    /// Whether the file at `path` is a lock file finetune wrote: empty, or one process ID and a line
    /// break (a run killed before it wrote more leaves only this). Another tool's `.lock` is not.
    public static func isOwnLockFile(_ path: String) -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, info.st_size <= 32,
              let data = FileManager.default.contents(atPath: path) else { return false }
        let text = String(decoding: data, as: UTF8.self)
        return text.isEmpty || (text.hasSuffix("\n") && Int32(text.dropLast()) != nil)
    }

    /// Releases the lock (the file stays: removing it would race with the next writer's `open`).
    public func release() {
        guard descriptor >= 0 else { return }
        _ = flock(descriptor, LOCK_UN)
        close(descriptor)
        descriptor = -1
    }

    deinit { release() }
}
