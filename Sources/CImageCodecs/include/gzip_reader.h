// gzip_reader.h — reading a file as a stream, transparently decompressing gzip (zlib's gzread).
#ifndef GZIP_READER_H
#define GZIP_READER_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// An open file; gzip data is decompressed as it is read, anything else is passed through unchanged.
typedef struct ic_gzip_stream ic_gzip_stream;

/// Opens `path` for reading. On success returns 0 and sets `*out` (close with `ic_gzip_close`).
/// On failure returns nonzero and writes a message into `error` (capacity `error_cap`).
int ic_gzip_open(const char *path, ic_gzip_stream **out, char *error, size_t error_cap);

/// Reads up to `capacity` bytes into `buffer`; `*count` is 0 at the end of the data. Returns nonzero,
/// with a message, when the gzip data is corrupt or ends early: callers read only as much as they need,
/// so a small file that inflates to gigabytes costs no more memory than they asked for.
int ic_gzip_read(ic_gzip_stream *stream, uint8_t *buffer, size_t capacity, size_t *count, char *error,
                 size_t error_cap);

void ic_gzip_close(ic_gzip_stream *stream);

void ic_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
