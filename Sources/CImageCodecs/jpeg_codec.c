// jpeg_codec.c — JPEG decoding with libjpeg(-turbo): the header (colour space, EXIF orientation, DCT
// scale), whole images, and windows (rows skipped, columns cropped). libjpeg's error_exit longjmps
// back to the setjmp of the function that is running; "premature end of data" is made fatal.
#include "codec_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

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
    // Other warnings are tolerated, as PIL does. Those that mean lost scan data (a marker or bad code
    // inside the entropy-coded data: libjpeg fills in zero coefficients for the rest, or skips to the next
    // restart marker) are kept for ic_decoder_damage; extraneous bytes between markers lose nothing.
    int code = err->pub.msg_code;
    if (!err->damaged && (code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE || code == JWRN_ARITH_BAD_CODE
                          || code == JWRN_MUST_RESYNC)) {
        err->damaged = 1;
        (*cinfo->err->format_message)(cinfo, err->damage);
    }
}

static void jpeg_output_message_cb(j_common_ptr cinfo) { (void)cinfo; }

// Called by libjpeg while it reads; a progressive file past IC_JPEG_MAX_SCANS is an error (each scan
// costs a pass over every coefficient, so a small file of repeated scans takes minutes to decode).
static void jpeg_progress_cb(j_common_ptr cinfo) {
    if (!cinfo->is_decompressor) return;
    j_decompress_ptr dinfo = (j_decompress_ptr)cinfo;
    if (dinfo->progressive_mode && dinfo->input_scan_number > IC_JPEG_MAX_SCANS) {
        struct ic_jpeg_error *err = (struct ic_jpeg_error *)cinfo->err;
        snprintf(err->message, sizeof err->message, "progressive JPEG with more than %d scans (a decoding bomb)",
                 IC_JPEG_MAX_SCANS);
        longjmp(err->jump, 1);
    }
}

static int jpeg_status(struct ic_decoder *d) { return d->jerr.truncated ? IC_ERR_TRUNCATED : IC_ERR_CORRUPT; }

