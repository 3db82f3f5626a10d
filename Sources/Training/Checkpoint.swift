import AtomicFiles
import Foundation
import NN
import Optim
import TensorIO
import Torch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `trainer.json`: everything besides tensors that a resumed run needs.
public struct CheckpointManifest: Codable {
    /// The `format` every checkpoint's `trainer.json` carries; reading refuses any other.
    public static let formatName = "finetune-checkpoint"
    /// The format version written; reading refuses a newer one.
    public static let currentVersion = 1

    /// Always `formatName`.
    public var format: String
    /// The format version the checkpoint was written with.
    public var version: Int
    /// ISO 8601 time of writing.
    public var createdAt: String
    /// The model's type name (e.g. `MobileNetV2`) or zoo architecture, for messages.
    public var model: String
    /// The run's training configuration: a resumed trainer rebuilds its optimizer, schedule and loss from it.
    public var configuration: TrainingConfiguration
    /// Epoch, global step (= the schedule's position), batch position in the epoch, best metric,
    /// history, freeze state and phase, loader seed and position, callback states.
    public var state: TrainingState
    /// Whether `rng.safetensors` holds LibTorch's CPU generator state.
    public var hasRNGState: Bool

    /// A manifest of the current format, stamped with `createdAt` (now by default).
    public init(model: String, configuration: TrainingConfiguration, state: TrainingState, hasRNGState: Bool,
                createdAt: Date = Date()) {
        format = Self.formatName
        version = Self.currentVersion
        self.createdAt = ISO8601DateFormatter().string(from: createdAt)
        self.model = model
        self.configuration = configuration
        self.state = state
        self.hasRNGState = hasRNGState
    }
}

/// A resumable checkpoint directory:
///
/// ```
/// model.safetensors       the model's state_dict (parameters and buffers)
/// optimizer.safetensors   the optimizer's state tensors (PyTorch names: <param>.exp_avg, …)
/// optimizer.json          the optimizer's hyperparameters (OptimizerState.hyperparametersJSON)
/// trainer.json            CheckpointManifest: configuration and TrainingState
/// rng.safetensors         LibTorch's CPU generator state ("cpu", uint8)
/// ema.safetensors         the moving average of the weights (runs with an EMA)
/// gradients.safetensors   accumulated gradients by parameter name (saved inside an accumulation group)
/// ```
///
/// Writing is atomic at the directory level: everything goes to `<dir>.tmp-<uuid>` (each file
/// fsynced), the old `<dir>` is renamed aside to `<dir>.old-<uuid>`, the new one renamed into place,
/// and the old one removed. A crash at any point leaves either the previous or the new checkpoint
/// readable: a `.tmp-` directory is never read (and is cleaned up by the next write), and if a
/// crash falls between the two renames, `read` recovers the `.old-` directory.
public struct Checkpoint {
    /// The model's `state_dict`.
    public static let modelFile = "model.safetensors"
    /// The optimizer's per-parameter state tensors.
    public static let optimizerFile = "optimizer.safetensors"
    /// The optimizer's groups and hyperparameters.
    public static let optimizerHyperparametersFile = "optimizer.json"
    /// The `CheckpointManifest`.
    public static let trainerFile = "trainer.json"
    /// LibTorch's CPU generator state (optional).
    public static let rngFile = "rng.safetensors"
    /// The EMA weights (`Trainer.ema`), when the run keeps an average.
    public static let emaFile = "ema.safetensors"
    /// The gradients of an unfinished accumulation group (`TrainingState.accumulation`).
    public static let gradientsFile = "gradients.safetensors"
    static let requiredFiles = [modelFile, optimizerFile, optimizerHyperparametersFile, trainerFile]
    /// Every file a checkpoint folder may hold.
    public static let fileNames: Set<String> = [modelFile, optimizerFile, optimizerHyperparametersFile, trainerFile,
                                                rngFile, emaFile, gradientsFile]

