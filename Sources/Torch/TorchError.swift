import CTorch
import Foundation

/// An error raised by LibTorch (its message verbatim) or by argument checks in the bindings.
public struct TorchError: Error, CustomStringConvertible, Equatable {
    /// The human-readable message: LibTorch's text with its C++ backtrace removed, or the binding's own.
    public let message: String
    /// An error with `message`, for argument checks made in Swift.
    public init(_ message: String) { self.message = message }
    /// The same text as `message`, so `print(error)` and string interpolation show it.
    public var description: String { message }
    /// Whether LibTorch could not allocate memory: its CPU allocator's "can't allocate memory" (an
    /// address-space limit, `ulimit -v`), CUDA's or MPS's "out of memory".
    public var isOutOfMemory: Bool { message.contains("can't allocate memory") || message.contains("out of memory") }
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
