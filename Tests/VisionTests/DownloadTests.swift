import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Hashing
import TestSupport
@testable import Vision
import XCTest

/// `WeightsCache.fetch` downloads from a local HTTP server: the file arrives whole and checked, an
/// HTTP error is named, and no download leaves a file in the temporary directory. A download task of
/// Foundation's left an empty `<UUID>.tmp` there after every failed download.
final class DownloadTests: XCTestCase {
    /// A cache root of its own in the temporary directory, removed after the test.
    func temporaryCacheRoot() -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-download-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        return root
    }

    /// A catalog entry `name` for the file `toy.pth` (or `fileName`) at `url`, with its digest and size.
    func toyEntry(_ name: String = "toy.test", url: String, fileName: String = "toy.pth", sha256: String, size: Int) -> WeightsEntry {
        WeightsEntry(name: name, architecture: "toy", url: url, fileName: fileName, format: "pth", sha256Prefix: nil,
                     sha256: sha256, size: size, classes: 2, parameters: 0, top1: 0, preprocessing: .imagenet,
                     pipPackage: nil, pipPath: nil)
    }

    /// Entries of the temporary directory named like Foundation's download files.
    func downloadLeftovers() throws -> Set<String> {
        Set(try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter {
            $0.hasSuffix(".tmp") && UUID(uuidString: String($0.dropLast(4))) != nil
        })
    }

    func testADownloadArrivesWholeAndAFailedOneLeavesNothingBehind() throws {
        let root = temporaryCacheRoot()
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let server = try TinyServer(body: body, count: 2)
        func entry(_ path: String) -> WeightsEntry {
            toyEntry(url: "http://127.0.0.1:\(server.port)/\(path)", sha256: SHA256Hasher.hexDigest(of: body), size: body.count)
        }
        let before = try downloadLeftovers()
        let cache = WeightsCache(root: root)
        XCTAssertThrowsError(try cache.fetch(entry("missing.pth"))) { error in
            XCTAssertTrue("\(error)".contains("HTTP status 404"), "\(error)")
        }
        let path = try cache.fetch(entry("toy.pth"))
        XCTAssertEqual(try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: path))), body)
        // Offline (nothing listens on port 9): refused, with nothing left behind either.
        let offline = toyEntry("other.test", url: "http://127.0.0.1:9/other.pth", fileName: "other.pth",
                               sha256: SHA256Hasher.hexDigest(of: [1, 2, 3]), size: 3)
        XCTAssertThrowsError(try cache.fetch(offline))
        XCTAssertEqual(try downloadLeftovers().subtracting(before), [])
    }

    /// A server that sends more than the catalog's size of the file (a wrong mirror, a hostile one, an
    /// endless stream) is cut off at that size, whether or not it announces its length. Until
    /// 2026-12-07 the whole response was written to the temporary directory before the digest check
    /// refused it.
    func testADownloadLargerThanTheCatalogsSizeIsCutOff() throws {
        let root = temporaryCacheRoot()
        let body = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let expected = Array(body.prefix(200_000))
        for announced in [true, false] {
            let server = try TinyServer(body: body, count: 1, announcesLength: announced)
            let entry = toyEntry(url: "http://127.0.0.1:\(server.port)/toy.pth", sha256: SHA256Hasher.hexDigest(of: expected),
                                 size: expected.count)
            let cache = WeightsCache(root: root)
            XCTAssertThrowsError(try cache.fetch(entry)) { error in
                let said = announced ? "announces 3000000 bytes" : "sent more than that"
                XCTAssertTrue("\(error)".contains("the file has 200000 bytes, and the server \(said)"), "\(error)")
            }
            XCTAssertNil(cache.locate(entry), "announced: \(announced)")
        }
        // Bytes of the right size but not the file: the error names the download, not its temporary file
        // (it named /tmp/finetune-<UUID>, gone by then).
        let other = Array(body[1...200_000])
        let server = try TinyServer(body: other, count: 1)
        let url = "http://127.0.0.1:\(server.port)/toy.pth"
        let entry = toyEntry(url: url, sha256: SHA256Hasher.hexDigest(of: expected), size: expected.count)
        XCTAssertThrowsError(try WeightsCache(root: root).fetch(entry)) { error in
            XCTAssertTrue("\(error)".hasPrefix("the file downloaded from \(url) has SHA-256 \(SHA256Hasher.hexDigest(of: other))"),
                          "\(error)")
        }
    }

    /// `WeightsCache.isCancelled` (a run's Ctrl-C) stops a download that is under way, within a fraction
    /// of a second, keeping nothing. Until 2026-12-07 the download went on to its end (here, the stalled
    /// server's 20 s; minutes for large weights on a slow line) before the stop took effect.
    func testACancelledDownloadStopsAtOnceAndKeepsNothing() throws {
        let root = temporaryCacheRoot()
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let server = try TinyServer(body: body, count: 1, stallAfter: 1000)
        let url = "http://127.0.0.1:\(server.port)/toy.pth"
        let entry = toyEntry(url: url, sha256: SHA256Hasher.hexDigest(of: body), size: body.count)
        let temporaries = { Set(try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter {
            $0.hasPrefix("finetune-") && UUID(uuidString: String($0.dropFirst("finetune-".count))) != nil
        }) }
        let before = try temporaries()
        let started = Date()
        let cache = WeightsCache(root: root, isCancelled: { Date().timeIntervalSince(started) > 0.5 })
        XCTAssertThrowsError(try cache.fetch(entry)) { error in
            XCTAssertEqual("\(error)", "the download of toy.test from \(url) was interrupted; nothing was kept")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "the download went on after the stop")
        XCTAssertEqual(try temporaries().subtracting(before), [])
        XCTAssertNil(cache.locate(entry))
    }

    /// With a mirror (`FINETUNE_WEIGHTS_MIRROR`), a file comes from `<mirror>/<file name>`, not from the
    /// catalog's URL (here unreachable), and is checked against the catalog's digest as any download is;
    /// a mirror that is not an http, https or file URL is refused naming the variable.
    func testAMirrorServesTheWeightFilesByName() throws {
        let root = temporaryCacheRoot()
        let body = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 17) }
        let server = try TinyServer(body: body, count: 2, path: "/weights/toy.pth")
        var entry = toyEntry(url: "http://127.0.0.1:9/models/toy.pth", sha256: SHA256Hasher.hexDigest(of: body), size: body.count)
        let mirror = "http://127.0.0.1:\(server.port)/weights"
        let cache = WeightsCache(root: root, mirror: mirror)
        XCTAssertEqual(try cache.downloadURL(of: entry)?.absoluteString, mirror + "/toy.pth")
        let path = try cache.fetch(entry)
        XCTAssertEqual(try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: path))), body)
        // Another file under the same name on the mirror: refused by the digest, named by its mirror URL.
        entry.name = "other.test"
        entry.sha256 = SHA256Hasher.hexDigest(of: [1, 2, 3])
        entry.size = body.count
        XCTAssertThrowsError(try WeightsCache(root: root, mirror: mirror + "/").fetch(entry)) { error in
            XCTAssertTrue("\(error)".hasPrefix("the file downloaded from \(mirror)/toy.pth has SHA-256"), "\(error)")
        }
        XCTAssertThrowsError(try WeightsCache(root: root, mirror: "ftp://example.com/w").fetch(entry)) { error in
            XCTAssertTrue("\(error)".contains("FINETUNE_WEIGHTS_MIRROR: ftp://example.com/w is not an http, https or file URL"),
                          "\(error)")
        }
        XCTAssertNil(WeightsCache(root: root, mirror: "").mirror, "an empty variable is no mirror")
        // A folder on this machine (a shared disk) as a file URL: its file is imported, checked.
        let folder = root.appendingPathComponent("mirror")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let local = WeightsCache(root: root.appendingPathComponent("second-cache"), mirror: folder.absoluteString)
        XCTAssertThrowsError(try local.fetch(entry)) { XCTAssertTrue("\($0)".contains("the mirror has no \(folder.path)/toy.pth"), "\($0)") }
        try Foundation.Data(body).write(to: folder.appendingPathComponent("toy.pth"))
        XCTAssertThrowsError(try local.fetch(entry)) { XCTAssertTrue("\($0)".contains("SHA-256"), "\($0)") }
        entry.sha256 = SHA256Hasher.hexDigest(of: body)
        XCTAssertEqual(try [UInt8](Foundation.Data(contentsOf: URL(fileURLWithPath: try local.fetch(entry)))), body)
    }
}
