// resample.h — separable image resampling with PIL's exact arithmetic (two passes, horizontal
// then vertical, fixed-point coefficients, uint8 rounding between passes), so resized pixels equal
// Pillow's `Image.resize` (and therefore torchvision's PIL-based transforms) bit for bit.
//
// On x86-64 CPUs with AVX2 the inner loops use AVX2 (chosen at run time); the integer arithmetic
// is the same, so the results are identical to the portable code (tests compare both).
#ifndef RESAMPLE_H
#define RESAMPLE_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ic_filter { IC_FILTER_BILINEAR = 0, IC_FILTER_BICUBIC = 1 } ic_filter;

/// Resizes an 8-bit image with `channels` interleaved channels (HWC) from in_w×in_h to out_w×out_h.
/// `out` must hold out_w*out_h*channels bytes. Returns 0, or nonzero for invalid arguments / no memory.
int ic_resize_u8(const uint8_t *in, int in_w, int in_h, int channels, uint8_t *out, int out_w, int out_h,
                 int filter);

/// What to resample: Pillow's `Image.resize((scaled_w, scaled_h), box=box)` of an in_w×in_h image, of which
/// only the window [out_x, out_x + out_w) × [out_y, out_y + out_h) of the resized image is produced (each
/// output pixel is computed exactly as in the whole resize, so a window equals a crop of it).
/// Filter taps are clipped at the input's edges, as Pillow clips them at the image's edges.
typedef struct ic_resample_spec {
    double box[4];          ///< x0, y0, x1, y1 in input pixels (0, 0, in_w, in_h: the whole input)
    int32_t scaled_width;   ///< size of the whole resized image
    int32_t scaled_height;
    int32_t out_x, out_y;   ///< the window to produce
    int32_t out_width, out_height;
    int32_t filter;         ///< ic_filter
} ic_resample_spec;

/// The resampling of `spec` on an 8-bit HWC image with `channels` channels whose rows start `in_stride`
/// bytes apart; writes out_width*out_height*channels bytes (HWC) to `out`. Returns 0, or nonzero for
/// invalid arguments / no memory.
int ic_resample_u8(const uint8_t *in, int in_w, int in_h, size_t in_stride, int channels,
                   const ic_resample_spec *spec, uint8_t *out);

/// The resampling of `spec` on an RGB image, written as float32 planes (CHW, `out` holds
/// 3*out_width*out_height floats) through per-channel tables: channel c of value v becomes
/// `lut[c * 256 + v]` (the normalisation). `flip` mirrors the output left ↔ right.
int ic_resample_rgb_f32(const uint8_t *in, int in_w, int in_h, size_t in_stride, const ic_resample_spec *spec,
                        int flip, const float *lut, float *out);

/// Limits the SIMD code paths: 0 = portable C only, 1 = AVX2 when the CPU has it (the default).
/// Returns the previous setting. For tests and measurements; not thread-safe with running resizes.
int ic_resample_set_simd(int enabled);
/// Whether resizes currently use AVX2.
int ic_resample_uses_simd(void);

#ifdef __cplusplus
}
#endif
#endif
