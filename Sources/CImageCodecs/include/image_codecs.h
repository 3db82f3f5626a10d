// image_codecs.h — JPEG (libjpeg-turbo) and PNG (libpng) decoding to 8-bit RGB, and PNG encoding.
// Filled in by the data-pipeline work; this header is the target's public C interface.
#ifndef IMAGE_CODECS_H
#define IMAGE_CODECS_H
#include <stddef.h>
#include <stdint.h>
#endif
