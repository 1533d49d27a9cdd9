// The POPE benchmark plugin: scores LLaVA answer files with eval_pope.py's rules (scoring.h).
//
//   runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]
//
// As an experiment stage, `{benchmark: pope, answers: ..., questions: ..., labels: ...}` scores an existing answer
// file and records every metric, the scored answers (copied into the stage folder) and scores.json.
// Without `answers`, `{benchmark: pope, model: {...}, questions: ..., image_folder: ..., labels: ...}` evaluates a
// model as LLaVA's model_vqa_loader.py did: "<image>\n" + question + the POPE suffix (added unless the question
// already ends with it, as llava_pope_test.jsonl's do), greedy, 128 new tokens; writes answers.jsonl in LLaVA's
// answer format and scores it when `labels` are given.
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

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/evaluation.h"
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

std::vector<LabelFile> label_files_from(const Options& o) {
  std::vector<LabelFile> files;
  const std::vector<std::string> labels = list_option(o, "labels");
  if (labels.size() == 1 && fs::is_directory(labels[0])) return find_label_files(labels[0]);
  std::set<std::string> splits;
  for (const auto& path : labels) {
    if (!fs::exists(path))
      throw IoError(fmt::format("POPE label file '{}' (option 'labels') does not exist", path));
    LabelFile f{split_from_label_filename(fs::path(path).filename().string()), path};
    if (!splits.insert(f.split).second)
      throw ConfigError(fmt::format("{}option 'labels': split '{}' is given twice ('{}')",
                                    o.where(o.node()["labels"]), f.split, path));
    files.push_back(f);
  }
  return files;
}

ScoreInputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"answers", "questions", "labels"});
  ScoreInputs in;
  in.answers_path = o.get<std::string>("answers");
  in.questions_path = o.get<std::string>("questions");
  in.check_alignment = o.get<bool>("check_alignment", true);
  in.label_files = label_files_from(o);
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
    OptionSchema schema = {
        {"answers", "path", "", "LLaVA answer JSONL to score (question_id, text); without it the stage evaluates "
                                "'model'"},
        {"questions", "path", "", "LLaVA question JSONL (question_id, category, image, text); required"},
        {"labels", "any", "", "folder of coco_pope_<split>.json files, or a list of them (comma-separated on the "
                              "command line); required with answers, optional when evaluating"},
        {"check_alignment", "bool", "true", "check that the i-th answer's question matches the i-th label line"},
        {"prompt_suffix", "string", "\"\\nAnswer the question using a single word or phrase.\"",
         "appended to each question unless it already ends with it (LLaVA's POPE prompt)"},
    };
    for (auto& spec : benchmarks::evaluation_options("128")) schema.push_back(spec);
    return schema;
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("answers")) return evaluate(ctx);
    const ScoreInputs in = inputs_from(o, option_schema());
    ctx.log().info("pope: scoring '{}' against {} label file(s)", in.answers_path, in.label_files.size());
    record(ctx, score_inputs(in), "answers", {in.answers_path});
  }

  // Generates the answers with the model, writes answers.jsonl, scores it when labels are given.
  void evaluate(StageContext& ctx) {
    const Options& o = ctx.options();
    benchmarks::check_can_evaluate(ctx, "answers", kUsage);
    check_keys(o, option_schema(), {"questions", "image_folder"});
    const int64_t limit = o.get<int64_t>("limit");
    if (limit > 0 && o.has("labels"))
      throw ConfigError(o.where(o.node()["limit"]) + "'limit' cannot be combined with 'labels': the official "
                        "scoring pairs every label line with an answer by position");
    const std::string questions_path = o.get<std::string>("questions");
    const std::vector<Question> questions = benchmarks::first_n(read_questions(questions_path), limit);
    const std::string suffix = o.get<std::string>("prompt_suffix");
    const std::string model_id = o.get<std::string>("model_id");

    std::vector<benchmarks::ImageQuestion> prompts;
    for (const auto& q : questions) {
      if (q.image.empty())
        throw DataError(fmt::format("{}:{}: question {} has no \"image\"", questions_path, q.line, q.question_id.key));
      const bool has_suffix = q.text.size() >= suffix.size() && q.text.compare(q.text.size() - suffix.size(),
                                                                               suffix.size(), suffix) == 0;
      prompts.push_back({q.text + (has_suffix ? "" : suffix), q.image});
    }
    const std::vector<std::string> replies = benchmarks::answer_image_questions(ctx, prompts, "pope answers");

    std::vector<AnswerRecord> answers;
    for (size_t i = 0; i < questions.size(); ++i)
      answers.push_back({questions[i].question_id, questions[i].text, replies[i],
                         fmt::format("{}-{}", model_id, questions[i].question_id.key), model_id});
    const fs::path answers_path = benchmarks::write_artifact(
        ctx, "answers", "answers.jsonl", [&](const std::string& p) { write_answers(p, answers); });
    ctx.log().info("pope: {} answer(s) written to {}", answers.size(), answers_path.string());

    MetricList metrics = {{"n_answers", static_cast<double>(answers.size())}};
    if (o.has("labels")) {
      ScoreInputs in;
      in.answers_path = answers_path.string();
      in.questions_path = questions_path;
      in.check_alignment = o.get<bool>("check_alignment");
      in.label_files = label_files_from(o);
      for (const auto& metric : score_inputs(in)) metrics.push_back(metric);
    }
    benchmarks::record_metrics(ctx, metrics);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::pope

MMR_PLUGIN(Benchmark, "pope", "1.0.0", mmr::pope::Pope)
