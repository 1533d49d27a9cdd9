// LLaVA-Bench's files (plugins/benchmarks/llava_bench/scoring.h), all on the same bytes: a review file (read and
// scored), rule.json, questions, answers and context.jsonl (both ways of joining captions). Bad input is a
// DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace {

namespace lb = mmr::llava_bench;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("gpt4_text_fuzz.jsonl", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::score_file(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::read_rules(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::read_questions(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::read_answers(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::read_context(path, true); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)lb::read_context(path, false); });
  return 0;
}
