// image_io.c — whole-file reading (ic_read_file) and HWC → CHW layout (ic_hwc_to_chw).
#include "codec_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ------------------------------------------------------------------------------------------------
// Files and layout

/// `count` bytes of `fd` at `offset` (fewer at the end of the file); -1 on an error.
static ssize_t read_at(int fd, uint8_t *buffer, size_t count, uint64_t offset) {
    size_t got = 0;
    while (got < count) {
        ssize_t n = pread(fd, buffer + got, count - got, (off_t)(offset + got));
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/// An image extent that cannot be told from the file's structure (see `image_extent`).
#define UNTOLD UINT64_MAX

/// A window over a file that moves forward as a walk reads it: one read per 1 MiB instead of one per
/// chunk header (probe AE: a PNG of 100 MiB of empty chunks took 8.7 million reads, 10 s per decode).
typedef struct {
    int fd;
    uint8_t *data;      // WINDOW_BYTES
    uint64_t start;     // file offset of data[0]
    size_t length;      // bytes of data that hold the file
} window;
enum { WINDOW_BYTES = 1 << 20 };

/// Copies `count` bytes (at most WINDOW_BYTES) of the file at `offset` into `out`; how many there were
/// (fewer at the end of the file), or -1 on an error.
static ssize_t window_read(window *w, uint8_t *out, size_t count, uint64_t offset) {
    if (offset < w->start || offset + count > w->start + w->length) {
        ssize_t n = read_at(w->fd, w->data, WINDOW_BYTES, offset);
        if (n < 0) return -1;
        w->start = offset;
        w->length = (size_t)n;
    }
    size_t available = w->length - (size_t)(offset - w->start);
    size_t n = count < available ? count : available;
    memcpy(out, w->data + (offset - w->start), n);
    return (ssize_t)n;
}

/// Real files have at most thousands of PNG chunks or JPEG segments; a walk of more (a crafted file of
/// empty ones) tells no end, and the file is read whole or refused as one whose end cannot be told.
enum { MAX_PIECES = 1 << 20 };

/// Where a PNG's IEND chunk ends, walking the chunk headers up to `horizon`; UNTOLD when it cannot be
/// told (a chunk type that is not four ASCII letters: zeros of a preallocated download were walked 12
/// bytes at a time; more than MAX_PIECES chunks).
static uint64_t png_extent(window *w, uint64_t size, uint64_t horizon) {
    uint64_t offset = 8;  // the signature
    uint8_t header[8];
    for (long pieces = 0; offset + 12 <= horizon && pieces < MAX_PIECES; pieces++) {
        if (window_read(w, header, 8, offset) != 8) return UNTOLD;
        for (int k = 4; k < 8; k++) {
            uint8_t c = header[k] & 0xDF;  // letters only, either case
            if (c < 'A' || c > 'Z') return UNTOLD;
        }
        uint64_t length = ((uint64_t)header[0] << 24) | ((uint64_t)header[1] << 16) | ((uint64_t)header[2] << 8) | header[3];
        offset += 12 + length;  // length, type, data, CRC
        if (memcmp(header + 4, "IEND", 4) == 0) return offset < size ? offset : size;
    }
    return UNTOLD;
}

/// Where a JPEG's EOI marker ends: marker segments are skipped by their lengths, entropy-coded data
/// is scanned (through the window, 1 MiB at a time) for the next marker, up to `horizon`; UNTOLD when
/// it cannot be told (also past MAX_PIECES markers).
static uint64_t jpeg_extent(window *w, uint64_t size, uint64_t horizon) {
    uint64_t offset = 2;  // SOI
    uint8_t header[4];
    for (long pieces = 0; offset + 2 <= horizon && pieces < MAX_PIECES; pieces++) {
        if (window_read(w, header, 2, offset) != 2 || header[0] != 0xFF) return UNTOLD;
        uint8_t marker = header[1];
        if (marker == 0xFF) { offset += 1; continue; }  // fill byte
        if (marker == 0xD9) return offset + 2;  // EOI
        if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) { offset += 2; continue; }  // no length
        // Anything but a marker with a length (libjpeg skips junk such as a stuffed FF 00 between
        // markers, where a length read here could land on an FF D9 inside a segment): read it all.
        if (marker < 0xC0) return UNTOLD;
        if (window_read(w, header + 2, 2, offset + 2) != 2) return UNTOLD;
        offset += 2 + (((uint64_t)header[2] << 8) | header[3]);
        if (marker != 0xDA) continue;
        // After SOS: entropy-coded data up to a marker other than a stuffed 0xFF00 or a restart.
        int found = 0;
        while (!found && offset < horizon) {
            uint8_t pair[2];
            if (offset < w->start || offset + 2 > w->start + w->length) {  // move the window here
                if (window_read(w, pair, 2, offset) < 2) return UNTOLD;
            }
            const uint8_t *data = w->data + (offset - w->start);
            size_t n = w->length - (size_t)(offset - w->start);
            for (size_t i = 0; i + 1 < n; i++) {
                if (data[i] == 0xFF && data[i + 1] != 0x00 && !(data[i + 1] >= 0xD0 && data[i + 1] <= 0xD7)) {
                    offset += (uint64_t)i;
                    found = 1;
                    break;
                }
            }
            if (!found) offset += (uint64_t)(n - 1);  // a 0xFF at the end is looked at again
        }
        if (!found) return UNTOLD;
    }
    return UNTOLD;
}

/// How many bytes of the file hold the image: through a PNG's IEND or a JPEG's EOI (what follows is
/// never decoded, as PIL stops there too), the first 64 KiB of any other file (enough for the decoder
/// to say what it is: a JPEG starts FF D8 FF, as `ic_detect_format` asks), or UNTOLD when the end
/// cannot be told (junk between markers, a file cut short: what follows may be the image's data).
///
/// The walk stops at IC_UNTOLD_READ_LIMIT: past it the end is not looked for (a JPEG cut inside its
/// data and padded with zeros to 4 GB was scanned to its last byte, 17 s, before it was refused).
static uint64_t image_extent(int fd, uint64_t size) {
    uint8_t signature[8];
    if (read_at(fd, signature, 8, 0) != 8) return size;
    uint64_t horizon = size < IC_UNTOLD_READ_LIMIT ? size : IC_UNTOLD_READ_LIMIT;
    int png = memcmp(signature, "\x89PNG\r\n\x1a\n", 8) == 0;
    int jpeg = signature[0] == 0xFF && signature[1] == 0xD8 && signature[2] == 0xFF;
    if (!png && !jpeg) return size < 65536 ? size : 65536;
    window w = {fd, (uint8_t *)malloc(WINDOW_BYTES), 0, 0};
    if (w.data == NULL) return UNTOLD;
    uint64_t extent = png ? png_extent(&w, size, horizon) : jpeg_extent(&w, size, horizon);
    free(w.data);
    return extent;
}

int ic_read_file(const char *path, uint64_t max_bytes, uint8_t **out, uint64_t *length, uint64_t *file_size,
                 char *error, size_t error_cap) {
    if (path == NULL || out == NULL || length == NULL) {
        ic_set_error(error, error_cap, "no path or output pointer given");
        return IC_ERR_ARGUMENT;
    }
    *out = NULL;
    *length = 0;
    if (file_size) *file_size = 0;
    int fd;
    // O_NONBLOCK: open(2) of a FIFO would wait for a writer before fstat could refuse it (a
    // regular file reads the same with or without the flag).
    do { fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        ic_set_error(error, error_cap, "%s", strerror(errno));
        return IC_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ic_set_error(error, error_cap, "%s", strerror(errno));
        close(fd);
        return IC_ERR_IO;
    }
    if (S_ISDIR(st.st_mode)) {
        ic_set_error(error, error_cap, "%s", strerror(EISDIR));
        close(fd);
        return IC_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        ic_set_error(error, error_cap, "not a regular file");
        close(fd);
        return IC_ERR_IO;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    uint64_t size = (uint64_t)st.st_size;
    uint64_t want = max_bytes != 0 && max_bytes < size ? max_bytes : size;
    // A whole read of a large file stops where the image ends: a valid PNG followed by 3 GB of other
    // bytes took 3 GB of memory per decode (6 GB with two loader workers), and a 4 GB file that is no
    // image was read whole before it was refused (probe W).
    if (max_bytes == 0 && size > IC_WHOLE_READ_LIMIT) {
        want = image_extent(fd, size);
        if (want == UNTOLD) {
            // Read whole, as the end may be the image's; but not gigabytes of what is most likely junk (a
            // JPEG header followed by a preallocated download's zeros was read whole, 4 GB per decode).
            if (size > IC_UNTOLD_READ_LIMIT) {
                ic_set_error(error, error_cap, "where the image ends in this %llu-byte file cannot be told from its "
                             "structure, and such a file is read whole only up to %llu bytes",
                             (unsigned long long)size, (unsigned long long)IC_UNTOLD_READ_LIMIT);
                close(fd);
                return IC_ERR_TOO_LARGE;
            }
            want = size;
        }
    }
    if (want > SIZE_MAX - 1) {
        ic_set_error(error, error_cap, "file too large (%llu bytes)", (unsigned long long)size);
        close(fd);
        return IC_ERR_TOO_LARGE;
    }
    uint8_t *buffer = (uint8_t *)malloc((size_t)want + 1);   // +1: a valid allocation when empty
    if (buffer == NULL) {
        ic_set_error(error, error_cap, "out of memory reading %llu bytes", (unsigned long long)want);
        close(fd);
        return IC_ERR_TOO_LARGE;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t n = read(fd, buffer + got, (size_t)(want - got));
        if (n < 0) {
            if (errno == EINTR) continue;
            ic_set_error(error, error_cap, "%s", strerror(errno));
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
