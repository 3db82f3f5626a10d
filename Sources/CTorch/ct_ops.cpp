// Shape, indexing, elementwise, in-place, reduction and linear-algebra entry points.
#include "ct_internal.h"

#include <ATen/ops/abs.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addcdiv.h>
#include <ATen/ops/addcmul.h>
#include <ATen/ops/allclose.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/amin.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/ceil.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/constant_pad_nd.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/div.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/floor.h>
#include <ATen/ops/gather.h>
#include <ATen/ops/ge.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/hardsigmoid.h>
#include <ATen/ops/hardswish.h>
#include <ATen/ops/hardtanh.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/le.h>
#include <ATen/ops/leaky_relu.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log.h>
#include <ATen/ops/log1p.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/neg.h>
#include <ATen/ops/norm.h>
#include <ATen/ops/one_hot.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/round.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sign.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/square.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/var.h>
#include <ATen/ops/where.h>

using namespace ctorch;

namespace {
std::vector<at::Tensor> tensor_list(const ct_tensor *ts, int32_t n) {
  std::vector<at::Tensor> v;
  v.reserve(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) v.push_back(T(ts[i]));
  return v;
}
c10::optional<at::Scalar> opt_scalar(double v, bool has) {
  return has ? c10::optional<at::Scalar>(at::Scalar(v)) : c10::nullopt;
}
/// `a <op> b` for a `ct_compare_op` code, `b` a tensor or a number (ct_compare, ct_compare_scalar).
template <typename Other>
at::Tensor compare(const at::Tensor &a, const Other &b, int32_t op) {
  switch (op) {
    case CT_EQ: return at::eq(a, b);
    case CT_NE: return at::ne(a, b);
    case CT_LT: return at::lt(a, b);
    case CT_LE: return at::le(a, b);
    case CT_GT: return at::gt(a, b);
    case CT_GE: return at::ge(a, b);
    default: throw std::invalid_argument("unknown comparison code " + std::to_string(op));
  }
}
}  // namespace

extern "C" {

// ------------------------------------------------------------------ shape & indexing
ct_status ct_reshape(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).reshape(dims(shape, ndim))))
}
ct_status ct_view(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).view(dims(shape, ndim))))
}
ct_status ct_permute(ct_tensor t, const int64_t *d, int32_t ndim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).permute(dims(d, ndim))))
}
ct_status ct_transpose(ct_tensor t, int64_t dim0, int64_t dim1, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).transpose(dim0, dim1)))
}
ct_status ct_flatten(ct_tensor t, int64_t start_dim, int64_t end_dim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).flatten(start_dim, end_dim)))
}
ct_status ct_squeeze(ct_tensor t, int64_t dim, ct_tensor *out) noexcept { CT_TRY(*out = wrap(T(t).squeeze(dim))) }
ct_status ct_unsqueeze(ct_tensor t, int64_t dim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).unsqueeze(dim)))
}
ct_status ct_expand(ct_tensor t, const int64_t *shape, int32_t ndim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).expand(dims(shape, ndim))))
}
ct_status ct_slice(ct_tensor t, int64_t dim, int64_t start, int64_t end, int64_t step, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).slice(dim, start, end, step)))
}
ct_status ct_select(ct_tensor t, int64_t dim, int64_t index, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(T(t).select(dim, index)))
}
ct_status ct_index_select(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::index_select(T(t), dim, T(index))))
}
ct_status ct_masked_select(ct_tensor t, ct_tensor mask, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::masked_select(T(t), T(mask))))
}
ct_status ct_gather(ct_tensor t, int64_t dim, ct_tensor index, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::gather(T(t), dim, T(index))))
}
ct_status ct_cat(const ct_tensor *ts, int32_t n, int64_t dim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::cat(tensor_list(ts, n), dim)))
}
ct_status ct_stack(const ct_tensor *ts, int32_t n, int64_t dim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::stack(tensor_list(ts, n), dim)))
}
ct_status ct_flip(ct_tensor t, const int64_t *d, int32_t ndim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::flip(T(t), dims(d, ndim))))
}
ct_status ct_constant_pad_nd(ct_tensor t, const int64_t *pad, int32_t npad, double value, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::constant_pad_nd(T(t), dims(pad, npad), value)))
}
ct_status ct_one_hot(ct_tensor t, int64_t num_classes, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::one_hot(T(t), num_classes)))
}

