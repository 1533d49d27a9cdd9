// MM-Vet's files (plugins/benchmarks/mm_vet/scoring.h): the same bytes as a grade file scored alone, as the
// metadata of a fixed one-sample grade file, and as both at once. Bad input is a DataError.
#include "core/api/error.h"
#include "fuzz/fuzz.h"
#include "plugins/benchmarks/mm_vet/scoring.h"

namespace {

// A grade file of one sample, v1_0, with two runs.
const std::string& grades() {
  static const std::string path = [] {
    const auto p = mmr::fuzz::scratch_dir() / "grades.json";
    std::ofstream(p) << R"({"v1_0": {"model": ["m"], "content": ["c"], "score": [0.5, 1.0]}})";
    return p.string();
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mmr::fuzz::write_input("input.json", data, size);
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mmr::mm_vet::score_files(path, ""); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mmr::mm_vet::score_files(grades(), path); });
  mmr::fuzz::bad_input_is<mmr::DataError>([&] { (void)mmr::mm_vet::score_files(path, path); });
  return 0;
}
