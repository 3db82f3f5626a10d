import Foundation

/// The system's words for a failed file operation of Foundation's.
public enum FileErrorReason {
    /// The POSIX error under a Foundation file error (or the one its code stands for, when it carries
    /// none), as `strerror` gives it ("No space left on device", "Read-only file system"), and the
    /// file it concerns when that is not `path`; other errors' `localizedDescription`. Foundation's own
    /// text ("The operation could not be completed. There isn't enough space.") names neither the file
    /// nor the system's reason.
    public static func of(_ error: Error, path: String? = nil) -> String {
        let nsError = error as NSError
        var underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError
        if underlying == nil, nsError.domain == NSPOSIXErrorDomain { underlying = nsError }
        let code: Int32
        if let posix = underlying, posix.domain == NSPOSIXErrorDomain {
            code = Int32(posix.code)
        } else if nsError.domain == NSCocoaErrorDomain, let known = posixCode(ofCocoaCode: nsError.code) {
            // Foundation's error without its POSIX cause: "The operation could not be completed. The
            // volume is read only." (pseudo-label's review folder on a read-only disk, probe AK).
            code = known
        } else {
            return nsError.localizedDescription
        }
        let reason = String(cString: strerror(code))
        if let file = nsError.userInfo[NSFilePathErrorKey] as? String, file != path { return "\(file): \(reason)" }
        return reason
    }

    /// The POSIX error a Foundation file error code stands for, where one does: a full disk, a
    /// read-only disk, no permission, a name taken, a missing file.
    static func posixCode(ofCocoaCode code: Int) -> Int32? {
        switch code {
        case CocoaError.fileWriteOutOfSpace.rawValue: return ENOSPC
        case CocoaError.fileWriteVolumeReadOnly.rawValue: return EROFS
        case CocoaError.fileWriteNoPermission.rawValue, CocoaError.fileReadNoPermission.rawValue: return EACCES
        case CocoaError.fileWriteFileExists.rawValue: return EEXIST
        case CocoaError.fileNoSuchFile.rawValue, CocoaError.fileReadNoSuchFile.rawValue: return ENOENT
        default: return nil
        }
    }
}