    /// The directory actually read (the requested one, or a recovered `.old-` one).
    public var directory: String
    /// The configuration and training state from `trainer.json`.
    public var manifest: CheckpointManifest
    /// The model's parameters and buffers, by `state_dict` key.
    public var model: StateDict
    /// The optimizer's state tensors and hyperparameters.
    public var optimizer: OptimizerState
    /// LibTorch's CPU generator state (uint8), restored on resume so dropout and other LibTorch random
    /// ops continue identically; nil when the checkpoint has none.
    public var rngState: Tensor?
    /// The EMA weights by `state_dict` key (runs with `TrainingConfiguration.ema`).
    public var ema: StateDict?
    /// The accumulated gradients by parameter name, when the checkpoint was taken inside an
    /// accumulation group (`manifest.state.accumulation` set).
    public var gradients: StateDict?

    // MARK: - Writing

    /// Writes a checkpoint atomically to `directory` (replacing any checkpoint there).
    ///
    /// A symbolic link there (a user's `checkpoints/best -> /keep/best`) stays: the checkpoint is
    /// written where it leads, and what else the folder there holds stays there (the link was replaced
    /// by a folder and the user's files moved into the run, probe AK). A file there, or a link to
    /// nothing, is refused, naming it: a checkpoint replaces only a folder.
    public static func write(to directory: String, manifest: CheckpointManifest, model: StateDict,
                             optimizer: OptimizerState, rngState: Tensor?, ema: StateDict? = nil,
                             gradients: StateDict? = nil) throws {
        var url = URL(fileURLWithPath: directory).standardizedFileURL
        if let target = RegularFile.danglingLinkTarget(url.path) {
            throw TrainingError.checkpoint(path: url.path, reason: "is a symbolic link to \(target), which does not exist; "
                                           + "create its target or remove the link")
        }
        if RegularFile.isSymbolicLink(url.path) { url = url.resolvingSymlinksInPath() }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: url.path, isDirectory: &isFolder), !isFolder.boolValue {
            throw TrainingError.checkpoint(path: url.path, reason: "exists and is not a folder; finetune replaces only "
                                           + "checkpoint folders there (move it away)")
        }
        let final = url.path
        let parent = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.checkpoint(path: final, reason: "cannot create \(parent): \(FileErrorReason.of(error, path: parent))")
        }
        let token = UUID().uuidString
        let temporary = parent + "/" + name + ".tmp-" + token
        do {
            try fm.createDirectory(atPath: temporary, withIntermediateDirectories: false)
        } catch {
            throw TrainingError.checkpoint(path: final, reason: "cannot create \(temporary): \(FileErrorReason.of(error, path: temporary))")
        }
        var published = false
        defer { if !published { try? fm.removeItem(atPath: temporary) } }

        var manifest = manifest
        manifest.hasRNGState = rngState != nil
        try SafeTensors.write(model, metadata: ["format": "pt"], to: temporary + "/" + modelFile)
        try SafeTensors.write(optimizer.tensors, metadata: ["optimizer": optimizer.hyperparameters.optimizer],
                              to: temporary + "/" + optimizerFile)
        try writeSynced(optimizer.hyperparametersJSON(), to: temporary + "/" + optimizerHyperparametersFile)
        if let rngState {
            var rng = StateDict()
            rng["cpu"] = rngState
            try SafeTensors.write(rng, to: temporary + "/" + rngFile)
        }
        if let ema { try SafeTensors.write(ema, metadata: ["format": "pt"], to: temporary + "/" + emaFile) }
        if let gradients { try SafeTensors.write(gradients, to: temporary + "/" + gradientsFile) }
        // trainer.json last: its presence marks the directory complete.
        try writeSynced(TrainingJSON.encode(manifest), to: temporary + "/" + trainerFile)
        syncDirectory(temporary)

        // Publish: old aside, new in place, old removed.
        var aside: String?
        if fm.fileExists(atPath: final) {
            let old = parent + "/" + name + ".old-" + token
            guard rename(final, old) == 0 else {
                throw TrainingError.checkpoint(path: final, reason: "cannot move the previous checkpoint aside: "
                    + String(cString: strerror(errno)))
            }
            aside = old
        }
        guard rename(temporary, final) == 0 else {
            let reason = String(cString: strerror(errno))
            if let aside { _ = rename(aside, final) }
            throw TrainingError.checkpoint(path: final, reason: "cannot rename \(temporary) into place: \(reason)")
        }
        published = true
        syncDirectory(parent)
        if let aside { removeReplaced(aside, keepingForeignEntriesIn: final) }
        // Leftovers of earlier crashed writes: only finetune's own (`<name>.tmp-<UUID>` or
        // `<name>.old-<UUID>` holding checkpoint files only); a user's `best.old-paper` is kept.
        for entry in (try? fm.contentsOfDirectory(atPath: parent)) ?? []
        where AtomicFile.replacedName(entry) == name && foreignEntries(parent + "/" + entry).isEmpty {
            try? fm.removeItem(atPath: parent + "/" + entry)
        }
    }

    /// Whether `name` is a file a checkpoint folder holds (or an interrupted atomic write of one).
    static func isCheckpointFile(_ name: String) -> Bool {
        fileNames.contains(name) || RunDirectory.isTemporaryFile(name, of: fileNames)
    }

    /// The entries of the folder at `path` that are not checkpoint files (a user's note, a folder);
    /// empty when `path` is not a folder.
    static func foreignEntries(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { !isCheckpointFile($0) }.sorted()
    }

    /// Removes the replaced checkpoint folder `aside`, after moving whatever else it held (a user's
    /// note) into its successor `final`: a checkpoint's replacement never deletes what finetune did
    /// not write. When an entry cannot be moved (its name is taken), `aside` is left in place.
    private static func removeReplaced(_ aside: String, keepingForeignEntriesIn final: String) {
        for entry in foreignEntries(aside) {
            let target = final + "/" + entry
            var info = stat()
            guard lstat(target, &info) != 0, rename(aside + "/" + entry, target) == 0 else { return }
        }
        try? FileManager.default.removeItem(atPath: aside)
    }

    // MARK: - Reading

    /// Whether `directory` holds every file of a checkpoint and a readable `trainer.json`.
    public static func isComplete(_ directory: String) -> Bool { whyIncomplete(directory) == nil }

    /// Why `directory` is not a complete checkpoint (the missing or unreadable file), nil when it is.
    public static func whyIncomplete(_ directory: String) -> String? {
        let fm = FileManager.default
        if let missing = requiredFiles.first(where: { !fm.fileExists(atPath: directory + "/" + $0) }) {
            return "\(missing) is missing"
        }
        let manifest: CheckpointManifest
        do { manifest = try readManifest(directory) } catch { return "\(error)" }
        if manifest.configuration.ema != nil && !fm.fileExists(atPath: directory + "/" + emaFile) { return "\(emaFile) is missing" }
        if manifest.state.accumulation != nil && !fm.fileExists(atPath: directory + "/" + gradientsFile) {
            return "\(gradientsFile) is missing"
        }
        if manifest.hasRNGState && !fm.fileExists(atPath: directory + "/" + rngFile) { return "\(rngFile) is missing" }
        return nil
    }

    /// The complete checkpoint to read for `directory`: itself, or, when a crash interrupted its
    /// replacement between the two renames, the previous one (`<dir>.old-*`). nil when none.
    /// Unfinished `<dir>.tmp-*` directories are never used.
    public static func locate(_ directory: String) -> String? {
        let url = URL(fileURLWithPath: directory).standardizedFileURL
        if isComplete(url.path) { return url.path }
        let parent = url.deletingLastPathComponent().path
        let prefix = url.lastPathComponent + ".old-"
        let fm = FileManager.default
        let candidates = ((try? fm.contentsOfDirectory(atPath: parent)) ?? [])
            .filter { $0.hasPrefix(prefix) }
            .map { parent + "/" + $0 }
            .filter(isComplete)
        // The newest complete one.
        return candidates.max { a, b in
            let da = (try? fm.attributesOfItem(atPath: a)[.modificationDate] as? Date) ?? .distantPast
            let db = (try? fm.attributesOfItem(atPath: b)[.modificationDate] as? Date) ?? .distantPast
            return da < db
        }
    }

    /// Reads `trainer.json` only.
    public static func readManifest(_ directory: String) throws -> CheckpointManifest {
        let path = directory + "/" + trainerFile
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TrainingError.checkpoint(path: directory, reason: "no \(trainerFile)")
        }
        let manifest: CheckpointManifest
        do {
            manifest = try TrainingJSON.decoder.decode(CheckpointManifest.self, from: data)
        } catch {
            throw TrainingError.checkpoint(path: directory, reason: "unreadable \(trainerFile): \(error)")
        }
        guard manifest.format == CheckpointManifest.formatName else {
            throw TrainingError.checkpoint(path: directory, reason: "not a finetune checkpoint")
        }
        guard manifest.version <= CheckpointManifest.currentVersion else {
            throw TrainingError.checkpoint(path: directory,
                                           reason: "written by a newer finetune (format version \(manifest.version))")
        }
        let position = manifest.state
        guard position.epoch >= 0, position.batchInEpoch >= 0, position.globalStep >= 0 else {
            throw TrainingError.checkpoint(path: path, reason: "a negative position (epoch \(position.epoch), batch "
                + "\(position.batchInEpoch), step \(position.globalStep)): the file is damaged")
        }
        // Counters no run reaches (2³¹): Int.max steps or epochs trapped adding one on resume.
        let largest = Int(Int32.max)
        // (`totalEpochs` may be Int.max: such a run ends by a stop.)
        let best = position.best.flatMap(\.bestEpoch) ?? 0
        let counters = [position.epoch, position.batchInEpoch, position.globalStep, best,
                        position.phaseStartEpoch, position.phaseStartStep]
        guard counters.allSatisfy({ (0...largest).contains($0) }) else {
            throw TrainingError.checkpoint(path: path, reason: "a position beyond \(largest) (epoch \(position.epoch), "
                + "batch \(position.batchInEpoch), step \(position.globalStep), best epoch \(best)): the file is damaged")
        }
        return manifest
    }

    /// Reads the checkpoint at `directory` (see `locate`). Tensors are copied into owned memory.
    public static func read(from directory: String) throws -> Checkpoint {
        guard let found = locate(directory) else {
            let why = FileManager.default.fileExists(atPath: directory) ? whyIncomplete(directory).map { " (\($0))" } ?? "" : ""
            throw TrainingError.checkpoint(path: directory, reason: "no complete checkpoint there" + why)
        }
        let manifest = try readManifest(found)
        /// Every failure names the file it came from.
        func reading<T>(_ file: String, _ body: () throws -> T) throws -> T {
            do { return try body() } catch let error as TrainingError { throw error } catch {
                throw TrainingError.checkpoint(path: found + "/" + file, reason: "unreadable: \(error)")
            }
        }
        let model = try reading(modelFile) { try SafeTensors.loadCopy(found + "/" + modelFile) }
        let tensors = try reading(optimizerFile) { try SafeTensors.loadCopy(found + "/" + optimizerFile) }
        guard let json = FileManager.default.contents(atPath: found + "/" + optimizerHyperparametersFile) else {
            throw TrainingError.checkpoint(path: found, reason: "no \(optimizerHyperparametersFile)")
        }
        let optimizer = try reading(optimizerHyperparametersFile) {
            do { return try OptimizerState(tensors: tensors, hyperparametersJSON: json) } catch let error as DecodingError {
                // The field and the decoder's words, not Swift's dump of the error value.
                throw TrainingError.checkpoint(path: found + "/" + optimizerHyperparametersFile,
                                               reason: "unreadable: \(TrainingJSON.describe(error, decoding: json))")
            }
        }
        var rng: Tensor?
        if manifest.hasRNGState {
            guard let t = try reading(rngFile, { try SafeTensors.loadCopy(found + "/" + rngFile) })["cpu"] else {
                throw TrainingError.checkpoint(path: found + "/" + rngFile, reason: "it has no 'cpu' state")
            }
            guard t.dtype == .uint8 else {
                throw TrainingError.checkpoint(path: found + "/" + rngFile, reason: "its 'cpu' state is \(t.dtype), not uint8")
            }
            rng = t
        }
        let ema = try manifest.configuration.ema.map { _ in
            try reading(emaFile) { try SafeTensors.loadCopy(found + "/" + emaFile) }
        }
        let gradients = try manifest.state.accumulation.map { _ in
            try reading(gradientsFile) { try SafeTensors.loadCopy(found + "/" + gradientsFile) }
        }
        return Checkpoint(directory: found, manifest: manifest, model: model, optimizer: optimizer, rngState: rng,
                          ema: ema, gradients: gradients)
    }

    // MARK: - Files

    static func writeSynced(_ data: Foundation.Data, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.checkpoint(path: path, reason: "cannot create: " + String(cString: strerror(errno)))
        }
        defer { close(fd) }
        do {
            try FileDescriptorWriter.writeAll(fd: fd, data)
        } catch let error as FileWriteError {
            throw TrainingError.checkpoint(path: path, reason: "cannot write: " + error.reason)
        }
        guard fsync(fd) == 0 else {
            throw TrainingError.checkpoint(path: path, reason: "cannot fsync: " + String(cString: strerror(errno)))
        }
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }
}

