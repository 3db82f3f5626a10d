import ArgumentParser
import Data
import Foundation
import Training

/// `finetune cache list | prune`: the feature caches that head-only runs leave behind.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "List the backbone-feature caches and remove the least recently used.",
        discussion: """
            A head-only run computes its frozen backbone's features once and keeps them in \
            \(FeatureCache.defaultDirectory) (or --feature-cache-dir), one file per dataset, backbone, transform and \
            seed. Runs only add or reuse caches, so the folder grows until pruned. Only caches (and temporary files of \
            killed writers) are removed, never other files. Pretrained weights are not caches of this kind: see \
            `finetune weights`.

            Examples:
              finetune cache list
              finetune cache prune --max-size 20GB        keep the most recently used 20 GB
              finetune cache prune --unused-for 30d --dry-run
              finetune cache prune --all
            """,
        subcommands: [List.self, Prune.self])

    /// The folder flag every subcommand takes.
    struct FolderOption: ParsableArguments {
        @Option(name: .customLong("dir"), help: "The feature cache folder.")
        var directory: String = FeatureCache.defaultDirectory

        var folder: FeatureCacheFolder { FeatureCacheFolder(directory: directory) }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List the caches, most recently used first.")
        @OptionGroup var folder: FolderOption
        @Flag(help: "Print one JSON object.") var json = false

        func run() throws {
            let (entries, others) = try folder.folder.contents()
            let output = Output(directory: folder.directory, caches: entries, totalBytes: entries.reduce(0) { $0 + $1.bytes },
                                otherFiles: others.count)
            if json { return printEncodedJSON(output) }
            guard !entries.isEmpty else { return printLine("no feature caches in \(folder.directory)") }
            printTable(["key", "architecture", "images", "views", "width", "precision", "size", "last used"],
                       entries.map { [String($0.key.prefix(12)), $0.architecture ?? "?", CacheCommand.describe($0.samples), CacheCommand.describe($0.views),
                                      CacheCommand.describe($0.embeddingSize), $0.bf16.map { $0 ? "bf16" : "fp32" } ?? "?",
                                      MemoryEstimate.format(Int($0.bytes)), CacheCommand.lastUsed($0)] })
            printLine("\(entries.count) cache\(entries.count == 1 ? "" : "s"), \(MemoryEstimate.format(Int(output.totalBytes))) "
                      + "in \(folder.directory)")
        }

        /// `cache list --json`.
        struct Output: Encodable {
            var directory: String
            var caches: [FeatureCacheEntry]
            var totalBytes: Int64
            /// Files in the folder that are not caches (left alone).
            var otherFiles: Int
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove caches, least recently used first.",
            discussion: "At least one of --max-size, --unused-for and --all. Runs that have a cache open keep it.")
        @OptionGroup var folder: FolderOption
        @Option(help: "Keep at most this much, the most recently used caches (e.g. 20GB, 500MB, or bytes).")
        var maxSize: ByteCount?
        @Option(help: "Remove caches no run has used for this long (e.g. 30d, 12h, 90m).")
        var unusedFor: Duration?
        @Flag(help: "Remove every cache.") var all = false
        @Flag(help: "Only report what would be removed.") var dryRun = false
        @Flag(help: "Print one JSON object.") var json = false

        func validate() throws {
            guard maxSize != nil || unusedFor != nil || all else {
                throw ValidationError("say what to remove: --max-size, --unused-for or --all")
            }
            guard !all || (maxSize == nil && unusedFor == nil) else {
                throw ValidationError("--all removes every cache; leave out --max-size and --unused-for")
            }
        }

        func run() throws {
            let report = try folder.folder.prune(maxBytes: all ? 0 : maxSize?.bytes, unusedFor: unusedFor?.seconds,
                                                 dryRun: dryRun)
            if json { return printEncodedJSON(report) }
            let verb = dryRun ? "would remove" : "removed"
            for entry in report.removed {
                printLine("\(verb) \(entry.key.prefix(12)) (\(entry.architecture ?? "?"), "
                          + "\(MemoryEstimate.format(Int(entry.bytes))), last used \(CacheCommand.lastUsed(entry)))")
            }
            for path in report.removedLeftovers { printLine("\(verb) \(path) (left by a writer that no longer runs)") }
            printLine("\(verb) \(report.removed.count) cache\(report.removed.count == 1 ? "" : "s"), "
                      + "\(MemoryEstimate.format(Int(report.freedBytes))); kept \(report.kept.count), "
                      + "\(MemoryEstimate.format(Int(report.kept.reduce(0) { $0 + $1.bytes })))")
        }
    }

    /// A header's number, or "?" when an older or foreign header lacks it.
    static func describe(_ value: Int?) -> String { value.map(String.init) ?? "?" }

    /// When `entry` was last used, in ISO 8601 (UTC).
    static func lastUsed(_ entry: FeatureCacheEntry) -> String { ISO8601DateFormatter().string(from: entry.lastUsed) }

    /// `--max-size`: bytes, or a number with B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB,
    /// TiB (powers of 1024); K, M, G and T alone are powers of 1000.
    struct ByteCount: ExpressibleByArgument {
        var bytes: Int64

        init?(argument: String) {
            let text = argument.trimmingCharacters(in: .whitespaces)
            let digits = text.prefix { $0.isNumber || $0 == "." }
            guard let number = Double(digits), number >= 0 else { return nil }
            let units: [String: Double] = ["": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
                                           "t": 1e12, "tb": 1e12, "kib": 1024, "mib": 1_048_576, "gib": 1_073_741_824,
                                           "tib": 1_099_511_627_776]
            let unit = text.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
            guard let scale = units[unit], (number * scale).isFinite, number * scale < 9e18 else { return nil }
            bytes = Int64(number * scale)
        }
    }

    /// `--unused-for`: a number with s, m, h, d or w.
    struct Duration: ExpressibleByArgument {
        var seconds: TimeInterval

        init?(argument: String) {
            let scales: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
            guard let unit = argument.last, let scale = scales[unit], let number = Double(argument.dropLast()),
                  number >= 0, number.isFinite else { return nil }
            seconds = number * scale
        }
    }
}
