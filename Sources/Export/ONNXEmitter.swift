import NN
import Torch

/// Turns modules into ONNX nodes by explicit traversal: one emitter per layer type here, one per
/// block type in `ONNXEmitter+Blocks.swift`, one per architecture and head in
/// `ONNXEmitter+Models.swift`. Each emitter mirrors the module's inference `forward` (BatchNorm
/// folded into the convolution before it exactly where inference folds it, Dropout and stochastic
/// depth dropped) and tracks the per-sample shape so that padding and pooling are fixed at export.
struct ONNXEmitter {
    var graph = ONNXGraphBuilder()

    // MARK: Dispatch

    /// The nodes of `module` applied to `x`; `path` is the module's dotted path (for tensor names and
    /// errors). Throws `ExportError.unsupportedLayer` for a module no emitter knows.
    mutating func emit(_ module: Module, _ x: ONNXValue, path: String) throws -> ONNXValue {
        if let block = try emitBlock(module, x, path: path) { return block }
        switch module {
        case let sequential as Sequential: return try emitSequential(sequential, x, path: path)
        case let conv as Conv2d: return try emitConv(conv, batchNorm: nil, x, path: path)
        case let linear as Linear: return try emitLinear(linear, x, path: path)
        case let batchNorm as BatchNorm: return try emitBatchNorm(batchNorm, x, path: path)
        case is Dropout, is Identity: return x
        case let flatten as Flatten: return try emitFlatten(flatten, x, path: path)
        case let pool as MaxPool2d: return try emitMaxPool(pool, x, path: path)
        case let pool as AvgPool2d: return try emitAvgPool(pool, x, path: path)
        case let pool as AdaptiveAvgPool2d: return try adaptiveAvgPool(x, outputSize: pool.outputSize, path: path)
        case let pool as AdaptiveMaxPool2d: return try adaptiveMaxPool(x, outputSize: pool.outputSize, path: path)
        case let activation as Activation: return try emitActivation(activation, x, path: path)
        default: throw ExportError.unsupportedLayer(type: module.typeName, path: path)
        }
    }

    /// The children in order; a `Conv2d` directly followed by a `BatchNorm2d` becomes one folded
    /// convolution, as `Sequential.forward` runs it.
    mutating func emitSequential(_ sequential: Sequential, _ x: ONNXValue, path: String) throws -> ONNXValue {
        var y = x
        let entries = sequential.entries
        var index = 0
        while index < entries.count {
            let (name, module) = entries[index]
            if index + 1 < entries.count, let conv = module as? Conv2d,
               let batchNorm = entries[index + 1].module as? BatchNorm2d {
                y = try emitConv(conv, batchNorm: batchNorm, y, path: join(path, name))
                index += 2
            } else {
                y = try emit(module, y, path: join(path, name))
                index += 1
            }
        }
        return y
    }

    // MARK: Convolution and dense layers

