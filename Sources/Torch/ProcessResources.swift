import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The cores and memory this process may use: the machine's, less what its CPU affinity (`taskset`,
/// a cpuset) and its control groups (a container's `--cpus` and `--memory`, Kubernetes' limits; cgroup
/// v1 or v2) allow. Foundation's `activeProcessorCount` and `physicalMemory` report the machine's on
/// Linux, so in a container limited to 2 CPUs of a 64-core host LibTorch ran 64 threads (each one
/// throttled by the quota), and a cache checked against 64 GB of memory was killed by the container's
/// 4 GB limit with no word.
///
/// A limit is read at every level of the process's cgroup path up to the hierarchy's root, as the
/// kernel applies each of them: the smallest wins. A CPU quota rounds up to whole cores (0.5 CPU: 1).
public struct ProcessResources: Equatable, Sendable {
    /// Cores: the machine's online processors, at most those of the CPU affinity and the CPU quota.
    public var cores: Int
    /// Memory in bytes: the machine's physical memory, at most the control groups' limit.
    public var memoryBytes: Int
    /// Whether a CPU quota or affinity leaves fewer cores than the machine has.
    public var coresAreLimited: Bool
    /// Whether a control group's memory limit is below the machine's memory.
    public var memoryIsLimited: Bool

    /// This process's, read once (a process does not change container).
    public static let current = ProcessResources.read()

    /// Reads the machine's figures, the affinity and the control groups from `/proc` and `/sys`.
    static func read() -> ProcessResources {
        let machineCores = max(1, ProcessInfo.processInfo.activeProcessorCount)
        let machineMemory = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        #if os(Linux)
        var limits = CgroupLimits()
        if let cgroups = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
           let mounts = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) {
            limits = CgroupLimits(procSelfCgroup: cgroups, mountInfo: mounts) { try? String(contentsOfFile: $0, encoding: .utf8) }
        }
        return ProcessResources(machineCores: machineCores, affinityCores: affinityCount(),
                                machineMemory: machineMemory, limits: limits)
        #else
        return ProcessResources(machineCores: machineCores, affinityCores: nil, machineMemory: machineMemory,
                                limits: CgroupLimits())
        #endif
    }

    /// The figures from their parts (nil: no such limit).
    init(machineCores: Int, affinityCores: Int?, machineMemory: Int, limits: CgroupLimits) {
        var cores = max(1, machineCores)
        if let affinity = affinityCores, affinity >= 1 { cores = min(cores, affinity) }
        if let quota = limits.cpus, quota > 0 { cores = min(cores, max(1, Int(quota.rounded(.up)))) }
        self.cores = cores
        coresAreLimited = cores < max(1, machineCores)
        memoryBytes = min(machineMemory, limits.memoryBytes ?? Int.max)
        memoryIsLimited = memoryBytes < machineMemory
    }

    #if os(Linux)
    /// The CPUs of this process's affinity mask, from `Cpus_allowed_list` in `/proc/self/status` (nil
    /// when it cannot be read). Swift's Glibc module does not export `sched_getaffinity`.
    static func affinityCount() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        return status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") }
            .flatMap { cpuCount(ofList: String($0.dropFirst("Cpus_allowed_list:".count))) }
    }
    #endif

    /// The open-file limit (`ulimit -n`): `soft` is what applies, `hard` how far it may be raised.
    public struct OpenFileLimit: Equatable, Sendable {
        public var soft: Int
        public var hard: Int
    }

    /// Raises this process's soft open-file limit to its hard limit (at most 1,048,576, Linux's
    /// default `nr_open`), as Go's runtime does at start, and returns the limits then in force (nil
    /// when they cannot be read). A server holds a descriptor per connection: the usual soft limit of
    /// 1,024 under a hard one of 524,288 stalled clients past about a thousand connections.
    @discardableResult
    public static func raiseOpenFileLimit() -> OpenFileLimit? {
        #if os(Linux)
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let resource = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return nil }
        let ceiling = rlim_t(1 << 20)
        let wanted = min(limit.rlim_max, ceiling)
        if limit.rlim_cur < wanted {
            var raised = limit
            raised.rlim_cur = wanted
            if setrlimit(resource, &raised) == 0 { limit = raised }
        }
        func int(_ value: rlim_t) -> Int { value > rlim_t(Int.max) ? Int.max : Int(value) }
        return OpenFileLimit(soft: int(limit.rlim_cur), hard: int(limit.rlim_max))
    }

    /// The descriptors this process has open (the entries of `/proc/self/fd`; nil where there is none).
    public static func openDescriptorCount() -> Int? {
        #if os(Linux)
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return nil }
        return max(0, entries.count - 1)  // less the descriptor that lists the folder
        #else
        return nil
        #endif
    }

    /// The CPUs of a Linux CPU list ("0-3,8,10-11": 7), nil when it is not one.
    static func cpuCount(ofList list: String) -> Int? {
        var count = 0
        for range in list.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let ends = range.split(separator: "-", omittingEmptySubsequences: false).map { Int($0) }
            if ends.count == 1, ends[0] != nil {
                count += 1
            } else if ends.count == 2, let low = ends[0], let high = ends[1], low <= high {
                count += high - low + 1
            } else {
                return nil
            }
        }
        return count > 0 ? count : nil
    }
}

