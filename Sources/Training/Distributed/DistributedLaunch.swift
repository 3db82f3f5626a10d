import Foundation
import Torch

/// Where this process stands in a data-parallel run, read from the variables the usual launchers set:
///
/// | launcher | rank | world size | local rank | master |
/// |---|---|---|---|---|
/// | `finetune train --nproc-per-node`, `torchrun`, Kubeflow PyTorchJob | `RANK` | `WORLD_SIZE` | `LOCAL_RANK` | `MASTER_ADDR`, `MASTER_PORT` |
/// | Slurm `srun` | `SLURM_PROCID` | `SLURM_NTASKS` | `SLURM_LOCALID` | `--master-addr` (or `MASTER_ADDR`), `--master-port` (or `MASTER_PORT`) |
///
/// `RANK`/`WORLD_SIZE` win over Slurm's variables; `--master-addr` and `--master-port` win over the
/// environment; the port defaults to 29500, as torchrun's does. A world of size 1 is an ordinary run.
///
/// torchrun's agent already listens on `MASTER_PORT`: it hosts the TCPStore itself and tells its workers
/// so with `TORCHELASTIC_USE_AGENT_STORE=True`. Then every rank, rank 0 too, connects to that store
/// (as `torch.distributed.init_process_group` does) instead of rank 0 opening its own.
public struct DistributedLaunch: Equatable, Sendable {
    /// This process's rank, 0..<worldSize.
    public var rank: Int
    /// The number of processes.
    public var worldSize: Int
    /// The rank among the processes of this machine.
    public var localRank: Int
    /// Where rank 0 listens (the TCPStore rendezvous).
    public var masterAddress: String
    /// Its TCP port.
    public var masterPort: Int
    /// Whether the launcher hosts the TCPStore at the master address (torchrun's agent,
    /// `TORCHELASTIC_USE_AGENT_STORE=True`), so that rank 0 connects to it rather than listening. Not
    /// when `--master-addr` or `--master-port` moves the rendezvous away from the agent's.
    public var launcherHostsStore: Bool

    /// torchrun's default `MASTER_PORT`.
    public static let defaultPort = 29500

    public init(rank: Int, worldSize: Int, localRank: Int, masterAddress: String, masterPort: Int,
                launcherHostsStore: Bool = false) {
        self.rank = rank
        self.worldSize = worldSize
        self.localRank = localRank
        self.masterAddress = masterAddress
        self.masterPort = masterPort
        self.launcherHostsStore = launcherHostsStore
    }

    /// The most processes a group may have (c10d's ranks are 32-bit; no real job comes near).
    public static let largestWorldSize = 1 << 20

    /// The launch `environment` describes, or nil for an ordinary single-process run. Throws naming the
    /// variable when the environment is incomplete or contradictory (e.g. `WORLD_SIZE` without `RANK`).
    public static func from(environment: [String: String], masterAddress: String? = nil,
                            masterPort: Int? = nil) throws -> DistributedLaunch? {
        func bad(_ text: String) -> Error { DistributedError.badEnvironment(text) }
        func integer(_ name: String) throws -> Int? {
            guard let text = environment[name], !text.isEmpty else { return nil }
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 0 else {
                throw bad("\(name)=\(text) is not a non-negative integer")
            }
            return value
        }
        let rank: Int, world: Int, local: Int
        let launcher: String
        if let r = try integer("RANK"), let w = try integer("WORLD_SIZE") {
            (rank, world, local, launcher) = (r, w, try integer("LOCAL_RANK") ?? r, "RANK/WORLD_SIZE")
        } else if let w = try integer("WORLD_SIZE") {
            throw bad("WORLD_SIZE=\(w) is set but RANK is not: set RANK to this process's rank (0 to \(max(0, w - 1))), "
                + "as torchrun does, or unset WORLD_SIZE")
        } else if try integer("RANK") != nil {
            throw bad("RANK is set but WORLD_SIZE is not: set WORLD_SIZE to the number of processes, or unset RANK")
        } else if let r = try integer("SLURM_PROCID"), let w = try integer("SLURM_NTASKS") {
            (rank, world, local, launcher) = (r, w, try integer("SLURM_LOCALID") ?? 0, "SLURM_PROCID/SLURM_NTASKS")
        } else {
            return nil
        }
        // c10d counts ranks in 32 bits (4294967297 trapped converting it).
        guard (1...Self.largestWorldSize).contains(world) else {
            throw bad("the world size (\(launcher)) must be 1 to \(Self.largestWorldSize), got \(world)")
        }
        guard rank < world else { throw bad("rank \(rank) is outside a world of \(world) processes (\(launcher))") }
        if world == 1 { return nil }
        guard let address = masterAddress ?? environment["MASTER_ADDR"].flatMap({ $0.isEmpty ? nil : $0 }) else {
            throw bad("\(launcher) ask for \(world) processes but no master address is given: set MASTER_ADDR or "
                + "pass --master-addr (the host of rank 0)")
        }
        let port: Int
        if let masterPort {
            port = masterPort
        } else if let text = environment["MASTER_PORT"], !text.isEmpty {
            guard let p = Int(text), (1...65535).contains(p) else { throw bad("MASTER_PORT=\(text) is not a TCP port") }
            port = p
        } else {
            port = defaultPort
        }
        return DistributedLaunch(rank: rank, worldSize: world, localRank: local, masterAddress: address, masterPort: port,
                                 launcherHostsStore: environment["TORCHELASTIC_USE_AGENT_STORE"] == "True"
                                     && masterAddress == nil && masterPort == nil)
    }

