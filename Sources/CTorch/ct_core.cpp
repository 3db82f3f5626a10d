// Errors, runtime settings, creation, metadata, conversion and autograd entry points.
#include "ct_internal.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/grad_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/core/InferenceMode.h>

#include <dlfcn.h>
#include <unistd.h>
#include <torch/version.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <sstream>

// Intel MKL, which PyTorch's x86 wheels link (Debian's LibTorch uses OpenBLAS), may round a matrix
// product differently from one process to the next: its conditional numerical reproducibility is off by
// default, and a resumed run then trained on other weights than the uninterrupted one (on a 2-core Intel
// Xeon under torch 2.13, 2 of 11 KillCampaignTests campaigns at the default precision and 4 of 8 at fp32
// ended on a different head; 0 of 12 at fp32 with MKL_CBWR set). AUTO,STRICT keeps MKL's fastest code
// path for the CPU and makes it bitwise reproducible. Set when this library loads, before MKL's first
// call reads it, for every program that links the shim (the CLI, servers, library users); a value the
// user set is left alone. No measured cost (docs/benchmarks.md).
__attribute__((constructor)) static void ct_require_reproducible_mkl() { setenv("MKL_CBWR", "AUTO,STRICT", 0); }

namespace ctorch {

static thread_local std::string last_error;
/// Set when the last message could not be stored (out of memory): `ct_last_error` says so instead of
/// returning an earlier, unrelated message.
static thread_local bool last_error_lost = false;

void set_error(const char *message) noexcept {
  try {
    last_error.assign(message);
    last_error_lost = false;
  } catch (...) {
    last_error_lost = true;
  }
}

at::ScalarType to_scalar_type(int32_t dtype) {
  switch (dtype) {
    case CT_FLOAT32: return at::kFloat;
    case CT_FLOAT64: return at::kDouble;
    case CT_FLOAT16: return at::kHalf;
    case CT_BFLOAT16: return at::kBFloat16;
    case CT_INT64: return at::kLong;
    case CT_INT32: return at::kInt;
    case CT_UINT8: return at::kByte;
    case CT_INT8: return at::kChar;
    case CT_BOOL: return at::kBool;
    case CT_INT16: return at::kShort;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(dtype));
}

int32_t from_scalar_type(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return CT_FLOAT32;
    case at::kDouble: return CT_FLOAT64;
    case at::kHalf: return CT_FLOAT16;
    case at::kBFloat16: return CT_BFLOAT16;
    case at::kLong: return CT_INT64;
    case at::kInt: return CT_INT32;
    case at::kByte: return CT_UINT8;
    case at::kChar: return CT_INT8;
    case at::kBool: return CT_BOOL;
    case at::kShort: return CT_INT16;
    default: break;
  }
  throw std::invalid_argument(std::string("unsupported dtype ") + c10::toString(st));
}

// The shim links libtorch_cpu and libc10 only, so that one binary runs on any LibTorch build. A CUDA
// build keeps its GPU kernels and the CUDA hooks in libtorch_cuda.so, which registers them when it is
// loaded; nothing would load it, and `at::hasCUDA()` would say false on a GPU machine. So the first
// question about CUDA loads it, from the directory the linked libtorch_cpu came from (never another
// LibTorch's), if it is there. CPU-only builds have no such file and stay CPU-only.
static void load_cuda_backend() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (at::hasCUDA()) return;
    Dl_info info{};
    if (dladdr(reinterpret_cast<void *>(&at::set_num_threads), &info) == 0 || info.dli_fname == nullptr) return;
    std::string dir(info.dli_fname);
    const auto slash = dir.rfind('/');
    if (slash == std::string::npos) return;
    dir.resize(slash + 1);
    for (const char *name : {"libtorch_cuda.so", "libtorch_cuda.dylib"}) {
      const std::string path = dir + name;
      if (access(path.c_str(), R_OK) == 0 && dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return;
    }
  });
}

c10::Device to_device(ct_device d) {
  const auto index = static_cast<c10::DeviceIndex>(d.index);
  switch (d.type) {
    case CT_CPU: return c10::Device(c10::DeviceType::CPU);
    case CT_CUDA: load_cuda_backend(); return c10::Device(c10::DeviceType::CUDA, index);
    case CT_MPS: return c10::Device(c10::DeviceType::MPS, index);
  }
  throw std::invalid_argument("unknown device type code " + std::to_string(d.type));
}

