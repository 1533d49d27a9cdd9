// The POPE benchmark plugin: scores LLaVA answer files with eval_pope.py's rules (scoring.h).
//
//   runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] [check_alignment=true|false]
//
// As an experiment stage, `{benchmark: pope, answers: ..., questions: ..., labels: ...}` scores an existing answer
// file and records every metric, the scored answers (copied into the stage folder) and scores.json.
// Without `answers`, `{benchmark: pope, model: {...}, questions: ..., image_folder: ..., labels: ...}` evaluates a
// model as LLaVA's model_vqa_loader.py did: "<image>\n" + question + the POPE suffix (added unless the question
// already ends with it, as llava_pope_test.jsonl's do), greedy, 128 new tokens, the image preprocessed as the
// model's config says (process_images); writes answers.jsonl in LLaVA's
// answer format and scores it when `labels` are given.
#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/pope/scoring.h"

namespace mmr::pope {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string answers, questions;
  std::vector<std::string> labels;
  bool check_alignment = true;
  std::string prompt_suffix;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    o.bind("answers", &answers, "", "LLaVA answer JSONL to score (question_id, text); without it the stage evaluates "
                                    "'model'", "path");
    o.bind("questions", &questions, "", "LLaVA question JSONL (question_id, category, image, text); required", "path");
    benchmarks::bind_list(o, "labels", &labels, "folder of coco_pope_<split>.json files, or a list of them "
                          "(comma-separated on the command line); required with answers, optional when evaluating", "paths");
    o.bind("check_alignment", &check_alignment, true,
           "check that the i-th answer's question matches the i-th label line");
    o.bind("prompt_suffix", &prompt_suffix, "\nAnswer the question using a single word or phrase.",
           "appended to each question unless it already ends with it (LLaVA's POPE prompt)");
    // LLaVA-1.5's scripts/v1_5/eval/pope.sh runs llava/eval/model_vqa_loader.py with --temperature 0 (greedy) and
    // no --max_new_tokens: its default 128 (mllm-dpo model_vqa_loader.py:138). The image goes through
    // process_images(..., model.config) (:53-54): padded to a square when the model's image_aspect_ratio is "pad"
    // (LLaVA-1.5's), so the model's own preprocessing.
    eval.bind(o, {128, "model"});
  }
};

// The label files `labels` names: one folder, or files whose names give their splits.
std::vector<LabelFile> label_files_from(const Options& o, const Config& cfg) {
  if (cfg.labels.size() == 1 && fs::is_directory(cfg.labels[0])) return find_label_files(cfg.labels[0]);
  std::vector<LabelFile> files;
  std::set<std::string> splits;
  for (const auto& path : cfg.labels) {
    if (!fs::exists(path)) throw IoError(fmt::format("POPE label file '{}' (option 'labels') does not exist", path));
    LabelFile f{split_from_label_filename(fs::path(path).filename().string()), path};
    if (!splits.insert(f.split).second)
      throw ConfigError(fmt::format("{}option 'labels': split '{}' is given twice ('{}')", o.where("labels"), f.split,
                                    path));
    files.push_back(f);
  }
  return files;
}

MetricList score_answers(const Options& o, const Config& cfg, const std::string& answers) {
  const ScoreInputs in{answers, cfg.questions, label_files_from(o, cfg), cfg.check_alignment};
  const ScoreResult result = score(in);
  MetricList metrics = to_metrics(result);
  // eval_pope.py ignores answers whose category has no label file; we count them so that is never silent.
  metrics.push_back({"unscored_answers", static_cast<double>(result.n_unscored_answers)});
  if (result.n_unscored_answers > 0)
    spdlog::warn("pope: {} answer(s) in '{}' belong to splits without a label file and were not scored",
                 result.n_unscored_answers, answers);
  return metrics;
}

// The prompts model_vqa_loader.py gives: the question with the POPE suffix unless it already ends with it.
std::vector<benchmarks::ImageQuestion> prompts_for(const Config& cfg, const std::vector<Question>& questions) {
  const std::string& suffix = cfg.prompt_suffix;
  std::vector<benchmarks::ImageQuestion> prompts;
  for (const auto& q : questions) {
    if (q.image.empty())
      throw DataError(fmt::format("{}:{}: question {} has no \"image\"", cfg.questions, q.line, q.question_id.key));
    const bool has_suffix = q.text.size() >= suffix.size() &&
                            q.text.compare(q.text.size() - suffix.size(), suffix.size(), suffix) == 0;
    prompts.push_back({q.text + (has_suffix ? "" : suffix), q.image});
  }
  return prompts;
}

class Pope : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit Pope(const Options&)
      : ScoringBenchmark({"pope", "answers",
                          "runner score pope answers=FILE questions=FILE labels=DIR|FILE[,FILE...] "
                          "[check_alignment=true|false]",
                          {"answers", "questions", "labels"}}) {}
  static const char* summary() {
    return "POPE yes/no object hallucination: scores LLaVA answer files with eval_pope.py's rules (F1 per split)";
  }

 protected:
  MetricList score_config(const Options& o, const Config& cfg) const override {
    return score_answers(o, cfg, cfg.answers);
  }
  std::vector<std::string> scored_files(const Config& cfg) const override { return {cfg.answers}; }
  std::string describe(const Options& o, const Config& cfg) const override {
    return fmt::format("'{}' against {} label file(s)", cfg.answers, label_files_from(o, cfg).size());
  }

  // Generates the answers with the model, writes answers.jsonl, scores it when labels are given.
  void evaluate(StageContext& ctx, const Config& cfg) override {
    const Options& o = ctx.options();
    require(o, {"questions", "image_folder"});
    if (cfg.eval.limit > 0 && !cfg.labels.empty())
      throw ConfigError(o.where("limit") + "'limit' cannot be combined with 'labels': the official scoring pairs "
                        "every label line with an answer by position");
    const std::vector<Question> questions = benchmarks::first_n(read_questions(cfg.questions), cfg.eval.limit);
    const std::vector<std::string> replies =
        benchmarks::answer_image_questions(ctx, cfg.eval, prompts_for(cfg, questions), "pope answers");
    std::vector<AnswerRecord> answers;
    for (size_t i = 0; i < questions.size(); ++i)
      answers.push_back({questions[i].question_id, questions[i].text, replies[i],
                         fmt::format("{}-{}", cfg.eval.model_id, questions[i].question_id.key), cfg.eval.model_id});
    const fs::path answers_path =
        benchmarks::write_artifact(ctx, "answers", "answers.jsonl", answers_jsonl(answers));
    ctx.log().info("pope: {} answer(s) written to {}", answers.size(), answers_path.string());

    MetricList metrics = {{"n_answers", static_cast<double>(answers.size())}};
    if (!cfg.labels.empty())
      for (const auto& metric : score_answers(o, cfg, answers_path.string())) metrics.push_back(metric);
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::pope

MMR_PLUGIN(Benchmark, "pope", "1.0.0", mmr::pope::Pope)
