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
    /// contents survive a crash; `createDirectory` creates missing folders first. A `path` that is a
    /// symbolic link to a file is written through: its target is replaced (atomically, beside it) and
    /// the link stays, as `cp` and `open(2)` would leave it (the link was replaced by a plain file, so a
    /// `current.onnx -> v3.onnx` deployment link was lost: probe AK). A file that is replaced keeps its
    /// permissions, and its owner and group where the process may set them, as `cp` onto it would:
    /// the new file was created 0644 less the umask, so a model a user had made private (0600) became
    /// readable by everyone, and a group-writable one was no longer writable by the group.
    public static func write(to path: String, durable: Bool = true, createDirectory: Bool = false,
                             _ produce: (_ append: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let url = URL(fileURLWithPath: linkedFile(path) ?? path)
        let folder = url.deletingLastPathComponent().path
        if createDirectory {
            do { try OutputFolder.create(folder) } catch let error as OutputFolderError {
                throw AtomicFileError(path: path, reason: error.description)
            }
        }
        removeLeftovers(of: url.lastPathComponent, in: folder)
        let temporary = folder + "/.\(temporaryStem(url.lastPathComponent)).\(getpid()).\(UInt32.random(in: 0 ... .max)).tmp"
        func fail(_ what: String) -> AtomicFileError {
            AtomicFileError(path: path, reason: "\(what): \(String(cString: strerror(errno)))")
        }
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw fail("cannot create the temporary file \(temporary)") }
        keepPermissions(of: url.path, on: fd)
        // Locked while it is written, so a clean-up of leftovers (`cache prune`) can tell a live write
        // from a dead one even where the writer's PID means nothing (another PID namespace: a second
        // container sharing the folder). See `isBeingWritten`.
        // The lock is held through a second descriptor of the same open file until after the rename:
        // closing `fd` (to see its errors) must not leave the file unlocked while it still has its
        // temporary name.
        afterCreatingForTesting?(temporary)
        // Blocking: a clean-up that tests the lock holds it for an instant, and a writer that failed
        // to take it then wrote unlocked, so a third writer could remove its live file (probe AA). A
        // file system without locks (an error other than EINTR) leaves the file unlocked.
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        let lock = dup(fd)
        var closed = false, renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(temporary) }
            if lock >= 0 { close(lock) }
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
        guard rename(temporary, url.path) == 0 else { throw fail("cannot rename \(temporary) over the destination") }
        renamed = true
        if durable {  // make the rename itself durable (best effort)
            let dir = open(folder, O_RDONLY | O_CLOEXEC)
            if dir >= 0 { _ = fsync(dir); close(dir) }
        }
    }

    /// Gives the open file `fd` the permission bits of the regular file at `path`, if there is one, and
    /// its owner and group where allowed (root; or the same owner and one of the user's groups). Best
    /// effort: what cannot be set is left as created.
    static func keepPermissions(of path: String, on fd: Int32) {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return }
        var created = stat()
        guard fstat(fd, &created) == 0 else { return }
        if created.st_uid != info.st_uid || created.st_gid != info.st_gid { _ = fchown(fd, info.st_uid, info.st_gid) }
        _ = fchmod(fd, info.st_mode & 0o7777)
    }

    /// The file a symbolic link at `path` leads to (every link on the way resolved), when it is one
    /// and leads to a regular file; nil otherwise.
    static func linkedFile(_ path: String) -> String? {
        var info = stat()
        guard RegularFile.isSymbolicLink(path), stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
              let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Called with the temporary file's path between its creation and its lock (tests only).
    nonisolated(unsafe) static var afterCreatingForTesting: ((String) -> Void)?

    /// The part of a temporary file's name that stands for its destination `name`: the name itself, or
    /// for a name over 200 bytes its first 180 bytes, `~` and a 64-bit FNV-1a digest of the whole name
    /// in hex. The temporary name adds up to 24 bytes, and a file system allows 255 in all (NAME_MAX):
    /// `export --out` with a 240-byte file name failed on the temporary file (probe AK).
    public static func temporaryStem(_ name: String) -> String {
        let bytes = Array(name.utf8)
        guard bytes.count > 200 else { return name }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        var end = 180
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }  // not inside a UTF-8 sequence
        let digest = String(hash, radix: 16)
        return String(decoding: bytes[..<end], as: UTF8.self) + "~" + String(repeating: "0", count: 16 - digest.count) + digest
    }

    /// The writer's process id in the name `write` gives a temporary file of `destinationName`,
    /// `.<stem>.<pid>.<n>.tmp` (`temporaryStem`); nil for any other name.
    public static func writerProcess(temporaryName name: String, of destinationName: String) -> pid_t? {
        let prefix = "." + temporaryStem(destinationName) + "."
        guard name.hasPrefix(prefix), name.hasSuffix(".tmp") else { return nil }
        let parts = name.dropFirst(prefix.count).dropLast(".tmp".count).split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let pid = pid_t(parts[0]), pid > 0, UInt32(parts[1]) != nil else { return nil }
        return pid
    }

    /// How long an unlocked temporary file whose writer's process id is in use here must have been
    /// left unchanged before it counts as a leftover: a live writer locks its file microseconds after
    /// creating it, and the id may belong to another process now (a container's writers are often
    /// PID 1, run after run).
    public static let unlockedLeftoverAge: TimeInterval = 60

    /// Whether the temporary file at `path`, written by process `pid`, was left by a writer that ended
    /// (Ctrl-C, a kill, a crash). A live writer holds the file's lock from its creation until after
    /// its rename, so a locked file is never one. An unlocked one is when no process `pid` runs here,
    /// or when it has not changed for `unlockedLeftoverAge` (`pid` reused, or the writer of another PID
    /// namespace). Where the file system has no locks, only "no process `pid` runs here" counts. Only a
    /// regular file is one.
    public static func isLeftover(_ path: String, writer pid: pid_t) -> Bool {
        // Only a regular file is a temporary file of `write`: never a folder, FIFO or link of that name.
        var status = stat()
        guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { return false }
        let running = kill(pid, 0) == 0 || errno != ESRCH
        switch lockState(path) {
        case .locked: return false
        case .unknown: return !running
        case .unlocked:
            guard running else { return true }
            guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
            else { return false }
            return Date().timeIntervalSince(modified) >= unlockedLeftoverAge
        }
    }

    /// The temporary files of `write` found in each folder this process writes into, by their
    /// destination's `temporaryStem`, from one listing of the folder: `convert` writes thousands of files
    /// into one folder, and listing it for each was quadratic (probe Z: 31 s against 8 s for 3,000
    /// images per class).
    nonisolated(unsafe) private static var temporaryFiles: [String: [String: [String]]] = [:]
    private static let temporaryFilesLock = NSLock()
    /// How many folders `removeLeftovers` has listed in this process (for tests).
    nonisolated(unsafe) static var folderListings = 0

    /// Removes the temporary files of `destinationName` in `folder` that writers which ended left
    /// behind (an export interrupted by Ctrl-C left a hidden file the size of the model); the folder
    /// is listed on its first write in this process. Best effort.
    static func removeLeftovers(of destinationName: String, in folder: String) {
        let candidates: [String] = temporaryFilesLock.withLock {
            if temporaryFiles[folder] == nil {
                // A checkpoint is written into a new folder each time: forget old folders, not grow.
                if temporaryFiles.count >= 256 { temporaryFiles.removeAll() }
                folderListings += 1
                var found: [String: [String]] = [:]
                for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
                where name.hasPrefix(".") && name.hasSuffix(".tmp") {
                    let parts = name.dropFirst().dropLast(".tmp".count).split(separator: ".", omittingEmptySubsequences: false)
                    guard parts.count >= 3 else { continue }
                    let destination = parts.dropLast(2).joined(separator: ".")
                    if writerProcess(temporaryName: name, of: destination) != nil { found[destination, default: []].append(name) }
                }
                temporaryFiles[folder] = found
            }
            return temporaryFiles[folder]?.removeValue(forKey: temporaryStem(destinationName)) ?? []
        }
        for name in candidates {
            let path = folder + "/" + name
            guard let pid = writerProcess(temporaryName: name, of: destinationName), isLeftover(path, writer: pid) else { continue }
            unlink(path)
        }
    }

    /// Whether the temporary file at `path` is being written now: `write` holds an exclusive `flock` on
    /// it until it has renamed it. False for a file nobody locks (a writer that died) or that cannot be opened.
    public static func isBeingWritten(_ path: String) -> Bool { lockState(path) == .locked }

    enum LockState { case locked, unlocked, unknown }

    /// Whether another open file holds an exclusive `flock` on `path`; `.unknown` where it cannot be
    /// opened or the file system has no locks.
    static func lockState(_ path: String) -> LockState {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return .unknown }
        defer { close(fd) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { return errno == EWOULDBLOCK || errno == EAGAIN ? .locked : .unknown }
        _ = flock(fd, LOCK_UN)
        return .unlocked
    }

    /// Writes `data` atomically (see `write(to:durable:createDirectory:_:)`).
    public static func write(_ data: Data, to path: String, durable: Bool = true, createDirectory: Bool = false) throws {
        try write(to: path, durable: durable, createDirectory: createDirectory) { append in
            try data.withUnsafeBytes { try append($0) }
        }
    }
}
