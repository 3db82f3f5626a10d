// PIL-compatible resampling. The algorithm follows Pillow's documented convolution resampler:
// per output pixel a filter window scaled by the downsampling factor (antialiasing), normalised
// weights converted to fixed point with 22 fractional bits, a horizontal pass into an 8-bit
// intermediate, then a vertical pass. Pillow's `box` (a fractional source region) and output
// windows (a crop of the resized image, computed without the rest) are supported.
//
// The portable loops and the AVX2 loops do the same integer arithmetic in the same order of
// rounding (sums of exact int32 products, one rounding shift per pass), so they agree bit for bit.
#include "resample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRECISION_BITS (32 - 8 - 2)
#define ROUNDING (1 << (PRECISION_BITS - 1))

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__clang__) || defined(__GNUC__))
#define IC_X86_SIMD 1
#include <cpuid.h>
#include <immintrin.h>
#endif

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

// ------------------------------------------------------------------------------------------------
// Run-time choice of the SIMD code

#ifdef IC_X86_SIMD
static int cpu_has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!(c & bit_OSXSAVE) || !(c & bit_AVX)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    if ((lo & 6) != 6) return 0;  // the OS saves XMM and YMM state
    if (__get_cpuid_max(0, NULL) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & bit_AVX2) != 0;
}
#endif

static int simd_allowed = 1;   // ic_resample_set_simd
static int simd_detected = -1; // -1: not yet known

int ic_resample_uses_simd(void) {
#ifdef IC_X86_SIMD
    int detected = __atomic_load_n(&simd_detected, __ATOMIC_RELAXED);
    if (detected < 0) {
        detected = cpu_has_avx2();
        __atomic_store_n(&simd_detected, detected, __ATOMIC_RELAXED);
    }
    return detected && __atomic_load_n(&simd_allowed, __ATOMIC_RELAXED);
#else
    return 0;
#endif
}

int ic_resample_set_simd(int enabled) {
    return __atomic_exchange_n(&simd_allowed, enabled ? 1 : 0, __ATOMIC_RELAXED);
}

// ------------------------------------------------------------------------------------------------
// Coefficients

/// Filter windows of outputs first…first+count-1 of a resize of [in0, in1) (within 0…in_size) to out_size.
typedef struct {
    int *bounds;    // (start, taps) per output
    int32_t *kk;    // kstride fixed-point weights per output, zero after the taps
    int kstride;    // even, so SIMD code may read taps in pairs
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->bounds);
    free(c->kk);
    c->bounds = NULL;
    c->kk = NULL;
}

static int coefficients(int in_size, double in0, double in1, int out_size, int first, int count, int filter,
                        coeffs *out) {
    double (*f)(double) = filter == IC_FILTER_BICUBIC ? bicubic : bilinear;
    double support = filter == IC_FILTER_BICUBIC ? 2.0 : 1.0;
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    support *= filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    int kstride = ksize + (ksize & 1);
    double *w = malloc(sizeof(double) * (size_t)ksize);
    out->bounds = malloc(sizeof(int) * 2 * (size_t)count);
    out->kk = calloc((size_t)kstride * (size_t)count, sizeof(int32_t));
    out->kstride = kstride;
    if (!w || !out->bounds || !out->kk) {
        free(w);
        coeffs_free(out);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        int xx = first + i;
        double center = in0 + (xx + 0.5) * scale;
        double ss = 1.0 / filterscale, total = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        if (xmax > ksize) xmax = ksize;
        for (int x = 0; x < xmax; x++) {
            w[x] = f((x + xmin - center + 0.5) * ss);
            total += w[x];
        }
        int32_t *k = &out->kk[(size_t)i * (size_t)kstride];
        for (int x = 0; x < xmax; x++) {
            double v = total != 0.0 ? w[x] / total : 0.0;
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        out->bounds[i * 2] = xmin;
        out->bounds[i * 2 + 1] = xmax;
    }
    free(w);
    return 0;
}

// ------------------------------------------------------------------------------------------------
// Horizontal pass: `rows` rows of `in` (stride in_stride) → rows × out_w × c bytes at `out`.

static void hpass_generic(const uint8_t *in, size_t in_stride, int rows, int c, int out_w, const coeffs *h,
                          uint8_t *out) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *line = in + (size_t)y * in_stride;
        uint8_t *dst = out + (size_t)y * (size_t)out_w * (size_t)c;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = h->bounds[xx * 2], xmax = h->bounds[xx * 2 + 1];
            const int32_t *k = &h->kk[(size_t)xx * (size_t)h->kstride];
            for (int ch = 0; ch < c; ch++) {
                int ss = ROUNDING;
                for (int x = 0; x < xmax; x++) ss += line[(size_t)(x + xmin) * (size_t)c + (size_t)ch] * k[x];
                dst[(size_t)xx * (size_t)c + (size_t)ch] = clip8(ss);
            }
        }
    }
}

