#include "CZlib.h"

#include <zlib.h>

uint32_t cz_crc32(uint32_t crc, const void *data, size_t length) {
    const Bytef *p = (const Bytef *)data;
    uLong c = crc;
    while (length > 0) {
        const uInt n = length > (1u << 30) ? (uInt)(1u << 30) : (uInt)length;  // zlib takes uInt lengths
        c = crc32(c, p, n);
        p += n;
        length -= n;
    }
    return (uint32_t)c;
}
