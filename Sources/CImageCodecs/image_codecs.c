// image_codecs.c — JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB, and PNG encoding.
// See include/image_codecs.h for the contract. Error handling: libjpeg's error_exit and libpng's
// error callback longjmp back to a setjmp inside the entry point that is running; warnings and trace
// messages are swallowed (except libjpeg's "premature end of data", which is made fatal so that a
// truncated file is an error instead of a half-gray picture).
#include "image_codecs.h"
#include "gzip_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

// ------------------------------------------------------------------------------------------------
// Helpers

static void set_error(char *error, size_t cap, const char *format, ...) {
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

static int check_pixel_count(uint64_t width, uint64_t height, char *error, size_t cap) {
    if (width == 0 || height == 0) {
        set_error(error, cap, "image has zero size (%llux%llu)", (unsigned long long)width,
                  (unsigned long long)height);
        return IC_ERR_CORRUPT;
    }
    if (width > INT32_MAX || height > INT32_MAX || width * height > IC_MAX_PIXELS) {
        set_error(error, cap, "image is too large (%llux%llu pixels; the limit is %llu pixels)",
                  (unsigned long long)width, (unsigned long long)height, (unsigned long long)IC_MAX_PIXELS);
        return IC_ERR_TOO_LARGE;
    }
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Decoder state

struct ic_jpeg_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;                      // libjpeg reported a premature end of data
    char message[JMSG_LENGTH_MAX + 64];
};

struct ic_decoder {
    int32_t format;
    int fast;                           // IC_DECODE_FAST: JDCT_IFAST, no fancy upsampling
    const uint8_t *data;
    size_t length;
    ic_image_info info;
    int consumed;                       // ic_decoder_read was called
    uint8_t *scratch;                   // decode target before a transposing EXIF orientation
    uint8_t *window;                    // ic_decoder_decode_window's pixels

    // JPEG
    struct jpeg_decompress_struct jpeg;
    struct ic_jpeg_error jerr;
    int jpeg_created;
    int jpeg_cmyk;                      // output is CMYK (from CMYK or YCCK) and converted here
    int jpeg_adobe;                     // Adobe APP14 marker: CMYK samples are stored inverted

    // PNG
    png_structp png;
    png_infop png_info;
    size_t png_pos;
    int png_truncated;
    png_bytep *png_rows;
    char png_message[256];
};

// ------------------------------------------------------------------------------------------------
// JPEG

static void jpeg_error_exit_cb(j_common_ptr cinfo) {
    struct ic_jpeg_error *err = (struct ic_jpeg_error *)cinfo->err;
    char buffer[JMSG_LENGTH_MAX];
    buffer[0] = 0;
    (*cinfo->err->format_message)(cinfo, buffer);
    snprintf(err->message, sizeof err->message, "%s", buffer);
    longjmp(err->jump, 1);
}

static void jpeg_emit_message_cb(j_common_ptr cinfo, int level) {
    struct ic_jpeg_error *err = (struct ic_jpeg_error *)cinfo->err;
    if (level >= 0) return;             // trace messages
    err->pub.num_warnings++;
    if (err->pub.msg_code == JWRN_JPEG_EOF) {
        // The source manager ran out of data and inserted a fake EOI: the file is truncated.
        err->truncated = 1;
        snprintf(err->message, sizeof err->message, "JPEG data ends prematurely (truncated file)");
        longjmp(err->jump, 1);
    }
    // Other warnings ("Corrupt JPEG data: N extraneous bytes…") are tolerated, as PIL does.
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

static uint16_t read16(const uint8_t *p, int big_endian) {
    return big_endian ? (uint16_t)(p[0] << 8 | p[1]) : (uint16_t)(p[1] << 8 | p[0]);
}

static uint32_t read32(const uint8_t *p, int big_endian) {
    return big_endian ? ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3])
                      : ((uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]);
}

