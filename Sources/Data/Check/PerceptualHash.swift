import Foundation

/// A 64-bit perceptual hash of an image (the DCT "pHash"): the picture shrunk to a 32×32 grey
/// thumbnail (Pillow-exact antialiased bilinear resize, ITU-R 601-2 luma), its 2-D DCT-II, and one
/// bit per low-frequency coefficient of the top-left 8×8 block: set when the coefficient is above
/// the block's median (the DC term left out of the median). Re-encoding, resizing and mild colour
/// changes move few bits; different photos differ in about half of them. `distance(to:)` counts
/// the differing bits (Hamming distance).
public struct PerceptualHash: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The 64 bits, row-major over the 8×8 block (bit 63 is coefficient (0, 0)).
    public let bits: UInt64

    /// The thumbnail side the DCT runs over.
    public static let thumbnailSide = 32
    /// The side of the low-frequency block that gives the bits.
    static let blockSide = 8

    /// A hash of known bits.
    public init(bits: UInt64) { self.bits = bits }

    /// The hash of `image` (RGB or grey).
    public init(_ image: Image) throws { self.init(luma: try Self.thumbnailLuma(image)) }

    /// The hash of a `thumbnailSide`² grey thumbnail (`thumbnailLuma`).
    init(luma: [Double]) {
        let block = Self.lowFrequencyDCT(luma, side: Self.thumbnailSide, keep: Self.blockSide)
        let median = Self.median(Array(block.dropFirst()))
        var bits: UInt64 = 0
        for value in block { bits = bits << 1 | (value > median ? 1 : 0) }
        self.bits = bits
    }

    /// The 32×32 grey thumbnail (Pillow-exact antialiased bilinear resize, ITU-R 601-2 luma), row-major.
    static func thumbnailLuma(_ image: Image) throws -> [Double] {
        let side = thumbnailSide
        let thumbnail = try image.resized(width: side, height: side, filter: .bilinear)
        var luma = [Double](repeating: 0, count: side * side)
        let c = thumbnail.channels
        for i in 0..<(side * side) {
            if c == 1 {
                luma[i] = Double(thumbnail.pixels[i])
            } else {
                let r = Double(thumbnail.pixels[i * c]), g = Double(thumbnail.pixels[i * c + 1])
                let b = Double(thumbnail.pixels[i * c + 2])
                luma[i] = r * 0.299 + g * 0.587 + b * 0.114
            }
        }
        return luma
    }

    /// Bits that differ between the two hashes (0…64).
    public func distance(to other: PerceptualHash) -> Int { (bits ^ other.bits).nonzeroBitCount }

    /// 16 hex digits.
    public var description: String {
        let hex = String(bits, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    /// The top-left `keep`×`keep` coefficients (row-major) of the unnormalised 2-D DCT-II of a
    /// `side`×`side` row-major grid.
    static func lowFrequencyDCT(_ x: [Double], side n: Int, keep k: Int) -> [Double] {
        var cosines = [Double](repeating: 0, count: k * n)
        for u in 0..<k {
            for i in 0..<n { cosines[u * n + i] = cos(Double.pi * Double(u) * (2 * Double(i) + 1) / (2 * Double(n))) }
        }
        // C·X·Cᵀ with C the k×n cosine basis: along the rows first (X·Cᵀ, k coefficients per row),
        // then down the columns.
        let rows = product(x, cosines, m: n, inner: n, p: k, transposingB: true)
        return product(cosines, rows, m: k, inner: n, p: k)
    }

    /// The m×p product of row-major `a` (m×inner) and `b` (inner×p, or p×inner read transposed),
    /// each sum taken in order of the inner index.
    static func product(_ a: [Double], _ b: [Double], m: Int, inner: Int, p: Int, transposingB: Bool = false) -> [Double] {
        var out = [Double](repeating: 0, count: m * p)
        for i in 0..<m {
            for j in 0..<p {
                var sum = 0.0
                for t in 0..<inner { sum += a[i * inner + t] * (transposingB ? b[j * inner + t] : b[t * p + j]) }
                out[i * p + j] = sum
            }
        }
        return out
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }
}

/// What near-duplicate detection compares: a `PerceptualHash` (cheap to compare, finds candidates) and
/// the 32×32 grey thumbnail it came from, centred and scaled to unit length, whose correlation
/// confirms them. Small, centred pictures of one kind (Fashion-MNIST's boots) can share a hash within
/// a few bits while their pixels differ; a re-encoded or resized copy correlates above 0.999.
public struct ImageFingerprint: Sendable {
    /// The DCT hash of the thumbnail.
    public let hash: PerceptualHash
    /// The thumbnail minus its mean, divided by its norm (all zeros for a flat picture).
    public let thumbnail: [Float]

    /// The fingerprint of `image` (RGB or grey).
    public init(_ image: Image) throws {
        let luma = try PerceptualHash.thumbnailLuma(image)
        hash = PerceptualHash(luma: luma)
        let mean = luma.reduce(0, +) / Double(luma.count)
        let norm = luma.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }.squareRoot()
        thumbnail = luma.map { norm > 0 ? Float(($0 - mean) / norm) : 0 }
    }

    /// Pearson correlation of the two thumbnails (−1…1; 0 when either is flat).
    public func similarity(to other: ImageFingerprint) -> Double {
        var sum: Float = 0
        for i in thumbnail.indices { sum += thumbnail[i] * other.thumbnail[i] }
        return Double(sum)
    }
}
