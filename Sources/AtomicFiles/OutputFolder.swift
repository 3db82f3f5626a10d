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
    /// Why a folder cannot be made or written at `path` (which need not exist yet), or nil: the nearest
    /// part of it that exists is a file, or is a folder this process may not write in (a read-only file
    /// system, no permission; `access(2)`).
    public static func whyUnusable(_ path: String) -> String? {
        var existing = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        while !FileManager.default.fileExists(atPath: existing.path, isDirectory: &isDirectory) {
            guard existing.path != "/" else { return nil }
            existing.deleteLastPathComponent()
        }
        guard isDirectory.boolValue else { return "\(existing.path) is a file, not a folder" }
        return whyNotWritable(existing.path)
    }

    /// Why this process may not create files in the existing folder `folder`, or nil when it may.
    public static func whyNotWritable(_ folder: String) -> String? {
        guard access(folder, W_OK) != 0 else { return nil }
        return "cannot write in \(folder): \(String(cString: strerror(errno)))"
    }
}
