import Foundation

/// The system's words for a failed file operation of Foundation's.
public enum FileErrorReason {
    /// The POSIX error under a Foundation file error, as `strerror` gives it ("No space left on
    /// device", "Read-only file system"), and the file it concerns when that is not `path`; other
    /// errors' `localizedDescription`. Foundation's own text ("The operation could not be completed.
    /// There isn't enough space.") names neither the file nor the system's reason.
    public static func of(_ error: Error, path: String? = nil) -> String {
        let nsError = error as NSError
        var underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError
        if underlying == nil, nsError.domain == NSPOSIXErrorDomain { underlying = nsError }
        guard let posix = underlying, posix.domain == NSPOSIXErrorDomain else { return nsError.localizedDescription }
        let reason = String(cString: strerror(Int32(posix.code)))
        if let file = nsError.userInfo[NSFilePathErrorKey] as? String, file != path { return "\(file): \(reason)" }
        return reason
    }
}
