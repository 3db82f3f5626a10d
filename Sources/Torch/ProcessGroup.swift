import CTorch

/// A c10d `TCPStore`: the key-value rendezvous of a process group. Rank 0 hosts it (`isServer`);
/// the others connect to it, retrying until `timeout` runs out. The handle is freed in `deinit`.
public final class TCPStore: @unchecked Sendable {
    let handle: ct_store
    /// The address the store was reached at (rank 0's listening address for the others).
    public let host: String
    /// Its TCP port.
    public let port: Int

    /// Listens on `port` (`isServer`, rank 0) or connects to `host:port`, failing after `timeout`
    /// seconds with c10d's message (refused connection, address already in use, …).
    public init(host: String, port: Int, worldSize: Int, isServer: Bool, timeout: Double) throws {
        guard (0...65535).contains(port) else { throw TorchError("port \(port) is not a TCP port (0...65535)") }
        var out = ct_store(ptr: nil)
        try check(ct_store_create(host, UInt16(port), Int32(worldSize), isServer, Self.milliseconds(timeout), &out))
        handle = out
        self.host = host
        self.port = port
    }

    deinit { ct_store_free(handle) }

    /// Atomically adds `delta` to the integer at `key` (0 when new) and returns the sum (`Store.add`).
    @discardableResult
    public func add(_ key: String, _ delta: Int) throws -> Int {
        var out: Int64 = 0
        try check(ct_store_add(handle, key, Int64(delta), &out))
        return Int(out)
    }

    static func milliseconds(_ seconds: Double) -> Int64 { Int64((seconds * 1000).rounded(.up)) }
}

/// A c10d process group (`torch.distributed`'s "gloo" backend, or "nccl" in CUDA builds): collectives
/// between `worldSize` processes. Every collective waits at most `timeout` seconds, so a peer that died or
/// never came is a thrown `TorchError`, never a hang. The handle is freed in `deinit`.
public final class ProcessGroup: @unchecked Sendable {
    let handle: ct_process_group
    /// The store the group met through (kept alive with the group).
    public let store: TCPStore
    /// This process's rank, 0..<worldSize.
    public let rank: Int
    /// The number of processes in the group.
    public let worldSize: Int
    /// The limit, in seconds, on connecting and on each collective.
    public let timeout: Double

    /// Whether this LibTorch build has c10d with Gloo (false for builds without gloo's headers).
    public static var isGlooAvailable: Bool { ct_distributed_gloo_available() }
    /// Whether this LibTorch build has NCCL (CUDA) process groups.
    public static var isNCCLAvailable: Bool { ct_distributed_nccl_available() }

    /// The transport of a group's collectives (`torch.distributed`'s backend names).
    public enum Backend: String, Sendable {
        /// CPU tensors over TCP (Gloo); every LibTorch build with c10d's Gloo.
        case gloo
        /// CUDA tensors over NVLink/InfiniBand/TCP (NCCL); only CUDA builds with NCCL (`isNCCLAvailable`).
        case nccl
    }

    /// Joins the group of `worldSize` processes meeting at `store` as `rank`. With Gloo, interfaces come
    /// from `GLOO_SOCKET_IFNAME`, else this host's name, as in `torch.distributed`; with NCCL, each rank
    /// uses the current CUDA device and NCCL's own variables (`NCCL_SOCKET_IFNAME`, …).
    public init(store: TCPStore, rank: Int, worldSize: Int, timeout: Double, backend: Backend = .gloo) throws {
        var out = ct_process_group(ptr: nil)
        let milliseconds = TCPStore.milliseconds(timeout)
        switch backend {
        case .gloo:
            try check(ct_process_group_gloo_create(store.handle, Int32(rank), Int32(worldSize), milliseconds, &out))
        case .nccl:
            try check(ct_process_group_nccl_create(store.handle, Int32(rank), Int32(worldSize), milliseconds, &out))
        }
        handle = out
        self.store = store
        self.rank = rank
        self.worldSize = worldSize
        self.timeout = timeout
    }

    deinit { ct_process_group_free(handle) }

    /// Sums each tensor element-wise across ranks, in place (`all_reduce` with `ReduceOp.SUM`).
    /// Several tensors (one dtype) travel as one flat buffer: one collective per call.
    public func allReduceSum(_ tensors: [Tensor]) throws {
        try withHandles(tensors) { try check(ct_process_group_allreduce_sum(handle, $0, $1)) }
    }

    /// Overwrites every rank's tensors with `root`'s, in place (`broadcast`).
    public func broadcast(_ tensors: [Tensor], from root: Int = 0) throws {
        try withHandles(tensors) { try check(ct_process_group_broadcast(handle, $0, $1, Int32(root))) }
    }

    /// Returns when every rank has called it (`barrier`).
    public func barrier() throws { try check(ct_process_group_barrier(handle)) }

    /// Every rank's `tensor` (the same shape everywhere), stacked along a new first dimension in rank order.
    public func allGather(_ tensor: Tensor) throws -> Tensor {
        try Tensor.make { ct_process_group_allgather(handle, tensor.handle, $0) }
    }

    /// Batch normalisation in training behaviour over every rank's batch together (PyTorch's
    /// `SyncBatchNorm`): the per-channel statistics are those of all ranks' samples, combined in rank
    /// order, and the running statistics (when given) are updated with `momentum` as `batchNorm` does.
    /// Its backward pass exchanges gradient sums with the other ranks, so every rank must call it for
    /// the same layers in the same order, and run backward likewise.
    public func syncBatchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                              momentum: Double, eps: Double) throws -> Tensor {
        try Tensor.make {
            ct_sync_batch_norm(handle, x.handle, weight.orNull, bias.orNull, runningMean.orNull, runningVar.orNull,
                               momentum, eps, $0)
        }
    }

    private func withHandles(_ tensors: [Tensor], _ body: (UnsafePointer<ct_tensor>, Int32) throws -> Void) throws {
        guard !tensors.isEmpty else { return }
        let handles = tensors.map(\.handle)
        try handles.withUnsafeBufferPointer { try body($0.baseAddress!, Int32($0.count)) }
        withExtendedLifetime(tensors) {}
    }
}
