import Foundation
import TensorIO
import Torch
import XCTest

/// Has `tools/interop/check_onnx.py` (onnx's checker and onnxruntime, from `.venv-interop`) judge exported
/// models against finetune's own outputs for the same inputs. One Python process judges every case, each
/// as soon as it is added, while the test goes on exporting the next model.
public final class ONNXJudge {
    struct Case: Encodable {
        var name: String
        var onnx: String
        var inputs: String
        var expected: String
        var tolerance: Double
        var batches: [Int]
        var classes: Int
        var binary: Bool
        var output: String
        var remove: Bool
    }

    /// The folder for the cases' files (ONNX models, inputs and expected outputs).
    public let directory: String
    private let process = Process()
    private let input = Pipe(), output = Pipe()
    private var count = 0

    /// Starts the judge; fails the test (and throws) when the interop venv is missing.
    public init(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        directory = try Interop.temporaryDirectory(name)
        process.executableURL = URL(fileURLWithPath: try Interop.python(file: file, line: line))
        process.arguments = [Interop.repositoryRoot.appendingPathComponent("tools/interop/check_onnx.py").path, "-"]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Sends a case to the judge: `inputs` [N, 3, H, W] and finetune's `expected` outputs for them, and
    /// the ONNX file at `onnx`. `output` is "logits" or "probabilities"; `tolerance` is relative to the
    /// outputs' largest magnitude; `remove` deletes the files once judged.
    public func add(_ name: String, onnx: String, inputs: Tensor, expected: Tensor, classes: Int, binary: Bool = false,
                    output: String = "logits", tolerance: Double = 1e-4, batches: [Int] = [1, 7],
                    remove: Bool = false) throws {
        count += 1
        let stem = directory + "/case\(count)"
        try SafeTensors.write(StateDict([("input", inputs.contiguous())]), to: stem + ".inputs.safetensors")
        try SafeTensors.write(StateDict([("output", expected.contiguous())]), to: stem + ".expected.safetensors")
        let item = Case(name: name, onnx: onnx, inputs: stem + ".inputs.safetensors",
                        expected: stem + ".expected.safetensors", tolerance: tolerance, batches: batches,
                        classes: classes, binary: binary, output: output, remove: remove)
        try input.fileHandleForWriting.write(contentsOf: JSONEncoder().encode(item) + Foundation.Data("\n".utf8))
    }

    /// Waits for the verdicts; every case must pass. Returns the judge's report lines.
    @discardableResult
    public func judge(file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
        try input.fileHandleForWriting.close()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        let lines = text.split(separator: "\n").map(String.init)
        for reportLine in lines { print(reportLine) }
        for reportLine in lines where reportLine.contains("\"ok\": false") {
            XCTFail(reportLine, file: file, line: line)
        }
        XCTAssertEqual(process.terminationStatus, 0, "check_onnx.py failed:\n\(text)", file: file, line: line)
        XCTAssertEqual(lines.filter { $0.contains("\"ok\": true") }.count, count,
                       "not every case was judged:\n\(text)", file: file, line: line)
        return lines
    }
}

/// The 20 foolbox ImageNet photos (`imagenet_00_*.jpg` … `imagenet_19_*.jpg`), sorted.
public func foolboxPhotos(file: StaticString = #filePath, line: UInt = #line) throws -> [String] {
    guard let folder = RealAssets.foolboxData else {
        XCTFail("foolbox sample images missing: run scripts/setup", file: file, line: line)
        throw InteropError(message: "foolbox sample images missing")
    }
    let names = try FileManager.default.contentsOfDirectory(atPath: folder)
        .filter { $0.hasPrefix("imagenet_") && $0.hasSuffix(".jpg") }.sorted()
    XCTAssertEqual(names.count, 20, "expected the 20 foolbox ImageNet photos in \(folder)", file: file, line: line)
    return names.map { folder + "/" + $0 }
}
