import Foundation
import TensorIO
import Torch
import XCTest

/// `NumPy.header(ofFileAt:)` reads back the dtype and shape `NumPy.write` puts in a header, for
/// vectors (`(9,)`), matrices and scalars, and refuses what is not a `.npy`.
final class NumPyTests: XCTestCase {
    func testTheHeaderReadsBackWhatWriteRecorded() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cases: [(Tensor, String, [Int])] = [
            (try Tensor.zeros([9, 512]), "<f4", [9, 512]),
            (try Tensor([Int64](0..<9), shape: [9]), "<i8", [9]),
            (try Tensor.zeros([2, 3, 4]).to(.float64), "<f8", [2, 3, 4]),
        ]
        for (i, (tensor, descriptor, shape)) in cases.enumerated() {
            let path = "\(folder)/\(i).npy"
            try NumPy.write(tensor, to: path)
            let header = try XCTUnwrap(NumPy.header(ofFileAt: path), path)
            XCTAssertEqual(header.descriptor, descriptor)
            XCTAssertEqual(header.shape, shape)
        }
        try Foundation.Data("not numpy at all".utf8).write(to: URL(fileURLWithPath: "\(folder)/text.npy"))
        XCTAssertNil(NumPy.header(ofFileAt: "\(folder)/text.npy"))
        XCTAssertNil(NumPy.header(ofFileAt: "\(folder)/missing.npy"))
    }
}
