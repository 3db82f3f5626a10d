import ImagePreprocessing
import Foundation
import NN
import TensorIO
import Torch

/// A model ready to use: the network, the preprocessing its weights expect, and class names.
public struct PretrainedModel {
    /// The network, with the weights loaded and the top shaped as the options asked.
    public let model: ImageClassifier
    /// Always apply this to inputs (it is what the weights were trained with).
    public let preprocessing: Preprocessing
    /// Names of the head's classes (ImageNet's for ImageNet weights with the original head).
    public let classNames: [String]
    /// The catalog entry the weights came from (nil for random init or a user file).
    public let weights: WeightsEntry?
    /// What loading matched and skipped.
    public let loadReport: LoadReport?

    /// Whether the head has one output: a binary head (sigmoid(z) is P(class_1)), as a `--binary`
    /// run's. Read as one class, every image was `class_0` with P(class_1) as its probability.
    public var isBinary: Bool { classNames.count == 1 }

    /// The names of the classes the head predicts: `class_0` and `class_1` for a binary head,
    /// `classNames` otherwise (what `predict`, `serve` and `export` name).
    public var predictedClassNames: [String] { isBinary ? ["class_0", "class_1"] : classNames }
}

/// The model registry and Keras-style factory: `ModelZoo.make("mobilenet_v2", weights: "imagenet",
/// options: ModelOptions(includeTop: false, pooling: .avg))`.
public enum ModelZoo {
    /// Makes a randomly initialised model from construction options.
    public typealias Builder = (ModelOptions) throws -> ImageClassifier

    /// Every architecture, by registry name.
    public static let builders: [(name: String, build: Builder)] = [
        ("alexnet", { try AlexNet.alexnet($0) }),
        ("vgg16", { try VGG.vgg16(batchNorm: false, $0) }),
        ("vgg16_bn", { try VGG.vgg16(batchNorm: true, $0) }),
        ("vgg19", { try VGG.vgg19(batchNorm: false, $0) }),
        ("vgg19_bn", { try VGG.vgg19(batchNorm: true, $0) }),
        ("resnet18", { try ResNet.resnet18($0) }),
        ("resnet34", { try ResNet.resnet34($0) }),
        ("resnet50", { try ResNet.resnet50($0) }),
        ("resnet101", { try ResNet.resnet101($0) }),
        ("resnet152", { try ResNet.resnet152($0) }),
        ("mobilenet_v2", { try MobileNetV2.make($0) }),
        ("efficientnet_b0", { try EfficientNet.b0($0) }),
        ("efficientnet_b1", { try EfficientNet.b1($0) }),
        ("efficientnet_b2", { try EfficientNet.b2($0) }),
        ("efficientnet_b3", { try EfficientNet.b3($0) }),
        ("efficientnet_lite0", { try EfficientNetLite.lite0($0) }),
        ("efficientnet_lite1", { try EfficientNetLite.lite1($0) }),
        ("efficientnet_lite2", { try EfficientNetLite.lite2($0) }),
        ("googlenet", { try GoogLeNet.googlenet($0) }),
        ("inception_v3", { try InceptionV3.inceptionV3($0) }),
    ]

    /// Every registry name ("alexnet", "vgg16", …, "inception_v3"), in `builders` order.
    public static var architectures: [String] { builders.map(\.name) }

    /// A randomly initialised architecture.
    public static func make(_ architecture: String, options: ModelOptions = .init()) throws -> ImageClassifier {
        guard let builder = builders.first(where: { $0.name == architecture })?.build else {
            throw unknownArchitecture(architecture)
        }
        return try builder(options)
    }

    private static func unknownArchitecture(_ architecture: String) -> WeightsError {
        WeightsError.unknownWeights("unknown architecture '\(architecture)'; known: \(architectures.joined(separator: ", "))")
    }

    /// Whether `weights` names a file rather than a catalog entry: it has a folder (`/`) or a weights
    /// file's extension. Catalog names are `<architecture>.<tag>`, neither.
    static func looksLikeAPath(_ weights: String) -> Bool {
        weights.contains("/") || [".pth", ".pt", ".safetensors", ".bin", ".ckpt"].contains { weights.lowercased().hasSuffix($0) }
    }