/// The tightest CPU quota and memory limit of a process's control groups, from `/proc/self/cgroup`
/// (which groups) and `/proc/self/mountinfo` (where their hierarchies are mounted). Both cgroup v1
/// (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `memory.limit_in_bytes`) and v2 (`cpu.max`,
/// `memory.max`) files are read wherever they exist; a hybrid host has both.
struct CgroupLimits: Equatable {
    /// CPUs the quota allows (1.5 = one and a half cores' time per period); nil: no quota.
    var cpus: Double?
    /// Bytes; nil: no limit.
    var memoryBytes: Int?

    init(cpus: Double? = nil, memoryBytes: Int? = nil) {
        self.cpus = cpus
        self.memoryBytes = memoryBytes
    }

    /// Reads the limits with `read` (a file's contents, nil when it cannot be read).
    init(procSelfCgroup: String, mountInfo: String, read: (String) -> String?) {
        let mounts = Self.cgroupMounts(mountInfo)
        for line in procSelfCgroup.split(separator: "\n") {
            // hierarchy-ID:controller-list:path ("0::/path" is the v2 hierarchy).
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let controllers = Set(fields[1].split(separator: ",").map(String.init))
            let path = String(fields[2])
            let isV2 = fields[0] == "0" && fields[1].isEmpty
            let mount = isV2 ? mounts.first { $0.isV2 }
                             : mounts.first { !$0.isV2 && !$0.controllers.isDisjoint(with: controllers) }
            guard let mount else { continue }
            for directory in mount.directories(for: path) {
                if isV2 || controllers.contains("cpu") {
                    let quota = isV2 ? read(directory + "/cpu.max").flatMap(Self.cpusOfV2)
                                     : Self.cpusOfV1(quota: read(directory + "/cpu.cfs_quota_us"),
                                                     period: read(directory + "/cpu.cfs_period_us"))
                    if let quota { cpus = min(cpus ?? .infinity, quota) }
                }
                if isV2 || controllers.contains("memory") {
                    let limit = read(directory + (isV2 ? "/memory.max" : "/memory.limit_in_bytes")).flatMap(Self.bytes)
                    if let limit { memoryBytes = min(memoryBytes ?? .max, limit) }
                }
            }
        }
    }

    /// A cgroup hierarchy's mount: its mount point, the cgroup path it shows as its root, and (v1)
    /// the controllers it holds.
    struct Mount: Equatable {
        var root: String
        var mountPoint: String
        var isV2: Bool
        var controllers: Set<String>

        /// The folders of `path`'s group and of each group above it within this mount, innermost
        /// first. A path outside the mount's root (a cgroup namespace shows "/") is the mount point.
        func directories(for path: String) -> [String] {
            var relative = path
            if root != "/" {
                guard path == root || path.hasPrefix(root + "/") else { return [mountPoint] }
                relative = String(path.dropFirst(root.count))
            }
            var parts = relative.split(separator: "/").map(String.init)
            var directories: [String] = []
            while true {
                directories.append(([mountPoint] + parts).joined(separator: "/"))
                if parts.isEmpty { return directories }
                parts.removeLast()
            }
        }
    }

    /// The cgroup mounts of a `/proc/self/mountinfo`: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS
    /// [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS" (octal escapes such as `\040` decoded).
    static func cgroupMounts(_ mountInfo: String) -> [Mount] {
        mountInfo.split(separator: "\n").compactMap { line -> Mount? in
            let fields = line.split(separator: " ").map(String.init)
            guard let dash = fields.firstIndex(of: "-"), dash >= 6, fields.count >= dash + 3 else { return nil }
            let type = fields[dash + 1]
            guard type == "cgroup" || type == "cgroup2" else { return nil }
            let options = Set(fields[dash + 3].split(separator: ",").map(String.init))
            return Mount(root: unescape(fields[3]), mountPoint: unescape(fields[4]), isV2: type == "cgroup2",
                         controllers: type == "cgroup2" ? [] : options)
        }
    }

    /// mountinfo's octal escapes (`\040` for a space) decoded.
    static func unescape(_ field: String) -> String {
        guard field.contains("\\") else { return field }
        var bytes: [UInt8] = [], utf8 = Array(field.utf8), i = 0
        while i < utf8.count {
            if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
               let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                bytes.append(value)
                i += 4
            } else {
                bytes.append(utf8[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// v2 `cpu.max`: "QUOTA PERIOD" in microseconds, or "max PERIOD" (no quota).
    static func cpusOfV2(_ text: String) -> Double? {
        let fields = text.split(whereSeparator: \.isWhitespace)
        guard fields.count == 2, let quota = Double(fields[0]), let period = Double(fields[1]), quota > 0, period > 0 else {
            return nil
        }
        return quota / period
    }

    /// v1 `cpu.cfs_quota_us` (-1: no quota) over `cpu.cfs_period_us`.
    static func cpusOfV1(quota: String?, period: String?) -> Double? {
        guard let quota = quota.flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
              let period = period.flatMap({ Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }),
              quota > 0, period > 0 else { return nil }
        return quota / period
    }

    /// A memory limit file's bytes: nil for "max" (v2) or v1's page-rounded `LLONG_MAX` (no limit).
    static func bytes(_ text: String) -> Int? {
        guard let value = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > 0,
              value < Int.max / 2 else { return nil }
        return value
    }
}
