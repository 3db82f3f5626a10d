import CTorch
import Foundation

/// Process-wide LibTorch settings: seeding, threads, devices and version.
public enum Runtime {
    /// The linked LibTorch's version, e.g. "1.13.1".
    public static var libTorchVersion: String { String(cString: ct_version()) }

    /// The linked LibTorch's major version (1 for Debian's 1.13, 2 for a torch 2.x wheel); kernels,
    /// and so the choices made from measuring them, differ between majors.
    public static let libTorchMajorVersion: Int = Int(libTorchVersion.prefix { $0.isNumber }) ?? 0

    /// The CPU kernels LibTorch dispatches to: "AVX512", "AVX2" or "DEFAULT" on x86 (as
    /// `torch.__config__.show()` says). On LibTorch 1.x the shim chooses AVX-512 where the CPU has it
    /// and `ATEN_CPU_CAPABILITY` is unset, as LibTorch 2.x decides (see `ct_core.cpp`).
    public static var cpuCapability: String {
        var cString: UnsafeMutablePointer<CChar>?
        guard ct_cpu_capability(&cString) == CT_OK, let cString else { return "unknown" }
        defer { ct_string_free(cString) }
        return String(cString: cString)
    }

    /// Seeds LibTorch's default generators (CPU and, when present, CUDA) for reproducible runs.
    public static func manualSeed(_ seed: UInt64) {
        _ = ct_manual_seed(seed)
    }

    /// Intra-op parallelism (threads used inside one operation).
    public static var numThreads: Int {
        get { Int(ct_get_num_threads()) }
    }

    /// Sets the intra-op thread count.
    ///
    /// - Throws: a `TorchError` unless `1 <= n <= maxThreads`: far more threads than
    ///   cores only slows LibTorch down, and tens of thousands of them hang the process.
    public static func setNumThreads(_ n: Int) throws {
        guard n >= 1, n <= maxThreads else {
            throw TorchError("thread count \(n) is out of range: give 1 to \(maxThreads) (4 × \(coresDescription))")
        }
        try check(ct_set_num_threads(Int32(n)))
    }

    /// The cores this process may use: the machine's, at most its CPU affinity and its control
    /// groups' CPU quota allow (`ProcessResources`).
    public static var coreCount: Int { ProcessResources.current.cores }

    /// `coreCount` in words, for messages: "this machine's 8 cores", or "the 2 cores this process may
    /// use under its CPU affinity or control group's quota".
    public static var coresDescription: String {
        let count = "\(coreCount) core\(coreCount == 1 ? "" : "s")"
        return ProcessResources.current.coresAreLimited
            ? "the \(count) this process may use under its CPU affinity or control group's quota" : "this machine's \(count)"
    }

    /// The most intra-op threads (and, by the same rule, data-loading workers) worth asking for:
    /// 4 × the cores, at least 8.
    public static var maxThreads: Int { max(8, 4 * coreCount) }

    /// The memory this process may use, in bytes (what allocation estimates are checked against): the
    /// machine's physical memory, at most its control groups' limit (`ProcessResources`).
    public static var usableMemory: Int { ProcessResources.current.memoryBytes }

    /// `usableMemory` in words, given as `formatted` ("24.1 GB"): "this machine's 24.1 GB", or "the
    /// 4.3 GB this process may use under its control group's limit".
    public static func describeUsableMemory(_ formatted: String) -> String {
        ProcessResources.current.memoryIsLimited
            ? "the \(formatted) this process may use under its control group's limit" : "this machine's \(formatted)"
    }

    /// Uses every core this process may use for intra-op parallelism unless `OMP_NUM_THREADS` says otherwise.
    /// (Debian's LibTorch 1.13 starts with a single thread even on multi-core machines.)
    public static func useAvailableCores() {
        if ProcessInfo.processInfo.environment["OMP_NUM_THREADS"] != nil { return }
        _ = ct_set_num_threads(Int32(coreCount))
    }

    /// Makes the C allocator keep freed memory for reuse (glibc: no `mmap` per large block, no
    /// trimming of the heap), as PyTorch's own advice to use jemalloc or tcmalloc on CPU does.
    /// Activations of a 224-px batch are tens of MB each; by default glibc maps and unmaps each of
    /// them, and every forward pass pays its page faults again (MobileNetV2 inference at batch 32
    /// in PyTorch 1.13 on the 2-core machine: 97–109 → 169–207 img/s with glibc's equivalent
    /// `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=…`). All threads also share glibc's main arena: the
    /// arena of any other thread keeps its heaps under 64 MB and maps a larger block afresh whatever
    /// the other settings say, so a server's inference thread paid those faults on every batch
    /// (`finetune serve`, MobileNetV2 at concurrency 32: 79–98 → 120 img/s). Resident memory then
    /// stays at its peak instead of shrinking between steps. Call it once, early, before other
    /// threads allocate; `finetune` does. Returns false where the C library has no such settings
    /// (macOS), changing nothing.
    @discardableResult
    public static func retainFreedMemory() -> Bool {
        let applied = ct_retain_freed_memory()
        if applied { retainsFreedMemory = true }
        return applied
    }

    /// Whether `retainFreedMemory()` has taken effect in this process.
    public private(set) static var retainsFreedMemory = false

    /// Whether the linked LibTorch has CUDA support and sees at least one GPU (`torch.cuda.is_available()`).
    public static var cudaIsAvailable: Bool { ct_cuda_is_available() }
    /// The number of visible CUDA GPUs (`torch.cuda.device_count()`); 0 without CUDA.
    public static var cudaDeviceCount: Int { Int(ct_cuda_device_count()) }
    /// Whether Apple's Metal (MPS) backend is usable (`torch.backends.mps.is_available()`).
    public static var mpsIsAvailable: Bool { ct_mps_is_available() }

    /// The default CPU generator's state (a uint8 tensor) — save it to resume a run exactly.
    public static func cpuRNGState() throws -> Tensor {
        try Tensor.make { ct_cpu_rng_get_state($0) }
    }

    /// Restores the default CPU generator from a state saved by `cpuRNGState()` (`torch.set_rng_state`).
    /// Throws if `state` is not such a uint8 tensor.
    public static func setCPURNGState(_ state: Tensor) throws {
        try check(ct_cpu_rng_set_state(state.handle))
    }
}
