import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed atomic write: the destination and what went wrong (with the system's reason).
public struct AtomicFileError: Error, CustomStringConvertible, Equatable {
    /// The destination that was to be written (not the temporary file).
    public let path: String
    /// The step that failed and the system's error text, e.g. "cannot write the temporary file …: No space left on device".
    public let reason: String
    /// `path: reason`, for messages.
    public var description: String { "\(path): \(reason)" }
}

/// Whole-file writes that readers never see half done: the bytes go to a hidden temporary file in
/// the destination's folder, which is renamed over the destination. On failure the temporary file is
/// removed and the destination is left as it was.
public enum AtomicFile {
    /// The folder a replacement stands in for: `last` for `last.tmp-<UUID>` (the new one being
    /// written) or `last.old-<UUID>` (the old one moved aside), the names the writers here give them;
    /// nil for any other name, such as a user's `best.old-paper`.
    public static func replacedName(_ name: String) -> String? {
        for marker in [".tmp-", ".old-"] {
            guard let range = name.range(of: marker, options: .backwards),
                  UUID(uuidString: String(name[range.upperBound...])) != nil else { continue }
            return String(name[..<range.lowerBound])
        }
        return nil
    }

    /// Writes the bytes that `produce` appends, chunk by chunk (so large files need not be held in
    /// memory). `durable` fsyncs the file before the rename and the folder after it, so the new
    /// contents survive a crash; `createDirectory` creates missing folders first.
    public static func write(to path: String, durable: Bool = true, createDirectory: Bool = false,
                             _ produce: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        if createDirectory {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw AtomicFileError(path: path, reason: "cannot create the folder \(folder): \(FileErrorReason.of(error))")
            }
        }
        removeLeftovers(of: url.lastPathComponent, in: folder)
        let temporary = folder + "/.\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0 ... .max)).tmp"
        func fail(_ what: String) -> AtomicFileError {
            AtomicFileError(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot create the temporary file \(temporary)") }
        // Locked while it is written, so a clean-up of leftovers (`cache prune`) can tell a live write
        // from a dead one even where the writer's PID means nothing (another PID namespace: a second
        // container sharing the folder). See `isBeingWritten`.
        _ = flock(fd, LOCK_EX | LOCK_NB)
        var closed = false, renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(temporary) }
        }
        try produce { chunk in
            do {
                try FileDescriptorWriter.writeAll(fd: fd, chunk)
            } catch let error as FileWriteError {
                throw AtomicFileError(path: path, reason: "cannot write the temporary file \(temporary): \(error.reason)")
            }
        }
        if durable { guard fsync(fd) == 0 else { throw fail("cannot fsync the temporary file \(temporary)") } }
        closed = true
        guard close(fd) == 0 else { throw fail("cannot close the temporary file \(temporary)") }
        guard rename(temporary, path) == 0 else { throw fail("cannot rename \(temporary) over the destination") }
        renamed = true
        if durable {  // make the rename itself durable (best effort)
            let dir = open(folder, O_RDONLY | O_CLOEXEC)
            if dir >= 0 { _ = fsync(dir); close(dir) }
        }
    }

    /// The writer's process id in the name `write` gives a temporary file of `destinationName`,
    /// `.<destinationName>.<pid>.<n>.tmp`; nil for any other name.
    public static func writerProcess(temporaryName name: String, of destinationName: String) -> pid_t? {
        let prefix = "." + destinationName + "."
        guard name.hasPrefix(prefix), name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropFirst(prefix.count).dropLast(".tmp".count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, UInt32(parts[1]) != nil else { return nil }
        return pid
    }

    /// Whether the temporary file at `path`, written by process `pid`, was left by a writer that ended
    /// (Ctrl-C, a kill, a crash): no such process runs here and nobody holds the file's lock (the lock
    /// also tells a live writer of another PID namespace, whose process id means nothing here).
    public static func isLeftover(_ path: String, writer pid: pid_t) -> Bool {
        let running = kill(pid, 0) == 0 || errno != ESRCH
        return !running && !isBeingWritten(path)
    }

    /// Removes the temporary files of `destinationName` in `folder` that writers which ended left
    /// behind (an export interrupted by Ctrl-C left a hidden file the size of the model). Best effort.
    static func removeLeftovers(of destinationName: String, in folder: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return }
        for name in names {
            guard let pid = writerProcess(temporaryName: name, of: destinationName) else { continue }
            let path = folder + "/" + name
            var status = stat()
            guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG, isLeftover(path, writer: pid) else { continue }
            unlink(path)
        }
    }

    /// Whether the temporary file at `path` is being written now: `write` holds an exclusive `flock` on
    /// it until it closes it. False for a file nobody locks (a writer that died) or that cannot be opened.
    public static func isBeingWritten(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return errno == EWOULDBLOCK || errno == EAGAIN }
        _ = flock(fd, LOCK_UN)
        return false
    }

    /// Writes `data` atomically (see `write(to:durable:createDirectory:_:)`).
    public static func write(_ data: Data, to path: String, durable: Bool = true, createDirectory: Bool = false) throws {
        try write(to: path, durable: durable, createDirectory: createDirectory) { append in
            try data.withUnsafeBytes { try append($0) }
        }
    }
}
