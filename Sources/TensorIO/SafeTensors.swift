import Foundation
import Torch

/// A parsed safetensors file: tensors in file order plus the free-form `__metadata__`.
public struct SafeTensorsFile {
    public var tensors: StateDict
    public var metadata: [String: String]
    public init(tensors: StateDict, metadata: [String: String] = [:]) {
        self.tensors = tensors
        self.metadata = metadata
    }
}

/// Reading and writing the safetensors format (https://github.com/huggingface/safetensors),
/// interoperable with Python's `safetensors` package.
public enum SafeTensors {
    /// Reads a file, memory-mapping it; tensors reference the mapping without copying.
    public static func read(_ path: String) throws -> SafeTensorsFile {
        throw TorchError("SafeTensors.read is not implemented yet")
    }

    /// The tensors of a file (see `read`).
    public static func load(_ path: String) throws -> StateDict { try read(path).tensors }

    /// Writes atomically (temporary file in the same folder, then rename).
    public static func write(_ tensors: StateDict, metadata: [String: String] = [:], to path: String) throws {
        throw TorchError("SafeTensors.write is not implemented yet")
    }
}
