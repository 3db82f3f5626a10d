// libFuzzer target: `.pth` import (TensorIO/PthImport.swift: format detection, the zip reader in
// Pickle/ZipArchive.swift, the legacy format, storages and strided tensor views), through the public
// PthImport.read on a file. Imported state dicts are encoded as safetensors and read back: names,
// shapes and bytes must survive (what `PthImport.convert` relies on).
import Foundation
import FuzzSupport
import TensorIO
import Torch

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPth(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzScratch.file("input.pth", UnsafeBufferPointer(start: data, count: size))
    let result: PthImport.Result
    do {
        result = try PthImport.read(path)
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    _ = result.report.description
    guard result.tensors.count == result.report.tensorCount else {
        fatalError("report counts \(result.report.tensorCount) tensors, the state dict has \(result.tensors.count)")
    }
    let encoded: [UInt8]
    do {
        encoded = try SafeTensors.encode(result.tensors)
    } catch {
        return 0  // e.g. a tensor named '__metadata__', which safetensors reserves
    }
    do {
        let back = try SafeTensors.read(FuzzScratch.file("roundtrip.safetensors", encoded), copy: true).tensors
        guard back.keys.sorted() == result.tensors.keys.sorted() else {
            fatalError("safetensors round trip changed the names")
        }
        for (name, tensor) in result.tensors {
            guard let other = back[name], other.shape == tensor.shape, other.dtype == tensor.dtype,
                  try SafeTensors.encode(StateDict([("t", other)])) == SafeTensors.encode(StateDict([("t", tensor)])) else {
                fatalError("safetensors round trip changed tensor '\(name)'")
            }
        }
    } catch {
        fatalError("reading back the safetensors encoding failed: \(error)")
    }
    return 0
}
