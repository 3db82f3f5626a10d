import CTorch

/// An n-dimensional array backed by an `at::Tensor`. The handle is freed in `deinit`.
///
/// Every operation that can fail throws a `TorchError` carrying LibTorch's message; the
/// process keeps working. Two `Tensor` objects may share storage (views, `shallowCopy()`).
public final class Tensor: @unchecked Sendable {
    let handle: ct_tensor

    /// Takes ownership of a handle returned by the shim.
    init(owning handle: ct_tensor) {
        self.handle = handle
    }

    deinit { ct_tensor_free(handle) }

    /// Calls a shim function that produces one tensor, throwing its error.
    @inline(__always)
    static func make(_ body: (UnsafeMutablePointer<ct_tensor>) -> ct_status) throws -> Tensor {
        var out = ct_tensor(ptr: nil)
        try check(body(&out))
        return Tensor(owning: out)
    }

    // MARK: - Creation

    /// A tensor holding a copy of `values`, reshaped to `shape` (a 1-D tensor when `shape` is nil).
    public convenience init<T: TensorScalar>(_ values: [T], shape: [Int]? = nil) throws {
        let dims = (shape ?? [values.count]).map(Int64.init)
        var out = ct_tensor(ptr: nil)
        try values.withUnsafeBytes { raw in
            try dims.withUnsafeBufferPointer { d in
                try check(ct_tensor_from_data(raw.baseAddress, raw.count, d.baseAddress, Int32(d.count),
                                              T.dtype.rawValue, &out))
            }
        }
        self.init(owning: out)
    }

    /// A 0-dimensional tensor.
    public convenience init(scalar value: Double, dtype: DType = .float32, device: Device = .cpu) throws {
        var out = ct_tensor(ptr: nil)
        try check(ct_tensor_scalar(value, dtype.rawValue, device.c, &out))
        self.init(owning: out)
    }

    /// A tensor copying `bytes`, laid out row-major as `dtype` with `shape` (their sizes must agree).
    public convenience init(copying bytes: UnsafeRawBufferPointer, shape: [Int], dtype: DType) throws {
        let dims = shape.map(Int64.init)
        var out = ct_tensor(ptr: nil)
        try dims.withUnsafeBufferPointer { d in
            try check(ct_tensor_from_data(bytes.baseAddress, bytes.count, d.baseAddress, Int32(d.count),
                                          dtype.rawValue, &out))
        }
        self.init(owning: out)
    }

    /// Wraps memory without copying. `owner` is retained until LibTorch releases the storage,
    /// so the memory must stay valid (and unmodified by others) for as long as `owner` lives.
    /// `strides` are in elements, one per dimension, none negative; nil means contiguous.
    public static func wrapping(_ pointer: UnsafeMutableRawPointer, shape: [Int], strides: [Int]? = nil,
                                dtype: DType, owner: AnyObject) throws -> Tensor {
        // Fewer strides than dimensions made LibTorch read past the array (a crash); more were ignored.
        if let strides, strides.count != shape.count {
            throw TorchError("wrapping memory of shape \(shape) needs \(shape.count) strides, got \(strides.count)")
        }
        let dims = shape.map(Int64.init)
        let st = strides?.map(Int64.init)
        let context = Unmanaged.passRetained(owner).toOpaque()
        var out = ct_tensor(ptr: nil)
        let status: ct_status = dims.withUnsafeBufferPointer { d in
            if let st {
                return st.withUnsafeBufferPointer { s in
                    ct_tensor_from_blob(pointer, d.baseAddress, s.baseAddress, Int32(d.count), dtype.rawValue,
                                        releaseOwner, context, &out)
                }
            }
            return ct_tensor_from_blob(pointer, d.baseAddress, nil, Int32(d.count), dtype.rawValue,
                                       releaseOwner, context, &out)
        }
        if status != CT_OK {
            Unmanaged<AnyObject>.fromOpaque(context).release()
            throw lastError()
        }
        return Tensor(owning: out)
    }