/// EXIF orientation (tag 0x0112 in IFD0) from an APP1 payload, or 1.
static int exif_orientation(const uint8_t *p, size_t n) {
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

static int jpeg_status(struct ic_decoder *d) { return d->jerr.truncated ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT; }

static int jpeg_open(struct ic_decoder *d, int32_t min_side, int32_t flags, char *error, size_t cap) {
    d->jpeg.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jpeg_error_exit_cb;
    d->jerr.pub.emit_message = jpeg_emit_message_cb;
    d->jerr.pub.output_message = jpeg_output_message_cb;
    if (setjmp(d->jerr.jump)) {
        set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    jpeg_create_decompress(&d->jpeg);
    d->jpeg_created = 1;
    jpeg_mem_src(&d->jpeg, (const unsigned char *)d->data, (unsigned long)d->length);
    jpeg_save_markers(&d->jpeg, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&d->jpeg, TRUE);

    int orientation = 1;
    for (jpeg_saved_marker_ptr m = d->jpeg.marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1) {
            int o = exif_orientation(m->data, m->data_length);
            if (o != 1 || orientation == 1) orientation = o;
            if (o != 1) break;
        }
    }

    switch (d->jpeg.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        d->jpeg.out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        d->jpeg.out_color_space = JCS_CMYK;  // libjpeg converts YCCK to CMYK; CMYK→RGB is done here
        d->jpeg_cmyk = 1;
        d->jpeg_adobe = d->jpeg.saw_Adobe_marker;
        break;
    default:
        set_error(error, cap, "unsupported JPEG colour space (%d components)", d->jpeg.num_components);
        return IC_ERR_UNSUPPORTED;
    }
    int status = check_pixel_count(d->jpeg.image_width, d->jpeg.image_height, error, cap);
    if (status != IC_OK) return status;

    // Only 1/8, 2/8, 4/8 and 8/8: libjpeg-turbo has SIMD IDCTs for those, while the other eighths
    // use scalar IDCTs that are slower than a full-size decode (measured: 7/8 cost more than 8/8).
    int scale = 8;
    if (min_side > 0) {
        for (scale = 1; scale <= 8; scale *= 2) {
            d->jpeg.scale_num = (unsigned)scale;
            d->jpeg.scale_denom = 8;
            jpeg_calc_output_dimensions(&d->jpeg);
            JDIMENSION shorter = d->jpeg.output_width < d->jpeg.output_height ? d->jpeg.output_width
                                                                               : d->jpeg.output_height;
            if (shorter >= (JDIMENSION)min_side) break;
        }
        if (scale > 8) scale = 8;
    }
    d->jpeg.scale_num = (unsigned)scale;
    d->jpeg.scale_denom = 8;
    jpeg_calc_output_dimensions(&d->jpeg);

    int32_t w = (int32_t)d->jpeg.output_width, h = (int32_t)d->jpeg.output_height;
    d->info.format = IC_FORMAT_JPEG;
    d->info.width = orientation >= 5 ? h : w;
    d->info.height = orientation >= 5 ? w : h;
    d->info.channels = 3;
    d->info.source_width = (int32_t)d->jpeg.image_width;
    d->info.source_height = (int32_t)d->jpeg.image_height;
    d->info.source_channels = d->jpeg.num_components;
    d->info.orientation = orientation;
    d->info.scale_num = scale;
    d->info.progressive = d->jpeg.progressive_mode ? 1 : 0;
    return IC_OK;
}

/// PIL's CMYK→RGB (Convert.c cmyk2rgb), after undoing Adobe's inverted storage, so results match it.
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, size_t width, int inverted) {
    for (size_t x = 0; x < width; x++, in += 4, out += 3) {
        unsigned c = in[0], m = in[1], y = in[2], k = in[3];
        if (inverted) { c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k; }
        unsigned nk = 255 - k, t;
#define MULDIV255(a, b) (t = (a) * (b) + 128, ((t >> 8) + t) >> 8)
        int r = (int)nk - (int)MULDIV255(c, nk);
        int g = (int)nk - (int)MULDIV255(m, nk);
        int b = (int)nk - (int)MULDIV255(y, nk);
#undef MULDIV255
        out[0] = (uint8_t)(r < 0 ? 0 : r);
        out[1] = (uint8_t)(g < 0 ? 0 : g);
        out[2] = (uint8_t)(b < 0 ? 0 : b);
    }
}

static void jpeg_set_output_options(struct ic_decoder *d) {
    if (d->fast) {
        // Faster, slightly less exact: for training-time augmentation, never for evaluation.
        d->jpeg.dct_method = JDCT_IFAST;
        d->jpeg.do_fancy_upsampling = FALSE;
    }
}

