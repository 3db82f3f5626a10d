// Umbrella header of the CImageCodecs module: JPEG/PNG codecs, gzip reading and PIL-exact resampling.
// (An explicit umbrella keeps Clang's module cache honest when headers are added.)
#include "gzip_reader.h"
#include "image_codecs.h"
#include "resample.h"
