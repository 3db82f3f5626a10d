import Foundation

/// SplitMix64 (Steele, Lea & Flood 2014; the seeding generator of xoshiro): a tiny, fast,
/// well-mixed 64-bit generator whose output depends only on its seed — never on LibTorch's global
/// generator, the platform or thread scheduling.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    /// A generator starting at `seed` (any value, 0 included).
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return SplitMix64.mix(state)
    }

    /// SplitMix64's output function: a bijective 64-bit finaliser.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A well-mixed seed from several values (order matters).
    public static func derive(_ values: UInt64...) -> UInt64 {
        var h: UInt64 = 0x6A09_E667_F3BC_C908
        for v in values { h = mix(h ^ mix(v &+ 0x9E37_79B9_7F4A_7C15)) }
        return h
    }
}

/// The randomness of one sample's augmentation: seeded from (seed, epoch, sample index, draw), so
/// the same sample gets the same augmentation in the same epoch whichever thread processes it and
/// whatever the batch size or worker count. `draw` distinguishes repeated draws of one sample in an
/// epoch (sampling with replacement).
///
/// All helpers use fixed algorithms (no standard-library sampling whose details could change).
public struct SampleRandom: RandomNumberGenerator, Sendable {
    var generator: SplitMix64

    /// A stream seeded directly (for draws that are not per sample, e.g. an epoch's shuffle).
    public init(seed: UInt64) { generator = SplitMix64(seed: seed) }

    /// The stream of dataset sample `index` in `epoch` of a run seeded `seed` (`draw`: the n-th draw of
    /// that sample in the epoch).
    public init(seed: UInt64, epoch: Int, index: Int, draw: Int = 0) {
        self.init(seed: SplitMix64.derive(seed, UInt64(bitPattern: Int64(epoch)), UInt64(bitPattern: Int64(index)),
                                          UInt64(bitPattern: Int64(draw))))
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 { generator.next() }

    /// Uniform in [0, 1), 53 random bits.
    public mutating func unit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Uniform in [low, high) (`low` when the range is empty).
    public mutating func uniform(_ low: Double, _ high: Double) -> Double {
        high > low ? low + (high - low) * unit() : low
    }

    /// Uniform integer in `range` (Lemire's multiply-shift with rejection, unbiased). Precondition, as
    /// for `Int.random(in:)`: `range` is not empty.
    public mutating func integer(in range: Range<Int>) -> Int {
        precondition(!range.isEmpty, "empty range")
        let span = UInt64(range.upperBound - range.lowerBound)
        var m = next().multipliedFullWidth(by: span)
        if m.low < span {
            let threshold = (0 &- span) % span
            while m.low < threshold { m = next().multipliedFullWidth(by: span) }
        }
        return range.lowerBound + Int(m.high)
    }

    /// Uniform integer in the closed `range` (unbiased).
    public mutating func integer(in range: ClosedRange<Int>) -> Int {
        integer(in: range.lowerBound..<(range.upperBound + 1))
    }

    /// A standard normal value (Box–Muller from two uniform draws; the second value is not kept, so
    /// every call uses exactly two draws).
    public mutating func normal() -> Double {
        let u1 = 1 - unit()  // in (0, 1]: log stays finite
        let u2 = unit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { p >= 1 || (p > 0 && unit() < p) }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        shuffle(&p)
        return p
    }

    /// Shuffles `array` in place (Fisher–Yates, from the end).
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        for i in stride(from: array.count - 1, to: 0, by: -1) {
            array.swapAt(i, integer(in: 0..<(i + 1)))
        }
    }
}
