import CTorch

/// Runs `body` with gradient recording disabled (like `torch.no_grad()`).
public func withNoGrad<R>(_ body: () throws -> R) rethrows -> R {
    try withGradEnabled(false, body)
}

/// Runs `body` with gradient recording set to `enabled`, restoring the previous mode afterwards.
public func withGradEnabled<R>(_ enabled: Bool, _ body: () throws -> R) rethrows -> R {
    let previous = ct_is_grad_enabled()
    ct_set_grad_enabled(enabled)
    defer { ct_set_grad_enabled(previous) }
    return try body()
}

/// Runs `body` in LibTorch's inference mode (like `torch.inference_mode()`): no autograd
/// bookkeeping at all. Tensors created inside cannot later take part in autograd.
public func withInferenceMode<R>(_ body: () throws -> R) throws -> R {
    var guardHandle = ct_inference_guard(ptr: nil)
    try check(ct_inference_mode_enter(&guardHandle))
    defer { ct_inference_mode_exit(guardHandle) }
    return try body()
}

/// Runs `body` under CPU autocast (mixed precision) with `dtype` (bf16 by default).
public func withAutocast<R>(enabled: Bool = true, dtype: DType = .bfloat16, _ body: () throws -> R) throws -> R {
    let previous = ct_autocast_is_cpu_enabled()
    try check(ct_autocast_set_cpu(enabled, dtype.rawValue))
    defer {
        _ = ct_autocast_set_cpu(previous, DType.bfloat16.rawValue)
        if !previous { ct_autocast_clear_cache() }
    }
    return try body()
}

/// Reads LibTorch's CPU autocast switch for the calling thread (thread-local in LibTorch).
public enum Autocast {
    /// Whether CPU autocast is on (inside `withAutocast`), as `torch.is_autocast_cpu_enabled()`.
    public static var isEnabled: Bool { ct_autocast_is_cpu_enabled() }
    /// The lower-precision dtype CPU autocast casts to (bf16 unless `withAutocast` chose another).
    public static var dtype: DType? { DType(rawValue: ct_autocast_cpu_dtype()) }
}

/// Reads LibTorch's autograd switches for the calling thread (both are thread-local in LibTorch,
/// so `withNoGrad` on one thread does not affect another).
public enum GradMode {
    /// Whether operations on the current thread are recorded for autograd (`torch.is_grad_enabled()`);
    /// false inside `withNoGrad`.
    public static var isEnabled: Bool { ct_is_grad_enabled() }
    /// Whether the current thread is inside `withInferenceMode` (`torch.is_inference_mode_enabled()`).
    public static var isInferenceMode: Bool { ct_is_inference_mode_enabled() }
}
