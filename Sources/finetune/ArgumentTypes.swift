import ArgumentParser
import Data
import Export
import Torch
import Training
import Vision

// Library option types the command line parses directly: help lists their values and
// swift-argument-parser names the flag when a value is unknown.

extension BadImagePolicy: ExpressibleByArgument {}
extension OptimizerConfig.Kind: ExpressibleByArgument {}
extension RecipeName: ExpressibleByArgument {}
extension Augmentation: ExpressibleByArgument {}
extension FeatureCacheMode: ExpressibleByArgument {}
extension NearDuplicateMethod: ExpressibleByArgument {}
extension SamplerKind: ExpressibleByArgument {}
extension TestTimeAugmentation: ExpressibleByArgument {}
extension MonitorMetric: ExpressibleByArgument {}
extension GlobalPooling: ExpressibleByArgument {}
extension RunWeights: ExpressibleByArgument {}
extension RandomErasing.Mode: ExpressibleByArgument {}

/// `train --pooling`: the pooling in front of a head, avg or max (`GlobalPooling.none` is
/// `summary --no-top`'s only: `train --help` offered it, and train refused it).
enum HeadPooling: String, CaseIterable, ExpressibleByArgument {
    case avg, max

    /// The model's pooling.
    var pooling: GlobalPooling { self == .avg ? .avg : .max }
}
extension EXIFOrientation: ExpressibleByArgument {}
extension ConvertDataset.Source: ExpressibleByArgument {}
extension ExportFormat: ExpressibleByArgument {}

// The command line's own choices: values of flags that no library type describes.

/// `train --augment`: an `Augmentation`, and for `randaugment:n=N,m=M` its two numbers.
struct AugmentArgument: ExpressibleByArgument {
    var kind: Augmentation
    /// [n, m] when given after `randaugment:`.
    var randAugment: [Int]?

    init(kind: Augmentation, randAugment: [Int]? = nil) {
        self.kind = kind
        self.randAugment = randAugment
    }

    init?(argument: String) {
        let parts = argument.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first, let kind = Augmentation(rawValue: first.lowercased()) else { return nil }
        self.kind = kind
        guard parts.count == 2 else { return }
        guard kind == .randaugment else { return nil }
        var values = ["n": 2, "m": 9], given: Set<String> = []
        // Each of n and m at most once: `n=2,n=3` and a bare `randaugment:` are mistakes, not defaults.
        for pair in parts[1].split(separator: ",", omittingEmptySubsequences: false) {
            let kv = pair.split(separator: "=").map { $0.trimmingCharacters(in: .whitespaces) }
            guard kv.count == 2, let value = Int(kv[1]), values[kv[0]] != nil, given.insert(kv[0]).inserted else { return nil }
            values[kv[0]] = value
        }
        randAugment = [values["n"]!, values["m"]!]
    }

    static var allValueStrings: [String] { Augmentation.allCases.map { $0 == .randaugment ? "randaugment[:n=2,m=9]" : $0.rawValue } }
    var defaultValueDescription: String { kind.rawValue }
}

/// `train --lr`: a learning rate, or `find` (the LR range test's suggestion).
enum LearningRateArgument: Equatable, ExpressibleByArgument {
    case value(Double)
    case find

    init?(argument: String) {
        if argument.lowercased() == "find" { self = .find } else if let v = Double(argument) { self = .value(v) } else { return nil }
    }

    /// The number, or nil for `find`.
    var value: Double? { if case .value(let v) = self { return v } else { return nil } }
}

extension DataSplit: ExpressibleByArgument {}

/// `bench --dtype` / `--precision`: fp32, bf16 (CPU autocast with the layer policy), bf16-all (plain
/// autocast: every layer type in bf16, as `--bf16` was before the policy), auto (train's decision per
/// model), both (fp32 and bf16 rows) or all (fp32, bf16-all and bf16 rows).
enum BenchPrecision: String, CaseIterable, ExpressibleByArgument {
    case fp32, bf16, bf16All = "bf16-all", auto, both, all

    /// The rows' precisions.
    var rows: [BenchPrecision] {
        switch self {
        case .both: return [.fp32, .bf16]
        case .all: return [.fp32, .bf16All, .bf16]
        default: return [self]
        }
    }
}

/// `bench loader --augment`: the training transform (random resized crop + flip) or the evaluation
/// one (resize + centre crop).
enum LoaderAugmentation: String, CaseIterable, ExpressibleByArgument {
    case train, eval
}

/// `--device cpu|cuda|cuda:N|mps|auto` (`Device(parsing:)`; auto: CUDA, then MPS, then CPU).
extension Device: ExpressibleByArgument {
    public init?(argument: String) {
        guard let device = try? Device(parsing: argument) else { return nil }
        self = device
    }

    public static var allValueStrings: [String] { ["cpu", "cuda", "cuda:N", "mps", "auto"] }
}

/// `--threads` and `--exif` of the commands that run a trained run's or the zoo's model on images
/// (`evaluate`, `predict`, `features`), in one place so their help and meaning stay the same.
struct ModelRunOptions: ParsableArguments {
    @Option(help: "Intra-op threads (default: all cores).") var threads: Int?
    @Option(help: "JPEG EXIF orientation: apply or ignore (default: the run's own setting, else apply).")
    var exif: EXIFOrientation?

    /// Sets LibTorch's thread count (`applyThreads`).
    func applyThreads() throws { try finetune.applyThreads(threads) }

    /// Decodes JPEGs with `--exif`, else the run's own setting (`run`, nil for a zoo model), else applying
    /// the orientation.
    func applyEXIF(run: RunConfig?) {
        ImageCodec.exifOrientation = exif ?? run?.options.exif ?? .apply
    }
}

/// `--checkpoint best|last` of the commands that use a run's model (`evaluate`, `predict`, `features`,
/// `export`, `report`, `serve`, `pseudo-label`): a checkpoint's weights instead of the final ones, so a
/// run that trains or was stopped can be used, and the best epoch compared with the final weights.
struct RunWeightsOption: ParsableArguments {
    @Option(help: ArgumentHelp("Use a checkpoint of the run instead of its final weights (model.safetensors): best (the best epoch so far) or last (the latest checkpoint). Works while the run trains and after Ctrl-C.", valueName: "checkpoint"))
    var checkpoint: RunWeights?

    /// The weights to load (`.final` unless `--checkpoint` says otherwise).
    var weights: RunWeights { checkpoint ?? .final }

    /// Throws when `--checkpoint` is given for a zoo model (`isRun` false), which has no checkpoints.
    func check(isRun: Bool) throws {
        if let checkpoint, !isRun {
            throw ValidationError("--checkpoint \(checkpoint.rawValue) needs a run directory; a zoo model has no checkpoints")
        }
    }

    /// The run's model with the weights asked for, and what they are; standard error names a
    /// checkpoint's ("weights: checkpoints/best, epoch 3").
    func loadModel(_ run: RunDirectory, _ config: RunConfig) throws -> (model: ImageClassifier, weights: String) {
        let loaded = try run.loadModel(config, from: weights)
        tell(loaded.weights)
        return loaded
    }

    /// Names a checkpoint's weights on standard error ("weights: checkpoints/best, epoch 3"); nothing
    /// for the final weights.
    func tell(_ loaded: String) {
        if weights != .final { printError("weights: \(loaded)") }
    }
}
