import Foundation
import Torch
import XCTest

/// `Runtime.cpuCapability`: LibTorch runs its AVX-512 kernels wherever the CPU has AVX-512, on either
/// LibTorch major (the shim applies 2.x's rule on 1.x, whose cpuinfo misses AMD Zen 4's AVX-512).
final class CPUKernelTests: XCTestCase {
    /// The flags of /proc/cpuinfo's first processor.
    private func cpuFlags() throws -> Set<String> {
        let text = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("flags") })
        return Set(line.split(separator: ":", maxSplits: 1)[1].split(separator: " ").map(String.init))
    }

    func testLibTorchRunsTheWidestKernelsThisCPUHas() throws {
        #if !(os(Linux) && arch(x86_64))
        throw XCTSkip("x86-64 Linux: the kernel choice is read from /proc/cpuinfo")
        #else
        _ = try (Tensor.ones([4]) + 1).sum().item()  // LibTorch fixes its choice at the first kernel
        let requested = ProcessInfo.processInfo.environment["ATEN_CPU_CAPABILITY"]
        let flags = try cpuFlags()
        let capability = Runtime.cpuCapability
        if let requested, requested != "avx512" {
            XCTAssertEqual(capability, requested.uppercased(), "ATEN_CPU_CAPABILITY=\(requested) is obeyed")
        } else if ["avx512f", "avx512vl", "avx512bw", "avx512dq", "fma"].allSatisfy(flags.contains) {
            XCTAssertEqual(capability, "AVX512", "this CPU has AVX-512 F/VL/BW/DQ (LibTorch \(Runtime.libTorchVersion))")
        } else if flags.contains("avx2") && flags.contains("fma") {
            XCTAssertEqual(capability, "AVX2")
        } else {
            XCTAssertEqual(capability, "DEFAULT")
        }
        #endif
    }
}
