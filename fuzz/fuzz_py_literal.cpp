// The Python-literal parser (core/lib/data/py_literal.h): str(dict) text in the seed's preference files. Bad input
// is a PyLiteralError; what parses must be JSON that dump() can write.
#include "core/lib/data/py_literal.h"
#include "core/lib/util/json_safe.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const nlohmann::json value = mmr::data::parse_py_literal(mmr::fuzz::text(data, size));
    (void)mmr::dump_text(value);
  } catch (const mmr::data::PyLiteralError&) {
  }
  return 0;
}
