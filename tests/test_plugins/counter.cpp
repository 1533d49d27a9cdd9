// Test plugin (algorithm "counter"): a stage with a known metric curve, an artifact, failure and stop hooks.
// loss at step k = start * decay^k; the final "loss" is the last one. Each run appends a line to `marker`
// (when given), so tests can count how often a stage really ran.
#include <chrono>
#include <fstream>
#include <thread>

#include "core/api/plugin_api.h"

namespace {

class Counter : public mmr::Algorithm {
 public:
  explicit Counter(const mmr::Options& o)
      : steps_(o.get<int>("steps")), start_(o.get<double>("start")), decay_(o.get<double>("decay")),
        sleep_ms_(o.get<int>("sleep_ms")), fail_at_(o.get<int>("fail_at")), marker_(o.get<std::string>("marker", "")),
        input_(o.get<std::string>("input", "")), min_input_lines_(o.get<int>("min_input_lines")) {
    if (decay_ <= 0) throw mmr::ConfigError(o.where(o.node()["decay"]) + "decay must be positive");
  }
  static const char* summary() { return "test stage: a geometric loss curve, an artifact, hooks to fail or stop"; }
  static mmr::OptionSchema option_schema() {
    return {{"steps", "int", "5", "number of steps"},
            {"start", "float", "1.0", "loss at step 0"},
            {"decay", "float", "0.5", "loss factor per step"},
            {"sleep_ms", "int", "0", "sleep per step"},
            {"fail_at", "int", "-1", "throw at this step (-1: never)"},
            {"marker", "output", "", "append one line per run to this file"},
            {"input", "path", "", "a file whose line count is logged as metric 'input_lines'"},
            {"min_input_lines", "int", "0", "fail when the input has fewer lines (a stage that fails until a file "
                                            "is written)"}};
  }

  void run(mmr::StageContext& ctx) override {
    if (!marker_.empty()) std::ofstream(marker_, std::ios::app) << ctx.stage_name() << " " << ctx.trial_identity() << "\n";
    if (!input_.empty()) {
      std::ifstream in(input_);
      if (!in) throw mmr::IoError("cannot open input '" + input_ + "'");
      int lines = 0;
      for (std::string l; std::getline(in, l);) ++lines;
      ctx.log_metric("input_lines", lines);
      if (lines < min_input_lines_)
        throw mmr::DataError("input '" + input_ + "' has " + std::to_string(lines) + " lines, fewer than " +
                             std::to_string(min_input_lines_));
    }
    auto bar = ctx.progress("counter", steps_);
    double loss = start_;
    std::ofstream out(ctx.stage_dir() / "curve.txt");
    for (int k = 0; k < steps_; ++k) {
      if (ctx.stop_requested()) throw mmr::Interrupted();
      if (k == fail_at_) throw std::runtime_error("planned failure at step " + std::to_string(k));
      if (sleep_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms_));
      ctx.log_metric("loss", loss, k);
      out << k << " " << loss << "\n";
      bar->advance();
      loss *= decay_;
    }
    bar->finish();
    out.close();
    ctx.log_metric("final_loss", loss / decay_);
    ctx.log_metric("seed", static_cast<double>(ctx.seed()));
    ctx.add_artifact("curve", "curve.txt");
  }

 private:
  int steps_;
  double start_, decay_;
  int sleep_ms_, fail_at_;
  std::string marker_, input_;
  int min_input_lines_ = 0;
};

}  // namespace

MMR_PLUGIN(Algorithm, "counter", "1.0.0", Counter)
