// ctorch.h — the narrow C boundary between Swift and LibTorch.
//
// Rules every entry point follows:
//  * it is `noexcept` on the C++ side and catches everything (`catch (...)` last) CT_NOEXCEPT;
//  * it returns a `ct_status` (0 = success) and, on failure, leaves a message in a
//    thread-local buffer readable with `ct_last_error()`;
//  * results come back through out-parameters; a returned tensor handle is owned by
//    the caller and must be released with `ct_tensor_free`.
// No C++ exception ever crosses this boundary and no error ends the process.
#ifndef CTORCH_H
#define CTORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define CT_NOEXCEPT noexcept
extern "C" {
#else
#define CT_NOEXCEPT
#endif

typedef int32_t ct_status;
enum { CT_OK = 0, CT_ERROR = 1 };

/// Opaque handle to an at::Tensor (heap-allocated, owned by the caller).
typedef struct ct_tensor { void *ptr; } ct_tensor;
/// Opaque handle to an active c10::InferenceMode guard.
typedef struct ct_inference_guard { void *ptr; } ct_inference_guard;

/// Element types. Values are stable and independent of c10::ScalarType numbering.
typedef enum ct_dtype {
  CT_FLOAT32 = 0,
  CT_FLOAT64 = 1,
  CT_FLOAT16 = 2,
  CT_BFLOAT16 = 3,
  CT_INT64 = 4,
  CT_INT32 = 5,
  CT_UINT8 = 6,
  CT_INT8 = 7,
  CT_BOOL = 8,
  CT_INT16 = 9,
} ct_dtype;

/// Device kinds. `index` selects the ordinal (-1 = current/default).
typedef enum ct_device_type { CT_CPU = 0, CT_CUDA = 1, CT_MPS = 2 } ct_device_type;
typedef struct ct_device { int32_t type; int32_t index; } ct_device;

typedef enum ct_reduction { CT_REDUCTION_NONE = 0, CT_REDUCTION_MEAN = 1, CT_REDUCTION_SUM = 2 } ct_reduction;
typedef enum ct_memory_format { CT_CONTIGUOUS = 0, CT_CHANNELS_LAST = 1, CT_PRESERVE = 2 } ct_memory_format;

// ---------------------------------------------------------------- errors & runtime
/// The message of the last failed call on this thread ("" if none).
const char *ct_last_error(void) CT_NOEXCEPT;
void ct_clear_error(void) CT_NOEXCEPT;
/// LibTorch's version string, e.g. "1.13.1" (static storage).
const char *ct_version(void) CT_NOEXCEPT;
ct_status ct_manual_seed(uint64_t seed) CT_NOEXCEPT;
ct_status ct_set_num_threads(int32_t n) CT_NOEXCEPT;
int32_t ct_get_num_threads(void) CT_NOEXCEPT;
/// The CPU kernels LibTorch dispatches to, as `torch.__config__.show()` names them ("AVX2", "AVX512",
/// "DEFAULT"); `*out` is malloc'd (free with `ct_string_free`).
ct_status ct_cpu_capability(char **out) CT_NOEXCEPT;
/// Makes the C allocator keep freed memory for reuse instead of returning large blocks to the
/// system (glibc: no mmap'd chunks, no trimming, one arena for all threads), so each big activation
/// tensor does not pay fresh page faults. Returns false where the C library has no such settings
/// (nothing changed).
bool ct_retain_freed_memory(void) CT_NOEXCEPT;
bool ct_cuda_is_available(void) CT_NOEXCEPT;
int32_t ct_cuda_device_count(void) CT_NOEXCEPT;
bool ct_mps_is_available(void) CT_NOEXCEPT;
/// Default CPU generator state as a uint8 tensor, and restoring it.
ct_status ct_cpu_rng_get_state(ct_tensor *out) CT_NOEXCEPT;
ct_status ct_cpu_rng_set_state(ct_tensor state) CT_NOEXCEPT;

// ---------------------------------------------------------------- autograd mode
bool ct_is_grad_enabled(void) CT_NOEXCEPT;
void ct_set_grad_enabled(bool enabled) CT_NOEXCEPT;
ct_status ct_inference_mode_enter(ct_inference_guard *out) CT_NOEXCEPT;
void ct_inference_mode_exit(ct_inference_guard guard) CT_NOEXCEPT;
bool ct_is_inference_mode_enabled(void) CT_NOEXCEPT;
/// CPU autocast (mixed precision) on/off with a lower-precision dtype (bf16/f16).
ct_status ct_autocast_set_cpu(bool enabled, int32_t dtype) CT_NOEXCEPT;
bool ct_autocast_is_cpu_enabled(void) CT_NOEXCEPT;
/// The dtype code CPU autocast casts to (-1 if unknown).
int32_t ct_autocast_cpu_dtype(void) CT_NOEXCEPT;
void ct_autocast_clear_cache(void) CT_NOEXCEPT;

// ---------------------------------------------------------------- lifetime & creation
void ct_tensor_free(ct_tensor t) CT_NOEXCEPT;
/// Copies `nbytes` from `data` into a new contiguous CPU tensor.
ct_status ct_tensor_from_data(const void *data, size_t nbytes, const int64_t *shape, int32_t ndim,
                              int32_t dtype, ct_tensor *out) CT_NOEXCEPT;
/// Wraps caller memory without copying. `deleter(ctx)` runs when LibTorch frees the storage.
/// `strides` may be NULL for a contiguous layout (element strides, not bytes).
ct_status ct_tensor_from_blob(void *data, const int64_t *shape, const int64_t *strides, int32_t ndim,
                              int32_t dtype, void (*deleter)(void *ctx), void *ctx, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_empty(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_zeros(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_ones(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_full(const int64_t *shape, int32_t ndim, double value, int32_t dtype, ct_device device,
                         ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_arange(double start, double end, double step, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_rand(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_randn(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_randperm(int64_t n, ct_device device, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_scalar(double value, int32_t dtype, ct_device device, ct_tensor *out) CT_NOEXCEPT;

// ---------------------------------------------------------------- metadata & data access
ct_status ct_tensor_dim(ct_tensor t, int32_t *out) CT_NOEXCEPT;
/// Writes up to `cap` sizes into `out`; `*ndim` receives the true rank.
ct_status ct_tensor_sizes(ct_tensor t, int64_t *out, int32_t cap, int32_t *ndim) CT_NOEXCEPT;
ct_status ct_tensor_strides(ct_tensor t, int64_t *out, int32_t cap, int32_t *ndim) CT_NOEXCEPT;
ct_status ct_tensor_numel(ct_tensor t, int64_t *out) CT_NOEXCEPT;
ct_status ct_tensor_dtype(ct_tensor t, int32_t *out) CT_NOEXCEPT;
ct_status ct_tensor_device(ct_tensor t, ct_device *out) CT_NOEXCEPT;
ct_status ct_tensor_is_contiguous(ct_tensor t, int32_t memory_format, bool *out) CT_NOEXCEPT;
ct_status ct_tensor_defined(ct_tensor t, bool *out) CT_NOEXCEPT;
/// Copies the tensor's elements (row-major, its own dtype) into `dst` (`nbytes` must match).
ct_status ct_tensor_copy_to_buffer(ct_tensor t, void *dst, size_t nbytes) CT_NOEXCEPT;
/// Raw pointer to the first element of a CPU tensor (no copy; valid while the tensor lives).
ct_status ct_tensor_data_ptr(ct_tensor t, void **out) CT_NOEXCEPT;
ct_status ct_tensor_item_double(ct_tensor t, double *out) CT_NOEXCEPT;
ct_status ct_tensor_item_int64(ct_tensor t, int64_t *out) CT_NOEXCEPT;
/// Human-readable rendering (caller frees with `ct_string_free`).
ct_status ct_tensor_to_string(ct_tensor t, char **out) CT_NOEXCEPT;
void ct_string_free(char *s) CT_NOEXCEPT;

// ---------------------------------------------------------------- conversion & copies
ct_status ct_tensor_to(ct_tensor t, int32_t dtype, ct_device device, bool copy, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_contiguous(ct_tensor t, int32_t memory_format, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_clone(ct_tensor t, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_detach(ct_tensor t, ct_tensor *out) CT_NOEXCEPT;
/// A new handle sharing the same tensor (like a Python reference).
ct_status ct_tensor_shallow_clone(ct_tensor t, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_copy_(ct_tensor self, ct_tensor src) CT_NOEXCEPT;
/// Replaces the tensor's data (shape, dtype, device may change) keeping its identity, like `p.data = new`.
ct_status ct_tensor_set_data(ct_tensor self, ct_tensor new_data) CT_NOEXCEPT;
ct_status ct_tensor_zero_(ct_tensor self) CT_NOEXCEPT;
ct_status ct_tensor_fill_(ct_tensor self, double value) CT_NOEXCEPT;
ct_status ct_tensor_uniform_(ct_tensor self, double low, double high) CT_NOEXCEPT;
ct_status ct_tensor_normal_(ct_tensor self, double mean, double std) CT_NOEXCEPT;
ct_status ct_tensor_bernoulli_(ct_tensor self, double p) CT_NOEXCEPT;

// ---------------------------------------------------------------- shape & indexing
ct_status ct_reshape(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_view(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_permute(ct_tensor t, const int64_t *dims, int32_t ndim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_transpose(ct_tensor t, int64_t dim0, int64_t dim1, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_flatten(ct_tensor t, int64_t start_dim, int64_t end_dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_squeeze(ct_tensor t, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_expand(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_select(ct_tensor t, int64_t dim, int64_t index, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_index_select(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_masked_select(ct_tensor t, ct_tensor mask, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_gather(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_cat(const ct_tensor *ts, int32_t n, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_stack(const ct_tensor *ts, int32_t n, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_flip(ct_tensor t, const int64_t *dims, int32_t ndim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_constant_pad_nd(ct_tensor t, const int64_t *pad, int32_t npad, double value, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_one_hot(ct_tensor t, int64_t num_classes, ct_tensor *out) CT_NOEXCEPT;

// ---------------------------------------------------------------- elementwise arithmetic
ct_status ct_add(ct_tensor a, ct_tensor b, double alpha, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_sub(ct_tensor a, ct_tensor b, double alpha, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_mul(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_div(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_add_scalar(ct_tensor a, double s, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_mul_scalar(ct_tensor a, double s, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_div_scalar(ct_tensor a, double s, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_rsub_scalar(ct_tensor a, double s, ct_tensor *out) CT_NOEXCEPT;  // s - a
ct_status ct_pow_scalar(ct_tensor a, double exponent, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_pow(ct_tensor a, ct_tensor exponent, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_maximum(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_minimum(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_clamp(ct_tensor a, double min, double max, bool has_min, bool has_max, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;

typedef enum ct_unary_op {
  CT_NEG = 0, CT_ABS, CT_SQRT, CT_RSQRT, CT_EXP, CT_LOG, CT_SIN, CT_COS, CT_TANH, CT_SIGMOID,
  CT_RELU, CT_RELU6, CT_SILU, CT_GELU, CT_GELU_TANH, CT_HARDSWISH, CT_HARDSIGMOID, CT_SIGN,
  CT_FLOOR, CT_CEIL, CT_ROUND, CT_LOGICAL_NOT, CT_RECIPROCAL, CT_SQUARE, CT_LOG1P, CT_ISNAN, CT_ISFINITE,
} ct_unary_op;
ct_status ct_unary(ct_tensor a, int32_t op, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_leaky_relu(ct_tensor a, double slope, ct_tensor *out) CT_NOEXCEPT;

typedef enum ct_compare_op { CT_EQ = 0, CT_NE, CT_LT, CT_LE, CT_GT, CT_GE } ct_compare_op;
ct_status ct_compare(ct_tensor a, ct_tensor b, int32_t op, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_compare_scalar(ct_tensor a, double s, int32_t op, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_logical_and(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_logical_or(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_allclose(ct_tensor a, ct_tensor b, double rtol, double atol, bool *out) CT_NOEXCEPT;

// ---------------------------------------------------------------- in-place updates (optimizers)
ct_status ct_add_(ct_tensor self, ct_tensor other, double alpha) CT_NOEXCEPT;
ct_status ct_add_scalar_(ct_tensor self, double s) CT_NOEXCEPT;
ct_status ct_sub_(ct_tensor self, ct_tensor other, double alpha) CT_NOEXCEPT;
ct_status ct_mul_(ct_tensor self, ct_tensor other) CT_NOEXCEPT;
ct_status ct_mul_scalar_(ct_tensor self, double s) CT_NOEXCEPT;
ct_status ct_div_(ct_tensor self, ct_tensor other) CT_NOEXCEPT;
ct_status ct_div_scalar_(ct_tensor self, double s) CT_NOEXCEPT;
ct_status ct_addcmul_(ct_tensor self, ct_tensor t1, ct_tensor t2, double value) CT_NOEXCEPT;
ct_status ct_addcdiv_(ct_tensor self, ct_tensor t1, ct_tensor t2, double value) CT_NOEXCEPT;
ct_status ct_lerp_(ct_tensor self, ct_tensor end, double weight) CT_NOEXCEPT;
ct_status ct_sqrt_(ct_tensor self) CT_NOEXCEPT;
ct_status ct_clamp_(ct_tensor self, double min, double max, bool has_min, bool has_max) CT_NOEXCEPT;
ct_status ct_maximum_out(ct_tensor a, ct_tensor b, ct_tensor out) CT_NOEXCEPT;

// ---------------------------------------------------------------- reductions & linear algebra
/// `dims` may be NULL/ndims 0 for a full reduction.
ct_status ct_sum(ct_tensor t, const int64_t *dims, int32_t ndims, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_mean(ct_tensor t, const int64_t *dims, int32_t ndims, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_var(ct_tensor t, const int64_t *dims, int32_t ndims, bool unbiased, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_amax(ct_tensor t, const int64_t *dims, int32_t ndims, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_amin(ct_tensor t, const int64_t *dims, int32_t ndims, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_norm(ct_tensor t, double p, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_argmax(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_topk(ct_tensor t, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *values,
                  ct_tensor *indices) CT_NOEXCEPT;
ct_status ct_sort(ct_tensor t, int64_t dim, bool descending, ct_tensor *values, ct_tensor *indices) CT_NOEXCEPT;
ct_status ct_cumsum(ct_tensor t, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out) CT_NOEXCEPT;
/// y = x W^T + b (`bias.ptr` may be NULL).
ct_status ct_linear(ct_tensor x, ct_tensor weight, ct_tensor bias, ct_tensor *out) CT_NOEXCEPT;

// ---------------------------------------------------------------- neural-network functions
/// `bias.ptr` may be NULL. Arrays of 2 for stride, padding, dilation.
ct_status ct_conv2d(ct_tensor x, ct_tensor weight, ct_tensor bias, const int64_t *stride, const int64_t *padding,
                    const int64_t *dilation, int64_t groups, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_max_pool2d(ct_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        const int64_t *dilation, bool ceil_mode, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_avg_pool2d(ct_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        bool ceil_mode, bool count_include_pad, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_adaptive_avg_pool2d(ct_tensor x, const int64_t *output_size, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_adaptive_max_pool2d(ct_tensor x, const int64_t *output_size, ct_tensor *out) CT_NOEXCEPT;
/// Any of weight/bias/running_mean/running_var may have a NULL ptr.
ct_status ct_batch_norm(ct_tensor x, ct_tensor weight, ct_tensor bias, ct_tensor running_mean,
                        ct_tensor running_var, bool training, double momentum, double eps, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_dropout(ct_tensor x, double p, bool training, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_softmax(ct_tensor x, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_log_softmax(ct_tensor x, int64_t dim, ct_tensor *out) CT_NOEXCEPT;
/// Cross entropy over class indices (int64 target) or class probabilities (float target).
/// `weight.ptr` may be NULL.
ct_status ct_cross_entropy(ct_tensor logits, ct_tensor target, ct_tensor weight, int32_t reduction,
                           int64_t ignore_index, double label_smoothing, ct_tensor *out) CT_NOEXCEPT;
/// `weight.ptr` and `pos_weight.ptr` may be NULL.
ct_status ct_bce_with_logits(ct_tensor logits, ct_tensor target, ct_tensor weight, ct_tensor pos_weight,
                             int32_t reduction, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_mse_loss(ct_tensor a, ct_tensor b, int32_t reduction, ct_tensor *out) CT_NOEXCEPT;
typedef enum ct_interpolation { CT_NEAREST = 0, CT_BILINEAR = 1, CT_BICUBIC = 2 } ct_interpolation;
/// Resizes an NCHW tensor to `size[2]`; `antialias` applies to bilinear/bicubic (downsampling).
ct_status ct_interpolate(ct_tensor x, const int64_t *size, int32_t mode, bool align_corners, bool antialias,
                         ct_tensor *out) CT_NOEXCEPT;

// ---------------------------------------------------------------- autograd
ct_status ct_tensor_requires_grad(ct_tensor t, bool *out) CT_NOEXCEPT;
/// Whether the tensor was made in inference mode (it can then be modified in place only there).
ct_status ct_tensor_is_inference(ct_tensor t, bool *out) CT_NOEXCEPT;
ct_status ct_tensor_set_requires_grad(ct_tensor t, bool requires_grad) CT_NOEXCEPT;
/// The tensor's version counter (`tensor._version`: every in-place change bumps it, shared by views)
/// and the address of its first element on its device (never dereferenced here; `set_data` changes it
/// without bumping the version). Fails for an inference tensor, which has no version counter.
ct_status ct_tensor_version(ct_tensor t, int64_t *version, uintptr_t *address) CT_NOEXCEPT;
/// `out->ptr` is NULL when the tensor has no gradient.
ct_status ct_tensor_grad(ct_tensor t, ct_tensor *out) CT_NOEXCEPT;
ct_status ct_tensor_set_grad(ct_tensor t, ct_tensor grad) CT_NOEXCEPT;  // grad.ptr == NULL clears it
ct_status ct_tensor_is_leaf(ct_tensor t, bool *out) CT_NOEXCEPT;
/// `gradient.ptr` may be NULL for a scalar output.
ct_status ct_backward(ct_tensor t, ct_tensor gradient, bool retain_graph) CT_NOEXCEPT;

#ifdef __cplusplus
}
#endif
#endif  // CTORCH_H
