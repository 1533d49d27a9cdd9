// The annotate stage's candidate rows (plugins/algorithms/annotate/annotate.h, read_candidate_rows): JSONL of a
// question and its responses. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/algorithms/annotate/annotate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("candidates.jsonl", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mmr::annotate::read_candidate_rows(path); });
  return 0;
}
