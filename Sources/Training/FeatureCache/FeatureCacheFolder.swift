import AtomicFiles
import Foundation
import Hashing
import TensorIO
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One feature cache file in a `FeatureCacheFolder`, described from its own header.
public struct FeatureCacheEntry: Codable, Equatable, Sendable {
    /// The file, `<folder>/<key>.safetensors`.
    public var path: String
    /// The hex SHA-256 key (the file's stem; see `CachedFeatures`).
    public var key: String
    /// The file's size in bytes.
    public var bytes: Int64
    /// When a run last wrote or reused the cache (the file's modification time: reuse touches it).
    public var lastUsed: Date
    /// The architecture whose backbone computed the features.
    public var architecture: String?
    /// Cached views (1 unaugmented; K augmented views).
    public var views: Int?
    /// Images in the dataset the cache covers.
    public var samples: Int?
    /// Floats per image (the embedding's width).
    public var embeddingSize: Int?
    /// Whether the backbone ran under the bf16 policy.
    public var bf16: Bool?
}

/// What `FeatureCacheFolder.prune` removed (or, dry, would remove) and what it kept.
public struct FeatureCachePruneReport: Codable, Equatable, Sendable {
    /// The folder pruned.
    public var directory: String
    /// The caches removed, least recently used first.
    public var removed: [FeatureCacheEntry]
    /// Temporary files of writes whose process is gone (a run killed while writing a cache).
    public var removedLeftovers: [String]
    /// The caches kept, most recently used first.
    public var kept: [FeatureCacheEntry]
    /// Bytes freed: the removed caches and leftovers.
    public var freedBytes: Int64
    /// True when nothing was deleted (`dryRun`).
    public var dryRun: Bool
}

/// A file or folder `FeatureCacheFolder` could not read or remove, and why.
public struct FeatureCacheFolderError: Error, CustomStringConvertible, Equatable {
    /// The file or folder.
    public var path: String
    /// What failed, with the system's reason.
    public var reason: String
    /// `path: reason`.
    public var description: String { "\(path): \(reason)" }
}

/// A folder of feature caches (by default `FeatureCache.defaultDirectory`, shared by every run of
/// this user): listing them and removing the least recently used.
///
/// Caches are never evicted while training: a run only adds a file, or reuses one and marks it used.
/// Their total grows with every new dataset, seed, transform or backbone, so `prune` bounds it by
/// size or age (`finetune cache prune`).
///
/// **Only finetune's files are touched.** A cache is a file named `<64 hex digits>.safetensors` whose
/// header says `format: finetune-feature-cache-2` (or an earlier version) with the same key; a
/// leftover is the hidden temporary file of an atomic write of such a name,
/// `.<key>.safetensors.<pid>.<n>.tmp`, whose process no longer runs and which nothing is writing (the
/// writer holds a lock on it, seen from another PID namespace too). Anything else in the folder is
/// left alone and counted in `otherFiles`.
///
/// Removing a cache is safe while runs go on: a run that has mapped it keeps its pages (the file
/// lives on until unmapped); a run that looks for it afterwards computes it again.
public struct FeatureCacheFolder: Sendable {
    /// The folder.
    public let directory: String

    /// The folder at `directory` (nothing is created).
    public init(directory: String = FeatureCache.defaultDirectory) {
        self.directory = directory
    }

    /// The caches in the folder, most recently used first; an absent folder has none.
    public func entries() throws -> [FeatureCacheEntry] {
        try scan().caches
    }

    /// Files in the folder that are neither caches nor leftovers of their writes (never touched).
    public func otherFiles() throws -> [String] {
        try scan().others
    }

    /// `entries()` and `otherFiles()` from one reading of the folder (each cache's header read once).
    public func contents() throws -> (caches: [FeatureCacheEntry], otherFiles: [String]) {
        let scanned = try scan()
        return (scanned.caches, scanned.others)
    }

