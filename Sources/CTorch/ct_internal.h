// Internal helpers shared by the shim's translation units. Never included from Swift.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>
#include <c10/core/Device.h>
#include <c10/util/Optional.h>

#include <exception>
#include <string>
#include <vector>

#include "ctorch.h"

namespace ctorch {

/// Stores `message` as this thread's last error. It takes the C string, not a `std::string`: building
/// one in a `catch` block allocates, and a `bad_alloc` there escaped the `noexcept` entry point and
/// ended the process (`terminate`).
void set_error(const char *message) noexcept;

inline at::Tensor &T(ct_tensor t) { return *static_cast<at::Tensor *>(t.ptr); }

inline ct_tensor wrap(at::Tensor &&t) { return ct_tensor{new at::Tensor(std::move(t))}; }

/// An optional tensor argument: NULL handle means "not given".
inline c10::optional<at::Tensor> opt(ct_tensor t) {
  if (t.ptr == nullptr) return c10::nullopt;
  return T(t);
}

/// Undefined tensor for NULL, else the tensor (for APIs that take `const Tensor&` maybe-undefined).
inline at::Tensor or_undefined(ct_tensor t) { return t.ptr == nullptr ? at::Tensor() : T(t); }

at::ScalarType to_scalar_type(int32_t dtype);
int32_t from_scalar_type(at::ScalarType st);
c10::Device to_device(ct_device d);
ct_device from_device(const c10::Device &d);

/// A Scalar for `v` suited to `t`: integral tensors get an integer Scalar when `v` is whole,
/// because LibTorch rejects floating `alpha`/scalars on integral tensors.
inline at::Scalar scalar_for(const at::Tensor &t, double v) {
  if (!c10::isFloatingType(t.scalar_type()) && !c10::isComplexType(t.scalar_type()) &&
      v == static_cast<double>(static_cast<int64_t>(v))) {
    return at::Scalar(static_cast<int64_t>(v));
  }
  return at::Scalar(v);
}

inline at::IntArrayRef dims(const int64_t *p, int32_t n) { return at::IntArrayRef(p, static_cast<size_t>(n)); }

}  // namespace ctorch

/// Wraps an entry-point body: success returns CT_OK; any exception is stored and CT_ERROR returned.
#define CT_TRY(...)                                                        \
  try {                                                                    \
    __VA_ARGS__;                                                           \
    return CT_OK;                                                          \
  } catch (const c10::Error &e) {                                          \
    /* LibTorch's message without its C++ stack frames */                  \
    ::ctorch::set_error(e.what_without_backtrace());                       \
    return CT_ERROR;                                                       \
  } catch (const std::exception &e) {                                      \
    ::ctorch::set_error(e.what());                                         \
    return CT_ERROR;                                                       \
  } catch (...) {                                                          \
    ::ctorch::set_error("unknown C++ exception in LibTorch");              \
    return CT_ERROR;                                                       \
  }

/// A unary entry point `name(ct_tensor, ct_tensor*)` calling `expr` with `a` bound.
#define CT_UNARY_FN(name, expr)                                            \
  ct_status name(ct_tensor a_, ct_tensor *out) noexcept {                  \
    CT_TRY(const at::Tensor &a = ctorch::T(a_); *out = ctorch::wrap(expr)) \
  }
