// The LLaVA-Bench (in-the-wild) benchmark plugin: scores GPT-4 review files with summarize_gpt_review.py's
// arithmetic (scoring.h).
//
//   runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]
//
// One review file gives the library's metrics ("all", "llava_bench_conv", ...). Several files (the published
// 72.8 / 72.7 / 72.1 of LLaVA-1.5-13B are three review runs) give one block per file, "<config>/all", ..., where
// <config> is the name summarize_gpt_review.py prints for the file, plus "mean/<category>": the mean over the files
// of each relative score.
// As an experiment stage, `{benchmark: llava_bench, reviews: ...}` records every metric, the review files (copied
// into the stage folder) and scores.json.
// Deliberately not here yet: answering with a model and reviewing with a judge (model and judge plugins).
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
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace mmr::llava_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = "runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]";

// The shared argument and recording helpers (plugins/benchmarks/common/file_scoring.h).
using benchmarks::list_option;
using benchmarks::record;
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  benchmarks::check_keys(o, schema, required, kUsage);
}

// ---- LLaVA-Bench ----

struct Inputs {
  std::vector<std::string> reviews;
  std::set<int64_t> ignore;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"reviews"});
  Inputs in;
  in.reviews = list_option(o, "reviews");
  if (o.has("ignore")) {
    for (const std::string& id : list_option(o, "ignore")) {
      size_t used = 0;
      int64_t value = 0;
      try {
        value = std::stoll(id, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != id.size() || id.empty())
        throw ConfigError(fmt::format("{}option 'ignore': expected integer question ids, found '{}'",
                                      o.where(o.node()["ignore"]), id));
      in.ignore.insert(value);
    }
  }
  return in;
}

MetricList score_inputs(const Inputs& in) {
  std::vector<ReviewSummary> summaries;
  for (const auto& path : in.reviews) summaries.push_back(summarize_file(path, in.ignore));
  if (summaries.size() == 1) return to_metrics(summaries[0]);

  // Several files: a block per file, named by its config, then the mean of each relative score.
  std::set<std::string> configs;
  for (size_t i = 0; i < summaries.size(); ++i)
    if (!configs.insert(summaries[i].config).second)
      throw ConfigError(fmt::format("review files '{}' and another both have the config name '{}' (the file name "
                                    "without gpt4_text_ and .jsonl); give them distinct names",
                                    in.reviews[i], summaries[i].config));
  MetricList out;
  for (const auto& s : summaries)
    for (const auto& m : to_metrics(s)) out.push_back({s.config + "/" + m.name, m.value});
  for (const CategoryScore& c : summaries[0].categories) {
    double sum = 0;
    size_t n = 0;
    for (const auto& s : summaries)
      for (const CategoryScore& other : s.categories)
        if (other.name == c.name) sum += other.relative, ++n;
    if (n == summaries.size()) {
      out.push_back({"mean/" + c.name, sum / static_cast<double>(n)});
    } else {
      spdlog::warn("llava_bench: category '{}' is in {} of {} review files; no mean reported for it", c.name, n,
                   summaries.size());
    }
  }
  return out;
}

class LlavaBench : public Benchmark {
 public:
  explicit LlavaBench(const Options&) {}
  static const char* summary() {
    return "LLaVA-Bench in-the-wild: scores GPT-4 review files with summarize_gpt_review.py's arithmetic "
           "(100 x model / reference, per category and overall)";
  }
  static OptionSchema option_schema() {
    return {
        {"reviews", "any", "", "review JSONL file(s) written by eval_gpt_review_bench.py: a path or a list "
                               "(comma-separated on the command line); without it the stage would evaluate a "
                               "model, which needs the model plugin (not built yet)"},
        {"ignore", "any", "", "question ids to skip (the script's --ignore): a list, comma-separated on the "
                              "command line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("reviews"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'reviews' to score "
                  "existing review files, or use `" + std::string(kUsage) + "`");
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("llava_bench: scoring {} review file(s)", in.reviews.size());
    record(ctx, score_inputs(in), "reviews", in.reviews);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::llava_bench

MMR_PLUGIN(Benchmark, "llava_bench", "1.0.0", mmr::llava_bench::LlavaBench)
