import Foundation

/// Files left out of a dataset or a loader epoch because they could not be used (missing, empty,
/// unreadable, corrupt, not an image, a directory with an image's name, a dangling symlink…).
/// Nothing is printed while scanning or loading; print `warning()` once at the end.
public struct SkippedFiles: Sendable, Equatable, CustomStringConvertible {
    /// One skipped file and why.
    public struct Entry: Sendable, Equatable {
        /// The file as the dataset named it.
        public var path: String
        /// What was wrong, e.g. "is a directory, not an image file" or the decoder's message (the path left out).
        public var reason: String

        /// An entry for `path`, skipped because of `reason`.
        public init(path: String, reason: String) {
            self.path = path
            self.reason = reason
        }
    }

    public private(set) var entries: [Entry]

    /// A list of `entries` (empty by default).
    public init(_ entries: [Entry] = []) { self.entries = entries }

    /// Number of skipped files.
    public var count: Int { entries.count }
    /// Whether no file was skipped.
    public var isEmpty: Bool { entries.isEmpty }
    /// The skipped paths, in the order they were found.
    public var paths: [String] { entries.map(\.path) }

    /// Records `path` as skipped because of `reason` (no de-duplication; see `merge`).
    public mutating func append(path: String, reason: String) { entries.append(Entry(path: path, reason: reason)) }

    /// Adds `other`'s entries whose paths are not listed yet.
    public mutating func merge(_ other: SkippedFiles) {
        var seen = Set(paths)
        for e in other.entries where seen.insert(e.path).inserted { entries.append(e) }
    }

    /// One warning naming the count and listing the files (at most `limit`, then "… and N more"),
    /// or nil when nothing was skipped.
    public func warning(limit: Int = 20) -> String? {
        guard !entries.isEmpty else { return nil }
        var lines = ["warning: skipped \(count) unusable file\(count == 1 ? "" : "s"):"]
        for e in entries.prefix(max(0, limit)) { lines.append("  \(escapedName(e.path)): \(escapedName(e.reason))") }
        if entries.count > limit { lines.append("  … and \(entries.count - limit) more") }
        return lines.joined(separator: "\n")
    }

    /// The full warning, every file listed, or "no files skipped".
    public var description: String { warning(limit: Int.max) ?? "no files skipped" }
}

/// How dataset scans treat image files.
public struct ScanOptions: Sendable {
    /// Fail on the first unusable file (with a `DataError` naming it) instead of skipping it.
    public var strict: Bool
    /// Read each image's header while scanning (cheap: at most 64 KiB per file), so files that are
    /// not JPEG/PNG or are damaged at the start are caught before training. Damage further into a
    /// file is found when the loader decodes it. Without it only missing, empty and non-regular
    /// files are caught by the scan.
    public var verifyHeaders: Bool
    /// File extensions (lower case, no dot) treated as images; matched case-insensitively.
    public var extensions: Set<String>

    /// The defaults skip unusable files, check headers and accept .jpg, .jpeg and .png.
    public init(strict: Bool = false, verifyHeaders: Bool = true, extensions: Set<String> = ["jpg", "jpeg", "png"]) {
        self.strict = strict
        self.verifyHeaders = verifyHeaders
        self.extensions = extensions
    }

    /// Whether a file so named is read as an image (its extension is one of `extensions`).
    public func isImageName(_ name: String) -> Bool {
        let ext = (name as NSString).pathExtension.lowercased()
        return !ext.isEmpty && extensions.contains(ext)
    }
}

/// What `stat` says about a path, following symlinks.
enum FileKind {
    case regular(size: Int64)
    case directory(device: UInt64, inode: UInt64)
    case other
    /// A symlink whose target does not exist.
    case danglingLink
    case missing(String)

    init(path: String) {
        var st = stat()
        if stat(path, &st) == 0 {
            switch st.st_mode & S_IFMT {
            case S_IFREG: self = .regular(size: Int64(st.st_size))
            case S_IFDIR: self = .directory(device: UInt64(truncatingIfNeeded: st.st_dev), inode: UInt64(truncatingIfNeeded: st.st_ino))
            default: self = .other
            }
            return
        }
        let reason = String(cString: strerror(errno))
        var lst = stat()
        if lstat(path, &lst) == 0, lst.st_mode & S_IFMT == S_IFLNK {
            self = .danglingLink
        } else {
            self = .missing(reason)
        }
    }