    /// Removes caches, least recently used first, until those kept take at most `maxBytes` (0: every
    /// cache), and every cache not used within `unusedFor` seconds of `now`. Leftover temporary files
    /// of dead writers go too, whatever the limits. `dryRun` only reports.
    public func prune(maxBytes: Int64? = nil, unusedFor: TimeInterval? = nil, now: Date = Date(),
                      dryRun: Bool = false) throws -> FeatureCachePruneReport {
        let (caches, leftovers, _) = try scan()
        var kept: [FeatureCacheEntry] = [], removed: [FeatureCacheEntry] = []
        var keptBytes: Int64 = 0
        for entry in caches {  // most recently used first: the first ones within the limits stay
            let stale = unusedFor.map { now.timeIntervalSince(entry.lastUsed) > $0 } ?? false
            let over = maxBytes.map { keptBytes + entry.bytes > $0 } ?? false
            if stale || over {
                removed.append(entry)
            } else {
                kept.append(entry)
                keptBytes += entry.bytes
            }
        }
        removed.reverse()
        var freed: Int64 = 0
        for entry in removed {
            if !dryRun { try remove(entry.path) }
            freed += entry.bytes
        }
        for leftover in leftovers {
            freed += Self.size(of: leftover) ?? 0
            if !dryRun { try remove(leftover) }
        }
        return FeatureCachePruneReport(directory: directory, removed: removed, removedLeftovers: leftovers, kept: kept, freedBytes: freed,
                                       dryRun: dryRun)
    }

    /// Marks the cache at `path` used now (its modification time), so that `prune` keeps it longest.
    /// Best effort: a read-only folder leaves the time as it was.
    static func markUsed(_ path: String) {
        try? FileManager.default.setAttributes([.modificationDate: Date()], ofItemAtPath: path)
    }

    private func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {  // gone already: another prune, or a rename
            throw FeatureCacheFolderError(path: path, reason: "cannot remove it: \(String(cString: strerror(errno)))")
        }
    }

    private func scan() throws -> (caches: [FeatureCacheEntry], leftovers: [String], others: [String]) {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isFolder) else { return ([], [], []) }
        guard isFolder.boolValue else {
            throw FeatureCacheFolderError(path: directory, reason: "is a file, not a feature cache folder")
        }
        guard access(directory, R_OK | X_OK) == 0 else {
            throw FeatureCacheFolderError(path: directory, reason: "cannot list the feature cache folder: "
                                          + String(cString: strerror(errno)))
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw FeatureCacheFolderError(path: directory, reason: "cannot list the feature cache folder: \(error)")
        }
        var caches: [FeatureCacheEntry] = [], leftovers: [String] = [], others: [String] = []
        for name in names.sorted() {
            let path = URL(fileURLWithPath: directory).appendingPathComponent(name).path
            if let key = Self.cacheKey(fileName: name), let entry = Self.describe(path, key: key) {
                caches.append(entry)
            } else if let pid = Self.writerProcess(leftoverName: name), AtomicFile.isLeftover(path, writer: pid) {
                leftovers.append(path)
            } else {
                others.append(path)
            }
        }
        caches.sort { ($0.lastUsed, $0.key) > ($1.lastUsed, $1.key) }
        return (caches, leftovers, others)
    }

    /// The key of a cache's file name, `<64 lowercase hex>.safetensors`; nil for any other name.
    static func cacheKey(fileName name: String) -> String? {
        guard name.hasSuffix(".safetensors") else { return nil }
        let stem = String(name.dropLast(".safetensors".count))
        return SHA256Hasher.isHexDigest(stem) ? stem : nil
    }

    /// The writer's process id in an atomic write's temporary name `.<key>.safetensors.<pid>.<n>.tmp`.
    static func writerProcess(leftoverName name: String) -> pid_t? {
        let stem = name.dropFirst().prefix(while: { $0 != "." })
        guard name.hasPrefix("."), cacheKey(fileName: stem + ".safetensors") != nil else { return nil }
        return AtomicFile.writerProcess(temporaryName: name, of: stem + ".safetensors")
    }

    private static func size(of path: String) -> Int64? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value
    }

    /// The entry for a file that is one of finetune's caches (its header's format and key), else nil.
    private static func describe(_ path: String, key: String) -> FeatureCacheEntry? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular,
              let file = try? SafeTensors.read(path),
              let format = file.metadata["format"], format == FeatureCache.format || FeatureCache.earlierFormats.contains(format),
              file.metadata["key"] == key else { return nil }
        let inputs = file.metadata["inputs"].flatMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String]
        } ?? [:]
        return FeatureCacheEntry(path: path, key: key, bytes: (attributes[.size] as? NSNumber)?.int64Value ?? 0,
                                 lastUsed: attributes[.modificationDate] as? Date ?? .distantPast,
                                 architecture: inputs["architecture"], views: inputs["views"].flatMap { Int($0) },
                                 samples: inputs["sample_count"].flatMap { Int($0) },
                                 embeddingSize: inputs["embedding_size"].flatMap { Int($0) },
                                 bf16: inputs["autocast_bf16"].flatMap { Bool($0) })
    }
}