static inline void hpixel_rgb(const uint8_t *p, const int32_t *k, int n, uint8_t *dst) {
    int r = ROUNDING, g = ROUNDING, b = ROUNDING;
    for (int x = 0; x < n; x++, p += 3) {
        r += p[0] * k[x];
        g += p[1] * k[x];
        b += p[2] * k[x];
    }
    dst[0] = clip8(r);
    dst[1] = clip8(g);
    dst[2] = clip8(b);
}

static void hpass_rgb(const uint8_t *in, size_t in_stride, int rows, int out_w, const coeffs *h, uint8_t *out) {
    for (int y = 0; y < rows; y++) {
        const uint8_t *line = in + (size_t)y * in_stride;
        uint8_t *dst = out + (size_t)y * (size_t)out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            hpixel_rgb(line + (size_t)h->bounds[xx * 2] * 3, &h->kk[(size_t)xx * (size_t)h->kstride],
                       h->bounds[xx * 2 + 1], dst + (size_t)xx * 3);
        }
    }
}

#ifdef IC_X86_SIMD
/// Four taps per step with 16-bit multiply-adds (vpmaddwd). A 22-bit weight does not fit 16 bits, so
/// each is split exactly into k = hi * 2^11 + lo (0 <= lo < 2^11) and the two sums are recombined as
/// (sum_hi << 11) + sum_lo, which is the same int32 sum as the portable loop's.
/// Pixels t, t+1 go to the low 128-bit lane and t+2, t+3 to the high one, as int16 pairs
/// (R_t, R_t+1, G_t, G_t+1, B_t, B_t+1, 0, 0), so one vpmaddwd gives two taps of R, G and B.
/// Reads 16 bytes per step: pixels whose last read would pass `in_end` take the portable loop.
__attribute__((target("avx2"))) static int hpass_rgb_avx2(const uint8_t *in, size_t in_stride, int rows,
                                                          const uint8_t *in_end, int out_w, const coeffs *h,
                                                          uint8_t *out) {
    // Split weights: per output pixel `groups` pairs of vectors (hi, lo), each lane pair (k_a, k_b).
    int max_taps = 0;
    for (int xx = 0; xx < out_w; xx++)
        if (h->bounds[xx * 2 + 1] > max_taps) max_taps = h->bounds[xx * 2 + 1];
    const int groups = (max_taps + 3) / 4;
    __m256i *weights = NULL;
    if (groups > 0) {
        weights = aligned_alloc(32, sizeof(__m256i) * 2 * (size_t)groups * (size_t)out_w);
        if (!weights) return -1;
    }
    for (int xx = 0; xx < out_w; xx++) {
        const int n = h->bounds[xx * 2 + 1];
        const int32_t *k = &h->kk[(size_t)xx * (size_t)h->kstride];
        for (int g = 0; g < groups; g++) {
            int16_t hi[16], lo[16];
            for (int lane = 0; lane < 2; lane++) {
                for (int j = 0; j < 8; j++) {
                    int t = 4 * g + 2 * lane + (j & 1);
                    int32_t w = (j < 6 && t < n) ? k[t] : 0;
                    hi[lane * 8 + j] = (int16_t)(w >> 11);   // arithmetic shift: floor
                    lo[lane * 8 + j] = (int16_t)(w & 0x7FF);
                }
            }
            weights[((size_t)xx * (size_t)groups + (size_t)g) * 2] = _mm256_loadu_si256((const __m256i *)(const void *)hi);
            weights[((size_t)xx * (size_t)groups + (size_t)g) * 2 + 1] = _mm256_loadu_si256((const __m256i *)(const void *)lo);
        }
    }
    const __m256i spread = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,  //
                                            6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1);
    const __m256i rounding = _mm256_set1_epi32(ROUNDING);
    const size_t out_row = (size_t)out_w * 3;
    // Two rows at a time share the weights and the loop; a last odd row goes alone. Each pixel is one
    // 4-byte store (its 4th byte is overwritten by the next pixel), except a row's last pixel.
    for (int y = 0; y < rows; y += 2) {
        const int pair = y + 1 < rows;
        const uint8_t *line0 = in + (size_t)y * in_stride;
        const uint8_t *line1 = pair ? line0 + in_stride : line0;
        uint8_t *dst0 = out + (size_t)y * out_row;
        uint8_t *dst1 = pair ? dst0 + out_row : dst0;
        for (int xx = 0; xx < out_w; xx++) {
            const int n = h->bounds[xx * 2 + 1];
            const size_t offset = (size_t)h->bounds[xx * 2] * 3;
            const uint8_t *p0 = line0 + offset, *p1 = line1 + offset;
            const int steps = (n + 3) / 4;
            if (steps == 0 || (size_t)(in_end - p1) < (size_t)(steps - 1) * 12 + 16) {
                const int32_t *k = &h->kk[(size_t)xx * (size_t)h->kstride];
                hpixel_rgb(p0, k, n, dst0 + (size_t)xx * 3);
                if (pair) hpixel_rgb(p1, k, n, dst1 + (size_t)xx * 3);
                continue;
            }
            const __m256i *w = weights + (size_t)xx * (size_t)groups * 2;
            __m256i hi0 = _mm256_setzero_si256(), lo0 = hi0, hi1 = hi0, lo1 = hi0;
            for (int g = 0; g < steps; g++, p0 += 12, p1 += 12, w += 2) {
                const __m256i wh = _mm256_load_si256(w), wl = _mm256_load_si256(w + 1);
                __m256i a = _mm256_shuffle_epi8(
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p0)), spread);
                __m256i b = _mm256_shuffle_epi8(
                    _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p1)), spread);
                hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(a, wh));
                lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(a, wl));
                hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(b, wh));
                lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(b, wl));
            }
            // Both rows' lane halves side by side: [row 0 | row 1] sums of (R, G, B, 0).
            __m256i t0 = _mm256_add_epi32(_mm256_slli_epi32(hi0, 11), lo0);
            __m256i t1 = _mm256_add_epi32(_mm256_slli_epi32(hi1, 11), lo1);
            __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(t0, t1, 0x20),
                                            _mm256_permute2x128_si256(t0, t1, 0x31));
            sums = _mm256_srai_epi32(_mm256_add_epi32(sums, rounding), PRECISION_BITS);
            __m128i bytes = _mm_packus_epi16(
                _mm_packs_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1)), _mm_setzero_si128());
            // Row 1 first: when there is no pair, row 0's store (same place) wins.
            uint32_t v1 = (uint32_t)_mm_extract_epi32(bytes, 1), v0 = (uint32_t)_mm_cvtsi128_si32(bytes);
            if (xx + 1 < out_w) {
                memcpy(dst1 + (size_t)xx * 3, &v1, 4);
                memcpy(dst0 + (size_t)xx * 3, &v0, 4);
            } else {  // the 4th byte would land on the next row's first pixel
                memcpy(dst1 + (size_t)xx * 3, &v1, 3);
                memcpy(dst0 + (size_t)xx * 3, &v0, 3);
            }
        }
    }
    free(weights);
    return 0;
}
#endif

