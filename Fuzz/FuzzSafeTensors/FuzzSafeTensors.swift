// libFuzzer target: the safetensors reader (TensorIO/SafeTensors.swift: header length, JSON header,
// dtypes, shapes, offsets, overlap; zero-copy mapping or copies), through the public SafeTensors.read
// on a file. The input is the file; an odd size reads with `copy: true`, an even one memory-maps.
// Every byte of every tensor is read, so a view past the mapping would fault.
import Foundation
import FuzzSupport
import TensorIO
import Torch

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzScratch.file("input.safetensors", UnsafeBufferPointer(start: data, count: size))
    let file: SafeTensorsFile
    do {
        file = try SafeTensors.read(path, copy: size % 2 == 1)
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    var total = 0
    for (name, tensor) in file.tensors {
        let bytes = tensor.count * tensor.dtype.byteSize
        guard bytes <= size else { fatalError("tensor '\(name)' has \(bytes) bytes, more than the file (\(size))") }
        guard bytes > 0 else { continue }
        do {
            let raw = UnsafeRawBufferPointer(start: try tensor.dataPointer(), count: bytes)
            for b in raw { total &+= Int(b) }
        } catch {
            fatalError("tensor '\(name)': no data pointer: \(error)")
        }
    }
    _ = file.metadata.count
    _ = total
    return 0
}
