import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The checks an output folder gets before any work: a command that would compute for minutes and then
/// fail to write (a read-only disk, a file where a folder must be) fails at once, naming the place,
/// rather than after its work in Foundation's words (probe AK: `lr-find --out` on a read-only disk ran
/// the whole range test first).
public enum OutputFolder {
    /// Why a folder cannot be made or written at `path` (which need not exist yet), or nil: a part of
    /// it that does not exist is a symbolic link to nothing (a disk that is not mounted), or the nearest
    /// part that exists is a file, or is a folder this process may not write in (a read-only file
    /// system, no permission; `access(2)`).
    ///
    /// `roomInside` is the length of the longest path the caller writes below `path`: a folder whose
    /// files would pass the system's limit on a path's length is refused too (`whyTooLong`).
    public static func whyUnusable(_ path: String, roomInside: Int = 0) -> String? {
        if let why = whyTooLong(path, roomInside: roomInside) { return why }
        switch nearestExistingPart(path) {
        case .danglingLink(let link, let target):
            return "\(link) is a symbolic link to \(target), which does not exist; create its target or remove the link"
        case .file(let file): return "\(file) is a file, not a folder"
        case .folder(let folder): return whyNotWritable(folder)
        case .none: return nil
        }
    }

    /// Why this process may not write below `path` (which need not exist yet), or nil: the nearest part
    /// of it that exists is a folder this process may not write in (a read-only file system, no
    /// permission). Unlike `whyUnusable`, a link to nothing or a file in the way is not a reason here:
    /// for a folder that only speeds things up (the feature cache), those stay errors, while a shared
    /// read-only cache is read and not written.
    public static func whyReadOnly(_ path: String) -> String? {
        guard case .folder(let folder) = nearestExistingPart(path) else { return nil }
        return whyNotWritable(folder)
    }

    private enum ExistingPart {
        case folder(String), file(String), danglingLink(String, target: String), none
    }

    /// The nearest part of `path` (itself or a parent) that exists, or the symbolic link to nothing
    /// met on the way up.
    private static func nearestExistingPart(_ path: String) -> ExistingPart {
        var existing = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        while !FileManager.default.fileExists(atPath: existing.path, isDirectory: &isDirectory) {
            if let target = RegularFile.danglingLinkTarget(existing.path) {
                return .danglingLink(existing.path, target: target)
            }
            guard existing.path != "/" else { return .none }
            existing.deleteLastPathComponent()
        }
        return isDirectory.boolValue ? .folder(existing.path) : .file(existing.path)
    }

    /// Why `path` (a file or folder to make) is too long for the system, or nil: a part of it longer
    /// than a name may be (NAME_MAX, 255 bytes), or the whole, absolute, with `roomInside` bytes of paths
    /// below it, longer than a path may be (PATH_MAX). A run directory of about 4,000 bytes trained an
    /// epoch before its first checkpoint failed (probe AK).
    public static func whyTooLong(_ path: String, roomInside: Int = 0) -> String? {
        let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
        let nameLimit = Int(NAME_MAX), pathLimit = Int(PATH_MAX) - 1  // PATH_MAX counts the final NUL
        if let long = absolute.split(separator: "/").first(where: { $0.utf8.count > nameLimit }) {
            return "the name \(long.prefix(24))… in it is \(long.utf8.count) bytes long; a file or folder name may have at "
                + "most \(nameLimit)"
        }
        guard absolute.utf8.count + roomInside > pathLimit else { return nil }
        return "\(absolute.prefix(24))… is \(absolute.utf8.count) bytes long"
            + (roomInside > 0 ? ", and the files made inside it add up to \(roomInside) more" : "")
            + "; a path may have at most \(pathLimit) bytes"
    }

    /// Creates the folder `path` and its missing parents (an existing folder is fine). A failure says
    /// why in the system's words, naming the part in the way: a symbolic link to nothing (a cache folder
    /// on a disk not mounted), a file, a read-only disk. Foundation's error was dumped whole
    /// ("Error Domain=NSCocoaErrorDomain Code=516 \"A file with the same name already exists.\"…",
    /// probe AK).
    public static func create(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw OutputFolderError(path: path, reason: whyUnusable(path) ?? FileErrorReason.of(error, path: path))
        }
    }

    /// Why this process may not create files in the existing folder `folder`, or nil when it may.
    public static func whyNotWritable(_ folder: String) -> String? {
        guard access(folder, W_OK) != 0 else { return nil }
        return "cannot write in \(folder): \(String(cString: strerror(errno)))"
    }
}

/// A folder `OutputFolder.create` could not make: "cannot create the folder PATH: REASON".
public struct OutputFolderError: Error, CustomStringConvertible {
    /// The folder that was to be made.
    public let path: String
    /// Why it could not be, in the system's words, naming the part of the path in the way.
    public let reason: String

    public var description: String { "cannot create the folder \(path): \(reason)" }
}
