import CTorch

// Shape manipulation, indexing, arithmetic and reductions. All follow PyTorch's semantics
// (broadcasting, negative dimensions count from the end).

extension Tensor {
    // MARK: - Shape

    public func reshape(_ shape: [Int]) throws -> Tensor {
        try withDims(shape) { d, n, out in ct_reshape(handle, d, n, out) }
    }
    public func view(_ shape: [Int]) throws -> Tensor {
        try withDims(shape) { d, n, out in ct_view(handle, d, n, out) }
    }
    public func permute(_ dims: [Int]) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_permute(handle, d, n, out) }
    }
    public func transpose(_ dim0: Int, _ dim1: Int) throws -> Tensor {
        try Tensor.make { ct_transpose(handle, Int64(dim0), Int64(dim1), $0) }
    }
    public func flatten(from start: Int = 0, to end: Int = -1) throws -> Tensor {
        try Tensor.make { ct_flatten(handle, Int64(start), Int64(end), $0) }
    }
    public func squeeze(dim: Int) throws -> Tensor { try Tensor.make { ct_squeeze(handle, Int64(dim), $0) } }
    public func unsqueeze(dim: Int) throws -> Tensor { try Tensor.make { ct_unsqueeze(handle, Int64(dim), $0) } }
    public func expand(_ shape: [Int]) throws -> Tensor {
        try withDims(shape) { d, n, out in ct_expand(handle, d, n, out) }
    }
    /// Elements `start..<end` (stepping by `step`) along `dim`, as a view.
    public func slice(dim: Int, start: Int = 0, end: Int = Int(Int64.max), step: Int = 1) throws -> Tensor {
        try Tensor.make { ct_slice(handle, Int64(dim), Int64(start), Int64(clamping: end), Int64(step), $0) }
    }
    /// The sub-tensor at `index` along `dim` (that dimension is removed), as a view.
    public func select(dim: Int, index: Int) throws -> Tensor {
        try Tensor.make { ct_select(handle, Int64(dim), Int64(index), $0) }
    }
    public func indexSelect(dim: Int, index: Tensor) throws -> Tensor {
        try Tensor.make { ct_index_select(handle, Int64(dim), index.handle, $0) }
    }
    public func maskedSelect(_ mask: Tensor) throws -> Tensor {
        try Tensor.make { ct_masked_select(handle, mask.handle, $0) }
    }
    public func gather(dim: Int, index: Tensor) throws -> Tensor {
        try Tensor.make { ct_gather(handle, Int64(dim), index.handle, $0) }
    }
    public func flip(_ dims: [Int]) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_flip(handle, d, n, out) }
    }
    /// Pads the last dimensions; `padding` is (left, right, top, bottom, …) as in `F.pad`.
    public func pad(_ padding: [Int], value: Double = 0) throws -> Tensor {
        try withDims(padding) { d, n, out in ct_constant_pad_nd(handle, d, n, value, out) }
    }
    public func oneHot(numClasses: Int) throws -> Tensor {
        try Tensor.make { ct_one_hot(handle, Int64(numClasses), $0) }
    }

    /// `t[i]`: selects along the first dimension. `t[a..<b]`: slices it.
    public subscript(index: Int) -> Tensor {
        get throws { try select(dim: 0, index: index) }
    }
    public subscript(range: Range<Int>) -> Tensor {
        get throws { try slice(dim: 0, start: range.lowerBound, end: range.upperBound) }
    }
    /// Multi-dimensional indexing: `t[.all, 0, .range(1..<3)]`.
    public subscript(indices: TensorIndex...) -> Tensor {
        get throws {
            var result = self
            var dim = 0
            for index in indices {
                switch index {
                case .at(let i): result = try result.select(dim: dim, index: i)
                case .range(let r):
                    result = try result.slice(dim: dim, start: r.lowerBound, end: r.upperBound); dim += 1
                case .stride(let r, let step):
                    result = try result.slice(dim: dim, start: r.lowerBound, end: r.upperBound, step: step); dim += 1
                case .all: dim += 1
                case .newAxis: result = try result.unsqueeze(dim: dim); dim += 1
                }
            }
            return result
        }
    }

    func withDims(_ values: [Int],
                  _ body: (UnsafePointer<Int64>?, Int32, UnsafeMutablePointer<ct_tensor>) -> ct_status) throws
        -> Tensor {
        try Tensor.withShape(values, body)
    }

    // MARK: - Joining

    public static func cat(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        let handles = tensors.map(\.handle)
        return try withExtendedLifetime(tensors) {
            try make { out in handles.withUnsafeBufferPointer { ct_cat($0.baseAddress, Int32($0.count), Int64(dim), out) } }
        }
    }
    public static func stack(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        let handles = tensors.map(\.handle)
        return try withExtendedLifetime(tensors) {
            try make { out in handles.withUnsafeBufferPointer { ct_stack($0.baseAddress, Int32($0.count), Int64(dim), out) } }
        }
    }

    // MARK: - Elementwise

    func unary(_ op: ct_unary_op) throws -> Tensor {
        try Tensor.make { ct_unary(handle, Int32(op.rawValue), $0) }
    }
    public func neg() throws -> Tensor { try unary(CT_NEG) }
    public func abs() throws -> Tensor { try unary(CT_ABS) }
    public func sqrt() throws -> Tensor { try unary(CT_SQRT) }
    public func rsqrt() throws -> Tensor { try unary(CT_RSQRT) }
    public func exp() throws -> Tensor { try unary(CT_EXP) }
    public func log() throws -> Tensor { try unary(CT_LOG) }
    public func log1p() throws -> Tensor { try unary(CT_LOG1P) }
    public func sin() throws -> Tensor { try unary(CT_SIN) }
    public func cos() throws -> Tensor { try unary(CT_COS) }
    public func tanh() throws -> Tensor { try unary(CT_TANH) }
    public func sigmoid() throws -> Tensor { try unary(CT_SIGMOID) }
    public func relu() throws -> Tensor { try unary(CT_RELU) }
    public func relu6() throws -> Tensor { try unary(CT_RELU6) }
    public func silu() throws -> Tensor { try unary(CT_SILU) }
    /// GELU; `approximateTanh` selects PyTorch's `approximate="tanh"`.
    public func gelu(approximateTanh: Bool = false) throws -> Tensor {
        try unary(approximateTanh ? CT_GELU_TANH : CT_GELU)
    }
    public func hardswish() throws -> Tensor { try unary(CT_HARDSWISH) }
    public func hardsigmoid() throws -> Tensor { try unary(CT_HARDSIGMOID) }
    public func leakyRelu(_ slope: Double = 0.01) throws -> Tensor {
        try Tensor.make { ct_leaky_relu(handle, slope, $0) }
    }
    public func sign() throws -> Tensor { try unary(CT_SIGN) }
    public func floor() throws -> Tensor { try unary(CT_FLOOR) }
    public func ceil() throws -> Tensor { try unary(CT_CEIL) }
    public func round() throws -> Tensor { try unary(CT_ROUND) }
    public func reciprocal() throws -> Tensor { try unary(CT_RECIPROCAL) }
    public func square() throws -> Tensor { try unary(CT_SQUARE) }
    public func logicalNot() throws -> Tensor { try unary(CT_LOGICAL_NOT) }
    public func isNaN() throws -> Tensor { try unary(CT_ISNAN) }
    public func isFinite() throws -> Tensor { try unary(CT_ISFINITE) }

    public func pow(_ exponent: Double) throws -> Tensor { try Tensor.make { ct_pow_scalar(handle, exponent, $0) } }
    public func pow(_ exponent: Tensor) throws -> Tensor { try Tensor.make { ct_pow(handle, exponent.handle, $0) } }
    public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
        try Tensor.make { ct_clamp(handle, min ?? 0, max ?? 0, min != nil, max != nil, $0) }
    }
    public static func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try make { ct_maximum(a.handle, b.handle, $0) }
    }
    public static func minimum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try make { ct_minimum(a.handle, b.handle, $0) }
    }
    /// Elementwise `condition ? a : b`.
    public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        try make { ct_where(condition.handle, a.handle, b.handle, $0) }
    }

    /// `self + alpha * other`.
    public func add(_ other: Tensor, alpha: Double = 1) throws -> Tensor {
        try Tensor.make { ct_add(handle, other.handle, alpha, $0) }
    }

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_add(a.handle, b.handle, 1, $0) } }
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_sub(a.handle, b.handle, 1, $0) } }
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_mul(a.handle, b.handle, $0) } }
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_div(a.handle, b.handle, $0) } }
    public static func + (a: Tensor, s: Double) throws -> Tensor { try make { ct_add_scalar(a.handle, s, $0) } }
    public static func - (a: Tensor, s: Double) throws -> Tensor { try make { ct_add_scalar(a.handle, -s, $0) } }
    public static func * (a: Tensor, s: Double) throws -> Tensor { try make { ct_mul_scalar(a.handle, s, $0) } }
    public static func / (a: Tensor, s: Double) throws -> Tensor { try make { ct_div_scalar(a.handle, s, $0) } }
    public static func + (s: Double, a: Tensor) throws -> Tensor { try a + s }
    public static func - (s: Double, a: Tensor) throws -> Tensor { try make { ct_rsub_scalar(a.handle, s, $0) } }
    public static func * (s: Double, a: Tensor) throws -> Tensor { try a * s }
    public static func / (s: Double, a: Tensor) throws -> Tensor { try a.reciprocal() * s }
    public static prefix func - (a: Tensor) throws -> Tensor { try a.neg() }

    // MARK: - Comparison (results are bool tensors)

    func compare(_ other: Tensor, _ op: ct_compare_op) throws -> Tensor {
        try Tensor.make { ct_compare(handle, other.handle, Int32(op.rawValue), $0) }
    }
    func compare(_ s: Double, _ op: ct_compare_op) throws -> Tensor {
        try Tensor.make { ct_compare_scalar(handle, s, Int32(op.rawValue), $0) }
    }
    public func eq(_ other: Tensor) throws -> Tensor { try compare(other, CT_EQ) }
    public func ne(_ other: Tensor) throws -> Tensor { try compare(other, CT_NE) }
    public func lt(_ other: Tensor) throws -> Tensor { try compare(other, CT_LT) }
    public func le(_ other: Tensor) throws -> Tensor { try compare(other, CT_LE) }
    public func gt(_ other: Tensor) throws -> Tensor { try compare(other, CT_GT) }
    public func ge(_ other: Tensor) throws -> Tensor { try compare(other, CT_GE) }
    public func eq(_ s: Double) throws -> Tensor { try compare(s, CT_EQ) }
    public func ne(_ s: Double) throws -> Tensor { try compare(s, CT_NE) }
    public func lt(_ s: Double) throws -> Tensor { try compare(s, CT_LT) }
    public func le(_ s: Double) throws -> Tensor { try compare(s, CT_LE) }
    public func gt(_ s: Double) throws -> Tensor { try compare(s, CT_GT) }
    public func ge(_ s: Double) throws -> Tensor { try compare(s, CT_GE) }
    public func logicalAnd(_ other: Tensor) throws -> Tensor {
        try Tensor.make { ct_logical_and(handle, other.handle, $0) }
    }
    public func logicalOr(_ other: Tensor) throws -> Tensor {
        try Tensor.make { ct_logical_or(handle, other.handle, $0) }
    }
    /// `|self - other| <= atol + rtol * |other|` everywhere (shapes must broadcast).
    public func allClose(_ other: Tensor, rtol: Double = 1e-5, atol: Double = 1e-8) throws -> Bool {
        var flag = false
        try check(ct_allclose(handle, other.handle, rtol, atol, &flag))
        return flag
    }

    // MARK: - In place (used by optimizers; run them under `withNoGrad` on parameters)

    /// `self += alpha * other`.
    public func add_(_ other: Tensor, alpha: Double = 1) throws { try check(ct_add_(handle, other.handle, alpha)) }
    public func add_(_ s: Double) throws { try check(ct_add_scalar_(handle, s)) }
    public func sub_(_ other: Tensor, alpha: Double = 1) throws { try check(ct_sub_(handle, other.handle, alpha)) }
    public func mul_(_ other: Tensor) throws { try check(ct_mul_(handle, other.handle)) }
    public func mul_(_ s: Double) throws { try check(ct_mul_scalar_(handle, s)) }
    public func div_(_ other: Tensor) throws { try check(ct_div_(handle, other.handle)) }
    public func div_(_ s: Double) throws { try check(ct_div_scalar_(handle, s)) }
    /// `self += value * t1 * t2`.
    public func addcmul_(_ t1: Tensor, _ t2: Tensor, value: Double = 1) throws {
        try check(ct_addcmul_(handle, t1.handle, t2.handle, value))
    }
    /// `self += value * t1 / t2`.
    public func addcdiv_(_ t1: Tensor, _ t2: Tensor, value: Double = 1) throws {
        try check(ct_addcdiv_(handle, t1.handle, t2.handle, value))
    }
    /// `self += weight * (end - self)`.
    public func lerp_(_ end: Tensor, weight: Double) throws { try check(ct_lerp_(handle, end.handle, weight)) }
    public func sqrt_() throws { try check(ct_sqrt_(handle)) }
    public func clamp_(min: Double? = nil, max: Double? = nil) throws {
        try check(ct_clamp_(handle, min ?? 0, max ?? 0, min != nil, max != nil))
    }
    /// `self = max(self, other)` elementwise, in place.
    public func maximum_(_ other: Tensor) throws { try check(ct_maximum_out(handle, other.handle, handle)) }

    // MARK: - Reductions

    /// Sum over `dims` (all dimensions when empty).
    public func sum(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_sum(handle, d, n, keepDim, out) }
    }
    public func sum(dim: Int, keepDim: Bool = false) throws -> Tensor { try sum(dims: [dim], keepDim: keepDim) }
    public func mean(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_mean(handle, d, n, keepDim, out) }
    }
    public func mean(dim: Int, keepDim: Bool = false) throws -> Tensor { try mean(dims: [dim], keepDim: keepDim) }
    public func variance(dims: [Int] = [], unbiased: Bool = true, keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_var(handle, d, n, unbiased, keepDim, out) }
    }
    /// Maximum over `dims` (all dimensions when empty).
    public func max(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_amax(handle, d, n, keepDim, out) }
    }
    public func min(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_amin(handle, d, n, keepDim, out) }
    }
    public func norm(p: Double = 2) throws -> Tensor { try Tensor.make { ct_norm(handle, p, $0) } }
    public func argmax(dim: Int, keepDim: Bool = false) throws -> Tensor {
        try Tensor.make { ct_argmax(handle, Int64(dim), keepDim, $0) }
    }
    public func topk(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true) throws
        -> (values: Tensor, indices: Tensor) {
        var values = ct_tensor(ptr: nil), indices = ct_tensor(ptr: nil)
        try check(ct_topk(handle, Int64(k), Int64(dim), largest, sorted, &values, &indices))
        return (Tensor(owning: values), Tensor(owning: indices))
    }
    public func sort(dim: Int = -1, descending: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var values = ct_tensor(ptr: nil), indices = ct_tensor(ptr: nil)
        try check(ct_sort(handle, Int64(dim), descending, &values, &indices))
        return (Tensor(owning: values), Tensor(owning: indices))
    }
    public func cumsum(dim: Int) throws -> Tensor { try Tensor.make { ct_cumsum(handle, Int64(dim), $0) } }

    // MARK: - Linear algebra

    public func matmul(_ other: Tensor) throws -> Tensor { try Tensor.make { ct_matmul(handle, other.handle, $0) } }
}

/// One index in a multi-dimensional subscript.
public enum TensorIndex: ExpressibleByIntegerLiteral {
    case at(Int)
    case range(Range<Int>)
    case stride(Range<Int>, step: Int)
    case all
    case newAxis

    public init(integerLiteral value: Int) { self = .at(value) }
}
