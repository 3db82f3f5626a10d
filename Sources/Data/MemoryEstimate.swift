import Foundation
import Torch

/// What a file that cannot be decoded does to a run: `skip` reports it once and leaves it out
/// (the totals count only images used), `fail` stops with an error naming it (strict mode).
public enum BadImagePolicy: String, Codable, CaseIterable, Sendable {
    /// Leave the file out and report it once (the CLI's default; torchvision and Keras stop instead).
    case skip
    /// Stop with an error naming the file (`--on-bad-image fail`).
    case fail

    /// Whether scans and loaders throw on the first unusable file.
    public var isStrict: Bool { self == .fail }
}

/// Rough upper estimates of what the image pipeline allocates, checked before allocating so that
/// an absurd size is an error naming the setting instead of an abort deep inside an allocation.
public enum MemoryEstimate {
    /// Bytes the image pipeline holds at once for batches of `batchSize` images transformed by
    /// `preprocessing`: per worker, one decoded and resized image (RGB bytes plus float working
    /// copies); the batches being built or waiting (float32, 3 × crop²). Nil when the arithmetic
    /// overflows (then it certainly does not fit).
    public static func imagePipelineBytes(preprocessing p: Preprocessing, batchSize: Int, workers: Int = 1,
                                          prefetch: Int = 2) -> Int? {
        func times(_ values: Int...) -> Int? {
            var product = 1
            for v in values {
                let (r, overflow) = product.multipliedReportingOverflow(by: max(0, v))
                if overflow { return nil }
                product = r
            }
            return product
        }
        // A resized image is at least resize² pixels; keep 3 bytes + 3 floats per pixel.
        guard let image = times(p.resizeSize, p.resizeSize, 3 * (1 + 4)),
              let perWorker = times(image, max(1, workers)),
              let batch = times(batchSize, 3, p.cropSize, p.cropSize, 4),
              let batches = times(batch, prefetch + 2) else { return nil }
        let (total, overflow) = perWorker.addingReportingOverflow(batches)
        return overflow ? nil : total
    }

    /// Throws when `imagePipelineBytes` exceeds half of `memory`, the memory this process may use (the
    /// model's weights and activations need the rest).
    public static func checkImagePipeline(preprocessing p: Preprocessing, batchSize: Int, workers: Int = 1,
                                          prefetch: Int = 2, memory: Int = Runtime.usableMemory) throws {
        let bytes = imagePipelineBytes(preprocessing: p, batchSize: batchSize, workers: workers, prefetch: prefetch)
        let budget = memory / 2
        guard let bytes, bytes <= budget else {
            let needed = bytes.map { format($0) } ?? "more than \(format(Int.max))"
            throw DataError.invalidDataset(
                "batches of \(batchSize) image\(batchSize == 1 ? "" : "s") at \(p.cropSize)×\(p.cropSize) px "
                + "(resized to \(p.resizeSize) px first) need about \(needed) of memory for the input pipeline alone, "
                + "more than half of \(Runtime.describeUsableMemory(format(memory))); use a smaller input size or batch size")
        }
    }

    /// `bytes` in TB, GB, MB or kB (powers of 1000), for messages.
    public static func format(_ bytes: Int) -> String {
        let gb = Double(bytes) / 1e9
        if gb >= 1000 { return String(format: "%.0f TB", gb / 1000) }
        if gb >= 1 { return String(format: "%.1f GB", gb) }
        return bytes >= 1_000_000 ? String(format: "%.0f MB", Double(bytes) / 1e6) : String(format: "%.0f kB", Double(bytes) / 1e3)
    }
}