    /// The preprocessing `make(_:weights:)` gives `architecture` with `weights` (nil, a catalog tag
    /// or name, or a file), without loading them: the catalog entry's, else the architecture's first
    /// entry's, else ImageNet's.
    public static func preprocessing(_ architecture: String, weights: String?, catalog: WeightsCatalog = .builtIn)
        -> Preprocessing {
        let fallback = catalog.entries(for: architecture).first?.preprocessing ?? .imagenet
        guard let weights, !FileManager.default.fileExists(atPath: weights) else { return fallback }
        let name = weights.contains(".") ? weights : "\(architecture).\(weights)"
        return (try? catalog.entry(named: name))?.preprocessing ?? fallback
    }

    /// Builds `architecture` with `weights`: nil (random initialisation), a catalog tag such as
    /// "imagenet", a catalog name such as "resnet50.imagenet_v2", or a .pth/.safetensors path.
    ///
    /// The weights' own head is loaded first; then, as requested by `options`, the top is dropped
    /// (`includeTop: false`) or replaced by a fresh one (`numClasses` differing from the weights').
    /// With `keepingTheirHead`, the weights' head is kept whatever its width (`options.numClasses`
    /// is ignored): what `predict`, `serve` and `export` run, where a file fine-tuned to 10 classes
    /// got a random 1000-class head with ImageNet's names.
    public static func make(_ architecture: String, weights: String?, options: ModelOptions = .init(),
                            keepingTheirHead: Bool = false, catalog: WeightsCatalog = .builtIn,
                            cache: WeightsCache = .init()) throws -> PretrainedModel {
        // The architecture first: `--arch resnet5` was reported as "unknown weights 'resnet5.imagenet'".
        guard builders.contains(where: { $0.name == architecture }) else { throw unknownArchitecture(architecture) }
        let defaultEntry = catalog.entries(for: architecture).first
        guard let weights else {
            let model = try make(architecture, options: options)
            return PretrainedModel(model: model, preprocessing: defaultEntry?.preprocessing ?? .imagenet,
                                   classNames: defaultClassNames(options.numClasses), weights: nil, loadReport: nil)
        }
        let entry: WeightsEntry?
        let state: StateDict
        if FileManager.default.fileExists(atPath: weights) {
            entry = nil
            state = weights.hasSuffix(".safetensors") ? try SafeTensors.load(weights) : try PthImport.load(weights)
        } else {
            // A path to a file that is not there is said to be missing, not looked up in the catalog
            // ("unknown weights './missing.safetensors'; known: …", probe AG).
            if Self.looksLikeAPath(weights) {
                throw WeightsError.unreadable(path: weights, reason: "no such file")
            }
            let name = weights.contains(".") ? weights : "\(architecture).\(weights)"
            let found = try catalog.entry(named: name)
            guard found.architecture == architecture else {
                throw WeightsError.incompatible("weights \(found.name) are for \(found.architecture), not \(architecture)")
            }
            entry = found
            state = try cache.loadStateDict(found)
        }
        // Build with the weights' own head, load strictly, then adapt the top. The head's width is
        // the catalog's class count, or what the file's head holds (a second build only when they differ).
        var weightsClasses = entry?.classes ?? 1000
        // GoogLeNet's aux heads as the file has them: torchvision deletes them after loading
        // pretrained weights, so its saved state_dicts, and finetune's runs, have none (they were
        // refused). (An InceptionV3 file needs its `AuxLogits`: a run keeps them.)
        let auxLogits = architecture != "googlenet" || state.keys.contains { $0.hasPrefix("aux1.") }
        var model = try makeForWeights(architecture, options: withTop(options, classes: weightsClasses), auxLogits: auxLogits)
        if options.includeTop, let width = state[model.headPath + ".weight"]?.shape.first, width != weightsClasses {
            weightsClasses = width
            model = try makeForWeights(architecture, options: withTop(options, classes: width), auxLogits: auxLogits)
        }
        var options = options
        if keepingTheirHead && options.includeTop { options.numClasses = weightsClasses }
        // Inception v3 built with `aux_logits=False` (torchvision deletes `AuxLogits` after loading
        // pretrained weights then) saves no `AuxLogits`: the module keeps its fresh initialisation, as
        // finetune never runs it (a run's files, and `makePretrainedVariant`, have it).
        var complete = state
        if architecture == "inception_v3", options.includeTop, !state.keys.contains(where: { $0.hasPrefix("AuxLogits.") }) {
            for (key, tensor) in model.stateDict() where key.hasPrefix("AuxLogits.") { complete[key] = tensor }
        }
        do {
            return try load(complete, into: model, architecture: architecture, weightsClasses: weightsClasses, options: options,
                            entry: entry, defaultEntry: defaultEntry)
        } catch let error as NNError {
            // Name the weights: "state_dict does not fit the model" alone did not say which file.
            throw WeightsError.incompatible("the weights \(weights) do not fit \(architecture): \(error)")
        }
    }