// ------------------------------------------------------------------ elementwise arithmetic
ct_status ct_add(ct_tensor a, ct_tensor b, double alpha, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::add(T(a), T(b), scalar_for(T(a), alpha))))
}
ct_status ct_sub(ct_tensor a, ct_tensor b, double alpha, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::sub(T(a), T(b), scalar_for(T(a), alpha))))
}
ct_status ct_mul(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::mul(T(a), T(b)))) }
ct_status ct_div(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::div(T(a), T(b)))) }
ct_status ct_add_scalar(ct_tensor a, double s, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::add(T(a), scalar_for(T(a), s)))) }
ct_status ct_mul_scalar(ct_tensor a, double s, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::mul(T(a), scalar_for(T(a), s)))) }
ct_status ct_div_scalar(ct_tensor a, double s, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::div(T(a), s))) }
ct_status ct_rsub_scalar(ct_tensor a, double s, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::rsub(T(a), scalar_for(T(a), s)))) }
ct_status ct_pow_scalar(ct_tensor a, double e, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::pow(T(a), e))) }
ct_status ct_pow(ct_tensor a, ct_tensor e, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::pow(T(a), T(e)))) }
ct_status ct_maximum(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::maximum(T(a), T(b))))
}
ct_status ct_minimum(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::minimum(T(a), T(b))))
}
ct_status ct_clamp(ct_tensor a, double min, double max, bool has_min, bool has_max, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::clamp(T(a), opt_scalar(min, has_min), opt_scalar(max, has_max))))
}
ct_status ct_where(ct_tensor cond, ct_tensor a, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::where(T(cond), T(a), T(b))))
}

ct_status ct_unary(ct_tensor a_, int32_t op, ct_tensor *out) noexcept {
  CT_TRY(
      const at::Tensor &a = T(a_);
      at::Tensor r;
      switch (op) {
        case CT_NEG: r = at::neg(a); break;
        case CT_ABS: r = at::abs(a); break;
        case CT_SQRT: r = at::sqrt(a); break;
        case CT_RSQRT: r = at::rsqrt(a); break;
        case CT_EXP: r = at::exp(a); break;
        case CT_LOG: r = at::log(a); break;
        case CT_SIN: r = at::sin(a); break;
        case CT_COS: r = at::cos(a); break;
        case CT_TANH: r = at::tanh(a); break;
        case CT_SIGMOID: r = at::sigmoid(a); break;
        case CT_RELU: r = at::relu(a); break;
        // LibTorch 1.13's CPU hardtanh_backward has no bfloat16 kernel (bf16 autocast training of
        // MobileNetV2 failed with it); clamp has the same forward and differentiates for bf16.
        case CT_RELU6: r = a.scalar_type() == at::kBFloat16 ? at::clamp(a, 0.0, 6.0) : at::hardtanh(a, 0.0, 6.0); break;
        case CT_SILU: r = at::silu(a); break;
        case CT_GELU: r = at::gelu(a); break;
        case CT_GELU_TANH: r = at::gelu(a, "tanh"); break;
        case CT_HARDSWISH: r = at::hardswish(a); break;
        case CT_HARDSIGMOID: r = at::hardsigmoid(a); break;
        case CT_SIGN: r = at::sign(a); break;
        case CT_FLOOR: r = at::floor(a); break;
        case CT_CEIL: r = at::ceil(a); break;
        case CT_ROUND: r = at::round(a); break;
        case CT_LOGICAL_NOT: r = at::logical_not(a); break;
        case CT_RECIPROCAL: r = at::reciprocal(a); break;
        case CT_SQUARE: r = at::square(a); break;
        case CT_LOG1P: r = at::log1p(a); break;
        case CT_ISNAN: r = at::isnan(a); break;
        case CT_ISFINITE: r = at::isfinite(a); break;
        default: throw std::invalid_argument("unknown unary op code " + std::to_string(op));
      }
      *out = wrap(std::move(r)))
}
ct_status ct_leaky_relu(ct_tensor a, double slope, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::leaky_relu(T(a), slope)))
}

ct_status ct_compare(ct_tensor a, ct_tensor b, int32_t op, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(compare(T(a), T(b), op)))
}
ct_status ct_compare_scalar(ct_tensor a, double s, int32_t op, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(compare(T(a), s, op)))
}
ct_status ct_logical_and(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::logical_and(T(a), T(b))))
}
ct_status ct_logical_or(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::logical_or(T(a), T(b))))
}
ct_status ct_allclose(ct_tensor a, ct_tensor b, double rtol, double atol, bool *out) noexcept {
  CT_TRY(*out = at::allclose(T(a), T(b), rtol, atol))
}

