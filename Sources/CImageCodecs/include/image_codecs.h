// image_codecs.h — JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB, and PNG encoding.
//
// Every function returns an `ic_status` and, on failure, writes a NUL-terminated message into
// `error` (capacity `error_cap`; may be NULL when `error_cap` is 0). Nothing here calls exit() or
// abort(), prints to stderr, or longjmps out of the function that was called: libjpeg and libpng
// errors are caught with setjmp inside each entry point.
//
// Decoded images are always 8-bit RGB, rows top to bottom, pixels interleaved (HWC):
//   * JPEG: grayscale is replicated into R=G=B; CMYK/YCCK is converted with PIL's formula (every
//     CMYK JPEG is taken as Adobe's inverted CMYK, which is undone first, as PIL does); EXIF
//     orientation (tag 0x0112 in the first APP1 "Exif" segment, as PIL reads it) is applied, so
//     width/height are those after rotation; DCT scaling can shrink the output while decoding (see
//     `min_side`).
//   * PNG: palette, 1/2/4/8/16-bit gray, gray+alpha, RGB, RGBA, 16-bit and Adam7-interlaced images
//     are all accepted. 16-bit samples keep their high byte (png_set_strip_16). Alpha is *dropped*,
//     not composited (like PIL's `convert("RGB")`). No gamma or colour-profile conversion is applied.
//   * The format is sniffed from the magic bytes, never from a file name.
#ifndef IMAGE_CODECS_H
#define IMAGE_CODECS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    IC_OK = 0,
    IC_ERR_CORRUPT = 1,      ///< malformed or damaged data (the decoder's message says what)
    IC_ERR_UNSUPPORTED = 2,  ///< not JPEG or PNG, or a JPEG/PNG variant the libraries cannot decode
    IC_ERR_TRUNCATED = 3,    ///< the data ends before the image does
    IC_ERR_IO = 4,           ///< a file could not be opened or read
    IC_ERR_TOO_LARGE = 5,    ///< dimensions beyond IC_MAX_PIXELS, or out of memory
    IC_ERR_ARGUMENT = 6,     ///< a bad argument (null pointer, buffer too small, bad dimensions)
} ic_status;

typedef enum {
    IC_FORMAT_UNKNOWN = 0,
    IC_FORMAT_JPEG = 1,
    IC_FORMAT_PNG = 2,
    IC_FORMAT_GIF = 3,
    IC_FORMAT_BMP = 4,
    IC_FORMAT_WEBP = 5,
    IC_FORMAT_TIFF = 6,
} ic_format;

/// Largest accepted width × height (decompression-bomb guard): PIL's, whose `DecompressionBombError`
/// starts above 2 × `Image.MAX_IMAGE_PIXELS` = 178,956,970 pixels (512 MiB of RGB). It was 2^28 until
/// 2026-12-06: a 261 KB PNG of 16384² zeros took 1 GB and 10 s to decode, where PIL refuses it.
#define IC_MAX_PIXELS ((uint64_t)178956970)

/// Most scans a progressive JPEG may have (libjpeg-turbo's defence, `djpeg -maxscans`; real files have
/// about 10): 20,000 repeated scans of a 6000² image took 64 s to decode from a 1.8 MB file.
#define IC_JPEG_MAX_SCANS 500

typedef struct {
    int32_t format;         ///< ic_format
    int32_t width;          ///< output width: after DCT scaling and EXIF orientation
    int32_t height;         ///< output height
    int32_t channels;       ///< output channels: always 3 (RGB)
    int32_t source_width;   ///< as stored in the file (full size, before orientation)
    int32_t source_height;
    int32_t source_channels;///< components in the file: 1 gray, 2 gray+alpha, 3 RGB/YCbCr, 4 RGBA/CMYK
    int32_t orientation;    ///< EXIF orientation 1…8 that is applied (1 when absent or invalid)
    int32_t scale_num;      ///< JPEG DCT scale is scale_num/8 (8 = full size); 8 for PNG
    int32_t progressive;    ///< JPEG progressive / PNG interlaced
} ic_image_info;

/// The format named by the first bytes of `data` (JPEG FF D8 FF, PNG 89 50 4E 47, GIF8, BM, RIFF…WEBP,
/// II*\0 / MM\0*).
int32_t ic_sniff_format(const uint8_t *data, size_t length);
/// "JPEG", "PNG", "GIF", "BMP", "WebP", "TIFF" or "unknown".
const char *ic_format_name(int32_t format);

/// Reads the header only (JPEG: markers up to the frame header, including EXIF orientation; PNG: the
/// chunks before the image data) and fills `info` as `ic_decode` would for `min_side` 0.
/// IC_ERR_TRUNCATED means the header is not complete within `length` bytes. With IC_ERR_TOO_LARGE,
/// `info`'s format, source_width and source_height hold the size the header declares (0 when unread).
int ic_probe(const uint8_t *data, size_t length, ic_image_info *info, char *error, size_t error_cap);

/// A two-step decoder, so callers can allocate the output themselves and have it decoded into directly.
/// `data` must stay valid and unchanged until `ic_decoder_close`.
///
/// `min_side` (JPEG only; 0 = full size) picks the smallest DCT scale n/8 (n = 1, 2, 4, 8: the SIMD ones) whose output still
/// has its shorter side ≥ `min_side`; when even 8/8 is smaller, the image is decoded at full size.
typedef struct ic_decoder ic_decoder;
int ic_decoder_open(const uint8_t *data, size_t length, int32_t min_side, ic_decoder **decoder,
                    ic_image_info *info, char *error, size_t error_cap);
