import Data
import Foundation
import NN
import TensorIO
import Torch
import Vision
import AtomicFiles

/// A run directory: the folder a training run writes (config, weights, checkpoints, history,
/// TensorBoard logs, plots), and the rules for creating, reading and replacing one.
///
/// A folder is *provably* a finetune run when its `config.json` has `format: finetune-run` and a
/// supported version, and it holds nothing but run files (`runFileNames`, hidden temporary files of
/// atomic writes and the lock). Only such a folder, or an empty one, may become a new run's
/// destination, and only with `overwrite`; a folder that contains the training data, or lies inside
/// it, never may.
public struct RunDirectory: Sendable {
    /// The run's `RunConfig`, at the top of the directory.
    public static let configFile = "config.json"
    /// The trained model's `state_dict` (final or best weights, see `RunConfig.modelWeights`).
    public static let modelFile = "model.safetensors"
    /// Every name a run writes at its top level. A folder holding anything else is not replaced.
    public static let runFileNames: Set<String> = [
        configFile, modelFile, "checkpoints", "history.csv", "events.jsonl", "tensorboard",
        "loss.svg", "accuracy.svg", "auc.svg", "lr.svg", "confusion_matrix.svg", RunLock.fileName,
        "lr_find.svg", "lr_find.csv",  // `--lr find`
    ]

    /// The directory's absolute, standardized path.
    public let path: String

