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
