// The GIF decoder, through decode_rgb (core/lib/image/image.h) as every image is read: inputs whose first bytes
// are not GIF's are left out (they would go to another decoder, fuzzed by its own target), and so are huge ones
// (below). Bad input is a DataError naming the source.
#include "core/api/error.h"
#include "core/lib/image/format.h"
#include "core/lib/image/image.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (mmr::image::sniff_image_format(data, size) != mmr::image::ImageFormat::kGif) return 0;
  // Left out: a logical screen over 16M pixels. LZW makes a small file of a huge canvas possible, under PIL's limit:
  // the open question of pixel bombs (issue 16), which takes longer than -timeout here, not a fault.
  if (size >= 10 && int64_t{data[6] | data[7] << 8} * (data[8] | data[9] << 8) > (int64_t{1} << 24)) return 0;
  try {
    (void)mmr::image::decode_rgb(data, size, "fuzz.gif");
  } catch (const mmr::DataError&) {
  }
  return 0;
}
