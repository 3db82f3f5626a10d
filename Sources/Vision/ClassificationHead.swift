import NN
import Torch

extension GlobalPooling: Codable {}

/// The classification head a fine-tune puts on a backbone: the global pooling of the last feature
/// maps, then optionally BatchNorm → Dropout → hidden Dense layers, then the output Dense — Keras'
/// `GlobalAveragePooling2D → BatchNormalization → Dropout(0.5) → Dense(classes)`.
///
/// A plain spec (no BatchNorm, no hidden layers, no dropout override) keeps torchvision's single
/// Linear at `headPath`, so the state dict keys stay torchvision's. Otherwise `headPath` holds a
/// `Sequential` — `fc.0` BatchNorm1d, `fc.1` Dropout, …, the output Linear last — like the
/// `model.fc = nn.Sequential(...)` a PyTorch user writes.
public struct HeadSpec: Codable, Equatable, Sendable {
    /// Number of outputs: the class count, or 1 for a binary (sigmoid) head.
    public var outputs: Int
    /// Global pooling of the backbone's feature maps (architectures with a global pool only).
    public var pooling: GlobalPooling
    /// BatchNorm1d on the pooled embedding.
    public var batchNorm: Bool
    /// Dropout in front of every Dense layer of the new head, in place of the architecture's own
    /// dropout in front of its classifier (e.g. MobileNetV2's 0.2, set to 0: see
    /// `ImageClassifier.architectureHeadDropout`). nil keeps the architecture's and adds none.
    public var dropout: Double?
    /// Widths of hidden Dense + ReLU layers between the embedding and the output layer.
    public var hiddenUnits: [Int]

    /// The defaults are a plain head: average pooling and one Linear of `outputs`. Nothing is checked
    /// here; `validate()` does that.
    public init(outputs: Int, pooling: GlobalPooling = .avg, batchNorm: Bool = false, dropout: Double? = nil,
                hiddenUnits: [Int] = []) {
        self.outputs = outputs
        self.pooling = pooling
        self.batchNorm = batchNorm
        self.dropout = dropout
        self.hiddenUnits = hiddenUnits
    }

    /// True when the head is the architecture's own single Linear (with `outputs` outputs).
    /// The widest hidden Dense layer accepted (a 2,048-feature embedding into it is 512 MiB of
    /// float32 weights); wider ones would only ask LibTorch for terabytes.
    public static let maximumHiddenUnits = 65_536

    public var isPlainLinear: Bool { !batchNorm && dropout == nil && hiddenUnits.isEmpty }

    /// The fields of a spec, to name the one `invalidValue` finds.
    public enum Field: String, Sendable {
        case outputs, pooling, dropout, hiddenUnits
    }

    /// The first bad value: its field and what is wrong with it; nil when every value is valid.
    public var invalidValue: (field: Field, reason: String)? {
        if outputs < 1 { return (.outputs, "the head needs at least 1 output, got \(outputs)") }
        if pooling == .none { return (.pooling, "the head needs avg or max pooling") }
        if let dropout, !(dropout >= 0 && dropout < 1) { return (.dropout, "head dropout must be in [0, 1), got \(dropout)") }
        if let bad = hiddenUnits.first(where: { $0 < 1 || $0 > Self.maximumHiddenUnits }) {
            return (.hiddenUnits, "hidden Dense layers need 1 to \(Self.maximumHiddenUnits) units, got \(bad)")
        }
        return nil
    }

    /// Checks the values, naming the bad one (`invalidValue`).
    public func validate() throws {
        if let invalid = invalidValue { throw NNError.invalidArgument(invalid.reason) }
    }

    /// e.g. "avg pool → BatchNorm1d → Dropout(0.5) → Dense(10)".
    public var description: String {
        var parts = ["\(pooling.rawValue) pool"]
        if batchNorm { parts.append("BatchNorm1d") }
        for units in hiddenUnits {
            if let dropout { parts.append("Dropout(\(dropout))") }
            parts.append("Dense(\(units), relu)")
        }
        if let dropout { parts.append("Dropout(\(dropout))") }
        parts.append("Dense(\(outputs))")
        return parts.joined(separator: " → ")
    }

    /// The layers that replace the final Linear, for embeddings of width `inFeatures`.
    func makeLayers(inFeatures: Int, dtype: DType, device: Device) throws -> Module {
        var layers: [Module] = []
        if batchNorm { layers.append(try BatchNorm1d(inFeatures, dtype: dtype, device: device)) }
        var width = inFeatures
        for units in hiddenUnits {
            if let dropout { layers.append(try Dropout(p: dropout)) }
            layers.append(try Linear(width, units, dtype: dtype, device: device))
            layers.append(ReLU())
            width = units
        }
        if let dropout { layers.append(try Dropout(p: dropout)) }
        layers.append(try Linear(width, outputs, dtype: dtype, device: device))
        return Sequential(layers)
    }
}

extension ImageClassifier {
    /// Replaces the head with `spec`'s (freshly initialised; the backbone keeps its weights) and sets
    /// the pooling the top uses. Only for models built with a top.
    public func configureHead(_ spec: HeadSpec) throws {
        try spec.validate()
        if spec.pooling != .avg && !supportsHeadPooling {
            throw NNError.invalidArgument("\(architecture)'s classifier consumes spatial feature maps, not a global "
                + "pool: only avg pooling applies")
        }
        try replaceHead(numClasses: spec.outputs)
        headPooling = spec.pooling
        // The head's own dropout replaces the architecture's: --head-dropout 0.5 means 0.5, not 0.2 then 0.5.
        if spec.dropout != nil { try architectureHeadDropout?.setProbability(0) }
        guard !spec.isPlainLinear else { return }
        let linear = try finalLinear()
        try replaceModule(at: headPath, with: spec.makeLayers(inFeatures: linear.inFeatures, dtype: linear.weight.dtype,
                                                              device: linear.weight.device))
    }

    /// The key path of the head's output Linear (`headPath`, or the last layer of a custom head there):
    /// the rows of its `weight` and `bias` are the classes', in class order.
    public var outputLayerPath: String {
        if let head = module(at: headPath) as? Sequential, let last = head.entries.last { return headPath + "." + last.name }
        return headPath
    }

    /// The head's output Linear: the module at `headPath`, or the last layer of a custom head there.
    public func finalLinear() throws -> Linear {
        if let linear = module(at: headPath) as? Linear { return linear }
        if let head = module(at: headPath) as? Sequential, let linear = head.entries.last?.module as? Linear {
            return linear
        }
        throw NNError.cannotReplace("\(architecture): no Linear head at '\(headPath)'")
    }
}