ct_device from_device(const c10::Device &d) {
  ct_device out{CT_CPU, static_cast<int32_t>(d.index())};
  if (d.is_cuda()) out.type = CT_CUDA;
  else if (d.is_mps()) out.type = CT_MPS;
  else if (!d.is_cpu()) throw std::invalid_argument("unsupported device " + d.str());
  return out;
}

static at::TensorOptions options(int32_t dtype, ct_device device) {
  return at::TensorOptions().dtype(to_scalar_type(dtype)).device(to_device(device));
}

}  // namespace ctorch

using namespace ctorch;

// LibTorch picks its CPU kernels (AVX2 or AVX-512) once, at the first operation, from the
// ATEN_CPU_CAPABILITY variable or else from cpuinfo. Debian's LibTorch 1.13 is built with AVX-512
// kernels and uses Debian's cpuinfo of 2022, yet on an AMD Zen 4 with AVX-512 it picks its AVX2
// kernels, where a torch 2.13 wheel (with its own, newer cpuinfo) picks AVX-512 ones; its bf16
// elementwise kernels then take up to 1.8x as long (docs/benchmarks.md). On LibTorch 1.x this applies
// 2.x's rule (AVX-512 F, VL, BW, DQ and FMA, as the CPU and the OS report them) before any operation,
// unless the variable is already set. The variable stays set, so child processes choose alike.
#if CTORCH_LIBTORCH_MAJOR < 2 && defined(__x86_64__) && defined(__linux__)
__attribute__((constructor)) static void ct_choose_cpu_kernels() {
  if (getenv("ATEN_CPU_CAPABILITY") != nullptr) return;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma")) {
    setenv("ATEN_CPU_CAPABILITY", "avx512", 0);
  }
}
#endif

