// The POPE benchmark plugin: scores LLaVA answer files with eval_pope.py's rules (scoring.h).
//
//   runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]
//
// As an experiment stage, `{benchmark: pope, answers: ..., questions: ..., labels: ...}` scores an existing answer
// file and records every metric, the scored answers (copied into the stage folder) and scores.json.
// Deliberately not here yet: generating the answers with a model (that waits for the model plugin).
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
#include "plugins/benchmarks/pope/scoring.h"

namespace mmr::pope {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]";

// The shared argument and recording helpers (plugins/benchmarks/common/file_scoring.h).
using benchmarks::list_option;
using benchmarks::record;
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  benchmarks::check_keys(o, schema, required, kUsage);
}

// ---- POPE ----

ScoreInputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"answers", "questions", "labels"});
  ScoreInputs in;
  in.answers_path = o.get<std::string>("answers");
  in.questions_path = o.get<std::string>("questions");
  in.check_alignment = o.get<bool>("check_alignment", true);
  const std::vector<std::string> labels = list_option(o, "labels");
  if (labels.size() == 1 && fs::is_directory(labels[0])) {
    in.label_files = find_label_files(labels[0]);
  } else {
    std::set<std::string> splits;
    for (const auto& path : labels) {
      if (!fs::exists(path))
        throw IoError(fmt::format("POPE label file '{}' (option 'labels') does not exist", path));
      LabelFile f{split_from_label_filename(fs::path(path).filename().string()), path};
      if (!splits.insert(f.split).second)
        throw ConfigError(fmt::format("{}option 'labels': split '{}' is given twice ('{}')",
                                      o.where(o.node()["labels"]), f.split, path));
      in.label_files.push_back(f);
    }
  }
  return in;
}

MetricList score_inputs(const ScoreInputs& in) {
  const ScoreResult result = score(in);
  MetricList metrics = to_metrics(result);
  // eval_pope.py ignores answers whose category has no label file; we count them so that is never silent.
  metrics.push_back({"unscored_answers", static_cast<double>(result.n_unscored_answers)});
  if (result.n_unscored_answers > 0)
    spdlog::warn("pope: {} answer(s) in '{}' belong to splits without a label file and were not scored",
                 result.n_unscored_answers, in.answers_path);
  return metrics;
}

class Pope : public Benchmark {
 public:
  explicit Pope(const Options&) {}
  static const char* summary() {
    return "POPE yes/no object hallucination: scores LLaVA answer files with eval_pope.py's rules (F1 per split)";
  }
  static OptionSchema option_schema() {
    return {
        {"answers", "path", "", "LLaVA answer JSONL to score (question_id, text); without it the stage would "
                                "evaluate a model, which needs the model plugin (not built yet)"},
        {"questions", "path", "", "LLaVA question JSONL (question_id, category, image, text); required with answers"},
        {"labels", "any", "", "folder of coco_pope_<split>.json files, or a list of them (comma-separated on the "
                              "command line); required with answers"},
        {"check_alignment", "bool", "true", "check that the i-th answer's question matches the i-th label line"},
    };
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("answers"))
      throw Error("evaluating a model needs the model plugin (not built yet); give the stage 'answers', 'questions' "
                  "and 'labels' to score an existing answer file, or use `" + std::string(kUsage) + "`");
    const ScoreInputs in = inputs_from(o, option_schema());
    ctx.log().info("pope: scoring '{}' against {} label file(s)", in.answers_path, in.label_files.size());
    record(ctx, score_inputs(in), "answers", {in.answers_path});
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::pope

MMR_PLUGIN(Benchmark, "pope", "1.0.0", mmr::pope::Pope)
