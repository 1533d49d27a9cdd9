// The BMP decoder, through decode_rgb (core/lib/image/image.h) as every image is read: inputs whose first bytes
// are not BMP's are left out (they would go to another decoder, fuzzed by its own target). Bad input is a
// DataError naming the source.
#include "core/api/error.h"
#include "core/lib/image/format.h"
#include "core/lib/image/image.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (mmr::image::sniff_image_format(data, size) != mmr::image::ImageFormat::kBmp) return 0;
  try {
    (void)mmr::image::decode_rgb(data, size, "fuzz.bmp");
  } catch (const mmr::DataError&) {
  }
  return 0;
}