extern "C" {

// ------------------------------------------------------------------ errors & runtime
const char *ct_last_error(void) noexcept {
  return last_error_lost ? "out of memory (LibTorch's message could not be stored)" : last_error.c_str();
}
void ct_clear_error(void) noexcept {
  last_error.clear();
  last_error_lost = false;
}
const char *ct_version(void) noexcept { return TORCH_VERSION; }

ct_status ct_manual_seed(uint64_t seed) noexcept { CT_TRY(at::manual_seed(seed)) }
ct_status ct_set_num_threads(int32_t n) noexcept {
  CT_TRY(if (n < 1) throw std::invalid_argument("thread count must be at least 1, got " + std::to_string(n));
         at::set_num_threads(n))
}
ct_status ct_cpu_capability(char **out) noexcept {
  CT_TRY(const std::string config = at::show_config();
         const std::string label = "CPU capability usage: ";
         const auto start = config.find(label);
         std::string value = "unknown";
         if (start != std::string::npos) {
           const auto from = start + label.size();
           value = config.substr(from, config.find('\n', from) - from);
         }
         *out = strdup(value.c_str()))
}
int32_t ct_get_num_threads(void) noexcept {
  try { return at::get_num_threads(); } catch (...) { return 1; }
}
bool ct_retain_freed_memory(void) noexcept {
#if defined(__GLIBC__)
  // glibc serves every block above 32 MB with its own mmap and unmaps it on free, and trims the
  // heap top above 128 KB: a training step then page-faults its activations in afresh each time.
  const bool noMmap = mallopt(M_MMAP_MAX, 0) == 1;
  const bool noTrim = mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
  // Any thread but the main one allocates from an arena of its own, whose heaps glibc caps at 64 MB:
  // a larger block there (a batch's activations on a server's inference thread) is mmapped whatever
  // M_MMAP_MAX says, and unmapped on free. With one arena every thread allocates from the main heap.
  // Small blocks come from each thread's tcache first, without the arena's lock.
  const bool oneArena = mallopt(M_ARENA_MAX, 1) == 1;
  return noMmap && noTrim && oneArena;
#else
  return false;
#endif
}
bool ct_cuda_is_available(void) noexcept {
  try { load_cuda_backend(); return at::hasCUDA() && at::detail::getCUDAHooks().getNumGPUs() > 0; } catch (...) { return false; }
}
int32_t ct_cuda_device_count(void) noexcept {
  try { load_cuda_backend(); return at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0; } catch (...) { return 0; }
}
bool ct_mps_is_available(void) noexcept {
  try { return at::hasMPS(); } catch (...) { return false; }
}
ct_status ct_cpu_rng_get_state(ct_tensor *out) noexcept {
  CT_TRY(auto gen = at::detail::getDefaultCPUGenerator(); std::lock_guard<std::mutex> lock(gen.mutex());
         *out = wrap(gen.get_state()))
}
ct_status ct_cpu_rng_set_state(ct_tensor state) noexcept {
  CT_TRY(auto gen = at::detail::getDefaultCPUGenerator(); std::lock_guard<std::mutex> lock(gen.mutex());
         gen.set_state(T(state)))
}

// ------------------------------------------------------------------ autograd mode
bool ct_is_grad_enabled(void) noexcept { return at::GradMode::is_enabled(); }
void ct_set_grad_enabled(bool enabled) noexcept { at::GradMode::set_enabled(enabled); }
ct_status ct_inference_mode_enter(ct_inference_guard *out) noexcept {
  CT_TRY(out->ptr = new c10::InferenceMode(true))
}
void ct_inference_mode_exit(ct_inference_guard guard) noexcept {
  delete static_cast<c10::InferenceMode *>(guard.ptr);
}
bool ct_is_inference_mode_enabled(void) noexcept { return c10::InferenceMode::is_enabled(); }

ct_status ct_autocast_set_cpu(bool enabled, int32_t dtype) noexcept {
  CT_TRY(
#if CTORCH_LIBTORCH_MAJOR >= 2
      at::autocast::set_autocast_enabled(at::kCPU, enabled);
      at::autocast::set_autocast_dtype(at::kCPU, to_scalar_type(dtype))
#else
      at::autocast::set_cpu_enabled(enabled);
      at::autocast::set_autocast_cpu_dtype(to_scalar_type(dtype))
#endif
  )
}
int32_t ct_autocast_cpu_dtype(void) noexcept {
  try {
#if CTORCH_LIBTORCH_MAJOR >= 2
    return from_scalar_type(at::autocast::get_autocast_dtype(at::kCPU));
#else
    return from_scalar_type(at::autocast::get_autocast_cpu_dtype());
#endif
  } catch (...) { return -1; }
}
bool ct_autocast_is_cpu_enabled(void) noexcept {
#if CTORCH_LIBTORCH_MAJOR >= 2
  return at::autocast::is_autocast_enabled(at::kCPU);
#else
  return at::autocast::is_cpu_enabled();
#endif
}
void ct_autocast_clear_cache(void) noexcept {
  try { at::autocast::clear_cache(); } catch (...) {}
}

// ------------------------------------------------------------------ lifetime & creation
void ct_tensor_free(ct_tensor t) noexcept { delete static_cast<at::Tensor *>(t.ptr); }

ct_status ct_tensor_from_data(const void *data, size_t nbytes, const int64_t *shape, int32_t ndim, int32_t dtype,
                              ct_tensor *out) noexcept {
  CT_TRY(
      at::Tensor t = at::empty(dims(shape, ndim), at::TensorOptions().dtype(to_scalar_type(dtype)));
      const size_t expected = static_cast<size_t>(t.numel()) * t.element_size();
      if (expected != nbytes) {
        throw std::invalid_argument("buffer holds " + std::to_string(nbytes) + " bytes but shape " +
                                    c10::str(t.sizes()) + " needs " + std::to_string(expected));
      }
      if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
      *out = wrap(std::move(t)))
}

// The checks from_blob's storage-size computation does not make in a way the shim can catch: LibTorch
// 1.13's TensorMaker::computeStorageSize() is noexcept, so a negative stride, or a shape whose extent
// overflows, terminated the process instead of throwing.
static void check_blob_layout(const int64_t *shape, const int64_t *strides, int32_t ndim) {
  if (ndim < 0) throw std::invalid_argument("negative dimension count " + std::to_string(ndim));
  int64_t extent = 1;  // elements the layout spans: 1 + sum((size - 1) * stride), or with a size 0, none
  bool empty = false;
  for (int32_t i = 0; i < ndim; i++) {
    if (shape[i] < 0) throw std::invalid_argument("negative size " + std::to_string(shape[i]) + " in dimension " + std::to_string(i));
    if (strides && strides[i] < 0)
      throw std::invalid_argument("negative stride " + std::to_string(strides[i]) + " in dimension " + std::to_string(i) +
                                  ": wrapped memory needs strides of 0 or more");
    if (shape[i] == 0) empty = true;
  }
  if (empty) return;
  int64_t contiguous = 1;
  for (int32_t i = ndim - 1; i >= 0; i--) {
    int64_t stride = strides ? strides[i] : contiguous, step = 0;
    if (__builtin_mul_overflow(shape[i] - 1, stride, &step) || __builtin_add_overflow(extent, step, &extent) ||
        (!strides && __builtin_mul_overflow(contiguous, shape[i], &contiguous)))
      throw std::invalid_argument("the shape and strides span more elements than an int64 counts");
  }
  if (extent > INT64_MAX / 16) throw std::invalid_argument("the shape and strides span more bytes than an int64 counts");
}

ct_status ct_tensor_from_blob(void *data, const int64_t *shape, const int64_t *strides, int32_t ndim,
                              int32_t dtype, void (*deleter)(void *ctx), void *ctx, ct_tensor *out) noexcept {
  CT_TRY(
      check_blob_layout(shape, strides, ndim);
      auto opts = at::TensorOptions().dtype(to_scalar_type(dtype));
      auto del = [deleter, ctx](void *) { if (deleter) deleter(ctx); };
      at::Tensor t = strides ? at::from_blob(data, dims(shape, ndim), dims(strides, ndim), del, opts)
                             : at::from_blob(data, dims(shape, ndim), del, opts);
      *out = wrap(std::move(t)))
}

// The factories of one shape, dtype and device: `name(shape, ndim, dtype, device, out)` calls the ATen
// factory `fn(sizes, options)`.
#define CT_SHAPED_FACTORY(name, fn)                                                                \
  ct_status name(const int64_t *shape, int32_t ndim, int32_t dtype, ct_device device,              \
                 ct_tensor *out) noexcept {                                                        \
    CT_TRY(*out = wrap(fn(dims(shape, ndim), options(dtype, device))))                             \
  }
CT_SHAPED_FACTORY(ct_tensor_empty, at::empty)
CT_SHAPED_FACTORY(ct_tensor_zeros, at::zeros)
CT_SHAPED_FACTORY(ct_tensor_ones, at::ones)
CT_SHAPED_FACTORY(ct_tensor_rand, at::rand)
CT_SHAPED_FACTORY(ct_tensor_randn, at::randn)
#undef CT_SHAPED_FACTORY

ct_status ct_tensor_full(const int64_t *shape, int32_t ndim, double value, int32_t dtype, ct_device device,
                         ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::full(dims(shape, ndim), value, options(dtype, device))))
}
ct_status ct_tensor_arange(double start, double end, double step, int32_t dtype, ct_device device,
                           ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::arange(start, end, step, options(dtype, device))))
}
ct_status ct_tensor_randperm(int64_t n, ct_device device, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::randperm(n, options(CT_INT64, device))))
}
ct_status ct_tensor_scalar(double value, int32_t dtype, ct_device device, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::scalar_tensor(value, options(dtype, device))))
}