    private static func load(_ state: StateDict, into model: ImageClassifier, architecture: String, weightsClasses: Int,
                             options: ModelOptions, entry: WeightsEntry?, defaultEntry: WeightsEntry?) throws -> PretrainedModel {
        let report: LoadReport
        if options.includeTop {
            report = try model.load(state, strict: true)
            (model as? GoogLeNet)?.removeAuxHeads()  // as torchvision's builder does for pretrained weights
            if options.numClasses != weightsClasses { try model.replaceHead(numClasses: options.numClasses) }
        } else {
            report = try model.load(state, strict: false)
            // Only keys of the dropped top (head, aux heads) may be left over.
            let backbone = Set(model.namedChildren.map(\.0))
            let stray = report.unexpected.filter { backbone.contains(String($0.split(separator: ".")[0])) }
            guard report.missing.isEmpty, report.shapeMismatched.isEmpty, stray.isEmpty else {
                throw NNError.loadFailed(report)
            }
        }
        let classNames = options.includeTop && options.numClasses == weightsClasses && weightsClasses == 1000
            ? ImageNetClasses.names : defaultClassNames(options.numClasses)
        return PretrainedModel(model: model, preprocessing: entry?.preprocessing ?? defaultEntry?.preprocessing ?? .imagenet,
                               classNames: classNames, weights: entry, loadReport: report)
    }

    /// The architecture exactly as `make(_:weights:options:)` shapes it for pretrained weights
    /// (GoogLeNet without aux heads, `transform_input` on for GoogLeNet/InceptionV3), but randomly
    /// initialised: for loading a fine-tuned state dict without fetching the original weights.
    public static func makePretrainedVariant(_ architecture: String, options: ModelOptions) throws -> ImageClassifier {
        let model = try makeForWeights(architecture, options: options)
        (model as? GoogLeNet)?.removeAuxHeads()
        return model
    }

    /// `options` with a top of `classes` outputs; without a top, `options` unchanged.
    static func withTop(_ options: ModelOptions, classes: Int) -> ModelOptions {
        guard options.includeTop else { return options }
        var full = options
        full.numClasses = classes
        return full
    }

    /// The architecture as torchvision builds it for pretrained weights: GoogLeNet with its aux heads
    /// when the file has them (they are removed after loading) and, like InceptionV3, `transform_input` on.
    static func makeForWeights(_ architecture: String, options: ModelOptions, auxLogits: Bool = true) throws -> ImageClassifier {
        switch architecture {
        case "googlenet": return try GoogLeNet.googlenet(options, auxLogits: options.includeTop && auxLogits, transformInput: true)
        case "inception_v3":
            return try InceptionV3.inceptionV3(options, auxLogits: options.includeTop && auxLogits, transformInput: true)
        default: return try make(architecture, options: options)
        }
    }

    static func defaultClassNames(_ n: Int) -> [String] { n == 1000 ? ImageNetClasses.names : (0..<n).map { "class_\($0)" } }
}
