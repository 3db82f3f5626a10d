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
