// gzip_reader.h — whole-file reading with transparent gzip decompression (zlib).
#ifndef GZIP_READER_H
#define GZIP_READER_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Reads `path` completely, decompressing it if it is gzip (plain files are returned as they are).
/// On success returns 0 and sets `*out` (free with `ic_free`) and `*length`.
/// On failure returns nonzero and writes a message into `error` (capacity `error_cap`).
/// `max_bytes` bounds the decompressed size (0 = no bound) so a hostile file cannot exhaust memory.
int ic_read_maybe_gzip(const char *path, uint64_t max_bytes, uint8_t **out, uint64_t *length, char *error,
                       size_t error_cap);
void ic_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
