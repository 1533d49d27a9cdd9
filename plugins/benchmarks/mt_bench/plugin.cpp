// The MT-Bench benchmark plugin: scores FastChat single-answer judgment files with show_result.py's arithmetic
// (scoring.h).
//
//   runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]
//
// As an experiment stage, `{benchmark: mt_bench, judgments: ..., questions: ...}` records every metric, the judgment
// file (copied into the stage folder) and scores.json.
// Deliberately not here yet: answering with a model and judging with a judge (model and judge plugins).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/plugin_api.h"
#include "plugins/benchmarks/common/file_scoring.h"
#include "plugins/benchmarks/mt_bench/scoring.h"

namespace mmr::mt_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]";

// The shared argument and recording helpers (plugins/benchmarks/common/file_scoring.h).
using benchmarks::list_option;
using benchmarks::record;
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  benchmarks::check_keys(o, schema, required, kUsage);
}

// ---- MT-Bench ----

struct Inputs {
  std::string judgments, questions;
  ScoreOptions options;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"judgments"});
  Inputs in;
  in.judgments = o.get<std::string>("judgments");
  in.questions = o.get<std::string>("questions", "");
  if (o.has("models")) in.options.model_list = list_option(o, "models");
  return in;
}

MetricList score_inputs(const Inputs& in) {
  MetricList metrics = score_files(in.judgments, in.questions, in.options);
  // show_result.py prints nothing for a --model-list name without judgments; we say so.
  for (const auto& model : in.options.model_list) {
    const bool found = std::any_of(metrics.begin(), metrics.end(),
                                   [&](const MetricValue& m) { return m.name.rfind(model + "/", 0) == 0; });
    if (!found)
      throw DataError(fmt::format("{}: no judgments for model '{}' (option 'models')", in.judgments, model));
  }
  if (metrics.empty()) throw DataError(in.judgments + ": no judgments to score");
  return metrics;
}

class MtBench : public Benchmark {
 public:
  explicit MtBench(const Options&) {}
  static const char* summary() {
    return "MT-Bench: scores FastChat single-answer judgment files with show_result.py's arithmetic "
           "(mean score per turn and overall, per model)";
  }
  static OptionSchema option_schema() {
    return {
        {"judgments", "path", "", "FastChat judgment JSONL (model_judgment/<judge>_single.jsonl) to score; without "
                                  "it the stage would evaluate a model, which needs the model plugin (not built yet)"},
        {"questions", "path", "", "MT-Bench question.jsonl: adds the per-category means and checks question ids"},
        {"models", "any", "", "only these models (show_result.py's --model-list): a list, comma-separated on the "
                              "command line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("judgments"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'judgments' (and "
                  "'questions') to score an existing judgment file, or use `" + std::string(kUsage) + "`");
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("mt_bench: scoring '{}'", in.judgments);
    record(ctx, score_inputs(in), "judgments", {in.judgments});
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::mt_bench

MMR_PLUGIN(Benchmark, "mt_bench", "1.0.0", mmr::mt_bench::MtBench)