// ------------------------------------------------------------------ in-place updates
ct_status ct_add_(ct_tensor self, ct_tensor other, double alpha) noexcept { CT_TRY(T(self).add_(T(other), scalar_for(T(self), alpha))) }
ct_status ct_add_scalar_(ct_tensor self, double s) noexcept { CT_TRY(T(self).add_(scalar_for(T(self), s))) }
ct_status ct_sub_(ct_tensor self, ct_tensor other, double alpha) noexcept { CT_TRY(T(self).sub_(T(other), scalar_for(T(self), alpha))) }
ct_status ct_mul_(ct_tensor self, ct_tensor other) noexcept { CT_TRY(T(self).mul_(T(other))) }
ct_status ct_mul_scalar_(ct_tensor self, double s) noexcept { CT_TRY(T(self).mul_(scalar_for(T(self), s))) }
ct_status ct_div_(ct_tensor self, ct_tensor other) noexcept { CT_TRY(T(self).div_(T(other))) }
ct_status ct_div_scalar_(ct_tensor self, double s) noexcept { CT_TRY(T(self).div_(s)) }
ct_status ct_addcmul_(ct_tensor self, ct_tensor t1, ct_tensor t2, double value) noexcept {
  CT_TRY(T(self).addcmul_(T(t1), T(t2), value))
}
ct_status ct_addcdiv_(ct_tensor self, ct_tensor t1, ct_tensor t2, double value) noexcept {
  CT_TRY(T(self).addcdiv_(T(t1), T(t2), value))
}
ct_status ct_lerp_(ct_tensor self, ct_tensor end, double weight) noexcept { CT_TRY(T(self).lerp_(T(end), weight)) }
ct_status ct_sqrt_(ct_tensor self) noexcept { CT_TRY(T(self).sqrt_()) }
ct_status ct_clamp_(ct_tensor self, double min, double max, bool has_min, bool has_max) noexcept {
  CT_TRY(T(self).clamp_(opt_scalar(min, has_min), opt_scalar(max, has_max)))
}
ct_status ct_maximum_out(ct_tensor a, ct_tensor b, ct_tensor out) noexcept {
  CT_TRY(at::maximum_out(T(out), T(a), T(b)))
}

// ------------------------------------------------------------------ reductions & linear algebra
ct_status ct_sum(ct_tensor t, const int64_t *d, int32_t nd, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(nd == 0 ? at::sum(T(t)) : at::sum(T(t), dims(d, nd), keepdim)))
}
ct_status ct_mean(ct_tensor t, const int64_t *d, int32_t nd, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(nd == 0 ? at::mean(T(t)) : at::mean(T(t), dims(d, nd), keepdim)))
}
ct_status ct_var(ct_tensor t, const int64_t *d, int32_t nd, bool unbiased, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(nd == 0 ? at::var(T(t), unbiased) : at::var(T(t), dims(d, nd), unbiased, keepdim)))
}
ct_status ct_amax(ct_tensor t, const int64_t *d, int32_t nd, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::amax(T(t), dims(d, nd), keepdim)))
}
ct_status ct_amin(ct_tensor t, const int64_t *d, int32_t nd, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::amin(T(t), dims(d, nd), keepdim)))
}
ct_status ct_norm(ct_tensor t, double p, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::norm(T(t), p))) }
ct_status ct_argmax(ct_tensor t, int64_t dim, bool keepdim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::argmax(T(t), dim, keepdim)))
}
ct_status ct_topk(ct_tensor t, int64_t k, int64_t dim, bool largest, bool sorted, ct_tensor *values,
                  ct_tensor *indices) noexcept {
  CT_TRY(auto r = at::topk(T(t), k, dim, largest, sorted); *values = wrap(std::move(std::get<0>(r)));
         *indices = wrap(std::move(std::get<1>(r))))
}
ct_status ct_sort(ct_tensor t, int64_t dim, bool descending, ct_tensor *values, ct_tensor *indices) noexcept {
  CT_TRY(auto r = at::sort(T(t), dim, descending); *values = wrap(std::move(std::get<0>(r)));
         *indices = wrap(std::move(std::get<1>(r))))
}
ct_status ct_cumsum(ct_tensor t, int64_t dim, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::cumsum(T(t), dim))) }
ct_status ct_matmul(ct_tensor a, ct_tensor b, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::matmul(T(a), T(b)))) }
ct_status ct_linear(ct_tensor x, ct_tensor w, ct_tensor b, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::linear(T(x), T(w), opt(b))))
}

}  // extern "C"
