// decoder.c — the public decoding API of include/image_codecs.h: format sniffing, the two-step
// decoder (open, read, windowed reads, close), one-call decoding and probing, and the helpers the
// codec files share (codec_internal.h). The formats' own code is in jpeg_codec.c and png_codec.c,
// EXIF orientation in exif.c, file reading and layout in image_io.c.
//
// Error handling: libjpeg's error_exit and libpng's
// error callback longjmp back to a setjmp inside the entry point that is running; warnings and trace
// messages are swallowed (except libjpeg's "premature end of data", which is made fatal so that a
// truncated file is an error instead of a half-gray picture).
#include "codec_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ------------------------------------------------------------------------------------------------
// Helpers

void ic_set_error(char *error, size_t cap, const char *format, ...) {
    if (error == NULL || cap == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(error, cap, format, args);
    va_end(args);
}

int32_t ic_sniff_format(const uint8_t *p, size_t n) {
    if (p == NULL) return IC_FORMAT_UNKNOWN;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return IC_FORMAT_JPEG;
    if (n >= 4 && p[0] == 0x89 && p[1] == 'P' && p[2] == 'N' && p[3] == 'G') return IC_FORMAT_PNG;
    if (n >= 4 && memcmp(p, "GIF8", 4) == 0) return IC_FORMAT_GIF;
    if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0) return IC_FORMAT_WEBP;
    if (n >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0)) return IC_FORMAT_TIFF;
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return IC_FORMAT_BMP;
    return IC_FORMAT_UNKNOWN;
}

const char *ic_format_name(int32_t format) {
    switch (format) {
    case IC_FORMAT_JPEG: return "JPEG";
    case IC_FORMAT_PNG: return "PNG";
    case IC_FORMAT_GIF: return "GIF";
    case IC_FORMAT_BMP: return "BMP";
    case IC_FORMAT_WEBP: return "WebP";
    case IC_FORMAT_TIFF: return "TIFF";
    default: return "unknown";
    }
}

