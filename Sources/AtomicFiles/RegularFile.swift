import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A file that had to be a regular file and was not (a FIFO, socket, device or folder), or that
/// could not be opened.
public struct RegularFileError: Error, CustomStringConvertible, Equatable {
    /// The path as given.
    public let path: String
    /// Why it cannot be read, e.g. "not a regular file (a FIFO)".
    public let reason: String
    /// "`path`: `reason`".
    public var description: String { "\(path): \(reason)" }

    /// An error for `path`, with `reason` in words.
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// Opening a file whose bytes are to be read to the end (weights, checkpoints, digests).
///
/// `open(2)` of a FIFO waits for a writer, and a device such as `/dev/zero` never ends; either
/// would hang the command. The file is opened with `O_NONBLOCK` (which changes nothing for a
/// regular file) and checked with `fstat` on the same descriptor, so what is checked is what is read.
public enum RegularFile {
    /// A read-only descriptor of the regular file at `path` (symbolic links followed), to be closed
    /// by the caller; anything else is refused with `RegularFileError`, before any byte is read.
    public static func openForReading(_ path: String) throws -> Int32 {
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw RegularFileError(path: path, reason: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw RegularFileError(path: path, reason: "cannot stat: \(reason)")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw RegularFileError(path: path, reason: "not a regular file (\(kind(of: info.st_mode)))")
        }
        let flags = fcntl(fd, F_GETFL)
        if flags >= 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
        return fd
    }

    /// Whether `path` itself is a symbolic link (the link is not followed).
    public static func isSymbolicLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// Where the symbolic link at `path` points, when it points at nothing (a dangling link); nil for
    /// anything else. An output written there would replace the user's link, so writers refuse it
    /// naming the target.
    public static func danglingLinkTarget(_ path: String) -> String? {
        var info = stat()
        guard isSymbolicLink(path), stat(path, &info) != 0 else { return nil }
        return (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
    }

    /// What a non-regular file is, in words.
    static func kind(of mode: mode_t) -> String {
        switch mode & S_IFMT {
        case S_IFDIR: return "a folder"
        case S_IFIFO: return "a FIFO"
        case S_IFSOCK: return "a socket"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        default: return "not a plain file"
        }
    }
}