    /// The run directory at `path` (made absolute and standardized; nothing is read or created).
    public init(_ path: String) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
    }

    /// `name` inside the run directory.
    public func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }
    /// Path of `config.json`.
    public var config: String { file(Self.configFile) }
    /// Path of `model.safetensors`.
    public var model: String { file(Self.modelFile) }
    /// Path of `checkpoints/`, the `ModelCheckpoint` folder.
    public var checkpoints: String { file("checkpoints") }
    /// Path of `checkpoints/last`, the checkpoint a resume reads.
    public var lastCheckpoint: String { file("checkpoints/last") }
    /// Path of `checkpoints/best`, the best epoch's checkpoint.
    public var bestCheckpoint: String { file("checkpoints/best") }
    /// Path of `history.csv`: one row of metrics per epoch (`CSVLoggerCallback`).
    public var history: String { file("history.csv") }
    /// Path of `events.jsonl`: one JSON object per line for the run's events and batch metrics
    /// (`JSONLinesLoggerCallback`).
    public var events: String { file("events.jsonl") }
    /// Path of `tensorboard/`, the TensorBoard event files (`TensorBoardCallback`).
    public var tensorboard: String { file("tensorboard") }

    /// Whether `path` is a folder holding `config.json` (a quick test for "the user means a run";
    /// `readConfig` then checks that it really is one).
    public static func isRun(_ path: String) -> Bool {
        var isDirectory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent(configFile))
    }

    /// Reads and validates `config.json` (format, version, class list against the head, preprocessing).
    public func readConfig() throws -> RunConfig {
        guard FileManager.default.fileExists(atPath: config) else {
            throw RunError.notARun(path: path, reason: "\(config) is missing")
        }
        let runConfig: RunConfig
        let data: Foundation.Data
        do { data = try Foundation.Data(contentsOf: URL(fileURLWithPath: config)) } catch {
            throw RunError.invalidConfig(path: config, reason: "cannot read it: \(FileErrorReason.of(error, path: config))")
        }
        do {
            runConfig = try TrainingJSON.decoder.decode(RunConfig.self, from: data)
        } catch {
            throw RunError.invalidConfig(path: config, reason: "cannot read it: \(TrainingJSON.describe(error, decoding: data))")
        }
        do { try runConfig.validate() } catch RunError.invalidConfig(_, let reason) {
            throw RunError.invalidConfig(path: config, reason: reason)
        }
        return runConfig
    }

    /// Writes `config.json` atomically (and durably).
    public func write(_ runConfig: RunConfig) throws {
        let data = try TrainingJSON.encoder.encode(runConfig)
        try AtomicFile.write(data, to: config, createDirectory: true)
    }

    /// Why the folder at `path` is not provably a finetune run, or nil when it is one (see the type's
    /// documentation).
    public func reasonNotARun() -> String? {
        let fm = FileManager.default
        guard let names = try? fm.contentsOfDirectory(atPath: path) else { return "it cannot be listed" }
        guard names.contains(Self.configFile) else { return "it has no \(Self.configFile)" }
        struct Header: Decodable { var format: String?; var version: Int? }
        guard let data = fm.contents(atPath: config), let header = try? JSONDecoder().decode(Header.self, from: data) else {
            return "its \(Self.configFile) is not JSON written by finetune"
        }
        guard header.format == RunConfig.formatName else {
            return "its \(Self.configFile) has no \"format\": \"\(RunConfig.formatName)\""
        }
        guard let version = header.version, RunConfig.supportedVersions.contains(version) else {
            return "its \(Self.configFile) has version \(header.version.map(String.init) ?? "none"), not one this finetune wrote"
        }
        let foreign = foreignEntries()
        if !foreign.isEmpty {
            let shown = foreign.prefix(5).joined(separator: ", ") + (foreign.count > 5 ? ", …" : "")
            return "it holds files a run does not write (\(shown))"
        }
        return nil
    }

    /// The entries below the directory that a run does not write, as paths relative to it, sorted.
    ///
    /// The whole tree is checked, not only its top level: a run writes files at the top
    /// (`runFileNames`), checkpoint folders in `checkpoints/` holding only checkpoint files, and
    /// TensorBoard event files in `tensorboard/<run>/`. A user's file anywhere else (a note in
    /// `tensorboard/`, a folder named `loss.svg`) makes the folder not a run, so `--overwrite` never
    /// deletes it. Symbolic links are entries, never followed (deleting a link leaves its target).
    public func foreignEntries() -> [String] {
        var foreign: [String] = []
        func kind(_ relative: String) -> FileAttributeType? {
            (try? FileManager.default.attributesOfItem(atPath: file(relative)))?[.type] as? FileAttributeType
        }
        func children(_ relative: String) -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: file(relative))) ?? []).sorted()
        }
        func expectFile(_ relative: String) {
            if kind(relative) == .typeDirectory { foreign.append(relative + "/") }
        }
        func expectFolder(_ relative: String, holding check: (String) -> Void) {
            let type = kind(relative)
            if type == .typeSymbolicLink { return }
            guard type == .typeDirectory else { foreign.append(relative); return }
            for name in children(relative) { check(relative + "/" + name) }
        }
        for name in children(".") {
            switch name {
            case "checkpoints":
                expectFolder(name) { checkpoint in
                    let base = (checkpoint as NSString).lastPathComponent
                    guard Self.isCheckpointFolderName(base) else { foreign.append(checkpoint); return }
                    expectFolder(checkpoint) { entry in
                        let base = (entry as NSString).lastPathComponent
                        Checkpoint.isCheckpointFile(base) ? expectFile(entry) : foreign.append(entry)
                    }
                }
            case "tensorboard":
                expectFolder(name) { run in
                    expectFolder(run) { entry in
                        (entry as NSString).lastPathComponent.hasPrefix("events.out.tfevents.")
                            ? expectFile(entry) : foreign.append(entry)
                    }
                }
            default:
                guard Self.runFileNames.contains(name) || Self.isTemporaryFile(name) else { foreign.append(name); continue }
                expectFile(name)
            }
        }
        return foreign
    }

    /// What the run holds of its training besides `checkpoints/last`: `checkpoints/best`, the
    /// `checkpoints/epoch-NNNN` folders, `model.safetensors` (relative paths; empty when nothing).
    public func trainedState() -> [String] {
        var kept: [String] = []
        if Checkpoint.locate(bestCheckpoint) != nil { kept.append("checkpoints/best") }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints)) ?? []).sorted()
        kept += names.filter { $0.hasPrefix("epoch-") && Self.isCheckpointFolderName($0) && !$0.contains(".") }
            .map { "checkpoints/" + $0 }
        if FileManager.default.fileExists(atPath: model) { kept.append(Self.modelFile) }
        return kept
    }

    /// A hidden temporary file of an interrupted atomic write of one of `files`: exactly
    /// `.NAME.PID.RANDOM.tmp` (`AtomicFile`'s name, two decimal numbers); a user's `.notes.tmp` or
    /// `.config.json.mine.tmp` is not one.
    static func isTemporaryFile(_ name: String, of files: Set<String> = runFileNames) -> Bool {
        guard name.hasPrefix("."), name.hasSuffix(".tmp") else { return false }
        let inner = name.dropFirst().dropLast(4)
        return files.contains { file in
            guard inner.hasPrefix(file + ".") else { return false }
            let numbers = inner.dropFirst(file.count + 1).split(separator: ".", omittingEmptySubsequences: false)
            return numbers.count == 2 && numbers.allSatisfy { !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }
        }
    }

    /// A folder `ModelCheckpoint` writes in `checkpoints/`: `last`, `best`, `epoch-NNNN`, or one of
    /// those being replaced (`<name>.tmp-<UUID>`, `<name>.old-<UUID>`, as `Checkpoint.write` names
    /// them: a user's `best.old-paper` is not one, and `--overwrite` deleted it with the run).
    static func isCheckpointFolderName(_ name: String) -> Bool {
        let base = AtomicFile.replacedName(name) ?? name
        if base == "last" || base == "best" { return true }
        return base.hasPrefix("epoch-") && base.dropFirst(6).count >= 4 && base.dropFirst(6).allSatisfy(\.isASCII)
            && base.dropFirst(6).allSatisfy(\.isNumber)
    }

    /// Makes `path` the (empty, locked) directory of a new run and returns its lock.
    ///
    /// - A missing or empty folder is used as it is.
    /// - A provable finetune run is deleted only with `overwrite` (after taking its lock, so a run
    ///   still being written is never deleted); without it the error says to pass it.
    /// - Anything else is refused, and nothing is touched.
    /// - `data` (the training data's folder) may not be the destination, contain it, or lie inside it
    ///   (inside is allowed when `listed`: the folder of a CSV file's images, see `checkSeparate`).
    public func prepareNew(overwrite: Bool, data: String? = nil, listed: Bool = false) throws -> RunLock {
        let fm = FileManager.default
        // A link to the run (`current -> disk2/run`) stays a link: the run it leads to is replaced (the
        // link was replaced by a folder on the link's disk, probe AK). Resolved while its target exists.
        let place = RegularFile.isSymbolicLink(path) ? URL(fileURLWithPath: path).resolvingSymlinksInPath().path : path
        if let why = OutputFolder.whyTooLong(place, roomInside: Self.longestInnerPath) {
            throw RunError.io(path: path, reason: "cannot create the run directory: \(why)")
        }
        if try holdsEarlierRun(overwrite: overwrite, data: data, listed: listed) {
            let old = try RunLock(directory: path)  // a run still being written is never replaced
            // Move it out of the way first (a rename is atomic), then delete it. The name aside is short
            // (the run's name plus a suffix passed NAME_MAX for a long name, probe AK) and visible: a
            // process killed before the deletion leaves it where it can be seen.
            let aside = (place as NSString).deletingLastPathComponent
                + "/finetune-replaced-\(getpid())-\(UInt32.random(in: 0 ... .max))"
            guard rename(place, aside) == 0 else {
                let code = errno
                // Foundation's words were "The operation could not be completed" (NSCocoaErrorDomain 512).
                let hint = code == EBUSY ? " (a mount point, such as a container's volume, cannot be moved: "
                    + "give a folder inside it)" : ""
                throw RunError.io(path: path, reason: "cannot move the earlier run aside: \(String(cString: strerror(code)))\(hint)")
            }
            old.release()
            try? fm.removeItem(atPath: aside)
        }
        do {
            try fm.createDirectory(atPath: place, withIntermediateDirectories: true)
        } catch {
            throw RunError.io(path: path, reason: "cannot create the run directory: \(OutputFolder.whyUnusable(path, roomInside: Self.longestInnerPath) ?? FileErrorReason.of(error, path: path))")
        }
        return try RunLock(directory: path)
    }

    /// The room the paths finetune makes inside a run directory need beyond its own path: the longest,
    /// a checkpoint's temporary file (`/checkpoints/epoch-NNNN.tmp-<UUID>/.optimizer.safetensors.<pid>.<n>.tmp`),
    /// is about 110 bytes.
    public static let longestInnerPath = 160

    /// The checks of `prepareNew`, changing nothing: work that comes before the run directory
    /// (`--lr find`'s range test) runs only when the folder can be used (it ran for minutes, and then
    /// the folder was refused).
    public func checkNew(overwrite: Bool, data: String? = nil, listed: Bool = false) throws {
        _ = try holdsEarlierRun(overwrite: overwrite, data: data, listed: listed)
        if let why = OutputFolder.whyUnusable(path, roomInside: Self.longestInnerPath) {
            throw RunError.io(path: path, reason: "cannot create the run directory: \(why)")
        }
    }

    /// Whether `path` holds an earlier run that `prepareNew` is to replace (`overwrite` given, no
    /// writer); throws for a destination it may not use.
    private func holdsEarlierRun(overwrite: Bool, data: String?, listed: Bool) throws -> Bool {
        if let data { try Self.checkSeparate(run: path, data: data, listed: listed) }
        if let target = RegularFile.danglingLinkTarget(path) {
            throw RunError.refusedDestination(path: path, reason: "is a symbolic link to \(target), which does not exist; "
                                              + "create its target or choose another folder")
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return false }
        guard isDirectory.boolValue else {
            throw RunError.refusedDestination(path: path, reason: "exists and is not a folder")
        }
        let contents = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        // A lone lock file of a killed run's start counts as empty; another tool's `.lock` does not.
        if contents.isEmpty || (contents == [RunLock.fileName] && RunLock.isOwnLockFile(file(RunLock.fileName))) { return false }
        // A run another process is starting has no config.json yet: say it is in use, not that it is
        // no run (probe V).
        if let pid = RunLock.holder(of: path) { throw RunError.locked(directory: path, pid: pid) }
        if let reason = reasonNotARun() {
            throw RunError.refusedDestination(path: path, reason: "exists and is not a finetune run directory "
                + "(\(reason)); nothing was changed: choose another folder")
        }
        guard overwrite else {
            throw RunError.refusedDestination(path: path, reason: "holds an earlier finetune run; "
                + "pass --overwrite to replace it, resume it, or choose another folder")
        }
        return true
    }

    /// Removes the hidden temporary files an atomic write killed mid-way left at the top of the run
    /// (`.model.safetensors.PID.N.tmp`, up to the model's size). Only for the lock's holder: no
    /// other process writes the directory then.
    func removeStaleTemporaryFiles(lockedBy lock: RunLock) {
        guard lock.isHeld else { return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        for name in names where Self.isTemporaryFile(name) {
            // Only a plain file: AtomicFile never leaves a folder or a link behind.
            let type = (try? FileManager.default.attributesOfItem(atPath: file(name)))?[.type] as? FileAttributeType
            if type == .typeRegular { try? FileManager.default.removeItem(atPath: file(name)) }
        }
    }

    /// Throws unless `run` and `data` are separate: neither is the other nor lies inside it
    /// (symbolic links resolved; `run` need not exist yet). With `listed` (a CSV file's images, whose
    /// folder is `data`: nothing scans it for classes), `run` may lie inside `data`, as
    /// `project/runs/x` beside `project/train.csv` (refused until 2026-12-05), but not contain it.
    public static func checkSeparate(run: String, data: String, listed: Bool = false) throws {
        let r = resolvedPath(run), d = resolvedPath(data)
        func inside(_ child: String, _ parent: String) -> Bool { child == parent || child.hasPrefix(parent == "/" ? "/" : parent + "/") }
        if inside(r, d) && (!listed || r == d) {
            throw RunError.refusedDestination(path: run, reason: "lies inside the training data \(data); "
                + "a run directory must be outside its DATA folder")
        }
        if inside(d, r) {
            throw RunError.refusedDestination(path: run, reason: "contains the training data \(data); "
                + "a run directory must be outside its DATA folder")
        }
    }

    /// `path` absolute with symbolic links resolved, as far as it exists (the rest appended).
    static func resolvedPath(_ path: String) -> String {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        var missing: [String] = []
        while !FileManager.default.fileExists(atPath: url.path), url.path != "/" {
            missing.insert(url.lastPathComponent, at: 0)
            url.deleteLastPathComponent()
        }
        var resolved = url.resolvingSymlinksInPath().path
        for part in missing { resolved = (resolved as NSString).appendingPathComponent(part) }
        return resolved
    }

    /// The run's model with `model.safetensors` loaded, in eval mode. `notify` hears
    /// `RunConfig.olderModelNotice` when the weights are from before a resume that has not finished.
    public func loadModel(_ runConfig: RunConfig,
                          notify: (TrainingRun.Notice) -> Void = TrainingRun.printToStandardError) throws -> ImageClassifier {
        guard FileManager.default.fileExists(atPath: model) else {
            let finished = ["completed", "stopped"].contains(runConfig.status)
            // A run another process trains now was told to resume it, which only met that process's lock.
            let trainer = runConfig.status == "running" ? RunLock.holder(of: path) : nil
            guard !finished else {
                throw RunError.notARun(path: path, reason: "\(model) is missing, although the run \(runConfig.status): "
                                       + "it was moved or deleted")
            }
            // It was "not a finetune run directory", of a run another process was training.
            let checkpoint = checkpointForUnfinishedRun().map {
                ", or use its \($0.description) (`--checkpoint \($0.which.rawValue)`)"
            }
            throw RunError.unfinished(path: path, status: runConfig.status, advice:
                (trainer.map { "process \($0) is training it: wait for it to finish" }
                    ?? (Checkpoint.isComplete(lastCheckpoint)
                        ? "resume it with `finetune train --resume \(path)` (`--epochs N` ends it sooner, at the epoch "
                            + "under way at the earliest)"
                        : "it has no checkpoint to resume from: train it again (`finetune train … --out \(path) --overwrite`)"))
                + (checkpoint ?? ""))
        }
        let classifier = try loadModel(runConfig, weights: model)
        let trainer = runConfig.status == "running" ? RunLock.holder(of: path) : nil
        if let notice = runConfig.olderModelNotice(trainingProcess: trainer) { notify(.warning(notice)) }
        return classifier
    }

    /// The run's model with the weights of `file` (`model.safetensors`, or a checkpoint's), in eval mode.
    public func loadModel(_ runConfig: RunConfig, weights file: String) throws -> ImageClassifier {
        let classifier = try Self.buildModel(runConfig)
        let weights: StateDict
        do { weights = try SafeTensors.load(file) } catch {
            // (An empty or cut-off file "did not fit the model config.json describes".)
            throw RunError.invalidConfig(path: file, reason: "cannot read it: \(error)")
        }
        do {
            try classifier.load(weights, strict: true)
        } catch {
            throw RunError.invalidConfig(path: file, reason: "does not fit the model config.json describes: \(error)")
        }
        try classifier.useChannelsLast(runConfig.options.channelsLast ?? false)
        classifier.eval()
        return classifier
    }

    /// The architecture exactly as training built it (same head size; for pretrained weights the
    /// variant the zoo builds for them, e.g. InceptionV3's `transform_input`), randomly initialised:
    /// load the run's state dict over it. The original pretrained weights are not needed.
    public static func buildModel(_ runConfig: RunConfig) throws -> ImageClassifier {
        let head = runConfig.head
        let options = ModelOptions(numClasses: head.outputs, includeTop: head.includeTop)
        let model = runConfig.weights == nil ? try ModelZoo.make(runConfig.architecture, options: options)
                                             : try ModelZoo.makePretrainedVariant(runConfig.architecture, options: options)
        if let spec = head.spec, spec != HeadSpec(outputs: options.numClasses) { try model.configureHead(spec) }
        return model
    }

    /// An ISO 8601 timestamp for `createdAt`/`updatedAt`.
    public static func timestamp(_ date: Date = Date()) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    /// Checks that `found` (a data folder's classes) equals the run's classes, naming the differences.
    public static func checkClassNames(_ found: [String], run expected: [String], data: String) throws {
        guard found != expected else { return }
        let missing = expected.filter { !found.contains($0) }
        let extra = found.filter { !expected.contains($0) }
        var parts: [String] = []
        if !missing.isEmpty { parts.append("missing from \(data): \(missing.joined(separator: ", "))") }
        if !extra.isEmpty { parts.append("not classes of the run: \(extra.joined(separator: ", "))") }
        if parts.isEmpty { parts.append("same classes in a different order") }
        throw RunError.invalidConfig(path: data, reason: "the class folders do not match the run's \(expected.count) classes ("
                                     + parts.joined(separator: "; ") + ")")
    }
}
