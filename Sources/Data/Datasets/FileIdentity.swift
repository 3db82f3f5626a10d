import Foundation

/// A file's identity on its file system: its device and inode, links followed. Two paths name one
/// file exactly when their identities are equal, through symbolic links, hard links and `..`.
public struct FileIdentity: Hashable, Sendable {
    /// The device that holds the file.
    public let device: UInt64
    /// The file's inode number on that device.
    public let inode: UInt64

    /// The identity of the file at `path`; nil when it cannot be stat'ed.
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        device = UInt64(truncatingIfNeeded: info.st_dev)
        inode = UInt64(truncatingIfNeeded: info.st_ino)
    }
}

extension FileIdentity {
    /// For each of `candidates` whose file is also a candidate with another label (one identity: the
    /// same file through a symbolic link, a hard link or another spelling of its path), the index of
    /// one such candidate. An image with two labels teaches neither, so the datasets leave these files
    /// out of both classes and say why (probe AK: a file linked into two class folders, or listed under
    /// two labels in a CSV, trained as both).
    static func filesOfTwoLabels(_ candidates: [(path: String, label: Int)]) -> [Int: Int] {
        var firstOf: [FileIdentity: Int] = [:]
        var other: [Int: Int] = [:]
        for (i, candidate) in candidates.enumerated() {
            guard let identity = FileIdentity(path: candidate.path) else { continue }
            guard let first = firstOf[identity] else { firstOf[identity] = i; continue }
            if candidates[first].label != candidate.label {
                other[i] = first
                if other[first] == nil { other[first] = i }
            }
        }
        return other
    }
}
