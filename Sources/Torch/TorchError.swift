import CTorch
import Foundation

/// An error raised by LibTorch (its message verbatim) or by argument checks in the bindings.
public struct TorchError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Throws the shim's thread-local message when `status` is not `CT_OK`.
@inline(__always)
func check(_ status: ct_status) throws {
    if status != CT_OK { throw lastError() }
}

func lastError() -> TorchError {
    let raw = String(cString: ct_last_error())
    ct_clear_error()
    // LibTorch appends a C++ backtrace ("Exception raised from ...") to many messages;
    // keep the human part first and drop the frames.
    let trimmed = raw.components(separatedBy: "\nException raised from").first ?? raw
    return TorchError(trimmed.trimmingCharacters(in: .whitespacesAndNewlines))
}
