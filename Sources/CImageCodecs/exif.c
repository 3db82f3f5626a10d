// exif.c — EXIF orientation: the tag read from a JPEG's APP1 "Exif" segment, and the eight
// orientations applied to decoded RGB pixels.
#include "codec_internal.h"

#include <string.h>

// ------------------------------------------------------------------------------------------------
// The orientation tag

static uint16_t read16(const uint8_t *p, int big_endian) {
    return big_endian ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t read32(const uint8_t *p, int big_endian) {
    return big_endian ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
                      : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

/// EXIF orientation (tag 0x0112 in IFD0) from an APP1 payload, or 1.
int ic_exif_orientation(const uint8_t *p, size_t n) {
    if (n < 14 || memcmp(p, "Exif\0\0", 6) != 0) return 1;
    const uint8_t *tiff = p + 6;
    size_t size = n - 6;
    int big;
    if (tiff[0] == 'I' && tiff[1] == 'I') big = 0;
    else if (tiff[0] == 'M' && tiff[1] == 'M') big = 1;
    else return 1;
    if (read16(tiff + 2, big) != 42) return 1;
    uint32_t ifd = read32(tiff + 4, big);
    if (ifd > size || size - ifd < 2) return 1;
    unsigned count = read16(tiff + ifd, big);
    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        if (entry + 12 > size) return 1;
        if (read16(tiff + entry, big) != 0x0112) continue;
        unsigned type = read16(tiff + entry + 2, big);
        int value;
        if (type == 3) value = read16(tiff + entry + 8, big);          // SHORT
        else if (type == 4) value = (int)read32(tiff + entry + 8, big); // LONG (seen in the wild)
        else return 1;
        return value >= 1 && value <= 8 ? value : 1;
    }
    return 1;
}

// ------------------------------------------------------------------------------------------------
// Orientation

static void swap3(uint8_t *a, uint8_t *b) {
    uint8_t t0 = a[0], t1 = a[1], t2 = a[2];
    a[0] = b[0]; a[1] = b[1]; a[2] = b[2];
    b[0] = t0; b[1] = t1; b[2] = t2;
}

/// Orientations 2–4 in place on a w×h RGB buffer.
void ic_orient_in_place(uint8_t *p, size_t w, size_t h, int orientation) {
    const size_t stride = w * 3;
    if (orientation == 2) {                     // mirror left-right
        for (size_t y = 0; y < h; y++) {
            uint8_t *row = p + y * stride;
            for (size_t x = 0; x < w / 2; x++) swap3(row + x * 3, row + (w - 1 - x) * 3);
        }
    } else if (orientation == 3) {              // rotate 180°
        size_t n = w * h;
        for (size_t i = 0; i < n / 2; i++) swap3(p + i * 3, p + (n - 1 - i) * 3);
    } else if (orientation == 4) {              // mirror top-bottom
        for (size_t y = 0; y < h / 2; y++) {
            uint8_t *a = p + y * stride, *b = p + (h - 1 - y) * stride;
            for (size_t i = 0; i < stride; i++) { uint8_t t = a[i]; a[i] = b[i]; b[i] = t; }
        }
    }
}

/// Orientations 5–8: `src` is w×h, `dst` becomes h×w (PIL's TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90).
void ic_orient_transposed(const uint8_t *src, uint8_t *dst, size_t w, size_t h, int orientation) {
    const int flip_rows = orientation == 6 || orientation == 7;   // source row = h-1-c
    const int flip_cols = orientation == 7 || orientation == 8;   // source column = w-1-r
    const size_t src_stride = w * 3;
    for (size_t r = 0; r < w; r++) {
        const size_t sc = flip_cols ? w - 1 - r : r;
        uint8_t *out = dst + r * h * 3;
        const uint8_t *column = src + sc * 3;
        if (flip_rows) {
            for (size_t c = 0; c < h; c++, out += 3) {
                const uint8_t *s = column + (h - 1 - c) * src_stride;
                out[0] = s[0]; out[1] = s[1]; out[2] = s[2];
            }
        } else {
            for (size_t c = 0; c < h; c++, out += 3) {
                const uint8_t *s = column + c * src_stride;
                out[0] = s[0]; out[1] = s[1]; out[2] = s[2];
            }
        }
    }
}

