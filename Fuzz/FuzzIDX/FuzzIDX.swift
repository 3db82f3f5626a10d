// libFuzzer target: the IDX reader of MNIST-style files (Data/IDXFile.swift), gzipped or not (the
// gzip reader in CImageCodecs/gzip_reader.c), through the public IDXFile(path:) on a file; uint8
// files are then made into a tensor.
import Foundation
import FuzzSupport
@testable import Data
import Torch

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzIDX(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let path = FuzzScratch.file("input.idx", UnsafeBufferPointer(start: data, count: size))
    let file: IDXFile
    do {
        file = try IDXFile(path: path)
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    var elements = 1
    for d in file.shape { elements = elements.multipliedReportingOverflow(by: d).partialValue }
    guard file.bytes.count == elements * file.elementType.size else {
        fatalError("IDX shape \(file.shape) of \(file.elementType) with \(file.bytes.count) bytes")
    }
    if file.elementType == .uint8 {
        do {
            let tensor = try file.uint8Tensor()
            guard tensor.shape == file.shape else { fatalError("tensor shape \(tensor.shape), file shape \(file.shape)") }
        } catch {
            fatalError("uint8Tensor failed on a valid uint8 IDX file: \(error)")
        }
    }
    return 0
}