// ------------------------------------------------------------------------------------------------
// Vertical pass: one output row of `len` bytes from rows ymin… of `src` (stride src_stride).

static void vrow(const uint8_t *src, size_t src_stride, int ymin, int n, const int32_t *k, size_t from, size_t len,
                 uint8_t *dst) {
    const uint8_t *base = src + (size_t)ymin * src_stride;
    for (size_t i = from; i < len; i++) {
        int ss = ROUNDING;
        for (int y = 0; y < n; y++) ss += base[(size_t)y * src_stride + i] * k[y];
        dst[i] = clip8(ss);
    }
}

#ifdef IC_X86_SIMD
__attribute__((target("avx2"))) static void vrow_avx2(const uint8_t *src, size_t src_stride, int ymin, int n,
                                                      const int32_t *k, size_t len, uint8_t *dst) {
    const uint8_t *base = src + (size_t)ymin * src_stride;
    const __m256i rounding = _mm256_set1_epi32(ROUNDING);
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256i a0 = rounding, a1 = rounding;
        const uint8_t *p = base + i;
        for (int y = 0; y < n; y++, p += src_stride) {
            __m256i kv = _mm256_set1_epi32(k[y]);
            __m128i bytes = _mm_loadu_si128((const __m128i *)(const void *)p);
            a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), kv));
            a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8)), kv));
        }
        a0 = _mm256_srai_epi32(a0, PRECISION_BITS);
        a1 = _mm256_srai_epi32(a1, PRECISION_BITS);
        __m128i w0 = _mm_packs_epi32(_mm256_castsi256_si128(a0), _mm256_extracti128_si256(a0, 1));
        __m128i w1 = _mm_packs_epi32(_mm256_castsi256_si128(a1), _mm256_extracti128_si256(a1, 1));
        _mm_storeu_si128((__m128i *)(void *)(dst + i), _mm_packus_epi16(w0, w1));
    }
    for (; i + 8 <= len; i += 8) {
        __m256i a = rounding;
        const uint8_t *p = base + i;
        for (int y = 0; y < n; y++, p += src_stride) {
            __m128i bytes = _mm_loadl_epi64((const __m128i *)(const void *)p);
            a = _mm256_add_epi32(a, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), _mm256_set1_epi32(k[y])));
        }
        a = _mm256_srai_epi32(a, PRECISION_BITS);
        __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
        _mm_storel_epi64((__m128i *)(void *)(dst + i), _mm_packus_epi16(w, w));
    }
    vrow(src, src_stride, ymin, n, k, i, len, dst);
}
#endif

