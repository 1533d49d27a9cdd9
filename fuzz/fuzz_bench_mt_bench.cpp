// MT-Bench's files (plugins/benchmarks/mt_bench/scoring.h), all on the same bytes: judgments (scored alone and
// with the same file as questions), questions, model answers and judge_prompts.jsonl. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/mt_bench/scoring.h"

namespace {

namespace mt = mmr::mt_bench;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("input.jsonl", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mt::score_files(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mt::score_files(path, path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mt::read_model_answers(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mt::read_judge_prompts(path); });
  return 0;
}