int ic_check_pixel_count(uint64_t width, uint64_t height, char *error, size_t cap) {
    if (width == 0 || height == 0) {
        ic_set_error(error, cap, "image has zero size (%llux%llu)", (unsigned long long)width,
                     (unsigned long long)height);
        return IC_ERR_CORRUPT;
    }
    if (width > INT32_MAX || height > INT32_MAX || width * height > IC_MAX_PIXELS) {
        ic_set_error(error, cap, "image is too large (%llux%llu pixels; the limit is %llu pixels)",
                     (unsigned long long)width, (unsigned long long)height, (unsigned long long)IC_MAX_PIXELS);
        return IC_ERR_TOO_LARGE;
    }
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Public decoding API

int ic_decoder_open(const uint8_t *data, size_t length, int32_t min_side, ic_decoder **decoder,
                    ic_image_info *info, char *error, size_t error_cap) {
    return ic_decoder_open_flags(data, length, min_side, 0, decoder, info, error, error_cap);
}

int ic_decoder_open_flags(const uint8_t *data, size_t length, int32_t min_side, int32_t flags,
                          ic_decoder **decoder, ic_image_info *info, char *error, size_t error_cap) {
    if (decoder == NULL) {
        ic_set_error(error, error_cap, "no decoder pointer given");
        return IC_ERR_ARGUMENT;
    }
    *decoder = NULL;
    if (data == NULL || length == 0) {
        ic_set_error(error, error_cap, "empty image data (0 bytes)");
        return IC_ERR_CORRUPT;
    }
    int32_t format = ic_sniff_format(data, length);
    if (format != IC_FORMAT_JPEG && format != IC_FORMAT_PNG) {
        if (format != IC_FORMAT_UNKNOWN) {
            ic_set_error(error, error_cap, "unsupported image format (%s); only JPEG and PNG can be decoded",
                         ic_format_name(format));
        } else {
            char hex[3 * 8 + 1] = {0};
            size_t shown = length < 8 ? length : 8;
            for (size_t i = 0; i < shown; i++) snprintf(hex + 3 * i, 4, i ? " %02x" : "%02x", data[i]);
            ic_set_error(error, error_cap, "unsupported image format (not JPEG or PNG; starts with %s)", hex);
        }
        return IC_ERR_UNSUPPORTED;
    }
    struct ic_decoder *d = (struct ic_decoder *)calloc(1, sizeof *d);
    if (d == NULL) {
        ic_set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    d->format = format;
    d->fast = (flags & IC_DECODE_FAST) != 0;
    d->data = data;
    d->length = length;
    int status = format == IC_FORMAT_JPEG ? ic_jpeg_open(d, min_side < 0 ? 0 : min_side, flags, error, error_cap)
                                          : ic_png_open(d, error, error_cap);
    if (status != IC_OK) {
        if (status == IC_ERR_TOO_LARGE && info != NULL) {  // the size the header declares, for messages
            info->format = format;
            info->source_width = d->info.source_width;
            info->source_height = d->info.source_height;
        }
        ic_decoder_close(d);
        return status;
    }
    if (info != NULL) *info = d->info;
    *decoder = d;
    return IC_OK;
}

/// Allocates the decoder's scratch buffer (freed with the decoder); NULL, with "out of memory" in
/// `error`, when it cannot.
static uint8_t *scratch_buffer(ic_decoder *d, size_t size, char *error, size_t error_cap) {
    d->scratch = (uint8_t *)malloc(size);
    if (d->scratch == NULL) ic_set_error(error, error_cap, "out of memory");
    return d->scratch;
}

/// Where a JPEG is decoded to: `pixels`, or for an orientation that transposes (5 to 8) a scratch
/// buffer of `size` bytes, rotated into `pixels` afterwards. NULL (error set) when out of memory.
static uint8_t *jpeg_target(ic_decoder *d, int orientation, uint8_t *pixels, size_t size, char *error,
                            size_t error_cap) {
    return orientation >= 5 ? scratch_buffer(d, size, error, error_cap) : pixels;
}

int ic_decoder_read(ic_decoder *d, uint8_t *pixels, size_t capacity, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL) {
        ic_set_error(error, error_cap, "no decoder or output buffer given");
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        ic_set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    d->consumed = 1;
    const size_t w = (size_t)d->info.width, h = (size_t)d->info.height, needed = w * h * 3;
    if (capacity < needed) {
        ic_set_error(error, error_cap, "output buffer holds %zu bytes, %zu are needed", capacity, needed);
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) return ic_png_read(d, pixels, error, error_cap);

    const int orientation = d->info.orientation;
    uint8_t *target = jpeg_target(d, orientation, pixels, needed, error, error_cap);
    if (target == NULL) return IC_ERR_TOO_LARGE;
    int status = ic_jpeg_read(d, target, error, error_cap);
    if (status != IC_OK) return status;
    if (orientation >= 5) {
        // decoded as (source) h×w, i.e. width = info.height
        ic_orient_transposed(d->scratch, pixels, h, w, orientation);
    } else if (orientation > 1) {
        ic_orient_in_place(pixels, w, h, orientation);
    }
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Windowed decoding

static int valid_scale(int32_t scale_num) { return scale_num == 1 || scale_num == 2 || scale_num == 4 || scale_num == 8; }

int ic_decoder_scaled_size(ic_decoder *d, int32_t scale_num, int32_t *width, int32_t *height, char *error,
                           size_t error_cap) {
    if (d == NULL || width == NULL || height == NULL || !valid_scale(scale_num)) {
        ic_set_error(error, error_cap, "bad arguments (scale %d/8)", scale_num);
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        ic_set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) {
        if (scale_num != 8) {
            ic_set_error(error, error_cap, "PNG images are only decoded at full size");
            return IC_ERR_ARGUMENT;
        }
        *width = d->info.width;
        *height = d->info.height;
        return IC_OK;
    }
    JDIMENSION w = 0, h = 0;
    int status = ic_jpeg_scale_to(d, scale_num, &w, &h, error, error_cap);
    if (status != IC_OK) return status;
    const int transposed = d->info.orientation >= 5;
    *width = (int32_t)(transposed ? h : w);
    *height = (int32_t)(transposed ? w : h);
    return IC_OK;
}

int ic_decoder_read_window(ic_decoder *d, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                           int32_t height, uint8_t *pixels, size_t capacity, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL || !valid_scale(scale_num)) {
        ic_set_error(error, error_cap, "no decoder or output buffer given, or a bad scale (%d/8)", scale_num);
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        ic_set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    int32_t full_w = 0, full_h = 0;
    int status = ic_decoder_scaled_size(d, scale_num, &full_w, &full_h, error, error_cap);
    if (status != IC_OK) return status;
    if (left < 0 || top < 0 || width <= 0 || height <= 0 || left > full_w - width || top > full_h - height) {
        ic_set_error(error, error_cap, "window %dx%d at (%d, %d) is outside the %dx%d image", width, height, left, top,
                     full_w, full_h);
        return IC_ERR_ARGUMENT;
    }
    const size_t needed = (size_t)width * (size_t)height * 3;
    if (capacity < needed) {
        ic_set_error(error, error_cap, "output buffer holds %zu bytes, %zu are needed", capacity, needed);
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) {
        // No partial PNG decoding: decode everything, keep the window.
        const size_t row = (size_t)full_w * 3, whole = row * (size_t)full_h;
        if (scratch_buffer(d, whole, error, error_cap) == NULL) return IC_ERR_TOO_LARGE;
        status = ic_decoder_read(d, d->scratch, whole, error, error_cap);
        if (status != IC_OK) return status;
        for (int32_t y = 0; y < height; y++)
            memcpy(pixels + (size_t)y * (size_t)width * 3, d->scratch + (size_t)(top + y) * row + (size_t)left * 3,
                   (size_t)width * 3);
        return IC_OK;
    }
    d->consumed = 1;
    // The window in stored (unoriented) coordinates.
    const int o = d->info.orientation;
    const int32_t W = o >= 5 ? full_h : full_w, H = o >= 5 ? full_w : full_h;  // stored size
    int32_t sx, sy, sw, sh;
    if (o < 5) {
        sw = width;
        sh = height;
        sx = (o == 2 || o == 3) ? W - left - width : left;
        sy = (o == 3 || o == 4) ? H - top - height : top;
    } else {
        // Display rows come from stored columns, display columns from stored rows.
        sw = height;
        sh = width;
        sx = (o == 7 || o == 8) ? W - top - height : top;
        sy = (o == 6 || o == 7) ? H - left - width : left;
    }
    uint8_t *target = jpeg_target(d, o, pixels, needed, error, error_cap);
    if (target == NULL) return IC_ERR_TOO_LARGE;
    status = ic_jpeg_read_rect(d, (JDIMENSION)sx, (JDIMENSION)sy, (JDIMENSION)sw, (JDIMENSION)sh, target, NULL, NULL,
                               error, error_cap);
    if (status != IC_OK) return status;
    if (o >= 5) ic_orient_transposed(d->scratch, pixels, (size_t)sw, (size_t)sh, o);
    else if (o > 1) ic_orient_in_place(pixels, (size_t)sw, (size_t)sh, o);
    return IC_OK;
}

int ic_decoder_decode_window(ic_decoder *d, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                             int32_t height, const uint8_t **pixels, size_t *stride, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL || stride == NULL) {
        ic_set_error(error, error_cap, "no decoder or output pointers given");
        return IC_ERR_ARGUMENT;
    }
    *pixels = NULL;
    *stride = 0;
    if (d->format == IC_FORMAT_JPEG && d->info.orientation == 1 && !d->jpeg_cmyk && valid_scale(scale_num) &&
        !d->consumed) {
        int32_t full_w = 0, full_h = 0;
        int status = ic_decoder_scaled_size(d, scale_num, &full_w, &full_h, error, error_cap);
        if (status != IC_OK) return status;
        if (left < 0 || top < 0 || width <= 0 || height <= 0 || left > full_w - width || top > full_h - height) {
            ic_set_error(error, error_cap, "window %dx%d at (%d, %d) is outside the %dx%d image", width, height, left,
                         top, full_w, full_h);
            return IC_ERR_ARGUMENT;
        }
        d->consumed = 1;
        return ic_jpeg_read_rect(d, (JDIMENSION)left, (JDIMENSION)top, (JDIMENSION)width, (JDIMENSION)height, NULL,
                                 pixels, stride, error, error_cap);
    }
    // Otherwise (PNG, EXIF orientation, CMYK): decode the window compactly into the decoder's buffer.
    if (width <= 0 || height <= 0) {
        ic_set_error(error, error_cap, "empty window %dx%d", width, height);
        return IC_ERR_ARGUMENT;
    }
    const size_t needed = (size_t)width * (size_t)height * 3;
    free(d->window);
    d->window = (uint8_t *)malloc(needed);
    if (d->window == NULL) {
        ic_set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    int status = ic_decoder_read_window(d, scale_num, left, top, width, height, d->window, needed, error, error_cap);
    if (status != IC_OK) return status;
    *pixels = d->window;
    *stride = (size_t)width * 3;
    return IC_OK;
}

void ic_decoder_close(ic_decoder *d) {
    if (d == NULL) return;
    if (d->jpeg_created) jpeg_destroy_decompress(&d->jpeg);
    if (d->png != NULL) png_destroy_read_struct(&d->png, d->png_info ? &d->png_info : NULL, NULL);
    free(d->png_rows);
    free(d->scratch);
    free(d->window);
    free(d);
}

int ic_decode(const uint8_t *data, size_t length, int32_t min_side, uint8_t **pixels, ic_image_info *info,
              char *error, size_t error_cap) {
    if (pixels == NULL) {
        ic_set_error(error, error_cap, "no output pointer given");
        return IC_ERR_ARGUMENT;
    }
    *pixels = NULL;
    ic_decoder *d = NULL;
    ic_image_info local;
    int status = ic_decoder_open(data, length, min_side, &d, &local, error, error_cap);
    if (status != IC_OK) return status;
    size_t size = (size_t)local.width * (size_t)local.height * 3;
    uint8_t *buffer = (uint8_t *)malloc(size);
    if (buffer == NULL) {
        ic_decoder_close(d);
        ic_set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    status = ic_decoder_read(d, buffer, size, error, error_cap);
    ic_decoder_close(d);
    if (status != IC_OK) {
        free(buffer);
        return status;
    }
    *pixels = buffer;
    if (info != NULL) *info = local;
    return IC_OK;
}

int ic_probe(const uint8_t *data, size_t length, ic_image_info *info, char *error, size_t error_cap) {
    ic_decoder *d = NULL;
    int status = ic_decoder_open(data, length, 0, &d, info, error, error_cap);
    ic_decoder_close(d);
    return status;
}

int ic_decoder_damage(const ic_decoder *d, char *message, size_t message_cap) {
    if (d == NULL || d->format != IC_FORMAT_JPEG || !d->jerr.damaged) return 0;
    ic_set_error(message, message_cap, "%s", d->jerr.damage);
    return 1;
}