// ------------------------------------------------------------------------------------------------
// Output of one finished 8-bit row

static void emit_f32(const uint8_t *row, int w, int flip, const float *lut, float *r, float *g, float *b) {
    const float *lr = lut, *lg = lut + 256, *lb = lut + 512;
    if (!flip) {
        for (int x = 0; x < w; x++, row += 3) {
            r[x] = lr[row[0]];
            g[x] = lg[row[1]];
            b[x] = lb[row[2]];
        }
    } else {
        for (int x = w - 1; x >= 0; x--, row += 3) {
            r[x] = lr[row[0]];
            g[x] = lg[row[1]];
            b[x] = lb[row[2]];
        }
    }
}

#ifdef IC_X86_SIMD
/// `emit_f32` eight pixels at a time: the bytes are split into R, G and B indices with byte shuffles
/// and looked up with gathers (the same table entries, so the same floats).
__attribute__((target("avx2"))) static void emit_f32_avx2(const uint8_t *row, int w, int flip, const float *lut,
                                                          float *r, float *g, float *b) {
    const __m128i ra = _mm_setr_epi8(0, 3, 6, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i rb = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i ga = _mm_setr_epi8(1, 4, 7, 10, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i gb = _mm_setr_epi8(-1, -1, -1, -1, -1, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i ba = _mm_setr_epi8(2, 5, 8, 11, 14, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i bb = _mm_setr_epi8(-1, -1, -1, -1, -1, 9, 12, 15, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    int x = 0;
    for (; x + 8 <= w; x += 8) {
        const uint8_t *p = row + (size_t)x * 3;  // reads bytes 3x … 3x+23, inside the row
        const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)p);
        const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(p + 8));
        const __m256i ir = _mm256_cvtepu8_epi32(_mm_or_si128(_mm_shuffle_epi8(lo, ra), _mm_shuffle_epi8(hi, rb)));
        const __m256i ig = _mm256_cvtepu8_epi32(_mm_or_si128(_mm_shuffle_epi8(lo, ga), _mm_shuffle_epi8(hi, gb)));
        const __m256i ib = _mm256_cvtepu8_epi32(_mm_or_si128(_mm_shuffle_epi8(lo, ba), _mm_shuffle_epi8(hi, bb)));
        __m256 vr = _mm256_i32gather_ps(lut, ir, 4);
        __m256 vg = _mm256_i32gather_ps(lut + 256, ig, 4);
        __m256 vb = _mm256_i32gather_ps(lut + 512, ib, 4);
        if (!flip) {
            _mm256_storeu_ps(r + x, vr);
            _mm256_storeu_ps(g + x, vg);
            _mm256_storeu_ps(b + x, vb);
        } else {
            const int d = w - 8 - x;
            _mm256_storeu_ps(r + d, _mm256_permutevar8x32_ps(vr, reverse));
            _mm256_storeu_ps(g + d, _mm256_permutevar8x32_ps(vg, reverse));
            _mm256_storeu_ps(b + d, _mm256_permutevar8x32_ps(vb, reverse));
        }
    }
    const float *lr = lut, *lg = lut + 256, *lb = lut + 512;
    for (; x < w; x++) {
        const uint8_t *p = row + (size_t)x * 3;
        const int d = flip ? w - 1 - x : x;
        r[d] = lr[p[0]];
        g[d] = lg[p[1]];
        b[d] = lb[p[2]];
    }
}
#endif

// ------------------------------------------------------------------------------------------------
// Driver

static int resample(const uint8_t *in, int in_w, int in_h, size_t in_stride, int c, const ic_resample_spec *s,
                    uint8_t *out_u8, int flip, const float *lut, float *out_f32) {
    if (!in || !s || in_w <= 0 || in_h <= 0 || c <= 0 || c > 4 || in_stride < (size_t)in_w * (size_t)c) return 1;
    if (s->scaled_width <= 0 || s->scaled_height <= 0 || s->out_width <= 0 || s->out_height <= 0 ||
        s->out_x < 0 || s->out_y < 0 || s->out_x > s->scaled_width - s->out_width ||
        s->out_y > s->scaled_height - s->out_height)
        return 1;
    const double *box = s->box;
    if (!(box[0] >= 0 && box[1] >= 0 && box[2] <= in_w && box[3] <= in_h && box[2] > box[0] && box[3] > box[1]))
        return 1;
    const int filter = s->filter == IC_FILTER_BICUBIC ? IC_FILTER_BICUBIC : IC_FILTER_BILINEAR;
    const int out_w = s->out_width, out_h = s->out_height;
    const size_t cc = (size_t)c;
    const int need_h = s->scaled_width != in_w || box[0] != 0 || box[2] != in_w;
    const int need_v = s->scaled_height != in_h || box[1] != 0 || box[3] != in_h;
    const int simd = ic_resample_uses_simd();

    coeffs hc = {0}, vc = {0};
    uint8_t *tmp = NULL, *rowbuf = NULL;
    int status = 2;
    if (need_h && coefficients(in_w, box[0], box[2], s->scaled_width, s->out_x, out_w, filter, &hc) != 0) goto done;
    if (need_v && coefficients(in_h, box[1], box[3], s->scaled_height, s->out_y, out_h, filter, &vc) != 0) goto done;

    // Input rows the vertical pass reads; only those are resampled horizontally.
    int first, last;
    if (need_v) {
        first = in_h;
        last = 0;
        for (int i = 0; i < out_h; i++) {
            int a = vc.bounds[i * 2], n = vc.bounds[i * 2 + 1];
            if (n == 0) continue;
            if (a < first) first = a;
            if (a + n > last) last = a + n;
        }
        if (last <= first) first = last = 0;
    } else {
        first = s->out_y;
        last = s->out_y + out_h;
    }
    const int rows = last - first;

    // `src`: the horizontally resampled rows first…last-1 (out_w × c bytes each, `src_stride` apart).
    const uint8_t *src;
    size_t src_stride;
    if (need_h) {
        src_stride = (size_t)out_w * cc;
        tmp = malloc(src_stride * (size_t)(rows > 0 ? rows : 1) + 32);
        if (!tmp) goto done;
        const uint8_t *rows_in = in + (size_t)first * in_stride;
#ifdef IC_X86_SIMD
        if (simd && c == 3) {
            const uint8_t *in_end = in + (size_t)(in_h - 1) * in_stride + (size_t)in_w * cc;
            if (hpass_rgb_avx2(rows_in, in_stride, rows, in_end, out_w, &hc, tmp) != 0) goto done;
        } else
#endif
        if (c == 3) {
            hpass_rgb(rows_in, in_stride, rows, out_w, &hc, tmp);
        } else {
            hpass_generic(rows_in, in_stride, rows, c, out_w, &hc, tmp);
        }
        src = tmp;
    } else {
        src = in + (size_t)first * in_stride + (size_t)s->out_x * cc;
        src_stride = in_stride;
    }

    const size_t row_len = (size_t)out_w * cc;
    if (out_f32) {
        rowbuf = malloc(row_len + 32);
        if (!rowbuf) goto done;
    }
    const size_t plane = (size_t)out_w * (size_t)out_h;
    for (int yy = 0; yy < out_h; yy++) {
        uint8_t *row = out_f32 ? rowbuf : out_u8 + (size_t)yy * row_len;
        if (need_v) {
            const int ymin = vc.bounds[yy * 2] - first, n = vc.bounds[yy * 2 + 1];
            const int32_t *k = &vc.kk[(size_t)yy * (size_t)vc.kstride];
#ifdef IC_X86_SIMD
            if (simd) vrow_avx2(src, src_stride, ymin, n, k, row_len, row);
            else
#endif
                vrow(src, src_stride, ymin, n, k, 0, row_len, row);
        } else if (out_f32) {
            row = (uint8_t *)(src + (size_t)yy * src_stride);
        } else {
            memcpy(row, src + (size_t)yy * src_stride, row_len);
        }
        if (out_f32) {
            float *r = out_f32 + (size_t)yy * (size_t)out_w;
#ifdef IC_X86_SIMD
            if (simd) emit_f32_avx2(row, out_w, flip, lut, r, r + plane, r + 2 * plane);
            else
#endif
                emit_f32(row, out_w, flip, lut, r, r + plane, r + 2 * plane);
        }
    }
    status = 0;
done:
    free(tmp);
    free(rowbuf);
    coeffs_free(&hc);
    coeffs_free(&vc);
    return status;
}

int ic_resample_u8(const uint8_t *in, int in_w, int in_h, size_t in_stride, int channels,
                   const ic_resample_spec *spec, uint8_t *out) {
    if (!out) return 1;
    return resample(in, in_w, in_h, in_stride, channels, spec, out, 0, NULL, NULL);
}

int ic_resample_rgb_f32(const uint8_t *in, int in_w, int in_h, size_t in_stride, const ic_resample_spec *spec,
                        int flip, const float *lut, float *out) {
    if (!out || !lut) return 1;
    return resample(in, in_w, in_h, in_stride, 3, spec, NULL, flip, lut, out);
}

int ic_resize_u8(const uint8_t *in, int in_w, int in_h, int channels, uint8_t *out, int out_w, int out_h,
                 int filter) {
    if (in_w <= 0 || in_h <= 0 || channels <= 0 || channels > 4) return 1;
    ic_resample_spec spec = {
        .box = {0, 0, in_w, in_h},
        .scaled_width = out_w,
        .scaled_height = out_h,
        .out_x = 0,
        .out_y = 0,
        .out_width = out_w,
        .out_height = out_h,
        .filter = filter,
    };
    return ic_resample_u8(in, in_w, in_h, (size_t)in_w * (size_t)channels, channels, &spec, out);
}