    /// `conv`, with `batchNorm` folded into its weight and bias when given (`Conv2d.foldedParameters`,
    /// the inference path's own folding). TF "SAME" padding becomes explicit (possibly asymmetric)
    /// pads for this input size.
    mutating func emitConv(_ conv: Conv2d, batchNorm: BatchNorm2d?, _ x: ONNXValue, path: String) throws -> ONNXValue {
        guard x.shape.count == 3, x.shape[0] == conv.inChannels else {
            throw ExportError.shapeMismatch(path: path, expected: "[\(conv.inChannels), H, W]", got: x.shape)
        }
        let (weight, bias) = try withNoGrad { () throws -> (Tensor, Tensor?) in
            if let batchNorm {
                let folded = try conv.foldedParameters(batchNorm)
                return (folded.weight, folded.bias)
            }
            return (conv.weight, conv.bias)
        }
        let h = x.shape[1], w = x.shape[2]
        let pads: (top: Int, left: Int, bottom: Int, right: Int)
        switch conv.padding {
        case .explicit(let ph, let pw):
            pads = (ph, pw, ph, pw)
        case .same:
            let (top, bottom) = Conv2d.samePadding(input: h, kernel: conv.kernelSize.0, stride: conv.stride.0,
                                                   dilation: conv.dilation.0)
            let (left, right) = Conv2d.samePadding(input: w, kernel: conv.kernelSize.1, stride: conv.stride.1,
                                                   dilation: conv.dilation.1)
            pads = (top, left, bottom, right)
        }
        let outH = Self.floorDivision(h + pads.top + pads.bottom - conv.dilation.0 * (conv.kernelSize.0 - 1) - 1,
                                      conv.stride.0) + 1
        let outW = Self.floorDivision(w + pads.left + pads.right - conv.dilation.1 * (conv.kernelSize.1 - 1) - 1,
                                      conv.stride.1) + 1
        guard outH > 0, outW > 0 else { throw ExportError.inputTooSmall(path: path, shape: x.shape) }
        var inputs = [x.name, try graph.constant(weight, name: path + ".weight")]
        if let bias { inputs.append(try graph.constant(bias, name: path + ".bias")) }
        let output = graph.node("Conv", inputs, name: path, attributes: [
            ONNXGraphBuilder.attribute("kernel_shape", ints: [conv.kernelSize.0, conv.kernelSize.1]),
            ONNXGraphBuilder.attribute("strides", ints: [conv.stride.0, conv.stride.1]),
            ONNXGraphBuilder.attribute("pads", ints: [pads.top, pads.left, pads.bottom, pads.right]),
            ONNXGraphBuilder.attribute("dilations", ints: [conv.dilation.0, conv.dilation.1]),
            ONNXGraphBuilder.attribute("group", int: conv.groups),
        ])
        return ONNXValue(name: output, shape: [conv.outChannels, outH, outW])
    }

    /// `Gemm(x, W, b, transB=1)`: [N, in] → [N, out].
    mutating func emitLinear(_ linear: Linear, _ x: ONNXValue, path: String) throws -> ONNXValue {
        guard x.shape == [linear.inFeatures] else {
            throw ExportError.shapeMismatch(path: path, expected: "[\(linear.inFeatures)]", got: x.shape)
        }
        var inputs = [x.name, try graph.constant(linear.weight, name: path + ".weight")]
        if let bias = linear.bias { inputs.append(try graph.constant(bias, name: path + ".bias")) }
        let output = graph.node("Gemm", inputs, name: path, attributes: [ONNXGraphBuilder.attribute("transB", int: 1)])
        return ONNXValue(name: output, shape: [linear.outFeatures])
    }

    /// A BatchNorm with its running statistics (inference) as `x · s + t` per channel, with
    /// s = γ / √(σ² + ε) and t = β − μ·s; [F] vectors (BatchNorm1d in a head) or [C, H, W] maps.
    mutating func emitBatchNorm(_ batchNorm: BatchNorm, _ x: ONNXValue, path: String) throws -> ONNXValue {
        guard let mean = batchNorm.runningMean, let variance = batchNorm.runningVar else {
            throw ExportError.unsupportedLayer(type: batchNorm.typeName + " without running statistics", path: path)
        }
        guard x.shape.first == batchNorm.numFeatures else {
            throw ExportError.shapeMismatch(path: path, expected: "[\(batchNorm.numFeatures), …]", got: x.shape)
        }
        let mu = try mean.to(.float64).toArray(Double.self), sigma2 = try variance.to(.float64).toArray(Double.self)
        let gamma = try batchNorm.weight.map { try $0.detach().to(.float64).toArray(Double.self) }
        let beta = try batchNorm.bias.map { try $0.detach().to(.float64).toArray(Double.self) }
        var scale: [Float] = [], shift: [Float] = []
        for c in 0..<batchNorm.numFeatures {
            let s = (gamma?[c] ?? 1) / (sigma2[c] + batchNorm.eps).squareRoot()
            scale.append(Float(s))
            shift.append(Float((beta?[c] ?? 0) - mu[c] * s))
        }
        let constantShape = [batchNorm.numFeatures] + Array(repeating: 1, count: x.shape.count - 1)
        let scaled = graph.node("Mul", [x.name, try graph.constant(scale, shape: constantShape, name: path + ".scale")],
                                name: path + ".mul")
        let output = graph.node("Add", [scaled, try graph.constant(shift, shape: constantShape, name: path + ".shift")],
                                name: path)
        return ONNXValue(name: output, shape: x.shape)
    }

