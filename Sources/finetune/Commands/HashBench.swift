import ArgumentParser
import Foundation
import Hashing

/// `finetune bench hash`: SHA-256 throughput of the library's digest functions (the ones that
/// verify weights and key feature caches), on a file and on bytes in memory.
struct HashBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "SHA-256 time for a file and for the same bytes in memory.",
        discussion: """
            Writes --size-mb MiB of pseudo-random bytes to a temporary file, hashes it once untimed (so the file is in \
            the page cache), then times --runs digests of the file and --runs of the same bytes in memory, and reports \
            each time and the medians. The digest is printed so that two builds can be checked to agree.

            Example (see docs/benchmarks.md):
              finetune bench hash --size-mb 100 --runs 5
            """)

    @Option(help: "Size of the data in MiB.") var sizeMb = 100
    @Option(help: "Timed runs of each measurement.") var runs = 5
    @Flag(help: "Print one JSON object.") var json = false

    func validate() throws {
        guard sizeMb > 0, runs > 0 else { throw ValidationError("--size-mb and --runs must be positive") }
    }

    func run() throws {
        var bytes = [UInt8](repeating: 0, count: sizeMb << 20)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        bytes.withUnsafeMutableBytes { raw in
            for i in stride(from: 0, to: raw.count, by: 8) {  // xorshift64: incompressible, reproducible
                state ^= state << 13; state ^= state >> 7; state ^= state << 17
                withUnsafeBytes(of: state.littleEndian) { word in
                    for j in 0..<min(8, raw.count - i) { raw[i + j] = word[j] }
                }
            }
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-hash-\(UUID().uuidString)")
        try Foundation.Data(bytes).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }

        let digest = try SHA256Hasher.hexDigest(ofFile: file.path)
        guard SHA256Hasher.hexDigest(of: bytes) == digest else { throw CommandFailure("file and memory digests differ") }
        func time(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }
        var fileMs: [Double] = [], memoryMs: [Double] = []
        for _ in 0..<runs {  // interleaved, so load on the machine affects both alike
            fileMs.append(try time { _ = try SHA256Hasher.hexDigest(ofFile: file.path) })
            memoryMs.append(time { _ = SHA256Hasher.hexDigest(of: bytes) })
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
                : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let mib = Double(sizeMb)
        let fileMedian = median(fileMs), memoryMedian = median(memoryMs)
        if json {
            printEncodedJSON(Output(sizeMiB: sizeMb, runs: runs, sha256: digest, fileMs: fileMs, memoryMs: memoryMs,
                                    fileMedianMs: fileMedian, memoryMedianMs: memoryMedian))
        } else {
            let list = { (values: [Double]) in values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
            printLine("SHA-256 of \(sizeMb) MiB: \(digest)")
            printLine(String(format: "file:   median %.0f ms (%.0f MiB/s); runs %@", fileMedian, mib / fileMedian * 1000,
                             list(fileMs)))
            printLine(String(format: "memory: median %.0f ms (%.0f MiB/s); runs %@", memoryMedian,
                             mib / memoryMedian * 1000, list(memoryMs)))
        }
    }

    /// `bench hash --json`: the times of every run and their medians in ms, and the rates in MiB/s
    /// (`null` where not finite).
    struct Output: Encodable {
        var sizeMiB: Int
        var runs: Int
        var sha256: String
        var fileMs: [Double]
        var memoryMs: [Double]
        var fileMedianMs: Double
        var memoryMedianMs: Double

        enum CodingKeys: String, CodingKey {
            case sizeMiB = "size_mib", runs, sha256, fileMs = "file_ms", fileMedianMs = "file_median_ms"
            case fileRate = "file_mib_per_s", memoryMs = "memory_ms", memoryMedianMs = "memory_median_ms"
            case memoryRate = "memory_mib_per_s"
        }

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            func finite(_ values: [Double]) -> [Double?] { values.map { $0.isFinite ? $0 : nil } }
            try c.encode(sizeMiB, forKey: .sizeMiB)
            try c.encode(runs, forKey: .runs)
            try c.encode(sha256, forKey: .sha256)
            try c.encode(finite(fileMs), forKey: .fileMs)
            try c.encodeNumber(fileMedianMs, forKey: .fileMedianMs)
            try c.encodeNumber(Double(sizeMiB) / fileMedianMs * 1000, forKey: .fileRate)
            try c.encode(finite(memoryMs), forKey: .memoryMs)
            try c.encodeNumber(memoryMedianMs, forKey: .memoryMedianMs)
            try c.encodeNumber(Double(sizeMiB) / memoryMedianMs * 1000, forKey: .memoryRate)
        }
    }
}
