#include "gzip_reader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void ic_free(void *p) { free(p); }

// The handle is zlib's own gzFile: gzread passes non-gzip files through unchanged.
int ic_gzip_open(const char *path, ic_gzip_stream **out, char *error, size_t error_cap) {
  *out = NULL;
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f) {
    snprintf(error, error_cap, "cannot open: %s", errno ? strerror(errno) : "out of memory");
    return 1;
  }
  *out = (ic_gzip_stream *)f;
  return 0;
}

int ic_gzip_read(ic_gzip_stream *stream, uint8_t *buffer, size_t capacity, size_t *count, char *error,
                 size_t error_cap) {
  gzFile f = (gzFile)stream;
  *count = 0;
  unsigned chunk = capacity > (1u << 30) ? (1u << 30) : (unsigned)capacity;
  int n = chunk ? gzread(f, buffer, chunk) : 0;
  int code = Z_OK;
  const char *msg = gzerror(f, &code);
  // Z_BUF_ERROR at the end means "unexpected end of file"; errors also show with n > 0.
  if (n < 0 || (code != Z_OK && code != Z_STREAM_END)) {
    if (code == Z_ERRNO)
      snprintf(error, error_cap, "read error: %s", strerror(errno));
    else {
      // zlib writes "<path>: <what>"; the caller names the file already (zlib's own texts hold no ": ").
      const char *what = msg ? msg : "";
      for (const char *p = what; (p = strstr(p, ": ")) != NULL; p += 2) what = p + 2;
      snprintf(error, error_cap, "corrupt or truncated gzip data: %s", *what ? what : "unknown error");
    }
    return 1;
  }
  *count = (size_t)n;
  return 0;
}

void ic_gzip_close(ic_gzip_stream *stream) {
  if (stream) gzclose((gzFile)stream);
}
