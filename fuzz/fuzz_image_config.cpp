// preprocessor_config.json (core/lib/image/image.h, PreprocessConfig::from_json_text). Bad input is a DataError.
#include "core/api/error.h"
#include "core/lib/image/image.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)mmr::image::PreprocessConfig::from_json_text(mmr::fuzz::text(data, size), "preprocessor_config.json");
  } catch (const mmr::DataError&) {
  }
  return 0;
}
