// The MM-Vet benchmark plugin: scores GPT-4 grade files with mm-vet_evaluator.py's arithmetic (scoring.h).
//
//   runner score mm_vet grades=FILE [metadata=mm-vet.json] [num_run=N] [decimal_places=1]
//
// As an experiment stage, `{benchmark: mm_vet, grades: ..., metadata: ...}` scores an existing grade file and
// records every metric, the grade file (copied into the stage folder) and scores.json.
// Deliberately not here yet: answering with a model and grading with a judge (they wait for the model and judge
// plugins).
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
#include "plugins/benchmarks/mm_vet/scoring.h"

namespace mmr::mm_vet {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = "runner score mm_vet grades=FILE [metadata=mm-vet.json] [num_run=N] [decimal_places=1]";

// The shared argument and recording helpers (plugins/benchmarks/common/file_scoring.h).
using benchmarks::list_option;
using benchmarks::record;
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  benchmarks::check_keys(o, schema, required, kUsage);
}

// ---- MM-Vet ----

struct Inputs {
  std::string grades, metadata;
  ScoreOptions options;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"grades"});
  Inputs in;
  in.grades = o.get<std::string>("grades");
  in.metadata = o.get<std::string>("metadata", "");
  in.options.num_run = o.get<int>("num_run", 0);
  in.options.decimal_places = o.get<int>("decimal_places", 1);
  if (in.options.num_run < 0)
    throw ConfigError(o.where(o.node()["num_run"]) + "option 'num_run': expected 0 (take it from the file) or more");
  if (in.options.decimal_places < 0)
    throw ConfigError(o.where(o.node()["decimal_places"]) + "option 'decimal_places': expected 0 or more");
  return in;
}

MetricList score_inputs(const Inputs& in) {
  if (in.metadata.empty())
    spdlog::warn("mm_vet: no metadata (mm-vet.json) given: only the total is scored, over the graded samples");
  return score_files(in.grades, in.metadata, in.options);
}

class MmVet : public Benchmark {
 public:
  explicit MmVet(const Options&) {}
  static const char* summary() {
    return "MM-Vet: scores GPT-4 grade files with mm-vet_evaluator.py's arithmetic (per capability and total)";
  }
  static OptionSchema option_schema() {
    return {
        {"grades", "path", "", "the evaluator's grade file (<model>_<gpt>-grade-<N>runs.json) to score; without it "
                               "the stage would evaluate a model, which needs the model plugin (not built yet)"},
        {"metadata", "path", "", "mm-vet.json from the MM-Vet release (capabilities); without it only the total"},
        {"num_run", "int", "0", "runs to score (the evaluator's --num_run); 0 = every sample's run count, which "
                                "must be equal"},
        {"decimal_places", "int", "1", "rounding of the reported values (the evaluator's --decimal_places)"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("grades"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'grades' (and "
                  "'metadata') to score an existing grade file, or use `" + std::string(kUsage) + "`");
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("mm_vet: scoring '{}'{}", in.grades, in.metadata.empty() ? "" : " with metadata '" + in.metadata + "'");
    record(ctx, score_inputs(in), "grades", {in.grades});
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::mm_vet

MMR_PLUGIN(Benchmark, "mm_vet", "1.0.0", mmr::mm_vet::MmVet)