    /// A tensor of `shape` filled with 0 (`torch.zeros`). Throws if the device is unavailable.
    public static func zeros(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_zeros(d, n, dtype.rawValue, device.c, out) }
    }
    /// A tensor of `shape` filled with 1 (`torch.ones`).
    public static func ones(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_ones(d, n, dtype.rawValue, device.c, out) }
    }
    /// A tensor of `shape` with uninitialized contents (`torch.empty`): write every element before reading.
    public static func empty(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_empty(d, n, dtype.rawValue, device.c, out) }
    }
    /// A tensor of `shape` with every element equal to `value`, converted to `dtype` (`torch.full`).
    public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32,
                            device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_full(d, n, value, dtype.rawValue, device.c, out) }
    }
    /// Uniform samples in [0, 1) from LibTorch's generator.
    public static func rand(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_rand(d, n, dtype.rawValue, device.c, out) }
    }
    /// Standard normal samples from LibTorch's generator.
    public static func randn(_ shape: [Int], dtype: DType = .float32, device: Device = .cpu) throws -> Tensor {
        try withShape(shape) { d, n, out in ct_tensor_randn(d, n, dtype.rawValue, device.c, out) }
    }
    /// The 1-D sequence `start, start + step, …` up to but excluding `end` (`torch.arange`); int64 by default.
    public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .int64,
                              device: Device = .cpu) throws -> Tensor {
        try make { ct_tensor_arange(start, end, step, dtype.rawValue, device.c, $0) }
    }
    /// A random permutation of 0..<n (int64).
    public static func randperm(_ n: Int, device: Device = .cpu) throws -> Tensor {
        try make { ct_tensor_randperm(Int64(n), device.c, $0) }
    }

    static func withShape(_ shape: [Int],
                          _ body: (UnsafePointer<Int64>?, Int32, UnsafeMutablePointer<ct_tensor>) -> ct_status)
        throws -> Tensor {
        let dims = shape.map(Int64.init)
        return try make { out in dims.withUnsafeBufferPointer { body($0.baseAddress, Int32(dims.count), out) } }
    }

    // MARK: - Metadata

    /// The size of each dimension, outermost first (`tensor.shape`); `[]` for a 0-dimensional tensor.
    public var shape: [Int] { readDims(ct_tensor_sizes) }
    /// The step in *elements* (not bytes) between neighbours along each dimension (`tensor.stride()`).
    public var strides: [Int] { readDims(ct_tensor_strides) }
    /// The number of dimensions (`tensor.dim()`); 0 for a scalar tensor.
    public var rank: Int { var n: Int32 = 0; _ = ct_tensor_dim(handle, &n); return Int(n) }
    /// The total number of elements, the product of `shape` (`tensor.numel()`).
    public var count: Int { var n: Int64 = 0; _ = ct_tensor_numel(handle, &n); return Int(n) }

    /// The element type of the storage.
    public var dtype: DType {
        var code: Int32 = 0
        // Tensors are only ever created with supported dtypes, so this cannot fail in practice.
        _ = ct_tensor_dtype(handle, &code)
        return DType(rawValue: code) ?? .float32
    }

    /// Where the storage lives (CPU, CUDA or MPS).
    public var device: Device {
        var d = ct_device(type: 0, index: -1)
        _ = ct_tensor_device(handle, &d)
        return Device(d)
    }

    /// Whether the elements are laid out densely in `format`'s order (`tensor.is_contiguous(memory_format=)`):
    /// row-major for `.contiguous`, NHWC for `.channelsLast` (4-D tensors).
    public func isContiguous(_ format: MemoryFormat = .contiguous) -> Bool {
        var flag = false
        _ = ct_tensor_is_contiguous(handle, format.rawValue, &flag)
        return flag
    }

    private func readDims(_ fn: (ct_tensor, UnsafeMutablePointer<Int64>?, Int32, UnsafeMutablePointer<Int32>?)
                          -> ct_status) -> [Int] {
        var buffer = [Int64](repeating: 0, count: 8)
        var n: Int32 = 0
        _ = fn(handle, &buffer, Int32(buffer.count), &n)
        if Int(n) > buffer.count {
            buffer = [Int64](repeating: 0, count: Int(n))
            _ = fn(handle, &buffer, n, &n)
        }
        return buffer.prefix(Int(n)).map(Int.init)
    }

    // MARK: - Reading values

    /// Copies the elements out as `T`, converting the dtype first when it differs.
    public func toArray<T: TensorScalar>(_ type: T.Type = T.self) throws -> [T] {
        let source = dtype == T.dtype ? self : try to(T.dtype)
        let n = source.count
        return try [T](unsafeUninitializedCapacity: n) { buffer, initialized in
            try check(ct_tensor_copy_to_buffer(source.handle, buffer.baseAddress, n * MemoryLayout<T>.stride))
            initialized = n
        }
    }

    /// The elements as `Float` (converting any dtype).
    public func floats() throws -> [Float] { try toArray(Float.self) }

    /// Copies the raw bytes (row-major, this tensor's dtype) into `destination`.
    public func copyBytes(to destination: UnsafeMutableRawBufferPointer) throws {
        try check(ct_tensor_copy_to_buffer(handle, destination.baseAddress, destination.count))
    }

    /// The value of a one-element tensor.
    public func item() throws -> Double {
        var v = 0.0
        try check(ct_tensor_item_double(handle, &v))
        return v
    }

    /// The value of a one-element tensor as an integer (`tensor.item()` on an integer tensor).
    /// Throws unless the tensor has exactly one element.
    public func itemInt() throws -> Int {
        var v: Int64 = 0
        try check(ct_tensor_item_int64(handle, &v))
        return Int(v)
    }

    /// Pointer to the first element of a CPU tensor; valid while this tensor lives.
    public func dataPointer() throws -> UnsafeMutableRawPointer {
        var p: UnsafeMutableRawPointer?
        try check(ct_tensor_data_ptr(handle, &p))
        guard let p else { throw TorchError("tensor has no storage") }
        return p
    }

    // MARK: - Conversion and copies

    /// A copy converted to `dtype` on the same device (`tensor.to(dtype)`); `self`'s storage when already that dtype.
    public func to(_ dtype: DType) throws -> Tensor { try to(dtype: dtype, device: device) }
    /// A copy moved to `device` with the same dtype (`tensor.to(device)`); `self`'s storage when already there.
    public func to(_ device: Device) throws -> Tensor { try to(dtype: dtype, device: device) }
    /// Converts dtype and moves device at once (`tensor.to(device, dtype, copy=copy)`). Without `copy`, the
    /// result shares storage with `self` when nothing changes; with `copy`, it is always a new tensor.
    public func to(dtype: DType, device: Device, copy: Bool = false) throws -> Tensor {
        try Tensor.make { ct_tensor_to(handle, dtype.rawValue, device.c, copy, $0) }
    }
    /// `self` if already laid out densely in `format`, else a copy in that layout (`tensor.contiguous(memory_format=)`).
    public func contiguous(_ format: MemoryFormat = .contiguous) throws -> Tensor {
        try Tensor.make { ct_tensor_contiguous(handle, format.rawValue, $0) }
    }
    /// A copy with its own storage that stays in the autograd graph (`tensor.clone()`).
    public func clone() throws -> Tensor { try Tensor.make { ct_tensor_clone(handle, $0) } }
    /// A tensor sharing storage but cut from the autograd graph.
    public func detach() throws -> Tensor { try Tensor.make { ct_tensor_detach(handle, $0) } }
    /// Another Swift handle to the very same tensor (same storage and autograd identity).
    public func shallowCopy() throws -> Tensor { try Tensor.make { ct_tensor_shallow_clone(handle, $0) } }

    /// Copies `source`'s values into this tensor in place (broadcasting, converting dtype/device).
    public func copy_(_ source: Tensor) throws { try check(ct_tensor_copy_(handle, source.handle)) }
    /// Replaces this tensor's data with `newData` (shape, dtype and device may change) while keeping
    /// its identity, so optimizers and modules holding it see the change (PyTorch's `p.data = new`).
    public func setData(_ newData: Tensor) throws { try check(ct_tensor_set_data(handle, newData.handle)) }
    /// Sets every element to 0 in place (`tensor.zero_()`).
    public func zero_() throws { try check(ct_tensor_zero_(handle)) }
    /// Sets every element to `value` in place (`tensor.fill_`).
    public func fill_(_ value: Double) throws { try check(ct_tensor_fill_(handle, value)) }
    /// Fills in place with uniform samples in [`low`, `high`) from LibTorch's generator (`tensor.uniform_`).
    public func uniform_(_ low: Double, _ high: Double) throws { try check(ct_tensor_uniform_(handle, low, high)) }
    /// Fills in place with normal samples of `mean` and standard deviation `std` (`tensor.normal_`).
    public func normal_(mean: Double = 0, std: Double = 1) throws { try check(ct_tensor_normal_(handle, mean, std)) }
    /// Fills in place with 1 with probability `p` and 0 otherwise (`tensor.bernoulli_(p)`).
    public func bernoulli_(_ p: Double) throws { try check(ct_tensor_bernoulli_(handle, p)) }

    // MARK: - Autograd

    /// Whether autograd records operations on this tensor (`tensor.requires_grad`).
    public var requiresGrad: Bool {
        var flag = false
        _ = ct_tensor_requires_grad(handle, &flag)
        return flag
    }

    /// Whether the tensor was created in inference mode (`withInferenceMode`): outside it, such a
    /// tensor cannot be modified in place or recorded by autograd.
    public var isInference: Bool {
        var flag = false
        _ = ct_tensor_is_inference(handle, &flag)
        return flag
    }

    /// The version counter (`tensor._version`: LibTorch bumps it on every in-place change to the
    /// tensor or to a view of it, such as state loading and optimizer steps) and the address of the
    /// first element on the tensor's device (an identity, never to be read through: it changes when
    /// `setData` gives the tensor other storage, which bumps no version). Unchanged, both mean
    /// unchanged values. Throws for an inference tensor, which has no version counter.
    public func versionAndAddress() throws -> (version: Int64, address: UInt) {
        var version: Int64 = 0
        var address: UInt = 0
        try check(ct_tensor_version(handle, &version, &address))
        return (version, address)
    }

    /// Sets `requires_grad` in place (leaf tensors of floating dtype only) and returns `self`.
    @discardableResult
    public func setRequiresGrad(_ flag: Bool = true) throws -> Tensor {
        try check(ct_tensor_set_requires_grad(handle, flag))
        return self
    }

    /// The accumulated gradient, or nil when none has been computed.
    public var grad: Tensor? {
        var out = ct_tensor(ptr: nil)
        guard ct_tensor_grad(handle, &out) == CT_OK, out.ptr != nil else { return nil }
        return Tensor(owning: out)
    }

    /// Replaces (or with nil, clears) the accumulated gradient.
    public func setGrad(_ gradient: Tensor?) throws {
        try check(ct_tensor_set_grad(handle, gradient?.handle ?? ct_tensor(ptr: nil)))
    }

    /// Whether this tensor was created by the user rather than by a recorded operation (`tensor.is_leaf`);
    /// only leaves accumulate `grad` in `backward()`.
    public var isLeaf: Bool {
        var flag = false
        _ = ct_tensor_is_leaf(handle, &flag)
        return flag
    }

    /// Back-propagates from this tensor (a scalar unless `gradient` is given).
    public func backward(gradient: Tensor? = nil, retainGraph: Bool = false) throws {
        try check(ct_backward(handle, gradient?.handle ?? ct_tensor(ptr: nil), retainGraph))
    }
}

/// Memory layouts for 4-D tensors.
public enum MemoryFormat: Int32, Sendable {
    /// Row-major order (NCHW for images), PyTorch's `contiguous_format`.
    case contiguous = 0
    /// NHWC in memory (PyTorch's `channels_last`), usually faster for convolutions on CPU.
    case channelsLast = 1
}

private func releaseOwner(_ context: UnsafeMutableRawPointer?) {
    guard let context else { return }
    Unmanaged<AnyObject>.fromOpaque(context).release()
}

extension Tensor: CustomStringConvertible {
    /// LibTorch's printout of the values, as `print(tensor)` in C++.
    public var description: String {
        var cString: UnsafeMutablePointer<CChar>?
        guard ct_tensor_to_string(handle, &cString) == CT_OK, let cString else {
            return "Tensor(shape: \(shape), dtype: \(dtype))"
        }
        defer { ct_string_free(cString) }
        return String(cString: cString)
    }
}