    var isDirectory: Bool { if case .directory = self { return true }; return false }
}

/// The reason part of a `DataError` about `path` (without a repeated "path: " prefix).
func skipReason(_ error: Error, path: String) -> String {
    var text: String
    if let e = error as? DataError {
        switch e {
        case .unreadable(_, let reason), .unwritable(_, let reason), .corrupt(_, let reason): text = reason
        case .unsupported(let m), .invalidDataset(let m): text = m
        }
    } else {
        text = String(describing: error)
    }
    if text.hasPrefix(path + ": ") { text.removeFirst(path.count + 2) }
    return text
}

/// Checks candidate image files (in parallel when verifying headers) and returns which are usable,
/// with a report of the others in input order. In strict mode the first unusable file, in input
/// order, throws a `DataError` naming it.
func verifyImageFiles(_ paths: [String], options: ScanOptions) throws -> (usable: [Bool], skipped: SkippedFiles) {
    var failures = [DataError?](repeating: nil, count: paths.count)
    failures.withUnsafeMutableBufferPointer { out in
        let base = out.baseAddress!
        let check: (Int) -> Void = { i in
            let path = paths[i]
            switch FileKind(path: path) {
            case .regular(let size):
                if size == 0 {
                    base[i] = .corrupt(path: path, reason: "empty file (0 bytes)")
                } else if options.verifyHeaders {
                    do {
                        let info = try ImageCodec.probe(path)
                        if !info.format.isDecodable {
                            base[i] = .unsupported("\(path): unsupported image format \(info.format)")
                        }
                    } catch let e as DataError {
                        base[i] = e
                    } catch {
                        base[i] = .unreadable(path: path, reason: String(describing: error))
                    }
                }
            case .directory: base[i] = .unreadable(path: path, reason: "is a directory, not an image file")
            case .other: base[i] = .unreadable(path: path, reason: "not a regular file")
            case .danglingLink: base[i] = .unreadable(path: path, reason: "broken symbolic link (its target does not exist)")
            case .missing(let reason): base[i] = .unreadable(path: path, reason: reason)
            }
        }
        if options.verifyHeaders && paths.count > 64 {
            DispatchQueue.concurrentPerform(iterations: paths.count, execute: check)
        } else {
            for i in paths.indices { check(i) }
        }
    }
    var skipped = SkippedFiles()
    var usable = [Bool](repeating: true, count: paths.count)
    for (i, failure) in failures.enumerated() {
        guard let failure else { continue }
        if options.strict { throw failure }
        usable[i] = false
        skipped.append(path: paths[i], reason: skipReason(failure, path: paths[i]))
    }
    return (usable, skipped)
}

/// Reports each unusable file once, when it is first found, across the loaders and caches of a run
/// (a file met again in a later epoch or phase is not reported again), and keeps count per split so
/// that the totals a run prints and records are the images it actually used.
public final class SkippedFileReporter: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [String: Set<String>] = [:]
    private let report: (_ split: String, _ entry: SkippedFiles.Entry) -> Void

    /// - Parameter report: called once per newly found file, with the split's name.
    public init(report: @escaping (_ split: String, _ entry: SkippedFiles.Entry) -> Void) {
        self.report = report
    }

    /// Records `entry` for `split`, reporting it unless it was seen before (in any split).
    public func record(_ entry: SkippedFiles.Entry, split: String) {
        let isNew = lock.synchronized { () -> Bool in
            let everSeen = seen.values.contains { $0.contains(entry.path) }
            seen[split, default: []].insert(entry.path)
            return !everSeen
        }
        if isNew { report(split, entry) }
    }

    /// Records every entry of `files` for `split`.
    public func record(_ files: SkippedFiles, split: String) {
        for entry in files.entries { record(entry, split: split) }
    }

    /// Makes `loader` report its skipped files here, under `split`.
    public func watch(_ loader: DataLoader, split: String) {
        loader.onSkip = { entry in self.record(entry, split: split) }  // the loader keeps the reporter alive
    }

    /// How many distinct files of `split` were found unusable so far.
    public func count(split: String) -> Int { lock.synchronized { seen[split]?.count ?? 0 } }

    /// The files of `split` found unusable so far.
    public func paths(split: String) -> Set<String> { lock.synchronized { seen[split] ?? [] } }
}
