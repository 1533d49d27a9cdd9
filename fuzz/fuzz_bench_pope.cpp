// POPE's files (plugins/benchmarks/pope/scoring.h): the same bytes as answers, questions and a label file at once
// (scored, with and without the alignment check), and each read alone. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/pope/scoring.h"

namespace {

namespace pope = mmr::pope;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("coco_pope_fuzz.json", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)pope::read_questions(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)pope::read_answers(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)pope::read_labels(path); });
  for (bool check : {true, false}) {
    const pope::ScoreInputs inputs{path, path, {{"fuzz", path}}, check};
    mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)pope::score_files(inputs); });
  }
  return 0;
}