    /// Joins the group: rank 0 listens on `masterPort` (unless the launcher hosts the store), the others
    /// connect to `masterAddress`, and all meet through c10d's TCPStore, each step limited by `timeout`
    /// seconds. Errors name the address.
    public func connect(timeout: Double) throws -> DataParallel {
        guard ProcessGroup.isGlooAvailable else {
            throw DistributedError.badEnvironment("distributed training is not available in this LibTorch build "
                + "(no c10d Gloo; see docs/libtorch.md)")
        }
        let endpoint = "\(masterAddress):\(masterPort)"
        let store: TCPStore
        do {
            store = try TCPStore(host: masterAddress, port: masterPort, worldSize: worldSize, isServer: rank == 0 && !launcherHostsStore,
                                 timeout: timeout)
        } catch {
            let text = "\(error)"
            if rank == 0 && text.lowercased().contains("address already in use") {
                throw DistributedError.badEnvironment("rank 0 cannot listen on port \(masterPort) (MASTER_PORT / "
                    + "--master-port): it is already in use: \(text)")
            }
            throw DistributedError.badEnvironment("rank \(rank) could not reach the master at \(endpoint) "
                + "(MASTER_ADDR / --master-addr) within \(Self.seconds(timeout)): \(text)" + launcherStoreAdvice)
        }
        // Each rank's WORLD_SIZE, summed in the store: ranks that disagree fail Gloo's handshake with
        // a message about address sizes ("136 vs 272"), which this tells apart from a timeout.
        let joined = try? store.add("finetune/joined", 1)
        let sizes = try? store.add("finetune/world-size-sum", worldSize)
        func disagreement() -> DistributedError? {
            guard joined != nil, sizes != nil, let ranks = try? store.add("finetune/joined", 0),
                  let sum = try? store.add("finetune/world-size-sum", 0), sum != ranks * worldSize else { return nil }
            return DistributedError.badEnvironment("rank \(rank): the ranks disagree on the number of processes "
                + "(WORLD_SIZE / --nproc-per-node): this rank has \(worldSize), but the \(ranks) that joined at "
                + "\(endpoint) have \(sum) in all; start every rank with the same WORLD_SIZE")
        }
        let group: ProcessGroup
        do {
            group = try ProcessGroup(store: store, rank: rank, worldSize: worldSize, timeout: timeout)
        } catch {
            if let mismatch = disagreement() { throw mismatch }
            // Rank 0, which holds the store, may have gone already: Gloo's handshake failing on the size
            // of a peer's address list is the other ranks' sign of it.
            let sizesDiffer = "\(error)".contains("address.cc") && "\(error)".contains(" vs ")
            throw DistributedError.lostRank("rank \(rank): not all \(worldSize) processes joined the group at "
                + "\(endpoint) within \(Self.seconds(timeout)) (--dist-timeout): \(error)" + launcherStoreAdvice
                + (sizesDiffer ? " (the ranks' address lists differ in size: they were probably started with "
                   + "different WORLD_SIZE values; this rank has \(worldSize))" : ""))
        }
        // Gloo of LibTorch 2.x may form the group of the ranks this one expects while a rank expecting
        // more still waits: every rank added its size before it joined, so the sums are final here.
        if let mismatch = disagreement() { throw mismatch }
        return DataParallel(group: group)
    }

    /// What to try when the launcher's own store fails us: TCPStore's wire protocol changed between
    /// PyTorch versions, so another PyTorch's torchrun hosts a store this LibTorch cannot talk to.
    var launcherStoreAdvice: String {
        guard launcherHostsStore else { return "" }
        return ". The store at \(masterAddress):\(masterPort) is torchrun's own (TORCHELASTIC_USE_AGENT_STORE=True), "
            + "which only the torchrun of the same PyTorch as this LibTorch (\(Runtime.libTorchVersion)) serves; "
            + "with another one, run `TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --rdzv-backend c10d "
            + "--rdzv-endpoint HOST:PORT ...` so that rank 0 hosts the group's store itself"
    }

    static func seconds(_ t: Double) -> String { t == t.rounded() ? "\(Int(t)) s" : "\(t) s" }
}
