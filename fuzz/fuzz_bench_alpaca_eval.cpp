// AlpacaEval's files (plugins/benchmarks/alpaca_eval/scoring.h), all on the same bytes: the annotations file
// (read and scored), the evaluation set, and the annotator's configs.yaml (beside a fixed prompt template). Bad
// input is a DataError (an IoError only for a template the config names that is not there).
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/alpaca_eval/scoring.h"

namespace {

namespace ae = mmr::alpaca_eval;

// evaluators_configs/alpaca_eval_gpt4/ with a small valid template, once per process; returns the folder.
std::string annotator_folder() {
  static const std::string folder = [] {
    const auto dir = mmr::fuzz::scratch_dir() / "evaluators_configs" / "alpaca_eval_gpt4";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "alpaca_eval.txt") << "<|im_start|>system\nJudge.\n<|im_end|>\n<|im_start|>user\n"
                                              "{instruction} {output_1} {output_2}\n<|im_end|>";
    return dir.string();
  }();
  return folder;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("annotations.json", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)ae::score_file(path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)ae::read_eval_set(path); });
  const std::string folder = annotator_folder();
  mmr::fuzz::write_input("evaluators_configs/alpaca_eval_gpt4/configs.yaml", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError, mmr::IoError>([&] { (void)ae::read_annotator_config(folder); });
  return 0;
}
