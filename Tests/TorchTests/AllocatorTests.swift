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
    /// the freed blocks coalesce and later rounds reuse them without faults. How many rounds that takes
    /// depends on what earlier tests left in the heap, so the rounds run until two in a row fault
    /// fewer than 1,000 pages, at most 10.
    func testFreedTensorMemoryIsReusedWithoutNewPageFaults() throws {
        #if !os(Linux)
        throw XCTSkip("glibc allocator settings")
        #else
        // The fault counter works here: touching 16 MB of freshly mapped memory faults its 4,096 pages.
        let bytes = 16 * 1024 * 1024
        let fresh = try XCTUnwrap(mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        XCTAssertNotEqual(fresh, MAP_FAILED)
        let beforeTouch = minorFaults()
        memset(fresh, 1, bytes)
        XCTAssertGreaterThanOrEqual(minorFaults() - beforeTouch, 4_000)
        munmap(fresh, bytes)

        XCTAssertTrue(Runtime.retainFreedMemory())
        XCTAssertTrue(Runtime.retainsFreedMemory)
        var faults: [Int] = []
        while faults.count < 10 && !(faults.suffix(2).count == 2 && faults.suffix(2).allSatisfy { $0 < 1_000 }) {
            let before = minorFaults()
            let tensors = try [48, 40, 24, 8].map { try Tensor.ones([$0 * 1024 * 1024 / 4]) }
            XCTAssertEqual(try tensors[3].sum().item(), Double(2 * 1024 * 1024))
            faults.append(minorFaults() - before)
        }
        // Each round touches 120 MB (30,720 pages of 4 KB); retained, two rounds in a row map none of it.
        XCTAssertTrue(faults.suffix(2).allSatisfy { $0 < 1_000 }, "page faults per round: \(faults)")
        #endif
    }
}
