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
    public init(_ image: Image) throws {
        let side = Self.thumbnailSide
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
        let block = Self.lowFrequencyDCT(luma, side: side, keep: Self.blockSide)
        let median = Self.median(Array(block.dropFirst()))
        var bits: UInt64 = 0
        for value in block { bits = bits << 1 | (value > median ? 1 : 0) }
        self.bits = bits
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
        // Along rows first (k coefficients per row), then down the columns.
        var rows = [Double](repeating: 0, count: n * k)
        for r in 0..<n {
            for v in 0..<k {
                var sum = 0.0
                for j in 0..<n { sum += x[r * n + j] * cosines[v * n + j] }
                rows[r * k + v] = sum
            }
        }
        var out = [Double](repeating: 0, count: k * k)
        for u in 0..<k {
            for v in 0..<k {
                var sum = 0.0
                for i in 0..<n { sum += rows[i * k + v] * cosines[u * n + i] }
                out[u * k + v] = sum
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