// ------------------------------------------------------------------ metadata & data access
ct_status ct_tensor_dim(ct_tensor t, int32_t *out) noexcept { CT_TRY(*out = static_cast<int32_t>(T(t).dim())) }

ct_status ct_tensor_sizes(ct_tensor t, int64_t *out, int32_t cap, int32_t *ndim) noexcept {
  CT_TRY(auto s = T(t).sizes(); *ndim = static_cast<int32_t>(s.size());
         for (int32_t i = 0; i < *ndim && i < cap; ++i) out[i] = s[i])
}
ct_status ct_tensor_strides(ct_tensor t, int64_t *out, int32_t cap, int32_t *ndim) noexcept {
  CT_TRY(auto s = T(t).strides(); *ndim = static_cast<int32_t>(s.size());
         for (int32_t i = 0; i < *ndim && i < cap; ++i) out[i] = s[i])
}
ct_status ct_tensor_numel(ct_tensor t, int64_t *out) noexcept { CT_TRY(*out = T(t).numel()) }
ct_status ct_tensor_dtype(ct_tensor t, int32_t *out) noexcept { CT_TRY(*out = from_scalar_type(T(t).scalar_type())) }
ct_status ct_tensor_device(ct_tensor t, ct_device *out) noexcept { CT_TRY(*out = from_device(T(t).device())) }
ct_status ct_tensor_is_contiguous(ct_tensor t, int32_t memory_format, bool *out) noexcept {
  CT_TRY(*out = T(t).is_contiguous(memory_format == CT_CHANNELS_LAST ? at::MemoryFormat::ChannelsLast
                                                                    : at::MemoryFormat::Contiguous))
}
ct_status ct_tensor_defined(ct_tensor t, bool *out) noexcept { CT_TRY(*out = t.ptr != nullptr && T(t).defined()) }