/// Decoding flags for `ic_decoder_open_flags`.
enum {
    IC_DECODE_FAST = 1,        ///< JPEG: fast integer IDCT, no fancy upsampling (not PIL-exact; for augmentation)
    IC_DECODE_IGNORE_EXIF = 2  ///< JPEG: leave pixels as stored, ignoring the EXIF orientation (as PIL and Keras do)
};
/// `ic_decoder_open` with `flags` (a combination of IC_DECODE_* values).
int ic_decoder_open_flags(const uint8_t *data, size_t length, int32_t min_side, int32_t flags,
                          ic_decoder **decoder, ic_image_info *info, char *error, size_t error_cap);
/// Decodes into `pixels`, which must hold info.width * info.height * 3 bytes. Call at most once.
int ic_decoder_read(ic_decoder *decoder, uint8_t *pixels, size_t capacity, char *error, size_t error_cap);
void ic_decoder_close(ic_decoder *decoder);
/// After a read: 1 when the decoder had to make up part of the picture because the data was cut
/// short or corrupt inside a JPEG scan (libjpeg's "Corrupt JPEG data: premature end of data segment",
/// a bad Huffman code, a lost restart marker: it fills in zero coefficients or skips to the next restart marker, and
/// the read still succeeds, as with PIL), with libjpeg's warning in `message`; 0 otherwise.
int ic_decoder_damage(const ic_decoder *decoder, char *message, size_t message_cap);

/// The output size (after EXIF orientation) of the image decoded at DCT scale `scale_num`/8
/// (1, 2, 4 or 8; PNG: 8 only). Call before reading; the scale `min_side` chose is not changed by it.
int ic_decoder_scaled_size(ic_decoder *decoder, int32_t scale_num, int32_t *width, int32_t *height, char *error,
                           size_t error_cap);
/// Decodes only the window [left, left + width) × [top, top + height) of the image decoded at DCT scale
/// `scale_num`/8, in output coordinates (after EXIF orientation, at that scale), into `pixels`
/// (width * height * 3 bytes, HWC). Instead of `ic_decoder_read`, at most once.
/// JPEG: rows above the window are skipped and columns beside it cropped (libjpeg-turbo's
/// jpeg_skip_scanlines / jpeg_crop_scanline), so IDCT, upsampling and colour conversion shrink with the
/// window (entropy decoding does not); rows below are entropy-decoded without output, so truncated data
/// fails as in a full decode.
/// The pixels equal those of a full decode at that scale, cropped. PNG: decoded whole, then cropped.
int ic_decoder_read_window(ic_decoder *decoder, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                           int32_t height, uint8_t *pixels, size_t capacity, char *error, size_t error_cap);
/// `ic_decoder_read_window` into memory the decoder owns (valid until `ic_decoder_close`): `*pixels`
/// points at the window's top-left pixel and its rows are `*stride` bytes apart. For upright RGB JPEGs
/// libjpeg writes the rows there itself (no copy).
int ic_decoder_decode_window(ic_decoder *decoder, int32_t scale_num, int32_t left, int32_t top, int32_t width,
                             int32_t height, const uint8_t **pixels, size_t *stride, char *error,
                             size_t error_cap);

/// One-call decoding into a buffer allocated here; free `*pixels` with `ic_free`.
int ic_decode(const uint8_t *data, size_t length, int32_t min_side, uint8_t **pixels, ic_image_info *info,
              char *error, size_t error_cap);

/// Encodes an 8-bit gray (channels 1) or RGB (channels 3) HWC buffer as a PNG in memory.
/// `level` is the zlib compression level 0…9 (-1 = zlib's default). Free `*out` with `ic_free`.
int ic_png_encode(const uint8_t *pixels, int32_t width, int32_t height, int32_t channels, int32_t level,
                  uint8_t **out, size_t *length, char *error, size_t error_cap);

/// Files above this size are read whole only up to the end of their image (see `ic_read_file`).
#define IC_WHOLE_READ_LIMIT ((uint64_t)32 << 20)
/// A file above IC_WHOLE_READ_LIMIT whose image's end cannot be told (junk between JPEG markers, a
/// file cut short) is read whole up to this size, and refused above it (IC_ERR_TOO_LARGE).
#define IC_UNTOLD_READ_LIMIT ((uint64_t)1 << 30)

/// Reads up to `max_bytes` of the regular file `path` (0 = the whole file; for a file over
/// IC_WHOLE_READ_LIMIT, up to the end of its PNG's IEND or JPEG's EOI, or its first 64 KiB when it is
/// neither; one whose end cannot be told is refused above IC_UNTOLD_READ_LIMIT). `*file_size` receives the
/// file's full size, so a caller can tell whether it got everything. An empty file gives `*out` == a
/// valid zero-length allocation. Free `*out` with `ic_free`. Directories and unreadable paths fail
/// with IC_ERR_IO and strerror's reason.
int ic_read_file(const char *path, uint64_t max_bytes, uint8_t **out, uint64_t *length, uint64_t *file_size,
                 char *error, size_t error_cap);

/// Rearranges an HWC buffer into CHW (`dst` holds height * width * channels bytes, not overlapping).
void ic_hwc_to_chw(const uint8_t *src, uint8_t *dst, int32_t height, int32_t width, int32_t channels);

#ifdef __cplusplus
}
#endif
#endif