    /// `Flatten(axis=1)`: only the flatten of every dimension after the batch exists in the zoo.
    mutating func emitFlatten(_ flatten: Flatten, _ x: ONNXValue, path: String) throws -> ONNXValue {
        guard flatten.startDim == 1, flatten.endDim == -1 || flatten.endDim == x.shape.count else {
            throw ExportError.unsupportedLayer(type: "Flatten(start_dim=\(flatten.startDim), end_dim=\(flatten.endDim))",
                                               path: path)
        }
        return flattenAll(x, path: path)
    }

    /// [N, …] → [N, product of the rest].
    mutating func flattenAll(_ x: ONNXValue, path: String) -> ONNXValue {
        guard x.shape.count > 1 else { return x }
        let output = graph.node("Flatten", [x.name], name: path, attributes: [ONNXGraphBuilder.attribute("axis", int: 1)])
        return ONNXValue(name: output, shape: [x.shape.reduce(1, *)])
    }

    // MARK: Pooling

    /// Output size of PyTorch's pooling along one dimension (`ceil_mode` drops a last window that
    /// would start in the padding, as PyTorch does).
    /// `a / b` rounded toward negative infinity, as PyTorch's `div_rtn` in its output sizes. Swift's
    /// `/` rounds toward zero: a window one pixel larger than its input (AlexNet's last pool at a
    /// 62 px input) had an output of 1 instead of 0, and the export crashed onnxruntime.
    static func floorDivision(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    static func pooledSize(_ input: Int, kernel: Int, stride: Int, padding: Int, dilation: Int = 1,
                           ceilMode: Bool) -> Int {
        let span = input + 2 * padding - dilation * (kernel - 1) - 1
        var out = floorDivision(ceilMode ? span + stride - 1 : span, stride) + 1
        if ceilMode, (out - 1) * stride >= input + padding { out -= 1 }
        return out
    }

    mutating func emitMaxPool(_ pool: MaxPool2d, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try pool2d("MaxPool", x, kernel: pool.kernelSize, stride: pool.stride, padding: pool.padding,
                   dilation: pool.dilation, ceilMode: pool.ceilMode, countIncludePad: nil, path: path)
    }

    mutating func emitAvgPool(_ pool: AvgPool2d, _ x: ONNXValue, path: String) throws -> ONNXValue {
        try pool2d("AveragePool", x, kernel: pool.kernelSize, stride: pool.stride, padding: pool.padding,
                   dilation: (1, 1), ceilMode: pool.ceilMode, countIncludePad: pool.countIncludePad, path: path)
    }

    /// `MaxPool` or `AveragePool` with PyTorch's window, stride, padding and ceil mode.
    mutating func pool2d(_ opType: String, _ x: ONNXValue, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                         dilation: (Int, Int), ceilMode: Bool, countIncludePad: Bool?, path: String) throws -> ONNXValue {
        guard x.shape.count == 3 else { throw ExportError.shapeMismatch(path: path, expected: "[C, H, W]", got: x.shape) }
        let outH = Self.pooledSize(x.shape[1], kernel: kernel.0, stride: stride.0, padding: padding.0,
                                   dilation: dilation.0, ceilMode: ceilMode)
        let outW = Self.pooledSize(x.shape[2], kernel: kernel.1, stride: stride.1, padding: padding.1,
                                   dilation: dilation.1, ceilMode: ceilMode)
        guard outH > 0, outW > 0 else { throw ExportError.inputTooSmall(path: path, shape: x.shape) }
        var attributes = [
            ONNXGraphBuilder.attribute("kernel_shape", ints: [kernel.0, kernel.1]),
            ONNXGraphBuilder.attribute("strides", ints: [stride.0, stride.1]),
            ONNXGraphBuilder.attribute("pads", ints: [padding.0, padding.1, padding.0, padding.1]),
            ONNXGraphBuilder.attribute("ceil_mode", int: ceilMode ? 1 : 0),
        ]
        if dilation != (1, 1) { attributes.append(ONNXGraphBuilder.attribute("dilations", ints: [dilation.0, dilation.1])) }
        if let countIncludePad {
            attributes.append(ONNXGraphBuilder.attribute("count_include_pad", int: countIncludePad ? 1 : 0))
        }
        let output = graph.node(opType, [x.name], name: path, attributes: attributes)
        return ONNXValue(name: output, shape: [x.shape[0], outH, outW])
    }

    /// `adaptive_avg_pool2d`: the identity when the size is already right, `GlobalAveragePool` for
    /// 1×1, an `AveragePool` when the input divides evenly, and otherwise PyTorch's bins as two
    /// constant averaging matrices (`P_h · X · P_wᵀ`), which is exact for any sizes.
    mutating func adaptiveAvgPool(_ x: ONNXValue, outputSize: (Int, Int), path: String) throws -> ONNXValue {
        guard x.shape.count == 3 else { throw ExportError.shapeMismatch(path: path, expected: "[C, H, W]", got: x.shape) }
        let (c, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let (oh, ow) = outputSize
        if oh == h && ow == w { return x }
        if oh == 1 && ow == 1 {
            return ONNXValue(name: graph.node("GlobalAveragePool", [x.name], name: path), shape: [c, 1, 1])
        }
        if h % oh == 0 && w % ow == 0 {
            return try pool2d("AveragePool", x, kernel: (h / oh, w / ow), stride: (h / oh, w / ow), padding: (0, 0),
                              dilation: (1, 1), ceilMode: false, countIncludePad: false, path: path)
        }
        // PyTorch's bin i of n over length L: [floor(i·L/n), ceil((i+1)·L/n)).
        func averaging(_ input: Int, _ output: Int) -> [Float] {
            var m = [Float](repeating: 0, count: output * input)
            for i in 0..<output {
                let start = i * input / output, end = ((i + 1) * input + output - 1) / output
                for j in start..<end { m[i * input + j] = 1 / Float(end - start) }
            }
            return m
        }
        let pw = try graph.constant(transpose(averaging(w, ow), rows: ow, columns: w), shape: [w, ow],
                                    name: path + ".pool_w")
        let ph = try graph.constant(averaging(h, oh), shape: [oh, h], name: path + ".pool_h")
        let rows = graph.node("MatMul", [x.name, pw], name: path + ".w")   // [N, C, H, ow]
        let output = graph.node("MatMul", [ph, rows], name: path)           // [N, C, oh, ow]
        return ONNXValue(name: output, shape: [c, oh, ow])
    }

    /// `adaptive_max_pool2d` to 1×1 (`GlobalMaxPool`), or the identity at the input's own size.
    mutating func adaptiveMaxPool(_ x: ONNXValue, outputSize: (Int, Int), path: String) throws -> ONNXValue {
        guard x.shape.count == 3 else { throw ExportError.shapeMismatch(path: path, expected: "[C, H, W]", got: x.shape) }
        if outputSize.0 == x.shape[1] && outputSize.1 == x.shape[2] { return x }
        guard outputSize == (1, 1) else {
            throw ExportError.unsupportedLayer(type: "AdaptiveMaxPool2d(\(outputSize)) of \(x.shape)", path: path)
        }
        return ONNXValue(name: graph.node("GlobalMaxPool", [x.name], name: path), shape: [x.shape[0], 1, 1])
    }

    // MARK: Activations

    mutating func emitActivation(_ activation: Activation, _ x: ONNXValue, path: String) throws -> ONNXValue {
        switch activation {
        case is ReLU: return relu(x, path: path)
        case is ReLU6: return try relu6(x, path: path)
        case is SiLU: return silu(x, path: path)
        case is Sigmoid: return unary("Sigmoid", x, path: path)
        case is Tanh: return unary("Tanh", x, path: path)
        case is Hardswish: return unary("HardSwish", x, path: path)
        case is Hardsigmoid:
            return ONNXValue(name: graph.node("HardSigmoid", [x.name], name: path, attributes: [
                ONNXGraphBuilder.attribute("alpha", float: 1.0 / 6), ONNXGraphBuilder.attribute("beta", float: 0.5),
            ]), shape: x.shape)
        case let leaky as LeakyReLU:
            return ONNXValue(name: graph.node("LeakyRelu", [x.name], name: path, attributes: [
                ONNXGraphBuilder.attribute("alpha", float: Float(leaky.negativeSlope)),
            ]), shape: x.shape)
        case let softmax as Softmax:
            return ONNXValue(name: graph.node("Softmax", [x.name], name: path, attributes: [
                ONNXGraphBuilder.attribute("axis", int: softmax.dim),
            ]), shape: x.shape)
        default:
            throw ExportError.unsupportedLayer(type: activation.typeName, path: path)
        }
    }

    mutating func unary(_ opType: String, _ x: ONNXValue, path: String) -> ONNXValue {
        ONNXValue(name: graph.node(opType, [x.name], name: path), shape: x.shape)
    }

    mutating func relu(_ x: ONNXValue, path: String) -> ONNXValue { unary("Relu", x, path: path) }

    /// ReLU6 as `Clip(x, 0, 6)`.
    mutating func relu6(_ x: ONNXValue, path: String) throws -> ONNXValue {
        let low = try graph.constant([0], shape: [], name: "relu6.min")
        let high = try graph.constant([6], shape: [], name: "relu6.max")
        return ONNXValue(name: graph.node("Clip", [x.name, low, high], name: path), shape: x.shape)
    }

    /// SiLU as `x · Sigmoid(x)` (opset 17 has no SiLU operator).
    mutating func silu(_ x: ONNXValue, path: String) -> ONNXValue {
        let gate = graph.node("Sigmoid", [x.name], name: path + ".sigmoid")
        return ONNXValue(name: graph.node("Mul", [x.name, gate], name: path), shape: x.shape)
    }

    // MARK: Combining

    mutating func add(_ a: ONNXValue, _ b: ONNXValue, path: String) throws -> ONNXValue {
        guard a.shape == b.shape else { throw ExportError.shapeMismatch(path: path, expected: "\(a.shape)", got: b.shape) }
        return ONNXValue(name: graph.node("Add", [a.name, b.name], name: path), shape: a.shape)
    }

    /// Concatenation along channels (dimension 1 of NCHW).
    mutating func concatChannels(_ values: [ONNXValue], path: String) throws -> ONNXValue {
        guard let first = values.first,
              values.allSatisfy({ $0.shape.count == 3 && Array($0.shape.dropFirst()) == Array(first.shape.dropFirst()) })
        else {
            throw ExportError.shapeMismatch(path: path, expected: "maps of one size", got: values.first?.shape ?? [])
        }
        let output = graph.node("Concat", values.map(\.name), name: path,
                                attributes: [ONNXGraphBuilder.attribute("axis", int: 1)])
        return ONNXValue(name: output, shape: [values.reduce(0) { $0 + $1.shape[0] }] + Array(first.shape.dropFirst()))
    }
}

/// `a.b`, or `b` at the root.
func join(_ path: String, _ name: String) -> String { path.isEmpty ? name : path + "." + name }

/// The transpose of a row-major `rows`×`columns` matrix.
func transpose(_ m: [Float], rows: Int, columns: Int) -> [Float] {
    var t = [Float](repeating: 0, count: m.count)
    for r in 0..<rows { for c in 0..<columns { t[c * rows + r] = m[r * columns + c] } }
    return t
}