ct_status ct_tensor_copy_to_buffer(ct_tensor t, void *dst, size_t nbytes) noexcept {
  CT_TRY(
      at::Tensor src = T(t).detach().to(at::kCPU).contiguous();
      const size_t have = static_cast<size_t>(src.numel()) * src.element_size();
      if (have != nbytes) {
        throw std::invalid_argument("destination holds " + std::to_string(nbytes) + " bytes but the tensor has " +
                                    std::to_string(have));
      }
      if (nbytes > 0) std::memcpy(dst, src.data_ptr(), nbytes))
}
ct_status ct_tensor_data_ptr(ct_tensor t, void **out) noexcept {
  CT_TRY(if (!T(t).device().is_cpu()) throw std::invalid_argument("data_ptr needs a CPU tensor");
         *out = T(t).data_ptr())
}
ct_status ct_tensor_item_double(ct_tensor t, double *out) noexcept { CT_TRY(*out = T(t).item<double>()) }
ct_status ct_tensor_item_int64(ct_tensor t, int64_t *out) noexcept { CT_TRY(*out = T(t).item<int64_t>()) }
ct_status ct_tensor_to_string(ct_tensor t, char **out) noexcept {
  CT_TRY(std::ostringstream s; s << T(t); *out = strdup(s.str().c_str()))
}
void ct_string_free(char *s) noexcept { free(s); }

// ------------------------------------------------------------------ conversion & copies
ct_status ct_tensor_to(ct_tensor t, int32_t dtype, ct_device device, bool copy, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).to(to_device(device), to_scalar_type(dtype), /*non_blocking=*/false, copy)))
}
ct_status ct_tensor_contiguous(ct_tensor t, int32_t memory_format, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).contiguous(memory_format == CT_CHANNELS_LAST ? at::MemoryFormat::ChannelsLast
                                                                       : at::MemoryFormat::Contiguous)))
}
ct_status ct_tensor_clone(ct_tensor t, ct_tensor *out) noexcept { CT_TRY(*out = wrap(T(t).clone())) }
ct_status ct_tensor_detach(ct_tensor t, ct_tensor *out) noexcept { CT_TRY(*out = wrap(T(t).detach())) }
ct_status ct_tensor_shallow_clone(ct_tensor t, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::Tensor(T(t)))) }
ct_status ct_tensor_copy_(ct_tensor self, ct_tensor src) noexcept { CT_TRY(T(self).copy_(T(src))) }
ct_status ct_tensor_set_data(ct_tensor self, ct_tensor new_data) noexcept { CT_TRY(T(self).set_data(T(new_data))) }
ct_status ct_tensor_zero_(ct_tensor self) noexcept { CT_TRY(T(self).zero_()) }
ct_status ct_tensor_fill_(ct_tensor self, double value) noexcept { CT_TRY(T(self).fill_(value)) }
ct_status ct_tensor_uniform_(ct_tensor self, double low, double high) noexcept { CT_TRY(T(self).uniform_(low, high)) }
ct_status ct_tensor_normal_(ct_tensor self, double mean, double std) noexcept { CT_TRY(T(self).normal_(mean, std)) }
ct_status ct_tensor_bernoulli_(ct_tensor self, double p) noexcept { CT_TRY(T(self).bernoulli_(p)) }

// ------------------------------------------------------------------ autograd
ct_status ct_tensor_requires_grad(ct_tensor t, bool *out) noexcept { CT_TRY(*out = T(t).requires_grad()) }
ct_status ct_tensor_is_inference(ct_tensor t, bool *out) noexcept { CT_TRY(*out = T(t).is_inference()) }
ct_status ct_tensor_version(ct_tensor t, int64_t *version, uintptr_t *address) noexcept {
  CT_TRY(*version = static_cast<int64_t>(T(t)._version());
         *address = reinterpret_cast<uintptr_t>(T(t).has_storage() ? T(t).data_ptr() : nullptr))
}
ct_status ct_tensor_set_requires_grad(ct_tensor t, bool requires_grad) noexcept {
  CT_TRY(T(t).requires_grad_(requires_grad))
}
ct_status ct_tensor_grad(ct_tensor t, ct_tensor *out) noexcept {
  CT_TRY(const at::Tensor &g = T(t).grad(); out->ptr = g.defined() ? new at::Tensor(g) : nullptr)
}
ct_status ct_tensor_set_grad(ct_tensor t, ct_tensor grad) noexcept {
  CT_TRY(T(t).mutable_grad() = grad.ptr ? T(grad) : at::Tensor())
}
ct_status ct_tensor_is_leaf(ct_tensor t, bool *out) noexcept { CT_TRY(*out = T(t).is_leaf()) }
ct_status ct_backward(ct_tensor t, ct_tensor gradient, bool retain_graph) noexcept {
  CT_TRY(T(t).backward(or_undefined(gradient), retain_graph))
}

}  // extern "C"
