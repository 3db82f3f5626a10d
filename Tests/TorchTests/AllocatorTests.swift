import Foundation
import Torch
import XCTest

/// `Runtime.retainFreedMemory`: a large tensor freed and allocated again reuses the same pages
/// instead of mapping fresh ones (each of which costs a page fault on first touch).
final class AllocatorTests: XCTestCase {
    /// Minor page faults of this process so far.
    private func minorFaults() -> Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_minflt
    }

    /// Rounds of "allocate activation-sized tensors, touch them, free them", as forward passes do.
    /// glibc's defaults map each block above 32 MB afresh (28,674 faults every round here); retained,
    /// the freed blocks coalesce and later rounds reuse them without faults.
    func testFreedTensorMemoryIsReusedWithoutNewPageFaults() throws {
        #if !os(Linux)
        throw XCTSkip("glibc allocator settings")
        #else
        XCTAssertTrue(Runtime.retainFreedMemory())
        XCTAssertTrue(Runtime.retainsFreedMemory)
        var faults: [Int] = []
        for _ in 0..<5 {
            let before = minorFaults()
            let tensors = try [48, 40, 24, 8].map { try Tensor.ones([$0 * 1024 * 1024 / 4]) }
            XCTAssertEqual(try tensors[3].sum().item(), Double(2 * 1024 * 1024))
            faults.append(minorFaults() - before)
        }
        // The first round maps 120 MB (30,720 pages of 4 KB); the last must not map it again.
        XCTAssertGreaterThan(faults[0], 10_000, "\(faults)")
        XCTAssertLessThan(faults[4], 1_000, "page faults per round: \(faults)")
        #endif
    }
}
