import ArgumentParser
import Foundation
import Vision

/// `finetune bench hash`: SHA-256 throughput of the library's digest functions (the ones that
/// verify weights and key feature caches), on a file and on bytes in memory.
struct HashBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash",
        abstract: "SHA-256 time for a file and for the same bytes in memory.",
        discussion: """
            Writes --size-mb MiB of pseudo-random bytes to a temporary file, hashes it once untimed
            (so the file is in the page cache), then times --runs digests of the file and --runs of
            the same bytes in memory, and reports each time and the medians. The digest is printed so
            that two builds can be checked to agree.
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

        let digest = try SHA256.hexDigest(ofFile: file.path)
        guard SHA256.hexDigest(of: bytes) == digest else { throw ValidationError("file and memory digests differ") }
        func time(_ body: () throws -> Void) rethrows -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
        }
        var fileMs: [Double] = [], memoryMs: [Double] = []
        for _ in 0..<runs {  // interleaved, so load on the machine affects both alike
            fileMs.append(try time { _ = try SHA256.hexDigest(ofFile: file.path) })
            memoryMs.append(time { _ = SHA256.hexDigest(of: bytes) })
        }
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2]
                : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let mib = Double(sizeMb)
        let fileMedian = median(fileMs), memoryMedian = median(memoryMs)
        if json {
            printJSON(["size_mib": sizeMb, "runs": runs, "sha256": digest,
                       "file_ms": fileMs, "file_median_ms": fileMedian, "file_mib_per_s": mib / fileMedian * 1000,
                       "memory_ms": memoryMs, "memory_median_ms": memoryMedian,
                       "memory_mib_per_s": mib / memoryMedian * 1000])
        } else {
            let list = { (values: [Double]) in values.map { String(format: "%.0f", $0) }.joined(separator: ", ") }
            print("SHA-256 of \(sizeMb) MiB: \(digest)")
            print(String(format: "file:   median %.0f ms (%.0f MiB/s); runs %@", fileMedian, mib / fileMedian * 1000,
                         list(fileMs)))
            print(String(format: "memory: median %.0f ms (%.0f MiB/s); runs %@", memoryMedian,
                         mib / memoryMedian * 1000, list(memoryMs)))
        }
    }
}
