// codec_internal.h — declarations shared by the codec files of CImageCodecs (not part of the public
// API: it lies outside include/, so the module map does not export it).
//
//   decoder.c     the public decoding API (sniffing, the two-step decoder, windows, ic_decode, ic_probe)
//                 and the shared helpers below
//   jpeg_codec.c  JPEG decoding with libjpeg(-turbo): header, full and windowed reads
//   png_codec.c   PNG decoding and encoding with libpng
//   exif.c        EXIF orientation: reading the tag and applying it to pixels
//   image_io.c    whole-file reading and HWC → CHW layout
#ifndef IC_CODEC_INTERNAL_H
#define IC_CODEC_INTERNAL_H
#include "image_codecs.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jpeglib.h>
#include <png.h>

#if defined(__GNUC__) || defined(__clang__)
#define IC_INTERNAL __attribute__((visibility("hidden")))
#else
#define IC_INTERNAL
#endif

// ------------------------------------------------------------------------------------------------
// Decoder state

struct ic_jpeg_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;                      // libjpeg reported a premature end of data
    int damaged;                        // libjpeg made up part of the picture (see ic_decoder_damage)
    char damage[JMSG_LENGTH_MAX];       // its first such warning
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
    struct jpeg_progress_mgr jpeg_progress;  // refuses more than IC_JPEG_MAX_SCANS scans
    int jpeg_created;
    int jpeg_cmyk;                      // output is CMYK (from CMYK or YCCK) and converted here

    // PNG
    png_structp png;
    png_infop png_info;
    size_t png_pos;
    int png_truncated;
    png_bytep *png_rows;
    int png_reading_rows;      // inside ic_png_read's png_read_image
    size_t png_tail_bytes;     // input read after the last row was complete
    int png_rows_complete;     // stopped after the last row: the pixels are whole
    char png_message[256];
};

// ------------------------------------------------------------------------------------------------
// Helpers (decoder.c)

/// Writes a printf-style message into `error` (capacity `cap`); does nothing when there is no room.
IC_INTERNAL void ic_set_error(char *error, size_t cap, const char *format, ...);
/// IC_OK, or IC_ERR_CORRUPT for a zero size, or IC_ERR_TOO_LARGE beyond IC_MAX_PIXELS (with a message).
IC_INTERNAL int ic_check_pixel_count(uint64_t width, uint64_t height, char *error, size_t cap);

// ------------------------------------------------------------------------------------------------
// JPEG (jpeg_codec.c)

/// Reads the header of `d->data` and fills `d->info`, choosing the DCT scale for `min_side`.
IC_INTERNAL int ic_jpeg_open(struct ic_decoder *d, int32_t min_side, int32_t flags, char *error, size_t cap);
/// Decodes the whole image in stored orientation into `target` (output_width * output_height * 3 bytes).
IC_INTERNAL int ic_jpeg_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap);
/// Sets the JPEG DCT scale and returns the stored (unoriented) output size at that scale.
IC_INTERNAL int ic_jpeg_scale_to(struct ic_decoder *d, int32_t scale_num, JDIMENSION *w, JDIMENSION *h,
                                 char *error, size_t cap);
/// Decodes the stored-orientation rectangle (sx, sy, sw, sh) at the current scale into `target`, or,
/// when `target` is NULL, into `d->window` (see jpeg_codec.c).
IC_INTERNAL int ic_jpeg_read_rect(struct ic_decoder *d, JDIMENSION sx, JDIMENSION sy, JDIMENSION sw,
                                  JDIMENSION sh, uint8_t *target, const uint8_t **direct, size_t *direct_stride,
                                  char *error, size_t cap);

// ------------------------------------------------------------------------------------------------
// PNG (png_codec.c)

/// Reads the chunks before the image data, sets up the conversion to 8-bit RGB and fills `d->info`.
IC_INTERNAL int ic_png_open(struct ic_decoder *d, char *error, size_t cap);
/// Decodes the whole image into `target` (width * height * 3 bytes).
IC_INTERNAL int ic_png_read(struct ic_decoder *d, uint8_t *target, char *error, size_t cap);

// ------------------------------------------------------------------------------------------------
// EXIF orientation (exif.c)

/// EXIF orientation (tag 0x0112 in IFD0) from an APP1 payload, or 1.
IC_INTERNAL int ic_exif_orientation(const uint8_t *p, size_t n);
/// Orientations 2–4 in place on a w×h RGB buffer.
IC_INTERNAL void ic_orient_in_place(uint8_t *p, size_t w, size_t h, int orientation);
/// Orientations 5–8: `src` is w×h, `dst` becomes h×w (PIL's TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90).
IC_INTERNAL void ic_orient_transposed(const uint8_t *src, uint8_t *dst, size_t w, size_t h, int orientation);

#endif