int ic_jpeg_open(struct ic_decoder *d, int32_t min_side, int32_t flags, char *error, size_t cap) {
    d->jpeg.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jpeg_error_exit_cb;
    d->jerr.pub.emit_message = jpeg_emit_message_cb;
    d->jerr.pub.output_message = jpeg_output_message_cb;
    if (setjmp(d->jerr.jump)) {
        ic_set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    jpeg_create_decompress(&d->jpeg);
    d->jpeg_created = 1;
    d->jpeg_progress.progress_monitor = jpeg_progress_cb;
    d->jpeg.progress = &d->jpeg_progress;
    jpeg_mem_src(&d->jpeg, (const unsigned char *)d->data, (unsigned long)d->length);
    jpeg_save_markers(&d->jpeg, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&d->jpeg, TRUE);

    // The first Exif APP1 segment decides, as in PIL (JpegImagePlugin keeps the first, and
    // exif_transpose reads it): a later one (or an XMP APP1) is not read, even when the first has no
    // orientation tag.
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = d->jpeg.marker_list; m != NULL; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 5 && memcmp(m->data, "Exif\0", 5) == 0) {
            orientation = ic_exif_orientation(m->data, m->data_length);
            break;
        }
    }
    if (flags & IC_DECODE_IGNORE_EXIF) orientation = 1;

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
        break;
    default:
        ic_set_error(error, cap, "unsupported JPEG colour space (%d components)", d->jpeg.num_components);
        return IC_ERR_UNSUPPORTED;
    }
    d->info.source_width = (int32_t)d->jpeg.image_width;  // JPEG sides are at most 65535
    d->info.source_height = (int32_t)d->jpeg.image_height;
    int status = ic_check_pixel_count(d->jpeg.image_width, d->jpeg.image_height, error, cap);
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
/// Like PIL (JpegImagePlugin's "CMYK;I", "assume adobe conventions"), every CMYK JPEG is taken as
/// stored inverted, with or without an Adobe marker: Photoshop writes it so, and a decoder that
/// inverts only marked files gives other colours than PIL for unmarked ones.
static void cmyk_row_to_rgb(const uint8_t *in, uint8_t *out, size_t width) {
    for (size_t x = 0; x < width; x++, in += 4, out += 3) {
        unsigned c = 255u - in[0], m = 255u - in[1], y = 255u - in[2], k = 255u - in[3];
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

/// Starts decompressing with the decoder's output options, and returns the components per pixel
/// libjpeg must put out: 4 for CMYK (converted to RGB row by row), else 3. Call it where libjpeg's
/// errors are caught (after `setjmp`).
static int start_jpeg_output(struct ic_decoder *d) {
    if (d->fast) {
        // Faster, slightly less exact: for training-time augmentation, never for evaluation.
        d->jpeg.dct_method = JDCT_IFAST;
        d->jpeg.do_fancy_upsampling = FALSE;
    }
    jpeg_start_decompress(&d->jpeg);
    return d->jpeg_cmyk ? 4 : 3;
}

int ic_jpeg_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap) {
    if (setjmp(d->jerr.jump)) {
        ic_set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    const int expected_components = start_jpeg_output(d);
    const size_t width = d->jpeg.output_width, height = d->jpeg.output_height;
    if (d->jpeg.output_components != expected_components ||
        (int32_t)(width * height) != d->info.width * d->info.height) {
        ic_set_error(error, cap, "libjpeg produced an unexpected output layout");
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
            cmyk_row_to_rgb(row[0], target + y * stride, width);
        }
    }
    // jpeg_finish_decompress is skipped on purpose: every scanline is in, and a file that only lacks
    // its EOI marker should still decode. ic_decoder_close destroys the decompressor.
    return IC_OK;
}

// ------------------------------------------------------------------------------------------------
// Windowed decoding

/// Sets the JPEG DCT scale and returns the stored (unoriented) output size at that scale.
int ic_jpeg_scale_to(struct ic_decoder *d, int32_t scale_num, JDIMENSION *w, JDIMENSION *h, char *error,
                     size_t cap) {
    if (setjmp(d->jerr.jump)) {
        ic_set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    d->jpeg.scale_num = (unsigned)scale_num;
    d->jpeg.scale_denom = 8;
    jpeg_calc_output_dimensions(&d->jpeg);
    *w = d->jpeg.output_width;
    *h = d->jpeg.output_height;
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
                ic_set_error(error, cap, "libjpeg could not skip to row %u", (unsigned)aligned_target);
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
            ic_set_error(error, cap, "libjpeg returned no scanlines");
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
int ic_jpeg_read_rect(struct ic_decoder *d, JDIMENSION sx, JDIMENSION sy, JDIMENSION sw, JDIMENSION sh,
                      uint8_t *target, const uint8_t **direct, size_t *direct_stride, char *error,
                      size_t cap) {
    if (setjmp(d->jerr.jump)) {
        ic_set_error(error, cap, "%s", d->jerr.message);
        return jpeg_status(d);
    }
    const int components = start_jpeg_output(d);
    const JDIMENSION width = d->jpeg.output_width, height = d->jpeg.output_height;
    if (d->jpeg.output_components != components || sx + sw > width || sy + sh > height) {
        ic_set_error(error, cap, "libjpeg produced an unexpected output layout");
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
        ic_set_error(error, cap, "libjpeg cropped an unexpected region");
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
            ic_set_error(error, cap, "direct window decoding needs RGB output");
            return IC_ERR_ARGUMENT;
        }
        free(d->window);
        d->window = (uint8_t *)malloc(pitch * (size_t)sh);
        if (d->window == NULL) {
            ic_set_error(error, cap, "out of memory");
            return IC_ERR_TOO_LARGE;
        }
        while (done < sh) {
            JSAMPROW rows[BLOCK];
            JDIMENSION want = sh - done < BLOCK ? sh - done : BLOCK;
            for (JDIMENSION i = 0; i < want; i++) rows[i] = d->window + (size_t)(done + i) * pitch;
            JDIMENSION got = jpeg_read_scanlines(&d->jpeg, rows, want);
            if (got == 0) {
                ic_set_error(error, cap, "libjpeg returned no scanlines");
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
            ic_set_error(error, cap, "libjpeg returned no scanlines");
            return IC_ERR_CORRUPT;
        }
        for (JDIMENSION i = 0; i < got; i++) {
            uint8_t *out = target + (size_t)(done + i) * stride;
            if (d->jpeg_cmyk) cmyk_row_to_rgb(rows[i] + in_offset, out, sw);
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
                ic_set_error(error, cap, "libjpeg returned no scanlines");
                return IC_ERR_CORRUPT;
            }
        }
    }
    return IC_OK;
}
