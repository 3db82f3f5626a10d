// png_codec.c — PNG decoding to 8-bit RGB and PNG encoding in memory, with libpng. libpng's error
// callback longjmps back to the setjmp of the function that is running; warnings are swallowed.
#include "codec_internal.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

// ------------------------------------------------------------------------------------------------
// PNG

static void png_error_cb(png_structp png, png_const_charp message) {
    struct ic_decoder *d = (struct ic_decoder *)png_get_error_ptr(png);
    if (d != NULL) snprintf(d->png_message, sizeof d->png_message, "%s", message ? message : "PNG error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp message) { (void)png; (void)message; }

// Input libpng may read once every row is in the caller's buffer: the end of the zlib stream, its
// checksum, the chunk's CRC and the next chunk's header (a few bytes for any encoder).
#define IC_PNG_TAIL_LIMIT ((size_t)64 * 1024)

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    struct ic_decoder *d = (struct ic_decoder *)png_get_io_ptr(png);
    if (d->png_reading_rows) {
        // After the last row (row number past the height, or pass 7 of an interlaced image) libpng
        // inflates whatever compressed data is left, only to discard it: a 1x1 image whose IDAT holds
        // 19 GB of zeros kept a decoder busy for a minute. Past a small tail, stop: the pixels are whole.
        int finishing = png_get_current_pass_number(png) >= 7 ||
                        (!d->info.progressive && png_get_current_row_number(png) >= (png_uint_32)d->info.height);
        if (finishing) {
            if (n > IC_PNG_TAIL_LIMIT - d->png_tail_bytes) {
                d->png_rows_complete = 1;
                png_error(png, "compressed data continues past the image");
            }
            d->png_tail_bytes += n;
        }
    }
    if (n > d->length - d->png_pos) {
        d->png_truncated = 1;
        png_error(png, "PNG data ends prematurely (truncated file)");
    }
    memcpy(out, d->data + d->png_pos, n);
    d->png_pos += n;
}

static int png_status(struct ic_decoder *d) { return d->png_truncated ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT; }

int ic_png_open(struct ic_decoder *d, char *error, size_t cap) {
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_error_cb, png_warning_cb);
    if (d->png == NULL) {
        ic_set_error(error, cap, "cannot create a PNG reader (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    d->png_info = png_create_info_struct(d->png);
    if (d->png_info == NULL) {
        ic_set_error(error, cap, "cannot create a PNG reader (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    if (setjmp(png_jmpbuf(d->png))) {
        ic_set_error(error, cap, "%s", d->png_message);
        return png_status(d);
    }
    png_set_read_fn(d->png, d, png_read_cb);
    // The size, from IHDR (always the first chunk), before libpng checks it: libpng refuses a side over
    // its per-side limit (1,000,000 pixels) as "Invalid IHDR data", which names neither size nor limit.
    if (d->length >= 24 && memcmp(d->data + 12, "IHDR", 4) == 0) {
        const uint8_t *h = d->data + 16;
        uint64_t w = (uint64_t)h[0] << 24 | (uint64_t)h[1] << 16 | (uint64_t)h[2] << 8 | h[3];
        uint64_t t = (uint64_t)h[4] << 24 | (uint64_t)h[5] << 16 | (uint64_t)h[6] << 8 | h[7];
        d->info.source_width = (int32_t)(w > INT32_MAX ? INT32_MAX : w);
        d->info.source_height = (int32_t)(t > INT32_MAX ? INT32_MAX : t);
        int status = ic_check_pixel_count(w, t, error, cap);
        if (status != IC_OK) return status;
        uint64_t side = png_get_user_width_max(d->png);
        if (w > side || t > png_get_user_height_max(d->png)) {
            ic_set_error(error, cap, "image is too large (%llux%llu pixels; PNG images are read up to %llu pixels a side)",
                         (unsigned long long)w, (unsigned long long)t, (unsigned long long)side);
            return IC_ERR_TOO_LARGE;
        }
    }
    png_read_info(d->png, d->png_info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(d->png, d->png_info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    int status = ic_check_pixel_count(width, height, error, cap);
    if (status != IC_OK) return status;
    int source_channels = png_get_channels(d->png, d->png_info);

    if (bit_depth == 16) png_set_strip_16(d->png);          // keep the high byte
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(d->png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0 && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(d->png);
    // Alpha (an alpha channel, or tRNS, which palette expansion turns into one) is dropped.
    if ((color_type & PNG_COLOR_MASK_ALPHA) || png_get_valid(d->png, d->png_info, PNG_INFO_tRNS))
        png_set_strip_alpha(d->png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) png_set_gray_to_rgb(d->png);
    png_set_interlace_handling(d->png);
    png_read_update_info(d->png, d->png_info);

    if (png_get_channels(d->png, d->png_info) != 3 || png_get_bit_depth(d->png, d->png_info) != 8 ||
        png_get_rowbytes(d->png, d->png_info) != (size_t)width * 3) {
        ic_set_error(error, cap, "PNG colour type %d with bit depth %d did not convert to 8-bit RGB", color_type,
                     bit_depth);
        return IC_ERR_UNSUPPORTED;
    }
    d->info.format = IC_FORMAT_PNG;
    d->info.width = (int32_t)width;
    d->info.height = (int32_t)height;
    d->info.channels = 3;
    d->info.source_width = (int32_t)width;
    d->info.source_height = (int32_t)height;
    d->info.source_channels = source_channels;
    d->info.orientation = 1;
    d->info.scale_num = 8;
    d->info.progressive = interlace != PNG_INTERLACE_NONE;
    return IC_OK;
}

int ic_png_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap) {
    const size_t height = (size_t)d->info.height, stride = (size_t)d->info.width * 3;
    d->png_rows = (png_bytep *)malloc(height * sizeof(png_bytep));
    if (d->png_rows == NULL) {
        ic_set_error(error, cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    for (size_t y = 0; y < height; y++) d->png_rows[y] = target + y * stride;
    d->png_reading_rows = 1;
    d->png_tail_bytes = 0;
    d->png_rows_complete = 0;
    if (setjmp(png_jmpbuf(d->png))) {
        d->png_reading_rows = 0;
        if (d->png_rows_complete) return IC_OK;  // every row was read; only surplus data was left
        ic_set_error(error, cap, "%s", d->png_message);
        return png_status(d);
    }
    png_read_image(d->png, d->png_rows);
    d->png_reading_rows = 0;
    // png_read_end is skipped: the pixels are complete, and a file cut after its image data
    // (missing IEND) is still usable.
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// PNG encoding

struct ic_png_writer {
    uint8_t *data;
    size_t length, capacity;
    char message[256];
};

static void png_write_error_cb(png_structp png, png_const_charp message) {
    struct ic_png_writer *w = (struct ic_png_writer *)png_get_error_ptr(png);
    snprintf(w->message, sizeof w->message, "%s", message ? message : "PNG error");
    png_longjmp(png, 1);
}

static void png_write_cb(png_structp png, png_bytep bytes, size_t n) {
    struct ic_png_writer *w = (struct ic_png_writer *)png_get_io_ptr(png);
    if (n > w->capacity - w->length) {
        size_t capacity = w->capacity ? w->capacity : 4096;
        while (n > capacity - w->length) {
            if (capacity > SIZE_MAX / 2) png_error(png, "PNG output too large");
            capacity *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc(w->data, capacity);
        if (grown == NULL) png_error(png, "out of memory while encoding PNG");
        w->data = grown;
        w->capacity = capacity;
    }
    memcpy(w->data + w->length, bytes, n);
    w->length += n;
}

static void png_flush_cb(png_structp png) { (void)png; }

int ic_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels, int32_t level,
                  uint8_t **out, size_t *length, char *error, size_t error_cap) {
    if (out == NULL || length == NULL || pixels == NULL) {
        ic_set_error(error, error_cap, "no input or output pointer given");
        return IC_ERR_ARGUMENT;
    }
    *out = NULL;
    *length = 0;
    if (channels != 1 && channels != 3) {
        ic_set_error(error, error_cap, "PNG encoding takes 1 (gray) or 3 (RGB) channels, not %d", channels);
        return IC_ERR_ARGUMENT;
    }
    if (width <= 0 || height <= 0) {
        ic_set_error(error, error_cap, "cannot encode a %dx%d image", width, height);
        return IC_ERR_ARGUMENT;
    }
    const int32_t zlib_level = level > 9 ? 9 : level;
    struct ic_png_writer *w = (struct ic_png_writer *)calloc(1, sizeof *w);
    if (w == NULL) {
        ic_set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, png_write_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        if (png != NULL) png_destroy_write_struct(&png, NULL);
        free(w);
        ic_set_error(error, error_cap, "cannot create a PNG writer (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        ic_set_error(error, error_cap, "%s", w->message);
        free(w->data);
        free(w);
        return IC_ERR_CORRUPT;
    }
    png_set_write_fn(png, w, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (zlib_level >= 0) png_set_compression_level(png, zlib_level);
    png_write_info(png, info);
    const size_t stride = (size_t)width * (size_t)channels;
    for (int32_t y = 0; y < height; y++) png_write_row(png, pixels + (size_t)y * stride);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    *out = w->data;
    *length = w->length;
    free(w);
    return IC_OK;
}

