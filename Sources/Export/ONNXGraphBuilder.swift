import Foundation
import Torch

/// A tensor of the graph being built: its name and its shape without the batch dimension (the batch
/// is the graph's one dynamic dimension; every other size is fixed by the export's input size).
public struct ONNXValue: Equatable, Sendable {
    /// The tensor's name in the graph.
    public let name: String
    /// The per-sample shape: [C, H, W] for feature maps, [F] for vectors.
    public let shape: [Int]
}

/// Builds an ONNX `GraphProto` node by node: constant tensors (initializers) and operator nodes with
/// their attributes, naming every tensor after the module path it comes from. The emitters
/// (`ONNXEmitter`) call it; it knows ONNX, not the model zoo.
struct ONNXGraphBuilder {
    private(set) var nodes: [Onnx_NodeProto] = []
    private(set) var initializers: [Onnx_TensorProto] = []
    private var usedNames: Set<String> = []

    /// A name not used yet, derived from `base` (a module path such as `layer1.0.conv1`).
    mutating func uniqueName(_ base: String) -> String {
        let clean = base.isEmpty ? "t" : base
        var name = clean
        var n = 1
        while usedNames.contains(name) {
            n += 1
            name = "\(clean)_\(n)"
        }
        usedNames.insert(name)
        return name
    }

    /// Reserves `name` exactly (graph input and output names).
    mutating func reserve(_ name: String) { usedNames.insert(name) }

    /// A float32 constant holding `tensor`'s values (any dtype is converted), little-endian raw data.
    mutating func constant(_ tensor: Tensor, name: String) throws -> String {
        let values = try tensor.detach().to(dtype: .float32, device: .cpu).contiguous()
        var raw = Data(count: values.count * MemoryLayout<Float>.size)
        try raw.withUnsafeMutableBytes { try values.copyBytes(to: $0) }
        return append(raw: raw, shape: values.shape, name: name)
    }

    /// Appends a float32 initializer holding `raw` (little-endian floats, as LibTorch lays them out on
    /// every platform it runs on here).
    private mutating func append(raw: Data, shape: [Int], name: String) -> String {
        var proto = Onnx_TensorProto()
        proto.name = uniqueName(name)
        proto.dims = shape.map(Int64.init)
        proto.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        proto.rawData = raw
        initializers.append(proto)
        return proto.name
    }

    /// A float32 constant from values and a shape.
    mutating func constant(_ values: [Float], shape: [Int], name: String) throws -> String {
        guard values.count == shape.reduce(1, *) else {
            throw ExportError.internalInconsistency("constant \(name): \(values.count) values for shape \(shape)")
        }
        // ONNX raw_data is little-endian; every platform Swift and LibTorch run on here is.
        return append(raw: values.withUnsafeBufferPointer { Data(buffer: $0) }, shape: shape, name: name)
    }

    /// An int64 constant (shapes for Reshape).
    mutating func int64Constant(_ values: [Int64], name: String) -> String {
        var proto = Onnx_TensorProto()
        proto.name = uniqueName(name)
        proto.dims = [Int64(values.count)]
        proto.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        proto.rawData = values.withUnsafeBufferPointer { Data(buffer: $0) }
        initializers.append(proto)
        return proto.name
    }

    /// Appends a node `opType(inputs) -> output` and returns the output's name (`outputName`, or a
    /// fresh one from `name`).
    @discardableResult
    mutating func node(_ opType: String, _ inputs: [String], name: String, attributes: [Onnx_AttributeProto] = [],
                       outputName: String? = nil) -> String {
        var node = Onnx_NodeProto()
        node.opType = opType
        node.name = uniqueName(name + "/" + opType)
        node.input = inputs
        let output = outputName ?? uniqueName(name.isEmpty ? opType.lowercased() : name)
        node.output = [output]
        node.attribute = attributes
        nodes.append(node)
        return output
    }

    // MARK: Attributes

    static func attribute(_ name: String, int value: Int) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .int
        a.i = Int64(value)
        return a
    }

    static func attribute(_ name: String, ints values: [Int]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values.map(Int64.init)
        return a
    }

    static func attribute(_ name: String, float value: Float) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .float
        a.f = value
        return a
    }

    // MARK: Value infos

    /// A float32 tensor type with a dynamic first dimension called `batch` and fixed `shape` after it.
    static func valueInfo(_ name: String, batched shape: [Int], elementType: Onnx_TensorProto.DataType = .float,
                          docString: String = "") -> Onnx_ValueInfoProto {
        var tensorType = Onnx_TypeProto.Tensor()
        tensorType.elemType = Int32(elementType.rawValue)
        var dims: [Onnx_TensorShapeProto.Dimension] = []
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "batch"
        dims.append(batch)
        for size in shape {
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(size)
            dims.append(dim)
        }
        var shapeProto = Onnx_TensorShapeProto()
        shapeProto.dim = dims
        tensorType.shape = shapeProto
        var type = Onnx_TypeProto()
        type.tensorType = tensorType
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        if !docString.isEmpty { info.docString = docString }
        return info
    }
}
