// CZlib.h — the zlib functions TensorIO uses, behind a size_t interface. A target of its own so that
// TensorIO links zlib alone (CImageCodecs would bring libjpeg and libpng along).
#ifndef CZLIB_H
#define CZLIB_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// zlib's CRC-32 (the one zip, gzip and PNG use) of `length` bytes at `data`, continuing from `crc`
/// (0 to start). `data` may be NULL when `length` is 0. Any length: zlib is called in chunks.
uint32_t cz_crc32(uint32_t crc, const void *data, size_t length);

#ifdef __cplusplus
}
#endif
#endif
