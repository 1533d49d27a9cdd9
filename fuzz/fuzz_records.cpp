// The row files' record reader (core/lib/data/records.h): a JSON array streamed with nlohmann's SAX parser, or
// JSONL. A broken array is a DataError; a JSONL line that does not parse is a record with parse_error set.
#include "core/api/error.h"
#include "core/lib/data/records.h"
#include "core/lib/util/json_safe.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("rows.jsonl", data, size);
  try {
    mmr::data::for_each_record(path, [](mmr::data::Record& r) {
      if (!r.parse_error) (void)mmr::dump_text(r.value);
      return true;
    });
  } catch (const mmr::DataError&) {
  }
  return 0;
}
