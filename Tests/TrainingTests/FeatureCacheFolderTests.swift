@testable import AtomicFiles
import Data
import Foundation
import TensorIO
import Vision
import Torch
@testable import Training
import XCTest

/// `FeatureCacheFolder`: listing the caches runs wrote, and removing the least recently used ones
/// (by size, by age, or all) without touching any file finetune did not write.
final class FeatureCacheFolderTests: XCTestCase {
    /// A tiny classifier whose backbone is frozen (so its features can be cached), and 5 images.
    func frozenModelAndData() throws -> (TRTinyNet, LabeledDataset) {
        let model = try TRTinyNet()
        try model.configureHead(HeadSpec(outputs: 3))
        try model.freeze(["features"])
        return (model, try TRData.dataset(count: 5))
    }

    /// Three real caches of the same dataset (three transforms), made and then reused in a known order,
    /// beside files finetune did not write.
    func makeFolder() throws -> (folder: FeatureCacheFolder, caches: [CachedFeatures], foreign: [String]) {
        let root = try TRData.temporaryDirectory(self)
        let directory = "\(root)/features"
        let (model, dataset) = try frozenModelAndData()
        func prepare(_ description: String) throws -> CachedFeatures {
            try FeatureCache.prepare(model: model, dataset: dataset, transform: TRData.transform,
                                     transformDescription: description, workers: 0, directory: directory)
        }
        let caches = try ["a", "b", "c"].map(prepare)
        // Last used: c an hour ago, a ten minutes ago, b now (reuse marks the file used).
        let folder = FeatureCacheFolder(directory: directory)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -3600)],
                                              ofItemAtPath: XCTUnwrap(caches[2].path))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -600)],
                                              ofItemAtPath: XCTUnwrap(caches[0].path))
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -7200)],
                                              ofItemAtPath: XCTUnwrap(caches[1].path))
        XCTAssertTrue(try prepare("b").reused)

        // Not finetune's: a user's file, a safetensors file with a key-like name but another header,
        // a folder named like a cache, and the temporary file of a writer that still runs.
        let foreignKey = String(repeating: "ab", count: 32)
        let foreign = ["\(directory)/notes.txt", "\(directory)/\(foreignKey).safetensors",
                       "\(directory)/\(String(repeating: "cd", count: 32)).safetensors",
                       "\(directory)/.\(foreignKey).safetensors.\(getpid()).7.tmp"]
        try Data("mine".utf8).write(to: URL(fileURLWithPath: foreign[0]))
        try SafeTensors.write(StateDict([("x", try Tensor.zeros([2]))]), metadata: ["format": "something-else"], to: foreign[1])
        try FileManager.default.createDirectory(atPath: foreign[2], withIntermediateDirectories: false)
        try Data("in progress".utf8).write(to: URL(fileURLWithPath: foreign[3]))
        return (folder, caches, foreign)
    }

    func testEntriesAreTheCachesMostRecentlyUsedFirstDescribedByTheirHeaders() throws {
        let (folder, caches, foreign) = try makeFolder()
        let entries = try folder.entries()
        XCTAssertEqual(entries.map(\.key), [caches[1].key, caches[0].key, caches[2].key])
        for entry in entries {
            XCTAssertEqual(entry.architecture, "tiny")
            XCTAssertEqual(entry.views, 1)
            XCTAssertEqual(entry.samples, 5)
            XCTAssertEqual(entry.embeddingSize, 12)
            XCTAssertEqual(entry.bf16, false)
            let size = try FileManager.default.attributesOfItem(atPath: entry.path)[.size] as? NSNumber
            XCTAssertEqual(entry.bytes, size?.int64Value)
        }
        XCTAssertLessThan(Date().timeIntervalSince(entries[0].lastUsed), 60, "reuse marks the cache used")
        XCTAssertEqual(Set(try folder.otherFiles()), Set(foreign))
        XCTAssertEqual(try FeatureCacheFolder(directory: "/nonexistent/features").entries(), [])
        XCTAssertThrowsError(try FeatureCacheFolder(directory: foreign[0]).entries()) { error in
            XCTAssertEqual(error as? FeatureCacheFolderError,
                           FeatureCacheFolderError(path: foreign[0], reason: "is a file, not a feature cache folder"))
        }
    }

    /// A cache of the format before the digest (`finetune-feature-cache-1`) is never reused (its key
    /// differs), but it is finetune's: listed, and removed by prune, not left as someone else's file.
    func testACacheOfAnEarlierFormatIsListedAndPruned() throws {
        let (folder, caches, foreign) = try makeFolder()
        let file = try SafeTensors.read(try XCTUnwrap(caches[0].path))
        let oldKey = String(repeating: "e1", count: 32)
        var metadata = file.metadata
        (metadata["format"], metadata["key"]) = ("finetune-feature-cache-1", oldKey)
        let old = "\(folder.directory)/\(oldKey).safetensors"
        try SafeTensors.write(StateDict([("features", file.tensors["features"]!), ("valid", file.tensors["valid"]!)]),
                              metadata: metadata, to: old)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -86_400)], ofItemAtPath: old)
        XCTAssertEqual(try folder.entries().last?.key, oldKey)
        XCTAssertEqual(Set(try folder.otherFiles()), Set(foreign))
        XCTAssertEqual(try folder.prune(unusedFor: 20_000).removed.map(\.key), [oldKey])
        XCTAssertFalse(FileManager.default.fileExists(atPath: old))
    }

    func testPruneBySizeRemovesTheLeastRecentlyUsedAndNothingElse() throws {
        let (folder, caches, foreign) = try makeFolder()
        let size = try folder.entries()[0].bytes
        let dry = try folder.prune(maxBytes: 2 * size, dryRun: true)
        XCTAssertEqual(dry.removed.map(\.key), [caches[2].key])
        XCTAssertEqual(try folder.entries().count, 3, "a dry run deletes nothing")

        let report = try folder.prune(maxBytes: 2 * size)
        XCTAssertEqual(report.removed.map(\.key), [caches[2].key])
        XCTAssertEqual(report.kept.map(\.key), [caches[1].key, caches[0].key])
        XCTAssertEqual(report.freedBytes, size)
        XCTAssertFalse(FileManager.default.fileExists(atPath: try XCTUnwrap(caches[2].path)))
        XCTAssertEqual(try folder.entries().map(\.key), [caches[1].key, caches[0].key])
        for path in foreign { XCTAssertTrue(FileManager.default.fileExists(atPath: path), path) }

        // A cache just under the limit stays; 0 removes every cache, still nothing else.
        XCTAssertEqual(try folder.prune(maxBytes: 2 * size).removed, [])
        XCTAssertEqual(try folder.prune(maxBytes: 0).removed.count, 2)
        XCTAssertEqual(try folder.entries(), [])
        for path in foreign { XCTAssertTrue(FileManager.default.fileExists(atPath: path), path) }
    }

    func testPruneByAgeRemovesCachesUnusedForLonger() throws {
        let (folder, caches, _) = try makeFolder()
        let report = try folder.prune(unusedFor: 1800)
        XCTAssertEqual(report.removed.map(\.key), [caches[2].key])
        XCTAssertEqual(try folder.entries().map(\.key), [caches[1].key, caches[0].key])
        XCTAssertEqual(try folder.prune(unusedFor: 300).removed.map(\.key), [caches[0].key])
    }

    /// A 1,000-byte file named as an atomic write's temporary file of a cache, by a process that has exited.
    func temporaryFileOfAnExitedWriter(in folder: FeatureCacheFolder) throws -> String {
        let dead = try XCTUnwrap(Self.exitedProcessID())
        let path = "\(folder.directory)/.\(String(repeating: "ef", count: 32)).safetensors.\(dead).12345.tmp"
        try Data(count: 1000).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A run killed while writing a cache leaves its hidden temporary file; prune removes it once its
    /// writer is gone, and leaves a running writer's alone.
    func testPruneRemovesTheTemporaryFilesOfDeadWriters() throws {
        let (folder, _, foreign) = try makeFolder()
        let leftover = try temporaryFileOfAnExitedWriter(in: folder)
        // Probe AA: a folder, FIFO or link with a dead writer's name was a leftover too (prune then
        // failed on the folder). Only regular files are.
        let dead = try XCTUnwrap(Self.exitedProcessID())
        let named = (8...10).map { "\(folder.directory)/.\(String(repeating: "ef", count: 32)).safetensors.\(dead).\($0).tmp" }
        try FileManager.default.createDirectory(atPath: named[0], withIntermediateDirectories: false)
        XCTAssertEqual(mkfifo(named[1], 0o600), 0)
        try FileManager.default.createSymbolicLink(atPath: named[2], withDestinationPath: foreign[0])
        let report = try folder.prune(maxBytes: .max)
        for path in named { XCTAssertNotNil(try? FileManager.default.attributesOfItem(atPath: path), path) }
        XCTAssertEqual(report.removed, [])
        XCTAssertEqual(report.removedLeftovers, [leftover])
        XCTAssertEqual(report.freedBytes, 1000)
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        XCTAssertTrue(FileManager.default.fileExists(atPath: foreign[3]), "the running writer's file stays")
        XCTAssertEqual(try folder.entries().count, 3)
    }

    /// Probe V: a writer in another PID namespace (a second container sharing the folder) looks dead
    /// to `kill(pid, 0)`, and prune removed its file while it was written (the run failed). A file being
    /// written is locked by its writer, and prune leaves it alone while it is.
    func testPruneLeavesAFileThatIsBeingWrittenWhateverItsProcessID() throws {
        let (folder, _, _) = try makeFolder()
        let writing = try temporaryFileOfAnExitedWriter(in: folder)
        let fd = open(writing, O_WRONLY | O_CLOEXEC)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        XCTAssertTrue(AtomicFile.isBeingWritten(writing))
        XCTAssertEqual(try folder.prune(maxBytes: .max).removedLeftovers, [])
        XCTAssertTrue(FileManager.default.fileExists(atPath: writing))
        close(fd)  // the writer ends without renaming: a leftover now
        XCTAssertFalse(AtomicFile.isBeingWritten(writing))
        XCTAssertEqual(try folder.prune(maxBytes: .max).removedLeftovers, [writing])
        // AtomicFile's own temporary file is locked while it is written.
        var seen: Bool?
        try AtomicFile.write(to: folder.directory + "/out.bin") { append in
            let temporary = try FileManager.default.contentsOfDirectory(atPath: folder.directory)
                .first { $0.hasPrefix(".out.bin.") }
            seen = temporary.map { AtomicFile.isBeingWritten(folder.directory + "/" + $0) }
            try [UInt8](repeating: 1, count: 10).withUnsafeBytes(append)
        }
        XCTAssertEqual(seen, true)
    }

    /// Probe V: a `cache prune` between a new cache's rename and its read-back failed the run, with
    /// nothing to resume. The features are computed again and used from memory.
    func testACacheRemovedRightAfterItIsWrittenIsComputedAgain() throws {
        let root = try TRData.temporaryDirectory(self)
        let (model, dataset) = try frozenModelAndData()
        FeatureCache.afterWritingForTesting = { try? FileManager.default.removeItem(atPath: $0) }
        defer { FeatureCache.afterWritingForTesting = nil }
        let cached = try FeatureCache.prepare(model: model, dataset: dataset, transform: TRData.transform,
                                              transformDescription: "pruned", workers: 0, directory: root + "/features")
        FeatureCache.afterWritingForTesting = nil
        XCTAssertNil(cached.path)
        XCTAssertFalse(cached.reused)
        let again = try FeatureCache.prepare(model: model, dataset: dataset, transform: TRData.transform,
                                             transformDescription: "pruned", workers: 0, directory: root + "/features")
        XCTAssertTrue(try again.features.allClose(cached.features, rtol: 0, atol: 0))
    }

    /// Probe V: Ctrl-C during `export` could leave a hidden temporary file the size of the model.
    /// The next atomic write of the same file removes the temporary files of its writers that ended,
    /// and nothing else: a live writer's (it holds the lock, or its process runs and the file is
    /// fresh), another file's, a user's file of another name, a link.
    /// A destination that is a symbolic link to a file is written through: the target gets the new bytes
    /// and the link stays (it was replaced by a plain file, and a `current.onnx -> v3.onnx` deployment
    /// link was lost: probe AK). Links to links are followed to the end.
    func testAWriteThroughASymbolicLinkReplacesItsTargetAndKeepsTheLink() throws {
        let folder = try TRData.temporaryDirectory(self)
        let fm = FileManager.default
        try fm.createDirectory(atPath: folder + "/versions", withIntermediateDirectories: true)
        try Foundation.Data("v1".utf8).write(to: URL(fileURLWithPath: folder + "/versions/v1.onnx"))
        try fm.createSymbolicLink(atPath: folder + "/current.onnx", withDestinationPath: "versions/v1.onnx")
        try fm.createSymbolicLink(atPath: folder + "/latest.onnx", withDestinationPath: "current.onnx")
        try AtomicFile.write(Foundation.Data("v2".utf8), to: folder + "/latest.onnx")
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: folder + "/latest.onnx"), "current.onnx")
        XCTAssertEqual(try fm.destinationOfSymbolicLink(atPath: folder + "/current.onnx"), "versions/v1.onnx")
        XCTAssertEqual(fm.contents(atPath: folder + "/versions/v1.onnx"), Foundation.Data("v2".utf8))
        XCTAssertEqual(try fm.contentsOfDirectory(atPath: folder + "/versions"), ["v1.onnx"], "no temporary file left")
    }

    /// A replaced file keeps its permissions, and its owner and group where this process may set them
    /// (root): until 2026-12-07 it became 0644 less the umask, so a private (0600) model exported again
    /// was readable by everyone, and a group-writable one lost the group's write permission.
    func testAReplacedFileKeepsItsPermissionsAndOwner() throws {
        let folder = try TRData.temporaryDirectory(self)
        func mode(_ path: String) -> mode_t {
            var info = stat()
            XCTAssertEqual(stat(path, &info), 0, path)
            return info.st_mode & 0o7777
        }
        let previousMask = umask(0o022)
        defer { umask(previousMask) }
        for permissions: mode_t in [0o600, 0o664, 0o640] {
            let path = folder + "/model-\(String(permissions, radix: 8)).onnx"
            try Foundation.Data("v1".utf8).write(to: URL(fileURLWithPath: path))
            XCTAssertEqual(chmod(path, permissions), 0)
            try AtomicFile.write(Foundation.Data("v2".utf8), to: path)
            XCTAssertEqual(mode(path), permissions, String(permissions, radix: 8))
            XCTAssertEqual(FileManager.default.contents(atPath: path), Foundation.Data("v2".utf8))
        }
        try AtomicFile.write(Foundation.Data("new".utf8), to: folder + "/new.onnx")
        XCTAssertEqual(mode(folder + "/new.onnx"), 0o644, "a new file: 0644 less the umask")

        guard geteuid() == 0 else { return }  // only root gives a file to another user
        let shared = folder + "/shared.onnx"
        try Foundation.Data("v1".utf8).write(to: URL(fileURLWithPath: shared))
        XCTAssertEqual(chown(shared, 4321, 4322), 0)
        try AtomicFile.write(Foundation.Data("v2".utf8), to: shared)
        var info = stat()
        XCTAssertEqual(stat(shared, &info), 0)
        XCTAssertEqual(info.st_uid, 4321)
        XCTAssertEqual(info.st_gid, 4322)
    }

    /// Probe AK: a cache folder (`$FINETUNE_CACHE_DIR`) that is a link to nothing, a disk not mounted,
    /// failed the feature cache, a weights import and any folder-making write with Foundation's error
    /// dumped whole ("Error Domain=NSCocoaErrorDomain Code=516 \"A file with the same name already
    /// exists.\"…"). Each now names the link and its target.
    func testACacheFolderThatIsALinkToNothingIsNamed() throws {
        let folder = try TRData.temporaryDirectory(self)
        let cache = folder + "/cache", gone = folder + "/unmounted/cache"
        try FileManager.default.createSymbolicLink(atPath: cache, withDestinationPath: gone)
        let expected = "\(cache) is a symbolic link to \(gone), which does not exist; create its target or remove the link"
        func check(_ what: String, _ work: () throws -> Void) {
            XCTAssertThrowsError(try work(), what) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(what): \(error)")
                XCTAssertFalse("\(error)".contains("NSCocoaErrorDomain"), "\(what): \(error)")
            }
        }
        check("feature cache") { try FeatureCache.prepareDirectory(cache + "/features", views: 1, samples: 1, width: 1) }
        check("weights import") { try WeightsCache(root: URL(fileURLWithPath: cache)).importFile(folder + "/w.pth") }
        check("atomic write") { try AtomicFile.write(Foundation.Data("{}".utf8), to: cache + "/pins.json", createDirectory: true) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: gone))
    }

    /// A run folder below a symbolic link to nothing (`--out /mnt/gone/run`, the disk not mounted) is
    /// refused by the checks made before any work, naming the link: they walked past it to a writable
    /// folder above, so `train --lr find` ran its range test and then failed to make the folder.
    func testARunFolderBelowALinkToNothingIsRefusedBeforeAnyWork() throws {
        let folder = try TRData.temporaryDirectory(self)
        let mount = folder + "/mnt", gone = folder + "/unmounted"
        try FileManager.default.createSymbolicLink(atPath: mount, withDestinationPath: gone)
        let expected = "\(mount) is a symbolic link to \(gone), which does not exist; create its target or remove the link"
        XCTAssertEqual(OutputFolder.whyUnusable(mount + "/runs/a"), expected)
        XCTAssertThrowsError(try RunDirectory(mount + "/runs/a").checkNew(overwrite: false)) { error in
            XCTAssertTrue("\(error)".contains(expected), "\(error)")
        }
        XCTAssertThrowsError(try OutputFolder.create(mount + "/runs/a")) { error in
            XCTAssertEqual("\(error)", "cannot create the folder \(mount)/runs/a: \(expected)")
        }
        XCTAssertNil(OutputFolder.whyUnusable(folder + "/runs/a"), "a folder still to be made in a writable one is fine")
        XCTAssertFalse(FileManager.default.fileExists(atPath: gone))
    }

    /// Foundation's file errors are given in the system's words, naming the file, also when they carry
    /// no POSIX cause: pseudo-label's review folder on a read-only disk said "The operation could not
    /// be completed. The volume is read only." (probe AK).
    func testFoundationsFileErrorsAreGivenInTheSystemsWords() throws {
        for (code, words) in [(CocoaError.fileWriteVolumeReadOnly, "Read-only file system"),
                              (.fileWriteOutOfSpace, "No space left on device"), (.fileWriteNoPermission, "Permission denied")] {
            let error = NSError(domain: NSCocoaErrorDomain, code: code.rawValue, userInfo: [NSFilePathErrorKey: "/mnt/x/a"])
            XCTAssertEqual(FileErrorReason.of(error, path: "/mnt/x/a"), words)
            XCTAssertEqual(FileErrorReason.of(error, path: "/mnt/x"), "/mnt/x/a: " + words)
        }
        let other = NSError(domain: NSCocoaErrorDomain, code: CocoaError.fileReadCorruptFile.rawValue)
        XCTAssertEqual(FileErrorReason.of(other), other.localizedDescription)
    }

    func testAWriteRemovesTheTemporaryFilesItsEndedWritersLeft() throws {
        let folder = try TRData.temporaryDirectory(self)
        let dead = try XCTUnwrap(Self.exitedProcessID())
        func file(_ name: String) throws -> String {
            let path = folder + "/" + name
            try Data(count: 100).write(to: URL(fileURLWithPath: path))
            return path
        }
        let leftover = try file(".model.onnx.\(dead).7.tmp")
        let locked = try file(".model.onnx.\(dead).8.tmp")
        let running = try file(".model.onnx.\(getpid()).9.tmp")
        // Probe Z: a container's writers are PID 1 run after run, so a dead writer's id is often in use.
        // Unlocked and unchanged for a minute, its file is a leftover whatever the id.
        let reused = try file(".model.onnx.\(getpid()).11.tmp")
        let minuteAgo = Date(timeIntervalSinceNow: -AtomicFile.unlockedLeftoverAge - 5)
        for path in [reused, locked] { try FileManager.default.setAttributes([.modificationDate: minuteAgo], ofItemAtPath: path) }
        let other = try file(".other.onnx.\(dead).7.tmp")
        let users = try file(".model.onnx.draft.tmp")
        let link = folder + "/.model.onnx.\(dead).10.tmp"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: users)
        let fd = open(locked, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        let listings = AtomicFile.folderListings
        try AtomicFile.write(Data("new".utf8), to: folder + "/model.onnx")
        XCTAssertFalse(FileManager.default.fileExists(atPath: leftover))
        XCTAssertFalse(FileManager.default.fileExists(atPath: reused))
        let kept = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        XCTAssertEqual(kept, ([locked, running, other, users, link].map { URL(fileURLWithPath: $0).lastPathComponent }
                              + ["model.onnx"]).sorted())
        // The folder is listed once, not for each write (convert's thousands of writes into one folder
        // each listed it: quadratic); the other file's leftovers wait for its own write.
        for index in 0..<50 { try AtomicFile.write(Data([UInt8(index)]), to: folder + "/\(index).png") }
        XCTAssertEqual(AtomicFile.folderListings, listings + 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: other))
        XCTAssertEqual(AtomicFile.writerProcess(temporaryName: ".model.onnx.\(dead).7.tmp", of: "model.onnx"), dead)
        XCTAssertNil(AtomicFile.writerProcess(temporaryName: ".model.onnx.1.2.3.tmp", of: "model.onnx"))
        XCTAssertNil(AtomicFile.writerProcess(temporaryName: ".model.onnx.0.2.tmp", of: "model.onnx"))
    }

    /// A file whose name is near the file system's limit (255 bytes) is written: its temporary file's
    /// name stands for it by a shortened stem, and an ended writer's leftover of it is removed (probe AK:
    /// `export --out` with a 240-byte name failed on the temporary file, "File name too long").
    func testAFileWithALongNameIsWrittenAndItsLeftoversRemoved() throws {
        let folder = try TRData.temporaryDirectory(self)
        let name = String(repeating: "é", count: 100) + String(repeating: "x", count: 45) + ".onnx"  // 250 bytes
        XCTAssertEqual(name.utf8.count, 250)
        let stem = AtomicFile.temporaryStem(name)
        XCTAssertLessThanOrEqual(stem.utf8.count, 200)
        XCTAssertNotEqual(stem, AtomicFile.temporaryStem(String(name.dropLast(5)) + ".onnY"), "the digest tells names apart")
        XCTAssertEqual(AtomicFile.temporaryStem("model.onnx"), "model.onnx", "a short name stands for itself")
        let dead = try XCTUnwrap(Self.exitedProcessID())
        let leftover = folder + "/.\(stem).\(dead).7.tmp"
        try Data(count: 10).write(to: URL(fileURLWithPath: leftover))
        XCTAssertEqual(AtomicFile.writerProcess(temporaryName: ".\(stem).\(dead).7.tmp", of: name), dead)
        try AtomicFile.write(Data("onnx".utf8), to: folder + "/" + name)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder), [name])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)), Data("onnx".utf8))
    }

    /// A run directory whose checkpoints would pass the system's limit on a path's length (PATH_MAX),
    /// or with a name longer than NAME_MAX, is refused before any work, and nothing is made: a run path
    /// of about 4,000 bytes trained an epoch before its first checkpoint failed (probe AK).
    func testAnOutputPathTooLongForTheSystemIsRefusedBeforeAnyWork() throws {
        let folder = try TRData.temporaryDirectory(self)
        let part = String(repeating: "d", count: 200)
        var deep = ([folder] + Array(repeating: part, count: 19)).joined(separator: "/")
        deep += "/" + String(repeating: "r", count: 4000 - deep.utf8.count - 1)  // 4,000 bytes
        XCTAssertLessThan(deep.utf8.count + 1, Int(PATH_MAX), "the folder itself could be made")
        XCTAssertGreaterThan(deep.utf8.count + RunDirectory.longestInnerPath, Int(PATH_MAX) - 1)
        for attempt in [{ try RunDirectory(deep).checkNew(overwrite: false) },
                        { _ = try RunDirectory(deep).prepareNew(overwrite: false) }] {
            XCTAssertThrowsError(try attempt()) { error in
                XCTAssertTrue("\(error)".contains("bytes long, and the files made inside it add up to \(RunDirectory.longestInnerPath) more; "
                                                  + "a path may have at most \(Int(PATH_MAX) - 1) bytes"), "\(error)")
            }
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/" + part), "nothing was made")
        let longName = folder + "/" + String(repeating: "n", count: 256)
        XCTAssertEqual(OutputFolder.whyUnusable(longName + "/run"),
                       "the name nnnnnnnnnnnnnnnnnnnnnnnn… in it is 256 bytes long; a file or folder name may have at most 255")
        XCTAssertNil(OutputFolder.whyTooLong(folder + "/" + String(repeating: "n", count: 255)))
    }

    /// Probe AA: a clean-up testing the lock of a new temporary file at the instant its writer locked
    /// it made the writer's non-blocking lock fail, and the writer wrote unlocked: a third writer could
    /// then remove its live file. The writer waits for the lock now.
    func testAWriterWaitsForItsLockWhileACleanUpTestsIt() throws {
        let folder = try TRData.temporaryDirectory(self)
        let released = DispatchSemaphore(value: 0)
        AtomicFile.afterCreatingForTesting = { temporary in
            let checker = open(temporary, O_RDONLY | O_CLOEXEC)
            XCTAssertEqual(flock(checker, LOCK_EX | LOCK_NB), 0)
            Thread.detachNewThread {
                usleep(200_000)
                close(checker)  // the checker lets go
                released.signal()
            }
        }
        defer { AtomicFile.afterCreatingForTesting = nil }
        var locked: Bool?
        try AtomicFile.write(to: folder + "/out.bin") { append in
            // Once the checker has let go, the lock that remains is the writer's own.
            XCTAssertEqual(released.wait(timeout: .now() + 5), .success)
            let temporary = try FileManager.default.contentsOfDirectory(atPath: folder).first { $0.hasPrefix(".out.bin.") }
            locked = temporary.map { AtomicFile.isBeingWritten(folder + "/" + $0) }
            try [UInt8](repeating: 1, count: 10).withUnsafeBytes(append)
        }
        XCTAssertEqual(locked, true, "the writer wrote without its lock")
    }

    func testNamesAreRecognisedStrictly() {
        let key = String(repeating: "0f", count: 32)
        XCTAssertEqual(FeatureCacheFolder.cacheKey(fileName: "\(key).safetensors"), key)
        XCTAssertNil(FeatureCacheFolder.cacheKey(fileName: "\(key.uppercased()).safetensors"))
        XCTAssertNil(FeatureCacheFolder.cacheKey(fileName: "\(key.dropLast()).safetensors"))
        XCTAssertNil(FeatureCacheFolder.cacheKey(fileName: "\(key).safetensors.bak"))
        XCTAssertEqual(FeatureCacheFolder.writerProcess(leftoverName: ".\(key).safetensors.4242.17.tmp"), 4242)
        XCTAssertNil(FeatureCacheFolder.writerProcess(leftoverName: ".notes.txt.4242.17.tmp"))
        XCTAssertNil(FeatureCacheFolder.writerProcess(leftoverName: ".\(key).safetensors.x.17.tmp"))
        XCTAssertNil(FeatureCacheFolder.writerProcess(leftoverName: "\(key).safetensors.4242.17.tmp"))
    }

    /// The id of a child process that has exited and been reaped.
    static func exitedProcessID() throws -> pid_t? {
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/bin/true")
        try child.run()
        child.waitUntilExit()
        let pid = child.processIdentifier
        return kill(pid, 0) != 0 && errno == ESRCH ? pid : nil
    }
}
