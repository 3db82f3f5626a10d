// PIL-compatible resampling. The algorithm follows Pillow's documented convolution resampler:
// per output pixel a filter window scaled by the downsampling factor (antialiasing), normalised
// weights converted to fixed point with 22 fractional bits, a horizontal pass into an 8-bit
// intermediate, then a vertical pass.
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)

static double bilinear(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

static double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

static inline uint8_t clip8(int v) {
  if (v >= (1 << PRECISION_BITS << 8)) return 255;
  if (v <= 0) return 0;
  return (uint8_t)(v >> PRECISION_BITS);
}

/// Window bounds (start, count) per output index and fixed-point weights (ksize per output).
static int coefficients(int in_size, int out_size, int filter, int **bounds_out, int **kk_out) {
  double (*f)(double) = filter == IC_FILTER_BICUBIC ? bicubic : bilinear;
  double support = filter == IC_FILTER_BICUBIC ? 2.0 : 1.0;
  double scale = (double)in_size / out_size;
  double filterscale = scale < 1.0 ? 1.0 : scale;
  support *= filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  double *w = malloc(sizeof(double) * (size_t)ksize);
  int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
  int *kk = malloc(sizeof(int) * (size_t)ksize * (size_t)out_size);
  if (!w || !bounds || !kk) {
    free(w); free(bounds); free(kk);
    return -1;
  }
  for (int xx = 0; xx < out_size; xx++) {
    double center = (xx + 0.5) * scale;
    double ss = 1.0 / filterscale, total = 0.0;
    int xmin = (int)(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = (int)(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    for (int x = 0; x < xmax; x++) {
      w[x] = f((x + xmin - center + 0.5) * ss);
      total += w[x];
    }
    int *k = &kk[xx * ksize];
    for (int x = 0; x < ksize; x++) {
      double v = x < xmax && total != 0.0 ? w[x] / total : 0.0;
      k[x] = v < 0 ? (int)(-0.5 + v * (1 << PRECISION_BITS)) : (int)(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  free(w);
  *bounds_out = bounds;
  *kk_out = kk;
  return ksize;
}

int ic_resize_u8(const uint8_t *in, int in_w, int in_h, int channels, uint8_t *out, int out_w, int out_h,
                 int filter) {
  if (!in || !out || in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0 || channels <= 0 || channels > 4) return 1;
  const size_t c = (size_t)channels;
  int *hb = NULL, *hk = NULL, *vb = NULL, *vk = NULL;
  int hks = coefficients(in_w, out_w, filter, &hb, &hk);
  int vks = coefficients(in_h, out_h, filter, &vb, &vk);
  if (hks < 0 || vks < 0) {
    free(hb); free(hk); free(vb); free(vk);
    return 2;
  }
  const int need_h = out_w != in_w, need_v = out_h != in_h;
  // Rows the vertical pass reads: only those are resampled horizontally.
  int first = need_v ? vb[0] : 0;
  int last = need_v ? vb[(out_h - 1) * 2] + vb[(out_h - 1) * 2 + 1] : in_h;
  const uint8_t *src = in;
  int src_h = in_h, row_offset = 0;
  uint8_t *tmp = NULL;
  if (need_h) {
    int rows = last - first;
    tmp = malloc((size_t)out_w * (size_t)rows * c);
    if (!tmp) {
      free(hb); free(hk); free(vb); free(vk);
      return 2;
    }
    for (int y = 0; y < rows; y++) {
      const uint8_t *line = in + (size_t)(y + first) * (size_t)in_w * c;
      uint8_t *dst = tmp + (size_t)y * (size_t)out_w * c;
      for (int xx = 0; xx < out_w; xx++) {
        int xmin = hb[xx * 2], xmax = hb[xx * 2 + 1];
        const int *k = &hk[xx * hks];
        for (size_t ch = 0; ch < c; ch++) {
          int ss = 1 << (PRECISION_BITS - 1);
          for (int x = 0; x < xmax; x++) ss += line[(size_t)(x + xmin) * c + ch] * k[x];
          dst[(size_t)xx * c + ch] = clip8(ss);
        }
      }
    }
    src = tmp;
    src_h = rows;
    row_offset = first;
  }
  const int src_w = need_h ? out_w : in_w;
  if (need_v) {
    for (int yy = 0; yy < out_h; yy++) {
      int ymin = vb[yy * 2] - row_offset, ymax = vb[yy * 2 + 1];
      const int *k = &vk[yy * vks];
      uint8_t *dst = out + (size_t)yy * (size_t)out_w * c;
      for (size_t i = 0; i < (size_t)out_w * c; i++) {
        int ss = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) ss += src[(size_t)(y + ymin) * (size_t)src_w * c + i] * k[y];
        dst[i] = clip8(ss);
      }
    }
  } else {
    memcpy(out, src, (size_t)out_w * (size_t)src_h * c);
  }
  free(tmp);
  free(hb); free(hk); free(vb); free(vk);
  return 0;
}
