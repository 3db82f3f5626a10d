@testable import Torch
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `ProcessResources`: the cores and memory a process may use under CPU affinity and control groups,
/// from `/proc/self/cgroup` and `/proc/self/mountinfo` as hosts and containers write them.
final class ProcessResourcesTests: XCTestCase {
    /// A hybrid host (cgroup v1 controllers, an empty v2 hierarchy at `unified`), as Debian's
    /// container hosts mount them; the process sits in nested groups.
    let hybridMounts = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        50 23 8:1 / /data\\040disk rw,relatime - ext4 /dev/sda1 rw
        """
    let hybridGroups = """
        9:name=systemd:/
        4:memory:/jobs/train
        1:cpu,cpuacct:/jobs/train
        0::/
        """

    func testV1LimitsAreTheTightestOfTheGroupAndItsParents() {
        let files = [
            "/sys/fs/cgroup/cpu,cpuacct/jobs/train/cpu.cfs_quota_us": "-1\n",  // no quota of its own
            "/sys/fs/cgroup/cpu,cpuacct/jobs/train/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/jobs/cpu.cfs_quota_us": "150000\n",  // the parent's: 1.5 CPUs
            "/sys/fs/cgroup/cpu,cpuacct/jobs/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
            "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "/sys/fs/cgroup/memory/jobs/train/memory.limit_in_bytes": "3221225472\n",
            "/sys/fs/cgroup/memory/jobs/memory.limit_in_bytes": "2147483648\n",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",  // v1's "no limit"
        ]
        let limits = CgroupLimits(procSelfCgroup: hybridGroups, mountInfo: hybridMounts) { files[$0] }
        XCTAssertEqual(limits, CgroupLimits(cpus: 1.5, memoryBytes: 2_147_483_648))
        let resources = ProcessResources(machineCores: 64, affinityCores: 64, machineMemory: 68_719_476_736, limits: limits)
        XCTAssertEqual(resources.cores, 2, "a quota of 1.5 CPUs rounds up to 2 cores")
        XCTAssertEqual(resources.memoryBytes, 2_147_483_648)
        XCTAssertTrue(resources.coresAreLimited && resources.memoryIsLimited)
    }

    func testNoLimitsLeaveTheMachinesFigures() {
        let limits = CgroupLimits(procSelfCgroup: hybridGroups, mountInfo: hybridMounts) { _ in nil }
        XCTAssertEqual(limits, CgroupLimits())
        let resources = ProcessResources(machineCores: 8, affinityCores: nil, machineMemory: 1 << 34, limits: limits)
        XCTAssertEqual(resources, ProcessResources(machineCores: 8, affinityCores: 8, machineMemory: 1 << 34, limits: CgroupLimits()))
        XCTAssertEqual(resources.cores, 8)
        XCTAssertEqual(resources.memoryBytes, 1 << 34)
        XCTAssertFalse(resources.coresAreLimited || resources.memoryIsLimited)
        // A limit above the machine's memory changes nothing.
        XCTAssertFalse(ProcessResources(machineCores: 8, affinityCores: nil, machineMemory: 1 << 30,
                                        limits: CgroupLimits(memoryBytes: 1 << 31)).memoryIsLimited)
    }

    /// A container on a cgroup v2 host with its own cgroup namespace: it sees its group as "/", and
    /// the hierarchy mounted at /sys/fs/cgroup from that group.
    func testAV2ContainerReadsItsOwnGroupAtTheMountPoint() {
        let mounts = "1200 1100 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate"
        let files = ["/sys/fs/cgroup/cpu.max": "250000 100000\n", "/sys/fs/cgroup/memory.max": "4294967296\n"]
        let limits = CgroupLimits(procSelfCgroup: "0::/\n", mountInfo: mounts) { files[$0] }
        XCTAssertEqual(limits, CgroupLimits(cpus: 2.5, memoryBytes: 4_294_967_296))
        XCTAssertEqual(ProcessResources(machineCores: 96, affinityCores: 96, machineMemory: 1 << 37, limits: limits).cores, 3)
        // "max" is no limit.
        let open = ["/sys/fs/cgroup/cpu.max": "max 100000\n", "/sys/fs/cgroup/memory.max": "max\n"]
        XCTAssertEqual(CgroupLimits(procSelfCgroup: "0::/\n", mountInfo: mounts) { open[$0] }, CgroupLimits())
    }

    /// A v2 host without a cgroup namespace: the group's path lies below the mount's root, and each
    /// level up to the root is read.
    func testAV2GroupBelowTheMountIsReadWithItsParents() {
        let mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw"
        let files = ["/sys/fs/cgroup/system.slice/docker-abc.scope/cpu.max": "max 100000",
                     "/sys/fs/cgroup/system.slice/cpu.max": "100000 100000",
                     "/sys/fs/cgroup/system.slice/docker-abc.scope/memory.max": "536870912"]
        let limits = CgroupLimits(procSelfCgroup: "0::/system.slice/docker-abc.scope\n", mountInfo: mounts) { files[$0] }
        XCTAssertEqual(limits, CgroupLimits(cpus: 1, memoryBytes: 536_870_912))
        let resources = ProcessResources(machineCores: 16, affinityCores: 4, machineMemory: 1 << 35, limits: limits)
        XCTAssertEqual(resources.cores, 1)
        // The affinity is the tighter one here.
        XCTAssertEqual(ProcessResources(machineCores: 16, affinityCores: 4, machineMemory: 1 << 35,
                                        limits: CgroupLimits(cpus: 6)).cores, 4)
        // A mount whose root is a group the path is not under is read at its mount point only.
        let bound = CgroupLimits.Mount(root: "/kubepods/pod1", mountPoint: "/sys/fs/cgroup", isV2: true, controllers: [])
        XCTAssertEqual(bound.directories(for: "/other"), ["/sys/fs/cgroup"])
        XCTAssertEqual(bound.directories(for: "/kubepods/pod1/c1"), ["/sys/fs/cgroup/c1", "/sys/fs/cgroup"])
    }

    func testMountInfoFieldsAreUnescapedAndCPUListsCounted() {
        XCTAssertEqual(CgroupLimits.unescape("/data\\040disk"), "/data disk")
        XCTAssertEqual(CgroupLimits.cgroupMounts(hybridMounts).map(\.mountPoint),
                       ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"])
        XCTAssertEqual(ProcessResources.cpuCount(ofList: "0-3,8,10-11\n"), 7)
        XCTAssertEqual(ProcessResources.cpuCount(ofList: "5"), 1)
        XCTAssertNil(ProcessResources.cpuCount(ofList: ""))
        XCTAssertNil(ProcessResources.cpuCount(ofList: "3-1"))
        XCTAssertNil(CgroupLimits.cpusOfV2("0 100000"))
        XCTAssertNil(CgroupLimits.cpusOfV1(quota: "50000", period: nil))
        XCTAssertNil(CgroupLimits.bytes("max"))
    }

    #if os(Linux)
    /// A soft open-file limit below the hard one is raised to it (at most 2^20), as Go's runtime does.
    func testALowSoftOpenFileLimitIsRaisedToTheHardOne() throws {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var before = rlimit()
        XCTAssertEqual(getrlimit(resource, &before), 0)
        defer { _ = setrlimit(resource, &before) }
        var low = before
        low.rlim_cur = min(before.rlim_max, 64)
        XCTAssertEqual(setrlimit(resource, &low), 0)
        let raised = try XCTUnwrap(ProcessResources.raiseOpenFileLimit())
        let expected = Int(min(before.rlim_max, 1 << 20))
        XCTAssertEqual(raised.soft, expected)
        var now = rlimit()
        XCTAssertEqual(getrlimit(resource, &now), 0)
        XCTAssertEqual(Int(now.rlim_cur), expected)
        XCTAssertGreaterThan(try XCTUnwrap(ProcessResources.openDescriptorCount()), 2)
    }

    /// This process's own figures: never more than the machine's, and its affinity read from /proc.
    func testThisProcessesFiguresAreWithinTheMachines() throws {
        let current = ProcessResources.current
        XCTAssertGreaterThanOrEqual(current.cores, 1)
        XCTAssertLessThanOrEqual(current.cores, ProcessInfo.processInfo.activeProcessorCount)
        XCTAssertLessThanOrEqual(current.memoryBytes, Int(clamping: ProcessInfo.processInfo.physicalMemory))
        XCTAssertNotNil(ProcessResources.affinityCount())
    }
    #endif
}
