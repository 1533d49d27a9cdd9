// Test plugin (benchmark "line_bench"): evaluates a text file by counting its lines and words; `runner score
// line_bench file=PATH` does the same offline. Real file I/O, so tests can check what reached the stage.
#include <fstream>
#include <sstream>

#include "core/api/plugin_api.h"

namespace {

mmr::MetricList count(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw mmr::IoError("cannot open '" + path + "' for reading");
  double lines = 0, words = 0;
  for (std::string l; std::getline(in, l);) {
    ++lines;
    std::istringstream ws(l);
    for (std::string w; ws >> w;) ++words;
  }
  return {{"lines", lines}, {"words", words}};
}

class LineBench : public mmr::Benchmark {
 public:
  explicit LineBench(const mmr::Options& o) : file_(o.get<std::string>("file", "")) {}
  static const char* summary() { return "test benchmark: counts lines and words of a file"; }
  static mmr::OptionSchema option_schema() {
    return {{"file", "path", "", "the file to evaluate", /*required=*/false}};
  }
  void run(mmr::StageContext& ctx) override {
    for (const auto& m : count(file_)) ctx.log_metric(m.name, m.value);
  }
  mmr::MetricList score(const mmr::Options& args) override { return count(args.get<std::string>("file")); }

 private:
  std::string file_;
};

}  // namespace

MMR_PLUGIN(Benchmark, "line_bench", "0.2.0", LineBench)
