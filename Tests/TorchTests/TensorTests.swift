import XCTest
@testable import Torch

final class TensorTests: XCTestCase {
    func testRoundTripFromArray() throws {
        let t = try Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
        XCTAssertEqual(t.shape, [2, 3])
        XCTAssertEqual(t.dtype, .float32)
        XCTAssertEqual(t.device, .cpu)
        XCTAssertEqual(try t.floats(), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(try t.transpose(0, 1).floats(), [1, 4, 2, 5, 3, 6])
    }

    func testArithmeticAndReductions() throws {
        let a = try Tensor([1, 2, 3] as [Float])
        let b = try Tensor([10, 20, 30] as [Float])
        XCTAssertEqual(try (a + b).floats(), [11, 22, 33])
        XCTAssertEqual(try (b - a * 2).floats(), [8, 16, 24])
        XCTAssertEqual(try (1.0 - a).floats(), [0, -1, -2])
        XCTAssertEqual(try (a + b).sum().item(), 66)
        XCTAssertEqual(try b.mean().item(), 20)
        XCTAssertEqual(try b.argmax(dim: 0).itemInt(), 2)
    }

    func testShapeMismatchedConvThrowsLibTorchMessageAndProcessContinues() throws {
        let x = try Tensor.randn([1, 3, 8, 8])
        let w = try Tensor.randn([4, 5, 3, 3])  // expects 5 input channels, input has 3
        XCTAssertThrowsError(try Functional.conv2d(x, weight: w)) { error in
            let message = (error as? TorchError)?.message ?? ""
            XCTAssertTrue(message.contains("channels"), "unexpected message: \(message)")
            XCTAssertFalse(message.contains("Exception raised from"))
        }
        // The process still works afterwards.
        let good = try Tensor.randn([4, 3, 3, 3])
        XCTAssertEqual(try Functional.conv2d(x, weight: good).shape, [1, 4, 6, 6])
    }

    /// LibTorch's enforce failures (such as a failed allocation) carried about 40 lines of C++
    /// stack frames into the message a user saw; only the message itself is kept now.
    func testAnAllocationFailureIsAShortMessageWithoutStackFrames() throws {
        XCTAssertThrowsError(try Tensor.zeros([1 << 40])) { error in  // 4 TiB of float32
            let message = (error as? TorchError)?.message ?? "\(error)"
            XCTAssertTrue(message.contains("allocate"), message)
            XCTAssertFalse(message.contains("frame #"), message)
            XCTAssertLessThan(message.split(separator: "\n").count, 4, message)
        }
    }

    func testAutogradComputesGradient() throws {
        let x = try Tensor([1, 2, 3] as [Float]).setRequiresGrad()
        let y = try (x * x).sum()
        try y.backward()
        XCTAssertEqual(try x.grad?.floats(), [2, 4, 6])
        try withNoGrad {
            let z = try x * 2
            XCTAssertFalse(z.requiresGrad)
        }
    }
    /// Wrapped memory with too few strides, a negative stride or an extent past int64 is a thrown
    /// error: the first read past the strides array (SIGSEGV), the others aborted the process inside
    /// LibTorch 1.13's noexcept storage-size computation.
    func testWrappingMemoryChecksItsLayout() throws {
        final class Owner {
            let storage = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 16)
            deinit { storage.deallocate() }
        }
        let owner = Owner()
        func message(_ shape: [Int], _ strides: [Int]?) -> String {
            let result = Result {
                try Tensor.wrapping(owner.storage, shape: shape, strides: strides, dtype: .float32, owner: owner).contiguous()
            }
            if case .failure(let error) = result { return "\(error)" }
            return "no error"
        }
        XCTAssertEqual(message([2, 2, 2, 2], [1]), "wrapping memory of shape [2, 2, 2, 2] needs 4 strides, got 1")
        XCTAssertEqual(message([4], [1, 1]), "wrapping memory of shape [4] needs 1 strides, got 2")
        XCTAssertEqual(message([4], [-100_000_000]),
                       "negative stride -100000000 in dimension 0: wrapped memory needs strides of 0 or more")
        XCTAssertEqual(message([-1], nil), "negative size -1 in dimension 0")
        XCTAssertEqual(message([1 << 40, 1 << 40], nil), "the shape and strides span more elements than an int64 counts")
        XCTAssertEqual(message([2, 2], [1 << 62, 1]), "the shape and strides span more bytes than an int64 counts")
        XCTAssertEqual(message([4, 2], [2, 1]), "no error")
        XCTAssertEqual(message([0, 5], [1, 1 << 62]), "no error")
    }
}

final class IntegralScalarTests: XCTestCase {
    func testWholeScalarsWorkOnIntegralTensors() throws {
        let counter = try Tensor.zeros([], dtype: .int64)
        try counter.add_(1)
        try counter.add_(Tensor(scalar: 2, dtype: .int64), alpha: 1)
        XCTAssertEqual(try counter.itemInt(), 3)
        XCTAssertEqual(try (Tensor([1, 2] as [Int64]) * 3).toArray(Int64.self), [3, 6])
        XCTAssertEqual(try (Tensor([1, 2] as [Int64]) + Tensor([5, 5] as [Int64])).toArray(Int64.self), [6, 7])
    }
}
