// The judge-agreement benchmark's scored-pairs JSONL (plugins/benchmarks/judge_agreement/scoring.h), read and
// scored. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/judge_agreement/scoring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("scored.jsonl", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>(
      [&] { (void)mmr::judge_agreement::agreement_metrics(mmr::judge_agreement::read_scored_pairs(path)); });
  return 0;
}
