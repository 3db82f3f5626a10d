import Foundation
import Torch

/// Embeds images for `DataCheck`'s near-duplicate search: one vector per sample, such as a pretrained
/// backbone's pooled features (`Training.BackboneEmbedding` computes them through the feature cache).
public protocol ImageEmbedding {
    /// What embeds, as the report names it (e.g. "mobilenet_v2, ImageNet weights, 224 px").
    var name: String { get }
    /// Embeddings of every sample of `dataset`, in sample order: [N, D] float32, and whether each
    /// sample could be embedded (an unreadable file's row is ignored).
    func embed(_ dataset: any ImageDataset) throws -> (features: Tensor, valid: [Bool])
}

/// Pairs of close embeddings: centred cosine similarity of L2-normalised vectors.
///
/// Pooled CNN features are non-negative and share a large common component, so plain cosine
/// similarity is high between any two images of a kind (two distinct 28-px Fashion-MNIST items reach
/// 0.96). Subtracting the dataset's mean embedding first removes that component. Measured with
/// MobileNetV2's ImageNet features (docs/cli.md, `check-data`): foolbox's photos resized to 70 % and
/// re-encoded at JPEG quality 70 keep 0.875–0.99 against their originals (16 of 20 at 0.9 or more),
/// distinct photos stay below 0.28, and distinct Fashion-MNIST items reach 0.877.
enum EmbeddingNeighbours {
    /// The rows (each `[D]`) centred on the mean row and scaled to unit length (a zero row stays zero).
    static func centredUnitRows(_ features: [[Float]]) -> [[Float]] {
        guard let width = features.first?.count else { return [] }
        var mean = [Double](repeating: 0, count: width)
        for row in features { for (k, v) in row.enumerated() { mean[k] += Double(v) } }
        mean = mean.map { $0 / Double(features.count) }
        return features.map { row in
            let centred = row.enumerated().map { Double($0.element) - mean[$0.offset] }
            let norm = centred.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return centred.map { norm > 0 ? Float($0 / norm) : 0 }
        }
    }

    /// Every (i, j) with `i` in `a`, `j` in `b` (indices into `vectors`) whose dot product is at
    /// least `threshold`, with it; `sameSet` keeps only i < j. Computed as matrix products in
    /// blocks of 512 rows, so memory stays at 512 × |b| floats.
    static func pairs(_ vectors: [[Float]], _ a: [Int], _ b: [Int], threshold: Double, sameSet: Bool) throws
        -> [(Int, Int, Double)] {
        guard let width = vectors.first?.count, !a.isEmpty, !b.isEmpty else { return [] }
        let right = try Tensor(b.flatMap { vectors[$0] }, shape: [b.count, width]).transpose(0, 1).contiguous()
        var found: [(Int, Int, Double)] = []
        for start in stride(from: 0, to: a.count, by: 512) {
            let block = Array(a[start..<min(a.count, start + 512)])
            let left = try Tensor(block.flatMap { vectors[$0] }, shape: [block.count, width])
            let similarity = try left.matmul(right).floats()
            for (r, i) in block.enumerated() {
                for (c, j) in b.enumerated() where !sameSet || i < j {
                    let s = Double(similarity[r * b.count + c])
                    if s >= threshold { found.append((i, j, s)) }
                }
            }
        }
        return found
    }
}
