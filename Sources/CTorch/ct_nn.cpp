// Neural-network functions: convolution, pooling, normalisation, losses, resizing.
#include "ct_internal.h"

#include <ATen/ops/_upsample_bicubic2d_aa.h>
#include <ATen/ops/_upsample_bilinear2d_aa.h>
#include <ATen/ops/adaptive_avg_pool2d.h>
#include <ATen/ops/adaptive_max_pool2d.h>
#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/binary_cross_entropy_with_logits.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/upsample_bicubic2d.h>
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/upsample_nearest2d.h>

using namespace ctorch;

namespace {
int64_t reduction_code(int32_t r) {
  // at::Reduction::{None=0, Mean=1, Sum=2}; our codes are chosen to match.
  if (r < CT_REDUCTION_NONE || r > CT_REDUCTION_SUM) throw std::invalid_argument("unknown reduction code");
  return r;
}
}  // namespace

extern "C" {

ct_status ct_conv2d(ct_tensor x, ct_tensor w, ct_tensor b, const int64_t *stride, const int64_t *padding,
                    const int64_t *dilation, int64_t groups, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::conv2d(T(x), T(w), opt(b), dims(stride, 2), dims(padding, 2), dims(dilation, 2), groups)))
}
ct_status ct_max_pool2d(ct_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        const int64_t *dilation, bool ceil_mode, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::max_pool2d(T(x), dims(kernel, 2), dims(stride, 2), dims(padding, 2), dims(dilation, 2),
                                    ceil_mode)))
}
ct_status ct_avg_pool2d(ct_tensor x, const int64_t *kernel, const int64_t *stride, const int64_t *padding,
                        bool ceil_mode, bool count_include_pad, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::avg_pool2d(T(x), dims(kernel, 2), dims(stride, 2), dims(padding, 2), ceil_mode,
                                    count_include_pad)))
}
ct_status ct_adaptive_avg_pool2d(ct_tensor x, const int64_t *output_size, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::adaptive_avg_pool2d(T(x), dims(output_size, 2))))
}
ct_status ct_adaptive_max_pool2d(ct_tensor x, const int64_t *output_size, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(std::get<0>(at::adaptive_max_pool2d(T(x), dims(output_size, 2)))))
}
ct_status ct_batch_norm(ct_tensor x, ct_tensor w, ct_tensor b, ct_tensor rm, ct_tensor rv, bool training,
                        double momentum, double eps, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::batch_norm(T(x), opt(w), opt(b), opt(rm), opt(rv), training, momentum, eps,
                                    /*cudnn_enabled=*/true)))
}
ct_status ct_dropout(ct_tensor x, double p, bool training, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::dropout(T(x), p, training)))
}
ct_status ct_softmax(ct_tensor x, int64_t dim, ct_tensor *out) noexcept { CT_TRY(*out = wrap(at::softmax(T(x), dim))) }
ct_status ct_log_softmax(ct_tensor x, int64_t dim, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::log_softmax(T(x), dim)))
}
ct_status ct_cross_entropy(ct_tensor logits, ct_tensor target, ct_tensor weight, int32_t reduction,
                           int64_t ignore_index, double label_smoothing, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::cross_entropy_loss(T(logits), T(target), opt(weight), reduction_code(reduction),
                                            ignore_index, label_smoothing)))
}
ct_status ct_bce_with_logits(ct_tensor logits, ct_tensor target, ct_tensor weight, ct_tensor pos_weight,
                             int32_t reduction, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::binary_cross_entropy_with_logits(T(logits), T(target), opt(weight), opt(pos_weight),
                                                          reduction_code(reduction))))
}
ct_status ct_mse_loss(ct_tensor a, ct_tensor b, int32_t reduction, ct_tensor *out) noexcept {
  CT_TRY(*out = wrap(at::mse_loss(T(a), T(b), reduction_code(reduction))))
}
ct_status ct_interpolate(ct_tensor x, const int64_t *size, int32_t mode, bool align_corners, bool antialias,
                         ct_tensor *out) noexcept {
  CT_TRY(
      const at::Tensor &in = T(x);
      if (in.dim() != 4) throw std::invalid_argument("interpolate expects an NCHW tensor, got " +
                                                     std::to_string(in.dim()) + " dimensions");
      auto sz = dims(size, 2);
      at::Tensor r;
      switch (mode) {
        case CT_NEAREST: r = at::upsample_nearest2d(in, sz); break;
        case CT_BILINEAR:
          r = antialias ? at::_upsample_bilinear2d_aa(in, sz, align_corners)
                        : at::upsample_bilinear2d(in, sz, align_corners);
          break;
        case CT_BICUBIC:
          r = antialias ? at::_upsample_bicubic2d_aa(in, sz, align_corners)
                        : at::upsample_bicubic2d(in, sz, align_corners);
          break;
        default: throw std::invalid_argument("unknown interpolation mode " + std::to_string(mode));
      }
      *out = wrap(std::move(r)))
}

}  // extern "C"
