import Foundation
import TestSupport
import XCTest

/// `finetune weights` as a user runs it, against a temporary cache (`FINETUNE_CACHE_DIR`): full
/// digests, prefix-only entries and `--accept-unverified`, and `verify` on converted copies.
final class WeightsSecurityTests: XCTestCase {
    var cacheRoot: URL!

    override func setUpWithError() throws {
        cacheRoot = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-wsec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: cacheRoot, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: cacheRoot) }

    struct Run {
        let status: Int32
        let stdout: String
        let stderr: String
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    /// Runs the built binary with the temporary cache as its cache root.
    func run(_ arguments: [String]) throws -> Run {
        let process = Process()
        process.executableURL = CLITests.binary
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["FINETUNE_CACHE_DIR"] = cacheRoot.path
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        final class Box: @unchecked Sendable { var data = Foundation.Data() }  // written before leave()
        let stderrBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            stderrBox.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderrBox.data, as: UTF8.self))
    }

    func listed() throws -> [[String: Any]] {
        let r = try run(["weights", "list", "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        return try r.lines.map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data($0.utf8)) as? [String: Any], $0)
        }
    }

    func testListSaysHowEachEntryIsVerified() throws {
        let entries = try listed()
        XCTAssertEqual(entries.count, 22)
        for entry in entries {
            let name = entry["name"] as? String ?? "?"
            switch entry["verification"] as? String {
            case "sha256":
                let digest = try XCTUnwrap(entry["sha256"] as? String, name)
                XCTAssertEqual(digest.count, 64, name)
                XCTAssertTrue(digest.hasPrefix(entry["sha256_prefix"] as? String ?? "-"), name)
            case "prefix-only":
                XCTAssertTrue(entry["sha256"] is NSNull, "\(name): a prefix is not shown as a digest")
            default:
                XCTFail("\(name): \(entry)")
            }
        }
        let resnet18 = try XCTUnwrap(entries.first { $0["name"] as? String == "resnet18.imagenet" })
        XCTAssertEqual(resnet18["sha256"] as? String, "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec")
    }

    /// An unreadable pins file is an error naming it in `list` too (as in `fetch`), never read as
    /// "nothing pinned": `list` showed pinned entries as "prefix only" and their cached files as absent.
    func testListFailsOnAnUnreadablePinsFile() throws {
        let pins = cacheRoot.appendingPathComponent("pinned_digests.json")
        try Foundation.Data(#"{"pins":{"vgg19.imagenet":"#.utf8).write(to: pins)
        for arguments in [["weights", "list"], ["weights", "list", "--json"]] {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 1, "\(arguments): \(r.stdout)")
            XCTAssertTrue(r.stderr.contains(pins.path), r.stderr)
        }
    }

    func testImportOfAFileThatIsNotTheCatalogsIsRefused() throws {
        let file = cacheRoot.appendingPathComponent("resnet18-f37072fd.pth")
        try Foundation.Data("a backdoored network, say".utf8).write(to: file)
        var r = try run(["weights", "import", file.path, "--name", "resnet18.imagenet"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"), r.stderr)
        r = try run(["weights", "import", file.path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("not in the catalog"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: cacheRoot.appendingPathComponent("weights").path))
    }

    func testFetchOfAPrefixOnlyEntryIsRefusedBeforeDownloadingAndNamesTheFlag() throws {
        guard let entry = try listed().first(where: { $0["verification"] as? String == "prefix-only" }),
              let name = entry["name"] as? String else { throw XCTSkip("every catalog entry has a full digest") }
        let r = try run(["weights", "fetch", name])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("refusing unverified weights for \(name)"), r.stderr)
        XCTAssertTrue(r.stderr.contains("finetune weights import"), r.stderr)
        XCTAssertTrue(r.stderr.contains("--accept-unverified"), r.stderr)
        XCTAssertFalse(r.stderr.contains("downloading"), "refused before any download: \(r.stderr)")
    }

    /// Issue 18, finding 7: an untouched cache, after weights were loaded (which keeps a converted
    /// copy), verifies clean; one changed byte makes it fail.
    func testVerifyIsCleanAfterUseAndFailsOnTampering() throws {
        guard let mobilenet = RealAssets.mobileNetV2 else { throw XCTSkip("MobileNetV2 weights missing: run scripts/setup") }
        // With another --arch, the file is named for what it is (it was "not in the catalog").
        var r = try run(["weights", "import", mobilenet, "--arch", "resnet18"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("is mobilenet_v2.imagenet, weights for mobilenet_v2, not for resnet18"), r.stderr)
        // A catalog name that does not exist is a usage error naming --name (it exited 1, probe AG).
        r = try run(["weights", "import", mobilenet, "--name", "nosuch.entry"])
        XCTAssertEqual(r.status, 64, r.stderr)
        XCTAssertTrue(r.stderr.contains("--name nosuch.entry: unknown weights 'nosuch.entry'"), r.stderr)
        r = try run(["weights", "import", mobilenet])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("as mobilenet_v2.imagenet"), r.stdout)
        r = try run(["predict", "--arch", "mobilenet_v2", "--weights", "imagenet", "--top-k", "1", "--json",
                     Fixtures.path("images/rgb_baseline.jpg")])
        XCTAssertEqual(r.status, 0, r.stderr)
        let converted = cacheRoot.appendingPathComponent(
            "weights/converted/b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889.safetensors")
        XCTAssertTrue(FileManager.default.fileExists(atPath: converted.path), "loading kept a converted copy")

        r = try run(["weights", "verify"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.lines.count, 2, r.stdout)
        XCTAssertTrue(r.lines.allSatisfy { $0.hasPrefix("ok ") }, r.stdout)

        var data = try Foundation.Data(contentsOf: converted)
        data[data.count / 2] ^= 0x01
        try data.write(to: converted)
        r = try run(["weights", "verify", "--json"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        let results = try r.lines.map {
            try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data($0.utf8)) as? [String: Any])
        }
        let bad = results.filter { $0["ok"] as? Bool == false }
        XCTAssertEqual(bad.map { $0["path"] as? String }, [converted.path])
        XCTAssertEqual(bad.first?["kind"] as? String, "converted")
    }
}