static int jpeg_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap) {
    if (setjmp(d->jerr.jump)) {
        set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    jpeg_set_output_options(d);
    jpeg_start_decompress(&d->jpeg);
    const size_t width = d->jpeg.output_width, height = d->jpeg.output_height;
    const int expected_components = d->jpeg_cmyk ? 4 : 3;
    if (d->jpeg.output_components != expected_components ||
        (int32_t)(width * height) != d->info.width * d->info.height) {
        set_error(error, cap, "libjpeg produced an unexpected output layout");
        return IC_ERR_CORRUPT;
    }
    const size_t stride = width * 3;
    if (!d->jpeg_cmyk) {
        while (d->jpeg.output_scanline < height) {
            JSAMPROW rows[16];
            size_t first = d->jpeg.output_scanline, n = height - first;
            if (n > 16) n = 16;
            for (size_t i = 0; i < n; i++) rows[i] = target + (first + i) * stride;
            jpeg_read_scanlines(&d->jpeg, rows, (JDIMENSION)n);
        }
    } else {
        JSAMPARRAY row = (*d->jpeg.mem->alloc_sarray)((j_common_ptr)&d->jpeg, JPOOL_IMAGE,
                                                      (JDIMENSION)(width * 4), 1);
        while (d->jpeg.output_scanline < height) {
            size_t y = d->jpeg.output_scanline;
            if (jpeg_read_scanlines(&d->jpeg, row, 1) != 1) continue;
            cmyk_row_to_rgb(row[0], target + y * stride, width, d->jpeg_adobe);
        }
    }
    // jpeg_finish_decompress is skipped on purpose: every scanline is in, and a file that only lacks
    // its EOI marker should still decode. ic_decoder_close destroys the decompressor.
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// PNG

static void png_error_cb(png_structp png, png_const_charp message) {
    struct ic_decoder *d = (struct ic_decoder *)png_get_error_ptr(png);
    if (d != NULL) snprintf(d->png_message, sizeof d->png_message, "%s", message ? message : "PNG error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp message) { (void)png; (void)message; }

static void png_read_cb(png_structp png, png_bytep out, size_t n) {
    struct ic_decoder *d = (struct ic_decoder *)png_get_io_ptr(png);
    if (n > d->length - d->png_pos) {
        d->png_truncated = 1;
        png_error(png, "PNG data ends prematurely (truncated file)");
    }
    memcpy(out, d->data + d->png_pos, n);
    d->png_pos += n;
}

static int png_status(struct ic_decoder *d) { return d->png_truncated ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT; }

static int png_open(struct ic_decoder *d, char *error, size_t cap) {
    d->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, d, png_error_cb, png_warning_cb);
    if (d->png == NULL) {
        set_error(error, cap, "cannot create a PNG reader (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    d->png_info = png_create_info_struct(d->png);
    if (d->png_info == NULL) {
        set_error(error, cap, "cannot create a PNG reader (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    if (setjmp(png_jmpbuf(d->png))) {
        set_error(error, cap, "%s", d->png_message);
        return png_status(d);
    }
    png_set_read_fn(d->png, d, png_read_cb);
    png_read_info(d->png, d->png_info);

    png_uint_32 width = 0, height = 0;
    int bit_depth = 0, color_type = 0, interlace = 0;
    png_get_IHDR(d->png, d->png_info, &width, &height, &bit_depth, &color_type, &interlace, NULL, NULL);
    int status = check_pixel_count(width, height, error, cap);
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
        set_error(error, cap, "PNG colour type %d with bit depth %d did not convert to 8-bit RGB", color_type,
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

static int png_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap) {
    const size_t height = (size_t)d->info.height, stride = (size_t)d->info.width * 3;
    d->png_rows = (png_bytep *)malloc(height * sizeof(png_bytep));
    if (d->png_rows == NULL) {
        set_error(error, cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    for (size_t y = 0; y < height; y++) d->png_rows[y] = target + y * stride;
    if (setjmp(png_jmpbuf(d->png))) {
        set_error(error, cap, "%s", d->png_message);
        return png_status(d);
    }
    png_read_image(d->png, d->png_rows);
    // png_read_end is skipped: the pixels are complete, and a file cut after its image data
    // (missing IEND) is still usable.
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Orientation

static void swap3(uint8_t *a, uint8_t *b) {
    uint8_t t0 = a[0], t1 = a[1], t2 = a[2];
    a[0] = b[0]; a[1] = b[1]; a[2] = b[2];
    b[0] = t0; b[1] = t1; b[2] = t2;
}

/// Orientations 2–4 in place on a w×h RGB buffer.
static void orient_in_place(uint8_t *p, size_t w, size_t h, int orientation) {
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
static void orient_transposed(const uint8_t *src, uint8_t *dst, size_t w, size_t h, int orientation) {
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

// ------------------------------------------------------------------------------------------------
// Public decoding API

int ic_decoder_open(const uint8_t *data, size_t length, int32_t min_side, ic_decoder **decoder,
                    ic_image_info *info, char *error, size_t error_cap) {
    return ic_decoder_open_flags(data, length, min_side, 0, decoder, info, error, error_cap);
}

int ic_decoder_open_flags(const uint8_t *data, size_t length, int32_t min_side, int32_t flags,
                          ic_decoder **decoder, ic_image_info *info, char *error, size_t error_cap) {
    if (decoder == NULL) {
        set_error(error, error_cap, "no decoder pointer given");
        return IC_ERR_ARGUMENT;
    }
    *decoder = NULL;
    if (data == NULL || length == 0) {
        set_error(error, error_cap, "empty image data (0 bytes)");
        return IC_ERR_CORRUPT;
    }
    int32_t format = ic_sniff_format(data, length);
    if (format != IC_FORMAT_JPEG && format != IC_FORMAT_PNG) {
        if (format != IC_FORMAT_UNKNOWN) {
            set_error(error, error_cap, "unsupported image format (%s); only JPEG and PNG can be decoded",
                      ic_format_name(format));
        } else {
            char hex[3 * 8 + 1] = {0};
            size_t shown = length < 8 ? length : 8;
            for (size_t i = 0; i < shown; i++) snprintf(hex + 3 * i, 4, i ? " %02x" : "%02x", data[i]);
            set_error(error, error_cap, "unsupported image format (not JPEG or PNG; starts with %s)", hex);
        }
        return IC_ERR_UNSUPPORTED;
    }
    struct ic_decoder *d = (struct ic_decoder *)calloc(1, sizeof *d);
    if (d == NULL) {
        set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    d->format = format;
    d->fast = (flags & IC_DECODE_FAST) != 0;
    d->data = data;
    d->length = length;
    int status = format == IC_FORMAT_JPEG ? jpeg_open(d, min_side < 0 ? 0 : min_side, flags, error, error_cap)
                                          : png_open(d, error, error_cap);
    if (status != IC_OK) {
        ic_decoder_close(d);
        return status;
    }
    if (info != NULL) *info = d->info;
    *decoder = d;
    return IC_OK;
}

int ic_decoder_read(ic_decoder *d, uint8_t *pixels, size_t capacity, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL) {
        set_error(error, error_cap, "no decoder or output buffer given");
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    d->consumed = 1;
    const size_t w = (size_t)d->info.width, h = (size_t)d->info.height, needed = w * h * 3;
    if (capacity < needed) {
        set_error(error, error_cap, "output buffer holds %zu bytes, %zu are needed", capacity, needed);
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) return png_read(d, pixels, error, error_cap);

    const int orientation = d->info.orientation;
    uint8_t *target = pixels;
    if (orientation >= 5) {
        d->scratch = (uint8_t *)malloc(needed);
        if (d->scratch == NULL) {
            set_error(error, error_cap, "out of memory");
            return IC_ERR_TOO_LARGE;
        }
        target = d->scratch;
    }
    int status = jpeg_read(d, target, error, error_cap);
    if (status != IC_OK) return status;
    if (orientation >= 5) {
        // decoded as (source) h×w, i.e. width = info.height
        orient_transposed(d->scratch, pixels, h, w, orientation);
    } else if (orientation > 1) {
        orient_in_place(pixels, w, h, orientation);
    }
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Windowed decoding

static int valid_scale(int32_t scale_num) { return scale_num == 1 || scale_num == 2 || scale_num == 4 || scale_num == 8; }

/// Sets the JPEG DCT scale and returns the stored (unoriented) output size at that scale.
static int jpeg_scale_to(struct ic_decoder *d, int32_t scale_num, JDIMENSION *w, JDIMENSION *h, char *error,
                         size_t cap) {
    if (setjmp(d->jerr.jump)) {
        set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    d->jpeg.scale_num = (unsigned)scale_num;
    d->jpeg.scale_denom = 8;
    jpeg_calc_output_dimensions(&d->jpeg);
    *w = d->jpeg.output_width;
    *h = d->jpeg.output_height;
    return IC_OK;
}

int ic_decoder_scaled_size(ic_decoder *d, int32_t scale_num, int32_t *width, int32_t *height, char *error,
                           size_t error_cap) {
    if (d == NULL || width == NULL || height == NULL || !valid_scale(scale_num)) {
        set_error(error, error_cap, "bad arguments (scale %d/8)", scale_num);
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) {
        if (scale_num != 8) {
            set_error(error, error_cap, "PNG images are only decoded at full size");
            return IC_ERR_ARGUMENT;
        }
        *width = d->info.width;
        *height = d->info.height;
        return IC_OK;
    }
    JDIMENSION w = 0, h = 0;
    int status = jpeg_scale_to(d, scale_num, &w, &h, error, error_cap);
    if (status != IC_OK) return status;
    const int transposed = d->info.orientation >= 5;
    *width = (int32_t)(transposed ? h : w);
    *height = (int32_t)(transposed ? w : h);
    return IC_OK;
}

/// Output rows per iMCU row at the current scale.
static JDIMENSION jpeg_imcu_rows(struct ic_decoder *d) {
#if JPEG_LIB_VERSION >= 70
    JDIMENSION rows = (JDIMENSION)(d->jpeg.max_v_samp_factor * d->jpeg.min_DCT_v_scaled_size);
#else
    JDIMENSION rows = (JDIMENSION)(d->jpeg.max_v_samp_factor * d->jpeg.min_DCT_scaled_size);
#endif
    return rows > 0 ? rows : 1;
}

/// Advances the output to row `target` (< output_height), decoding no more than it must. Only whole
/// iMCU rows are skipped, from one iMCU boundary to another; rows before and after are read into
/// `scratch` (BLOCK rows of the output width). libjpeg-turbo 2.1 can hang in jpeg_read_scanlines after
/// a skip that starts or ends inside an iMCU row with merged upsampling, so those skips are avoided.
static int jpeg_advance_to(struct ic_decoder *d, JDIMENSION target, JSAMPARRAY scratch, JDIMENSION block,
                           char *error, size_t cap) {
    const JDIMENSION imcu = jpeg_imcu_rows(d);
    while (d->jpeg.output_scanline < target) {
        const JDIMENSION at = d->jpeg.output_scanline;
        const JDIMENSION aligned_target = target / imcu * imcu;
#ifdef LIBJPEG_TURBO_VERSION
        if (at % imcu == 0 && aligned_target > at) {
            const JDIMENSION skip = aligned_target - at;
            if (jpeg_skip_scanlines(&d->jpeg, skip) != skip) {
                set_error(error, cap, "libjpeg could not skip to row %u", (unsigned)aligned_target);
                return IC_ERR_CORRUPT;
            }
            continue;
        }
#else
        (void)aligned_target;  // IJG libjpeg has no jpeg_skip_scanlines: rows are read and dropped
#endif
        // Read up to the next iMCU boundary (or the target, whichever is first).
        JDIMENSION next = (at / imcu + 1) * imcu;
        if (next > target) next = target;
        JDIMENSION want = next - at < block ? next - at : block;
        if (jpeg_read_scanlines(&d->jpeg, scratch, want) == 0) {
            set_error(error, cap, "libjpeg returned no scanlines");
            return IC_ERR_CORRUPT;
        }
    }
    return IC_OK;
}

/// Decodes the stored-orientation rectangle (sx, sy, sw, sh) of the JPEG at its current scale into
/// `target` (sw*sh*3 bytes, HWC), or, when `target` is NULL, into `d->window` (RGB output only), whose
/// rows are the cropped scanlines as libjpeg writes them: `*direct` then points at the rectangle's
/// first pixel and `*direct_stride` is the row pitch. Rows above are skipped, columns outside are
/// cropped (with a margin so that fancy upsampling sees the same neighbours as in a full decode), and
/// rows below are entropy-decoded without output, so a truncated file fails as it would in a full decode.
static int jpeg_read_rect(struct ic_decoder *d, JDIMENSION sx, JDIMENSION sy, JDIMENSION sw, JDIMENSION sh,
                          uint8_t *target, const uint8_t **direct, size_t *direct_stride, char *error,
                          size_t cap) {
    if (setjmp(d->jerr.jump)) {
        set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    jpeg_set_output_options(d);
    jpeg_start_decompress(&d->jpeg);
    const JDIMENSION width = d->jpeg.output_width, height = d->jpeg.output_height;
    const int components = d->jpeg_cmyk ? 4 : 3;
    if (d->jpeg.output_components != components || sx + sw > width || sy + sh > height) {
        set_error(error, cap, "libjpeg produced an unexpected output layout");
        return IC_ERR_CORRUPT;
    }
    const JDIMENSION margin = 2;
    JDIMENSION x0 = sx > margin ? sx - margin : 0;
    JDIMENSION x1 = width - (sx + sw) > margin ? sx + sw + margin : width;
    JDIMENSION xoffset = x0, crop_width = x1 - x0;
#ifdef LIBJPEG_TURBO_VERSION
    if (xoffset > 0 || crop_width < width) jpeg_crop_scanline(&d->jpeg, &xoffset, &crop_width);
#else
    xoffset = 0;  // IJG libjpeg has no jpeg_crop_scanline: whole rows are decoded
    crop_width = width;
#endif
    if (xoffset > sx || xoffset + crop_width < sx + sw || d->jpeg.output_width != crop_width) {
        set_error(error, cap, "libjpeg cropped an unexpected region");
        return IC_ERR_CORRUPT;
    }
    enum { BLOCK = 16 };
    JSAMPARRAY scratch = (*d->jpeg.mem->alloc_sarray)((j_common_ptr)&d->jpeg, JPOOL_IMAGE,
                                                      crop_width * (JDIMENSION)components, BLOCK);
    int status = jpeg_advance_to(d, sy, scratch, BLOCK, error, cap);
    if (status != IC_OK) return status;
    const size_t in_offset = (size_t)(sx - xoffset) * (size_t)components, stride = (size_t)sw * 3;
    JDIMENSION done = 0;
    if (target == NULL) {
        // Straight into the decoder's buffer: no copy.
        const size_t pitch = (size_t)crop_width * 3;
        if (d->jpeg_cmyk) {
            set_error(error, cap, "direct window decoding needs RGB output");
            return IC_ERR_ARGUMENT;
        }
        free(d->window);
        d->window = (uint8_t *)malloc(pitch * (size_t)sh);
        if (d->window == NULL) {
            set_error(error, cap, "out of memory");
            return IC_ERR_TOO_LARGE;
        }
        while (done < sh) {
            JSAMPROW rows[BLOCK];
            JDIMENSION want = sh - done < BLOCK ? sh - done : BLOCK;
            for (JDIMENSION i = 0; i < want; i++) rows[i] = d->window + (size_t)(done + i) * pitch;
            JDIMENSION got = jpeg_read_scanlines(&d->jpeg, rows, want);
            if (got == 0) {
                set_error(error, cap, "libjpeg returned no scanlines");
                return IC_ERR_CORRUPT;
            }
            done += got;
        }
        *direct = d->window + in_offset;
        *direct_stride = pitch;
    }
    JSAMPARRAY rows = scratch;
    while (done < sh) {
        JDIMENSION want = sh - done < BLOCK ? sh - done : BLOCK;
        JDIMENSION got = jpeg_read_scanlines(&d->jpeg, rows, want);
        if (got == 0) {
            set_error(error, cap, "libjpeg returned no scanlines");
            return IC_ERR_CORRUPT;
        }
        for (JDIMENSION i = 0; i < got; i++) {
            uint8_t *out = target + (size_t)(done + i) * stride;
            if (d->jpeg_cmyk) cmyk_row_to_rgb(rows[i] + in_offset, out, sw, d->jpeg_adobe);
            else memcpy(out, rows[i] + in_offset, stride);
        }
        done += got;
    }
    // Entropy-decode the rows below too, so that truncated data is noticed: skip to the last iMCU
    // row (a skip that reaches the last row would decode nothing) and read it. Multi-scan
    // (progressive) files were read to the end by jpeg_start_decompress already.
    if (d->jpeg.output_scanline < height && !jpeg_has_multiple_scans(&d->jpeg)) {
        const JDIMENSION imcu = jpeg_imcu_rows(d);
        status = jpeg_advance_to(d, (height - 1) / imcu * imcu, scratch, BLOCK, error, cap);
        if (status != IC_OK) return status;
        while (d->jpeg.output_scanline < height) {
            JDIMENSION want = height - d->jpeg.output_scanline < BLOCK ? height - d->jpeg.output_scanline : BLOCK;
            if (jpeg_read_scanlines(&d->jpeg, scratch, want) == 0) {
                set_error(error, cap, "libjpeg returned no scanlines");
                return IC_ERR_CORRUPT;
            }
        }
    }
    return IC_OK;
}

int ic_decoder_read_window(ic_decoder *d, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                           int32_t height, uint8_t *pixels, size_t capacity, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL || !valid_scale(scale_num)) {
        set_error(error, error_cap, "no decoder or output buffer given, or a bad scale (%d/8)", scale_num);
        return IC_ERR_ARGUMENT;
    }
    if (d->consumed) {
        set_error(error, error_cap, "this decoder was already read");
        return IC_ERR_ARGUMENT;
    }
    int32_t full_w = 0, full_h = 0;
    int status = ic_decoder_scaled_size(d, scale_num, &full_w, &full_h, error, error_cap);
    if (status != IC_OK) return status;
    if (left < 0 || top < 0 || width <= 0 || height <= 0 || left > full_w - width || top > full_h - height) {
        set_error(error, error_cap, "window %dx%d at (%d, %d) is outside the %dx%d image", width, height, left, top,
                  full_w, full_h);
        return IC_ERR_ARGUMENT;
    }
    const size_t needed = (size_t)width * (size_t)height * 3;
    if (capacity < needed) {
        set_error(error, error_cap, "output buffer holds %zu bytes, %zu are needed", capacity, needed);
        return IC_ERR_ARGUMENT;
    }
    if (d->format == IC_FORMAT_PNG) {
        // No partial PNG decoding: decode everything, keep the window.
        const size_t row = (size_t)full_w * 3, whole = row * (size_t)full_h;
        d->scratch = (uint8_t *)malloc(whole);
        if (d->scratch == NULL) {
            set_error(error, error_cap, "out of memory");
            return IC_ERR_TOO_LARGE;
        }
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
    uint8_t *target = pixels;
    if (o >= 5) {
        d->scratch = (uint8_t *)malloc(needed);
        if (d->scratch == NULL) {
            set_error(error, error_cap, "out of memory");
            return IC_ERR_TOO_LARGE;
        }
        target = d->scratch;
    }
    status = jpeg_read_rect(d, (JDIMENSION)sx, (JDIMENSION)sy, (JDIMENSION)sw, (JDIMENSION)sh, target, NULL, NULL,
                            error, error_cap);
    if (status != IC_OK) return status;
    if (o >= 5) orient_transposed(d->scratch, pixels, (size_t)sw, (size_t)sh, o);
    else if (o > 1) orient_in_place(pixels, (size_t)sw, (size_t)sh, o);
    return IC_OK;
}

int ic_decoder_decode_window(ic_decoder *d, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                             int32_t height, const uint8_t **pixels, size_t *stride, char *error, size_t error_cap) {
    if (d == NULL || pixels == NULL || stride == NULL) {
        set_error(error, error_cap, "no decoder or output pointers given");
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
            set_error(error, error_cap, "window %dx%d at (%d, %d) is outside the %dx%d image", width, height, left,
                      top, full_w, full_h);
            return IC_ERR_ARGUMENT;
        }
        d->consumed = 1;
        return jpeg_read_rect(d, (JDIMENSION)left, (JDIMENSION)top, (JDIMENSION)width, (JDIMENSION)height, NULL,
                              pixels, stride, error, error_cap);
    }
    // Otherwise (PNG, EXIF orientation, CMYK): decode the window compactly into the decoder's buffer.
    if (width <= 0 || height <= 0) {
        set_error(error, error_cap, "empty window %dx%d", width, height);
        return IC_ERR_ARGUMENT;
    }
    const size_t needed = (size_t)width * (size_t)height * 3;
    free(d->window);
    d->window = (uint8_t *)malloc(needed);
    if (d->window == NULL) {
        set_error(error, error_cap, "out of memory");
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
        set_error(error, error_cap, "no output pointer given");
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
        set_error(error, error_cap, "out of memory");
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
        set_error(error, error_cap, "no input or output pointer given");
        return IC_ERR_ARGUMENT;
    }
    *out = NULL;
    *length = 0;
    if (channels != 1 && channels != 3) {
        set_error(error, error_cap, "PNG encoding takes 1 (gray) or 3 (RGB) channels, not %d", channels);
        return IC_ERR_ARGUMENT;
    }
    if (width <= 0 || height <= 0) {
        set_error(error, error_cap, "cannot encode a %dx%d image", width, height);
        return IC_ERR_ARGUMENT;
    }
    const int32_t zlib_level = level > 9 ? 9 : level;
    struct ic_png_writer *w = (struct ic_png_writer *)calloc(1, sizeof *w);
    if (w == NULL) {
        set_error(error, error_cap, "out of memory");
        return IC_ERR_TOO_LARGE;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, png_write_error_cb, png_warning_cb);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (png == NULL || info == NULL) {
        if (png != NULL) png_destroy_write_struct(&png, NULL);
        free(w);
        set_error(error, error_cap, "cannot create a PNG writer (out of memory)");
        return IC_ERR_TOO_LARGE;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        set_error(error, error_cap, "%s", w->message);
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

// ------------------------------------------------------------------------------------------------
// Files and layout

int ic_read_file(const char *path, uint64_t max_bytes, uint8_t **out, uint64_t *length, uint64_t *file_size,
                 char *error, size_t error_cap) {
    if (path == NULL || out == NULL || length == NULL) {
        set_error(error, error_cap, "no path or output pointer given");
        return IC_ERR_ARGUMENT;
    }
    *out = NULL;
    *length = 0;
    if (file_size) *file_size = 0;
    int fd;
    do { fd = open(path, O_RDONLY | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        set_error(error, error_cap, "%s", strerror(errno));
        return IC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        set_error(error, error_cap, "%s", strerror(errno));
        close(fd);
        return IC_ERR_IO;
    }
    if (S_ISDIR(st.st_mode)) {
        set_error(error, error_cap, "%s", strerror(EISDIR));
        close(fd);
        return IC_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(error, error_cap, "not a regular file");
        close(fd);
        return IC_ERR_IO;
    }
    uint64_t size = (uint64_t)st.st_size;
    uint64_t want = max_bytes != 0 && max_bytes < size ? max_bytes : size;
    if (want > SIZE_MAX - 1) {
        set_error(error, error_cap, "file too large (%llu bytes)", (unsigned long long)size);
        close(fd);
        return IC_ERR_TOO_LARGE;
    }
    uint8_t *buffer = (uint8_t *)malloc((size_t)want + 1);   // +1: a valid allocation when empty
    if (buffer == NULL) {
        set_error(error, error_cap, "out of memory reading %llu bytes", (unsigned long long)want);
        close(fd);
        return IC_ERR_TOO_LARGE;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buffer + got, (size_t)(want - got));
        if (n < 0) {
            if (errno == EINTR) continue;
            set_error(error, error_cap, "%s", strerror(errno));
            free(buffer);
            close(fd);
            return IC_ERR_IO;
        }
        if (n == 0) break;  // the file shrank while reading
        got += (size_t)n;
    }
    close(fd);
    *out = buffer;
    *length = got;
    if (file_size) *file_size = got < want ? got : size;
    return IC_OK;
}

void ic_hwc_to_chw(const uint8_t *src, uint8_t *dst, int32_t height, int32_t width, int32_t channels) {
    const size_t plane = (size_t)height * (size_t)width;
    if (channels == 1) {
        memcpy(dst, src, plane);
    } else if (channels == 3) {
        uint8_t *r = dst, *g = dst + plane, *b = dst + 2 * plane;
        for (size_t i = 0; i < plane; i++, src += 3) {
            r[i] = src[0];
            g[i] = src[1];
            b[i] = src[2];
        }
    } else {
        for (size_t i = 0; i < plane; i++)
            for (int32_t c = 0; c < channels; c++) dst[(size_t)c * plane + i] = src[i * (size_t)channels + c];
    }
}
