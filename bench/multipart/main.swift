// bench/compare_multipart's program (built by that script in a package of its own, not by the project):
// times Sources/Serving/Multipart.swift (hand-written) against MultipartKitForm.swift (MultipartKit 4.7.1
// with the same checks around it) and MultipartKit's parser alone, on the bodies it is given.
//   bench-multipart RUNS PHOTO...
import Foundation
import MultipartKit

/// Stands in for Serving's error type, the only thing the two parsers use from the rest of the target.
enum ServingError: Error { case badRequest(String) }

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }
func median(_ xs: [Double]) -> Double { xs.sorted()[xs.count / 2] }

let runs = Int(CommandLine.arguments[1])!
let photos = CommandLine.arguments.dropFirst(2).map { URL(fileURLWithPath: $0) }
let boundary = "finetune-test-boundary"
/// A body as the serve tests send it (Tests/ServingTests/ServerProcess.swift, `multipart`).
func body(_ files: [(String, [UInt8])]) -> ByteBuffer {
    var body: [UInt8] = []
    for (name, bytes) in files {
        body += Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"image\"; filename=\"\(name)\"\r\nContent-Type: image/jpeg\r\n\r\n".utf8)
        body += bytes + [13, 10]
    }
    body += Array("--\(boundary)--\r\n".utf8)
    return ByteBuffer(bytes: body)
}
let size = 20_000_000  // --max-body-bytes' default
let nearBoundary = Array("\r\n--\(boundary.dropLast())".utf8)
let bodies: [(String, ByteBuffer)] = [
    ("the 20 foolbox JPEGs", body(try photos.map { ($0.lastPathComponent, [UInt8](try Data(contentsOf: $0))) })),
    ("one part of 20 MB of CR bytes", body([("cr.bin", [UInt8](repeating: 13, count: size))])),
    ("one part of 20 MB of near-boundary lines", body([("near.bin", Array(Array(repeating: nearBoundary, count: size / nearBoundary.count).joined()))])),
]
print("| body | MB | hand-written ms (MB/s) | MultipartKit ms (MB/s) | MultipartKit's parser alone ms | MultipartKit / hand-written |")
print("|---|---|---|---|---|---|")
for (name, buffer) in bodies {
    // Each as the server calls it: the hand-written parser on the collected body copied into [UInt8],
    // MultipartKit on the collected ByteBuffer itself.
    let hand = { try MultipartForm.parse(Array(buffer.readableBytesView), boundary: boundary).map { ($0.label, $0.bytes) } }
    let kit = { try MultipartKitForm.parse(buffer, boundary: boundary).map { ($0.label, $0.bytes) } }
    let alone = { try MultipartParser(boundary: boundary).execute(buffer) }  // callbacks that do nothing
    let a = try hand(), b = try kit()
    guard a.map(\.0) == b.map(\.0), a.map({ Array($0.1) }) == b.map({ Array($0.1) }) else { fatalError("\(name): the parsers disagree") }
    var times: [[Double]] = [[], [], []]
    let rounds = buffer.readableBytes > 10_000_000 ? max(3, runs / 6) : runs
    for _ in 0..<rounds {  // interleaved
        var t = now(); _ = try hand(); times[0].append(now() - t)
        t = now(); _ = try kit(); times[1].append(now() - t)
        t = now(); try alone(); times[2].append(now() - t)
    }
    let mb = Double(buffer.readableBytes) / 1e6
    let (h, k, p) = (median(times[0]), median(times[1]), median(times[2]))
    print("| \(name) | " + String(format: "%.2f | %.2f (%.0f) | %.2f (%.0f) | %.2f | %.1f× |", mb, h * 1000, mb / h, k * 1000, mb / k, p * 1000, k / h))
}

// A body of 20 MB of empty parts (about 1.5 million), as the hand-written parser reads it without a limit
// on the parts and with --max-queue's default (256), where the part past the limit ends the parse.
let emptyPart = Array("--\(boundary)\r\n\r\n\r\n".utf8)
var emptyParts: [UInt8] = []
emptyParts.reserveCapacity(size)
while emptyParts.count + emptyPart.count + 40 < size { emptyParts += emptyPart }
emptyParts += Array("--\(boundary)--\r\n".utf8)
var limits: [[Double]] = [[], []]
for _ in 0..<max(3, runs / 6) {
    var t = now(); let all = try MultipartForm.parse(emptyParts, boundary: boundary); limits[0].append(now() - t)
    t = now()
    do { _ = try MultipartForm.parse(emptyParts, boundary: boundary, maxParts: 256); fatalError("the limit was not applied") } catch is MultipartForm.TooManyParts {}
    limits[1].append(now() - t)
    precondition(all.count > 256)
}
print("\n20 MB of empty parts: " + String(format: "%.2f ms parsed whole, %.3f ms stopped at the 257th part (--max-queue 256)",
                                           median(limits[0]) * 1000, median(limits[1]) * 1000))
