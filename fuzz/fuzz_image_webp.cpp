// The WebP decoder, through decode_rgb (core/lib/image/image.h) as every image is read: inputs whose first bytes
// are not WebP's are left out (they would go to another decoder, fuzzed by its own target), and so are huge ones
// (below). Bad input is a DataError naming the source.
#include <webp/decode.h>

#include "core/api/error.h"
#include "core/lib/image/format.h"
#include "core/lib/image/image.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (mmr::image::sniff_image_format(data, size) != mmr::image::ImageFormat::kWebp) return 0;
  // Left out: headers claiming more than 16M pixels. A 92-byte lossless WebP may rightly decode to 141M pixels, under
  // PIL's limit, which takes longer than -timeout here: the open question of pixel bombs (issue 16), not a fault.
  int width = 0;
  int height = 0;
  if (WebPGetInfo(data, size, &width, &height) && int64_t{width} * height > (int64_t{1} << 24)) return 0;
  try {
    (void)mmr::image::decode_rgb(data, size, "fuzz.webp");
  } catch (const mmr::DataError&) {
  }
  return 0;
}
