import Foundation
import XCTest

/// Runs the field's own tools (onnx, onnxruntime, torchvision, safetensors, TensorBoard) as judges of
/// the files finetune writes: Python scripts under `tools/interop/`, run by the project's interop venv
/// `.venv-interop` that `scripts/setup` makes. Only interop tests use it; every other test is
/// Python-free.
///
/// Without the venv an interop test fails and says why. It is skipped only when the environment sets
/// `FINETUNE_SKIP_INTEROP=1` (CI never does).
public enum Interop {
    /// The repository root (above `Tests/`).
    public static let repositoryRoot: URL = Fixtures.directory.deletingLastPathComponent().deletingLastPathComponent()

    /// `.venv-interop/bin/python`, after the skip check. Throws `XCTSkip` with `FINETUNE_SKIP_INTEROP=1`;
    /// fails the test (and throws) when the venv is missing.
    public static func python(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        if ProcessInfo.processInfo.environment["FINETUNE_SKIP_INTEROP"] == "1" {
            throw XCTSkip("FINETUNE_SKIP_INTEROP=1: interop checks skipped")
        }
        let python = repositoryRoot.appendingPathComponent(".venv-interop/bin/python").path
        guard FileManager.default.isExecutableFile(atPath: python) else {
            let message = "\(python) is missing: the interop venv is made by scripts/setup (it pip-installs "
                + "tools/interop/requirements.txt into .venv-interop; see its output for why it failed). "
                + "Set FINETUNE_SKIP_INTEROP=1 to skip interop tests deliberately."
            XCTFail(message, file: file, line: line)
            throw InteropError(message: message)
        }
        return python
    }

    /// Runs `tools/interop/<script>` with `arguments` under the venv's Python; returns its exit status
    /// and its standard output and error together.
    public static func run(_ script: String, _ arguments: [String], file: StaticString = #filePath,
                           line: UInt = #line) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try python(file: file, line: line))
        process.arguments = [repositoryRoot.appendingPathComponent("tools/interop/" + script).path] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// A fresh temporary folder for one test's files.
    public static func temporaryDirectory(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "finetune-interop-\(name)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// The interop venv is missing.
public struct InteropError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}
