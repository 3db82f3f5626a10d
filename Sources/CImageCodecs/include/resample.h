// resample.h — separable image resampling with PIL's exact arithmetic (two passes, horizontal
// then vertical, fixed-point coefficients, uint8 rounding between passes), so resized pixels equal
// Pillow's `Image.resize` (and therefore torchvision's PIL-based transforms) bit for bit.
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

#ifdef __cplusplus
}
#endif
#endif
