import CTorch

// Shape manipulation, indexing, arithmetic and reductions. All follow PyTorch's semantics
// (broadcasting, negative dimensions count from the end).

extension Tensor {
    // MARK: - Shape

    /// The same elements in `shape` (`torch.reshape`): a view when the strides allow, else a copy.
    /// One entry may be -1 (inferred). Throws when the element counts differ.
    public func reshape(_ shape: [Int]) throws -> Tensor {
        try withDims(shape) { d, n, out in ct_reshape(handle, d, n, out) }
    }
    /// The same storage seen with `shape` (`tensor.view`); never copies. Throws when the strides do not
    /// allow it (e.g. after `permute`); use `reshape` or `contiguous()` first.
    public func view(_ shape: [Int]) throws -> Tensor {
        try withDims(shape) { d, n, out in ct_view(handle, d, n, out) }
    }
    /// A view with the dimensions reordered: result dim i is input dim `dims[i]` (`tensor.permute`),
    /// e.g. `[0, 2, 3, 1]` turns NCHW into NHWC.
    public func permute(_ dims: [Int]) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_permute(handle, d, n, out) }
    }
    /// A view with dimensions `dim0` and `dim1` swapped (`torch.transpose`).
    public func transpose(_ dim0: Int, _ dim1: Int) throws -> Tensor {
        try Tensor.make { ct_transpose(handle, Int64(dim0), Int64(dim1), $0) }
    }
    /// Merges dimensions `start...end` (inclusive, negatives count from the end) into one (`torch.flatten`);
    /// `flatten(from: 1)` turns [N, C, H, W] into [N, C·H·W].
    public func flatten(from start: Int = 0, to end: Int = -1) throws -> Tensor {
        try Tensor.make { ct_flatten(handle, Int64(start), Int64(end), $0) }
    }
    /// Removes dimension `dim` if its size is 1, else returns the same shape (`tensor.squeeze(dim)`).
    public func squeeze(dim: Int) throws -> Tensor { try Tensor.make { ct_squeeze(handle, Int64(dim), $0) } }
    /// Inserts a dimension of size 1 at `dim` (`tensor.unsqueeze`); [C, H, W] at 0 becomes [1, C, H, W].
    public func unsqueeze(dim: Int) throws -> Tensor { try Tensor.make { ct_unsqueeze(handle, Int64(dim), $0) } }
    /// A broadcast view to `shape` without copying (`tensor.expand`): only size-1 dimensions can grow,
    /// -1 keeps a size. Do not write into the result (its elements alias each other).
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
    /// The entries at the int64 positions in the 1-D `index` along `dim`, copied (`torch.index_select`).
    public func indexSelect(dim: Int, index: Tensor) throws -> Tensor {
        try Tensor.make { ct_index_select(handle, Int64(dim), index.handle, $0) }
    }
    /// The elements where the bool `mask` (broadcast to this shape) is true, as a 1-D copy (`torch.masked_select`).
    public func maskedSelect(_ mask: Tensor) throws -> Tensor {
        try Tensor.make { ct_masked_select(handle, mask.handle, $0) }
    }
    /// `out[i][j] = self[i][index[i][j]]` for `dim` 1 (and likewise for other dims) (`torch.gather`);
    /// `index` is int64 with the same rank, and the result has its shape.
    public func gather(dim: Int, index: Tensor) throws -> Tensor {
        try Tensor.make { ct_gather(handle, Int64(dim), index.handle, $0) }
    }
    /// A copy with the order of elements reversed along each of `dims` (`torch.flip`); `flip([3])`
    /// mirrors NCHW images horizontally.
    public func flip(_ dims: [Int]) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_flip(handle, d, n, out) }
    }
    /// Pads the last dimensions; `padding` is (left, right, top, bottom, …) as in `F.pad`.
    public func pad(_ padding: [Int], value: Double = 0) throws -> Tensor {
        try withDims(padding) { d, n, out in ct_constant_pad_nd(handle, d, n, value, out) }
    }
    /// One-hot encoding of an int64 class-index tensor (`torch.nn.functional.one_hot`): shape gains a last
    /// dimension of `numClasses`, dtype int64. Throws on an index outside 0..<numClasses.
    public func oneHot(numClasses: Int) throws -> Tensor {
        try Tensor.make { ct_one_hot(handle, Int64(numClasses), $0) }
    }

    /// `t[i]`: selects along the first dimension. `t[a..<b]`: slices it.
    public subscript(index: Int) -> Tensor {
        get throws { try select(dim: 0, index: index) }
    }
    /// `t[a..<b]`: rows `a..<b` along the first dimension, as a view (`t[a:b]` in PyTorch).
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

    /// Joins `tensors` along the existing dimension `dim` (`torch.cat`); the other dimensions must match.
    public static func cat(_ tensors: [Tensor], dim: Int = 0) throws -> Tensor {
        let handles = tensors.map(\.handle)
        return try withExtendedLifetime(tensors) {
            try make { out in handles.withUnsafeBufferPointer { ct_cat($0.baseAddress, Int32($0.count), Int64(dim), out) } }
        }
    }
    /// Joins equally shaped `tensors` along a new dimension inserted at `dim` (`torch.stack`);
    /// n tensors of [C, H, W] stacked at 0 give [n, C, H, W].
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
    /// `-self` elementwise (`torch.neg`).
    public func neg() throws -> Tensor { try unary(CT_NEG) }
    /// `|self|` elementwise (`torch.abs`).
    public func abs() throws -> Tensor { try unary(CT_ABS) }
    /// Square root elementwise (`torch.sqrt`); NaN for negative inputs.
    public func sqrt() throws -> Tensor { try unary(CT_SQRT) }
    /// `1 / sqrt(self)` elementwise (`torch.rsqrt`).
    public func rsqrt() throws -> Tensor { try unary(CT_RSQRT) }
    /// `e^self` elementwise (`torch.exp`).
    public func exp() throws -> Tensor { try unary(CT_EXP) }
    /// Natural logarithm elementwise (`torch.log`); -inf at 0, NaN below.
    public func log() throws -> Tensor { try unary(CT_LOG) }
    /// `log(1 + self)` elementwise, accurate for small values (`torch.log1p`).
    public func log1p() throws -> Tensor { try unary(CT_LOG1P) }
    /// Sine elementwise, in radians (`torch.sin`).
    public func sin() throws -> Tensor { try unary(CT_SIN) }
    /// Cosine elementwise, in radians (`torch.cos`).
    public func cos() throws -> Tensor { try unary(CT_COS) }
    /// Hyperbolic tangent elementwise (`torch.tanh`).
    public func tanh() throws -> Tensor { try unary(CT_TANH) }
    /// `1 / (1 + e^-self)` elementwise (`torch.sigmoid`).
    public func sigmoid() throws -> Tensor { try unary(CT_SIGMOID) }
    /// `max(self, 0)` elementwise (`torch.relu`).
    public func relu() throws -> Tensor { try unary(CT_RELU) }
    /// `min(max(self, 0), 6)` elementwise (`torch.nn.functional.relu6`, MobileNet's activation). For
    /// bfloat16 it is computed as a clamp, since LibTorch 1.13 has no bf16 CPU backward for hardtanh.
    public func relu6() throws -> Tensor { try unary(CT_RELU6) }
    /// `self * sigmoid(self)` elementwise, a.k.a. swish (`torch.nn.functional.silu`, EfficientNet's activation).
    public func silu() throws -> Tensor { try unary(CT_SILU) }
    /// GELU; `approximateTanh` selects PyTorch's `approximate="tanh"`.
    public func gelu(approximateTanh: Bool = false) throws -> Tensor {
        try unary(approximateTanh ? CT_GELU_TANH : CT_GELU)
    }
    /// `self * relu6(self + 3) / 6` elementwise (`torch.nn.functional.hardswish`).
    public func hardswish() throws -> Tensor { try unary(CT_HARDSWISH) }
    /// `relu6(self + 3) / 6` elementwise (`torch.nn.functional.hardsigmoid`).
    public func hardsigmoid() throws -> Tensor { try unary(CT_HARDSIGMOID) }
    /// `self` where positive, `slope * self` elsewhere (`torch.nn.functional.leaky_relu`).
    public func leakyRelu(_ slope: Double = 0.01) throws -> Tensor {
        try Tensor.make { ct_leaky_relu(handle, slope, $0) }
    }
    /// -1, 0 or 1 by the sign of each element (`torch.sign`).
    public func sign() throws -> Tensor { try unary(CT_SIGN) }
    /// Rounds each element down (`torch.floor`).
    public func floor() throws -> Tensor { try unary(CT_FLOOR) }
    /// Rounds each element up (`torch.ceil`).
    public func ceil() throws -> Tensor { try unary(CT_CEIL) }
    /// Rounds each element to the nearest integer, halves to even (`torch.round`).
    public func round() throws -> Tensor { try unary(CT_ROUND) }
    /// `1 / self` elementwise (`torch.reciprocal`).
    public func reciprocal() throws -> Tensor { try unary(CT_RECIPROCAL) }
    /// `self * self` elementwise (`torch.square`).
    public func square() throws -> Tensor { try unary(CT_SQUARE) }
    /// Bool tensor, true where the element is zero/false (`torch.logical_not`).
    public func logicalNot() throws -> Tensor { try unary(CT_LOGICAL_NOT) }
    /// Bool tensor, true where the element is NaN (`torch.isnan`).
    public func isNaN() throws -> Tensor { try unary(CT_ISNAN) }
    /// Bool tensor, true where the element is neither infinite nor NaN (`torch.isfinite`).
    public func isFinite() throws -> Tensor { try unary(CT_ISFINITE) }
    /// Whether every element is finite, neither NaN nor infinite (true for an empty tensor).
    public func allFinite() throws -> Bool { try count == 0 || isFinite().to(.float32).min().item() == 1 }

    /// `self ^ exponent` elementwise (`torch.pow` with a number).
    public func pow(_ exponent: Double) throws -> Tensor { try Tensor.make { ct_pow_scalar(handle, exponent, $0) } }
    /// `self ^ exponent` elementwise with broadcasting (`torch.pow` with a tensor).
    public func pow(_ exponent: Tensor) throws -> Tensor { try Tensor.make { ct_pow(handle, exponent.handle, $0) } }
    /// Limits each element to [`min`, `max`]; a nil bound is not applied (`torch.clamp`). Throws when both are nil.
    public func clamp(min: Double? = nil, max: Double? = nil) throws -> Tensor {
        try Tensor.make { ct_clamp(handle, min ?? 0, max ?? 0, min != nil, max != nil, $0) }
    }
    /// The larger of `a` and `b` elementwise, with broadcasting (`torch.maximum`); NaN if either is NaN.
    public static func maximum(_ a: Tensor, _ b: Tensor) throws -> Tensor {
        try make { ct_maximum(a.handle, b.handle, $0) }
    }
    /// The smaller of `a` and `b` elementwise, with broadcasting (`torch.minimum`); NaN if either is NaN.
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

    /// Elementwise sum with broadcasting and type promotion (`a + b` in PyTorch).
    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_add(a.handle, b.handle, 1, $0) } }
    /// Elementwise difference with broadcasting (`a - b` in PyTorch).
    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_sub(a.handle, b.handle, 1, $0) } }
    /// Elementwise (Hadamard) product with broadcasting (`a * b` in PyTorch); see `matmul` for matrix products.
    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_mul(a.handle, b.handle, $0) } }
    /// Elementwise true division with broadcasting (`a / b` in PyTorch): integer inputs give a float result.
    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try make { ct_div(a.handle, b.handle, $0) } }
    /// Adds `s` to every element. An integer tensor stays integer when `s` is a whole number.
    public static func + (a: Tensor, s: Double) throws -> Tensor { try make { ct_add_scalar(a.handle, s, $0) } }
    /// Subtracts `s` from every element. An integer tensor stays integer when `s` is a whole number.
    public static func - (a: Tensor, s: Double) throws -> Tensor { try make { ct_add_scalar(a.handle, -s, $0) } }
    /// Multiplies every element by `s`. An integer tensor stays integer when `s` is a whole number.
    public static func * (a: Tensor, s: Double) throws -> Tensor { try make { ct_mul_scalar(a.handle, s, $0) } }
    /// Divides every element by `s` (true division: integer tensors give a float result).
    public static func / (a: Tensor, s: Double) throws -> Tensor { try make { ct_div_scalar(a.handle, s, $0) } }
    /// `s + a`, the same as `a + s`.
    public static func + (s: Double, a: Tensor) throws -> Tensor { try a + s }
    /// `s - a` elementwise (`torch.rsub`).
    public static func - (s: Double, a: Tensor) throws -> Tensor { try make { ct_rsub_scalar(a.handle, s, $0) } }
    /// `s * a`, the same as `a * s`.
    public static func * (s: Double, a: Tensor) throws -> Tensor { try a * s }
    /// `s / a` elementwise, computed as `a.reciprocal() * s`.
    public static func / (s: Double, a: Tensor) throws -> Tensor { try a.reciprocal() * s }
    /// `-a` elementwise (`torch.neg`).
    public static prefix func - (a: Tensor) throws -> Tensor { try a.neg() }

    // MARK: - Comparison (results are bool tensors)

    func compare(_ other: Tensor, _ op: ct_compare_op) throws -> Tensor {
        try Tensor.make { ct_compare(handle, other.handle, Int32(op.rawValue), $0) }
    }
    func compare(_ s: Double, _ op: ct_compare_op) throws -> Tensor {
        try Tensor.make { ct_compare_scalar(handle, s, Int32(op.rawValue), $0) }
    }
    /// Bool tensor of `self == other` elementwise, with broadcasting (`torch.eq`).
    public func eq(_ other: Tensor) throws -> Tensor { try compare(other, CT_EQ) }
    /// Bool tensor of `self != other` elementwise, with broadcasting (`torch.ne`).
    public func ne(_ other: Tensor) throws -> Tensor { try compare(other, CT_NE) }
    /// Bool tensor of `self < other` elementwise, with broadcasting (`torch.lt`).
    public func lt(_ other: Tensor) throws -> Tensor { try compare(other, CT_LT) }
    /// Bool tensor of `self <= other` elementwise, with broadcasting (`torch.le`).
    public func le(_ other: Tensor) throws -> Tensor { try compare(other, CT_LE) }
    /// Bool tensor of `self > other` elementwise, with broadcasting (`torch.gt`).
    public func gt(_ other: Tensor) throws -> Tensor { try compare(other, CT_GT) }
    /// Bool tensor of `self >= other` elementwise, with broadcasting (`torch.ge`).
    public func ge(_ other: Tensor) throws -> Tensor { try compare(other, CT_GE) }
    /// Bool tensor of `self == s` elementwise (`torch.eq` with a number); e.g. accuracy as `pred.eq(label)`.
    public func eq(_ s: Double) throws -> Tensor { try compare(s, CT_EQ) }
    /// Bool tensor of `self != s` elementwise (`torch.ne` with a number).
    public func ne(_ s: Double) throws -> Tensor { try compare(s, CT_NE) }
    /// Bool tensor of `self < s` elementwise (`torch.lt` with a number).
    public func lt(_ s: Double) throws -> Tensor { try compare(s, CT_LT) }
    /// Bool tensor of `self <= s` elementwise (`torch.le` with a number).
    public func le(_ s: Double) throws -> Tensor { try compare(s, CT_LE) }
    /// Bool tensor of `self > s` elementwise (`torch.gt` with a number).
    public func gt(_ s: Double) throws -> Tensor { try compare(s, CT_GT) }
    /// Bool tensor of `self >= s` elementwise (`torch.ge` with a number).
    public func ge(_ s: Double) throws -> Tensor { try compare(s, CT_GE) }
    /// Bool tensor, true where both elements are nonzero (`torch.logical_and`).
    public func logicalAnd(_ other: Tensor) throws -> Tensor {
        try Tensor.make { ct_logical_and(handle, other.handle, $0) }
    }
    /// Bool tensor, true where either element is nonzero (`torch.logical_or`).
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
    /// `self += s` in place. An integer tensor stays integer when `s` is a whole number.
    public func add_(_ s: Double) throws { try check(ct_add_scalar_(handle, s)) }
    /// `self -= alpha * other` in place (`tensor.sub_`).
    public func sub_(_ other: Tensor, alpha: Double = 1) throws { try check(ct_sub_(handle, other.handle, alpha)) }
    /// `self *= other` elementwise in place (`tensor.mul_`); `other` must broadcast to this shape.
    public func mul_(_ other: Tensor) throws { try check(ct_mul_(handle, other.handle)) }
    /// `self *= s` in place (`tensor.mul_`).
    public func mul_(_ s: Double) throws { try check(ct_mul_scalar_(handle, s)) }
    /// `self /= other` elementwise in place (`tensor.div_`); `other` must broadcast to this shape.
    public func div_(_ other: Tensor) throws { try check(ct_div_(handle, other.handle)) }
    /// `self /= s` in place (`tensor.div_`); throws on an integer tensor (the result would be float).
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
    /// Replaces each element by its square root, in place (`tensor.sqrt_`).
    public func sqrt_() throws { try check(ct_sqrt_(handle)) }
    /// Limits each element to [`min`, `max`] in place; a nil bound is not applied (`tensor.clamp_`).
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
    /// Sum over one dimension (`tensor.sum(dim)`); `keepDim` keeps it with size 1.
    public func sum(dim: Int, keepDim: Bool = false) throws -> Tensor { try sum(dims: [dim], keepDim: keepDim) }
    /// Mean over `dims` (all dimensions when empty, giving a 0-d tensor) (`tensor.mean`); floating dtypes only.
    public func mean(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_mean(handle, d, n, keepDim, out) }
    }
    /// Mean over one dimension (`tensor.mean(dim)`); `keepDim` keeps it with size 1.
    public func mean(dim: Int, keepDim: Bool = false) throws -> Tensor { try mean(dims: [dim], keepDim: keepDim) }
    /// Variance over `dims` (all when empty) (`torch.var`); `unbiased` divides by n - 1 (Bessel), else by n.
    public func variance(dims: [Int] = [], unbiased: Bool = true, keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_var(handle, d, n, unbiased, keepDim, out) }
    }
    /// Maximum over `dims` (all dimensions when empty).
    public func max(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_amax(handle, d, n, keepDim, out) }
    }
    /// Minimum over `dims` (all dimensions when empty) (`torch.amin`); values only, see `sort` for indices.
    public func min(dims: [Int] = [], keepDim: Bool = false) throws -> Tensor {
        try withDims(dims) { d, n, out in ct_amin(handle, d, n, keepDim, out) }
    }
    /// The p-norm of all elements as a 0-d tensor (`torch.norm(t, p)`); 2 is the Euclidean norm.
    public func norm(p: Double = 2) throws -> Tensor { try Tensor.make { ct_norm(handle, p, $0) } }
    /// Int64 positions of the largest values along `dim` (`torch.argmax`); predicted classes are
    /// `logits.argmax(dim: 1)` for [N, classes] logits.
    public func argmax(dim: Int, keepDim: Bool = false) throws -> Tensor {
        try Tensor.make { ct_argmax(handle, Int64(dim), keepDim, $0) }
    }
    /// The `k` largest (or smallest, with `largest: false`) values along `dim` and their int64 positions
    /// (`torch.topk`); throws when `k` exceeds that dimension's size.
    public func topk(_ k: Int, dim: Int = -1, largest: Bool = true, sorted: Bool = true) throws
        -> (values: Tensor, indices: Tensor) {
        var values = ct_tensor(ptr: nil), indices = ct_tensor(ptr: nil)
        try check(ct_topk(handle, Int64(k), Int64(dim), largest, sorted, &values, &indices))
        return (Tensor(owning: values), Tensor(owning: indices))
    }
    /// Values sorted along `dim` (ascending unless `descending`) and the int64 positions they came from (`torch.sort`).
    public func sort(dim: Int = -1, descending: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        var values = ct_tensor(ptr: nil), indices = ct_tensor(ptr: nil)
        try check(ct_sort(handle, Int64(dim), descending, &values, &indices))
        return (Tensor(owning: values), Tensor(owning: indices))
    }
    /// Running sums along `dim` (`torch.cumsum`); integer inputs give int64.
    public func cumsum(dim: Int) throws -> Tensor { try Tensor.make { ct_cumsum(handle, Int64(dim), $0) } }

    // MARK: - Linear algebra

    /// Matrix product with batching and broadcasting (`torch.matmul`): [n, k] x [k, m] gives [n, m];
    /// 1-D operands act as vectors.
    public func matmul(_ other: Tensor) throws -> Tensor { try Tensor.make { ct_matmul(handle, other.handle, $0) } }
}

/// One index in a multi-dimensional subscript.
public enum TensorIndex: ExpressibleByIntegerLiteral {
    /// One position; removes that dimension (`t[i]`).
    case at(Int)
    /// A half-open range of positions, kept as a dimension (`t[a:b]`).
    case range(Range<Int>)
    /// Every `step`-th position of a range (`t[a:b:step]`).
    case stride(Range<Int>, step: Int)
    /// The whole dimension (`t[:]`).
    case all
    /// A new dimension of size 1 at this point (`t[None]`).
    case newAxis

    /// An integer literal in a subscript means `.at(value)`.
    public init(integerLiteral value: Int) { self = .at(value) }
}
