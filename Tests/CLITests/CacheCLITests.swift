import Foundation
import XCTest

/// `finetune cache list | prune` on the caches a real head-only run leaves, beside a user's file.
extension JSONKeysCLITests {
    func testCacheListsTheRunsCachesAndPruneRemovesOnlyThem() throws {
        let data = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: data)
        let runs = try temporaryFolder("runs"), cache = try temporaryFolder("features")
        let train = ["train", data, "--recipe", "head-only", "--augment", "none", "--epochs", "1",
                     "--feature-cache", "on", "--feature-cache-dir", cache] + TrainCLITests.common
        let first = try run(train + ["--out", runs + "/a"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let mine = cache + "/my-notes.txt"
        try Foundation.Data("keep me".utf8).write(to: URL(fileURLWithPath: mine))

        let list = try run(["cache", "list", "--dir", cache, "--json"])
        XCTAssertEqual(list.status, 0, list.stderr)
        assertShape(try shape(list), Self.cacheList, "cache list")
        let listed = try XCTUnwrap(JSONSerialization.jsonObject(with: Foundation.Data(list.stdout.utf8)) as? [String: Any])
        let caches = try XCTUnwrap(listed["caches"] as? [[String: Any]])
        XCTAssertEqual(caches.count, 2)  // the training and the validation images
        XCTAssertEqual(Set(caches.compactMap { $0["samples"] as? Int }), [18, 6])
        XCTAssertEqual(Set(caches.compactMap { $0["architecture"] as? String }), ["mobilenet_v2"])
        XCTAssertEqual(listed["other_files"] as? Int, 1)
        let text = try run(["cache", "list", "--dir", cache])
        XCTAssertTrue(text.stdout.contains("2 caches"), text.stdout)

        let nothingSaid = try run(["cache", "prune", "--dir", cache])
        XCTAssertNotEqual(nothingSaid.status, 0)
        XCTAssertTrue(nothingSaid.stderr.contains("--max-size, --unused-for or --all"), nothingSaid.stderr)
        let badSize = try run(["cache", "prune", "--dir", cache, "--max-size", "lots"])
        XCTAssertTrue(badSize.stderr.contains("--max-size"), badSize.stderr)

        let dry = try run(["cache", "prune", "--dir", cache, "--all", "--dry-run"])
        XCTAssertTrue(dry.stdout.contains("would remove 2 caches") && dry.stdout.hasSuffix("; kept 0, 0 kB\n"), dry.stdout)
        let prune = try run(["cache", "prune", "--dir", cache, "--all", "--json"])
        XCTAssertEqual(prune.status, 0, prune.stderr)
        assertShape(try shape(prune), Self.cachePrune, "cache prune")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache), ["my-notes.txt"])
        XCTAssertEqual(try String(contentsOfFile: mine, encoding: .utf8), "keep me")

        let again = try run(train + ["--out", runs + "/b"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("computed"), again.stdout)
    }

    /// Probe U: a relative --feature-cache-dir was recorded as given, so a resume from another folder
    /// computed the features again into a new cache there. It is recorded absolute, as DATA is.
    func testARelativeFeatureCacheFolderIsRecordedAbsolute() throws {
        let data = try temporaryFolder("tiny-data")
        try TrainCLITests.writeDataset(at: data)
        let work = try temporaryFolder("work"), elsewhere = try temporaryFolder("elsewhere")
        let first = try CLITests.run(shell: "cd \"\(work)\" && exec \"$0\" \"$@\"", [
            "train", data, "--recipe", "head-only", "--augment", "none", "--epochs", "1", "--feature-cache", "on",
            "--feature-cache-dir", "fc", "--out", work + "/run"] + TrainCLITests.common)
        XCTAssertEqual(first.status, 0, first.stderr)
        let config = try String(contentsOfFile: work + "/run/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains(#""featureCacheDirectory" : "\#(work)/fc""#), config)
        let resumed = try CLITests.run(shell: "cd \"\(elsewhere)\" && exec \"$0\" \"$@\"",
                                   ["train", "--resume", work + "/run", "--epochs", "2"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: elsewhere + "/fc"), "a second cache beside the resume")
        XCTAssertFalse(resumed.stdout.contains("computed"), resumed.stdout)
    }

    static let cacheRow: Set<String> = [
        "architecture: string", "bf16: bool", "bytes: number", "embedding_size: number", "key: string",
        "last_used: string", "path: string", "samples: number", "views: number",
    ]
    static let cacheList: Set<String> = Set(cacheRow.map { "caches[]." + $0 }).union([
        "caches: array", "caches[]: object", "directory: string", "other_files: number", "total_bytes: number",
    ])
    static let cachePrune: Set<String> = Set(cacheRow.map { "removed[]." + $0 }).union([
        "directory: string", "dry_run: bool", "freed_bytes: number", "kept: array",
        "removed: array", "removed[]: object", "removed_leftovers: array",
    ])
}
