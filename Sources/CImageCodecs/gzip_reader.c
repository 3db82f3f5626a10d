#include "gzip_reader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void ic_free(void *p) { free(p); }

int ic_read_maybe_gzip(const char *path, uint64_t max_bytes, uint8_t **out, uint64_t *length, char *error,
                       size_t error_cap) {
  *out = NULL;
  *length = 0;
  gzFile f = gzopen(path, "rb");  // gzread passes non-gzip files through unchanged
  if (!f) {
    snprintf(error, error_cap, "cannot open: %s", strerror(errno));
    return 1;
  }
  size_t cap = 1 << 20, len = 0;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    gzclose(f);
    snprintf(error, error_cap, "out of memory");
    return 1;
  }
  for (;;) {
    if (len == cap) {
      if (max_bytes && cap >= max_bytes) {
        snprintf(error, error_cap, "larger than the %llu-byte limit", (unsigned long long)max_bytes);
        free(buf);
        gzclose(f);
        return 1;
      }
      size_t next = cap * 2;
      uint8_t *grown = realloc(buf, next);
      if (!grown) {
        free(buf);
        gzclose(f);
        snprintf(error, error_cap, "out of memory");
        return 1;
      }
      buf = grown;
      cap = next;
    }
    int n = gzread(f, buf + len, (unsigned)(cap - len > 1u << 30 ? 1u << 30 : cap - len));
    if (n < 0) {
      int code = 0;
      const char *msg = gzerror(f, &code);
      snprintf(error, error_cap, "corrupt or truncated gzip data: %s", msg ? msg : "unknown error");
      free(buf);
      gzclose(f);
      return 1;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  int code = 0;
  const char *msg = gzerror(f, &code);
  if (code != Z_OK) {  // Z_BUF_ERROR here means "unexpected end of file"
    snprintf(error, error_cap, "corrupt or truncated gzip data: %s", msg ? msg : "unknown error");
    free(buf);
    gzclose(f);
    return 1;
  }
  gzclose(f);
  *out = buf;
  *length = len;
  return 0;
}
