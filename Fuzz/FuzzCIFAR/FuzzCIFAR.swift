// libFuzzer target: the CIFAR batch reader (Data/Datasets/CIFARDataset.swift): binary records, the
// python pickles through the restricted unpickler's CIFAR allow-list, numpy arrays, class-name files,
// gzip. The input becomes a CIFAR folder, read by the public CIFARDataset(directory:split:...).
//
// Input: one option byte (bit 0: CIFAR-100, bit 1: python format), then up to three files separated
// by `fuzzFileSeparator`: the test batch, the meta file (python: `batches.meta` / `meta`; binary:
// `batches.meta.txt` / `fine_label_names.txt`), and CIFAR-100 binary's `coarse_label_names.txt`.
import Foundation
import FuzzSupport
import Data

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzCIFAR(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let options = input.byte()
    let variant: CIFARDataset.Variant = options & 1 == 0 ? .cifar10 : .cifar100
    let format: CIFARDataset.Format = options & 2 == 0 ? .binary : .python
    let parts = fuzzSplit(input.rest, limit: 3)
    let dir = FuzzScratch.folder("cifar")
    let names: [String]
    switch (variant, format) {
    case (.cifar10, .binary): names = ["test_batch.bin", "batches.meta.txt"]
    case (.cifar100, .binary): names = ["test.bin", "fine_label_names.txt", "coarse_label_names.txt"]
    case (.cifar10, .python): names = ["test_batch", "batches.meta"]
    case (.cifar100, .python): names = ["test", "meta"]
    }
    for (name, part) in zip(names, parts) { FuzzScratch.write(part, to: dir + "/" + name) }
    let dataset: CIFARDataset
    do {
        dataset = try CIFARDataset(directory: dir, split: .test, variant: variant, format: format)
    } catch {
        return 0  // a refusal; only crashes and broken invariants are findings
    }
    guard dataset.images.count == dataset.samples.count,
          dataset.samples.allSatisfy({ $0.label >= 0 && $0.label < dataset.classNames.count }) else {
        fatalError("\(dataset.samples.count) samples, \(dataset.images.count) images, labels outside the classes")
    }
    if let coarse = dataset.coarseLabels, let coarseNames = dataset.coarseClassNames {
        guard coarse.count == dataset.samples.count, coarse.allSatisfy({ $0 >= 0 && $0 < coarseNames.count }) else {
            fatalError("coarse labels do not fit their classes")
        }
    }
    if dataset.count > 0 {
        do {
            let image = try dataset.loadImage(at: dataset.count - 1)
            guard image.width == 32, image.height == 32 else { fatalError("a CIFAR image of \(image.width)x\(image.height)") }
        } catch {
            fatalError("a loaded CIFAR image cannot be read: \(error)")
        }
    }
    return 0
}