/// JSON settings for training and run files: sorted keys, pretty printed, unescaped slashes (paths
/// stay readable), and non-finite numbers as the strings "NaN", "Infinity", "-Infinity" (strict JSON
/// has no literal for them).
public enum TrainingJSON {
    /// A fresh encoder with these settings.
    public static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity",
                                                                negativeInfinity: "-Infinity", nan: "NaN")
        return e
    }

    /// A fresh decoder that reads what `encoder` writes (the non-finite strings included).
    public static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "Infinity",
                                                                  negativeInfinity: "-Infinity", nan: "NaN")
        return d
    }

    static func encode<T: Encodable>(_ value: T) throws -> Foundation.Data { try encoder.encode(value) }

    /// Why `data` did not decode, for a message: the field's path and the decoder's words. Foundation
    /// reports a number that does not fit its field (a seed of -1, a size of 1e308) as "not valid
    /// JSON" without a path; valid JSON gets that said instead.
    static func describe(_ error: Error, decoding data: Foundation.Data) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        let context: DecodingError.Context
        switch decoding {
        case .keyNotFound(let key, let c):
            // The missing key is not in the context's path, and its debugDescription is Swift's dump of it.
            return "missing field " + describe(path: c.codingPath + [key])
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): context = c
        @unknown default: return "\(error)"
        }
        let path = describe(path: context.codingPath)
        if path.isEmpty, case .dataCorrupted = decoding, (try? JSONSerialization.jsonObject(with: data)) != nil {
            return "a number does not fit its field (negative, fractional or too large where a count, size or seed is "
                + "expected); the JSON itself is valid"
        }
        return (path.isEmpty ? "" : "at \(path): ") + context.debugDescription
    }

    /// A coding path as a reader writes it: `groups[0].options["betas.0"]` (a key that holds a dot is quoted).
    static func describe(path: [CodingKey]) -> String {
        var text = ""
        for key in path {
            if let index = key.intValue, key.stringValue == "Index \(index)" || key.stringValue == "\(index)" {
                text += "[\(index)]"
            } else if key.stringValue.contains(".") || key.stringValue.isEmpty {
                text += "[\"\(key.stringValue)\"]"
            } else {
                text += (text.isEmpty ? "" : ".") + key.stringValue
            }
        }
        return text
    }

    static func string<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ string: String) throws -> T {
        try decoder.decode(type, from: Foundation.Data(string.utf8))
    }
}
