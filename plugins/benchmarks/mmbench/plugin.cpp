// The MMBench benchmark plugin: scores submission TSVs with the official MMBench rules (scoring.h).
//
//   runner score mmbench predictions=FILE [data=mmbench_dev_20230712.tsv] [rules=2024-01|2023-11]
//
// `runner score` has no judge: rows the rules cannot resolve are counted as wrong and reported
// (`unresolved_rows`, `unresolved_questions`), with a warning.
// As an experiment stage, `{benchmark: mmbench, predictions: FILE, data: TSV, judge: {...}, extractor_prompt:
// choice_extractor_prompt_en.txt}` also sends the unresolved rows to the choice-extractor judge (cached), and records
// every metric, the predictions (copied into the stage folder) and scores.json.
// Without `predictions`, `{benchmark: mmbench, model: {...}, data: mmbench_dev_20230712.tsv}` evaluates a model as
// LLaVA-1.5's model_vqa_mmbench.py --single-pred-prompt did (every row of the TSV, rotated passes included;
// "<image>\n" + hint + question + "A. ..." lines + "Answer with the option's letter from the given choices
// directly."; greedy, 1024 new tokens), decodes the base64 images into the stage folder, writes answers.jsonl
// (LLaVA's answer lines) and submission.tsv (convert_mmbench_for_submission.py's columns), and scores it.
#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/common/jsonl.h"
#include "plugins/benchmarks/mmbench/scoring.h"

namespace mmr::mmbench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage =
    "runner score mmbench predictions=FILE [data=mmbench_dev_20230712.tsv] [rules=2024-01|2023-11]";

struct Config {
  std::string predictions, data, rules, extractor_prompt;
  YAML::Node judge;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    o.bind("predictions", &predictions, "", "submission TSV to score (index, prediction, answer; question, A-D, "
                                            "category, l2-category where present); without it the stage evaluates "
                                            "'model'", "path");
    o.bind("data", &data, "", "the official MMBench TSV (mmbench_dev_20230712.tsv): the questions to evaluate, and "
                              "the columns a predictions file lacks (categories, options, answers)", "path");
    o.one_of("rules", &rules, "2024-01", {"2024-01", "2023-11"},
             "the evaluator's rule version: VLMEvalKit 2024-01 (the row's letters, Z) or 2023-11 (A-E, E)");
    o.bind("extractor_prompt", &extractor_prompt, "", "choice_extractor_prompt_en.txt (choice_extractor_prompt_en_"
                                                      "2023-11.txt with rules 2023-11); needed with 'judge'", "path");
    o.bind("judge", &judge, YAML::Node(), "the choice extractor for rows the rules cannot resolve (the official one: "
                                          "gpt-3.5-turbo-0613, temperature 0); without it they count as wrong", "judge");
    // LLaVA-1.5's scripts/v1_5/eval/mmbench.sh (mllm-dpo's alike, :5-11) runs llava/eval/model_vqa_mmbench.py with
    // --single-pred-prompt --temperature 0 (greedy), conv-mode vicuna_v1; it hard-codes max_new_tokens=1024
    // (mllm-dpo model_vqa_mmbench.py:122) and preprocesses with process_images(..., model.config) (:108): the
    // model's own (LLaVA-1.5 pads).
    eval.bind(o, {1024, "model", "unused: MMBench's images are in the TSV"});
  }
};

// The choice extractor of VLMEvalKit's MMBench evaluator (shared/benchmarks/PROVENANCE.md, "Official MMBench
// scoring"): gpt-3.5-turbo-0613 at temperature 0, its wrapper's token limit.
benchmarks::JudgeProtocol extractor() {
  return {"gpt-3.5-turbo-0613", 0.0, -1, "VLMEvalKit's MMBench evaluator, 2023-11 / 2024-01"};
}

// Warns about rows that stayed unresolved: they count as wrong, never silently.
void warn_unresolved(const ScoreResult& r, bool with_judge) {
  if (r.unresolved_rows == 0) return;
  spdlog::warn("mmbench: {} row(s) of {} question(s) could not be resolved {}; those questions count as wrong "
               "(unresolved_rows, unresolved_questions)", r.unresolved_rows, r.unresolved_questions,
               with_judge ? "by the rules or the judge's reply" : "by the rules and no judge was given");
}

std::string read_prompt(const Config& cfg) {
  return benchmarks::jsonl::read_text_file(cfg.extractor_prompt, "MMBench choice-extractor prompt");
}

// Scores `rows` with the judge of the stage when one is given; records the judge counts.
MetricList score_rows(StageContext& ctx, const Config& cfg, const std::vector<Row>& rows, const std::string& path) {
  ScoreOptions options;
  options.rules = parse_rule_version(cfg.rules);
  std::unique_ptr<JudgeClient> judge;
  if (benchmarks::given(cfg.judge)) {
    if (cfg.extractor_prompt.empty())
      throw ConfigError(ctx.options().where(ctx.options().node()) + "option 'judge' needs 'extractor_prompt' "
                        "(shared/benchmarks/mmbench/choice_extractor_prompt_en.txt)");
    options.prompt_template = read_prompt(cfg);
    judge = benchmarks::make_judge(ctx, cfg.judge, extractor());
    const benchmarks::JudgeSettings settings = benchmarks::judge_settings(cfg.judge, extractor());
    options.ask = [&judge, settings](const std::vector<std::string>& prompts) {
      std::vector<JudgeRequest> requests;
      for (const auto& p : prompts) requests.push_back({"", p, settings.temperature, settings.max_tokens, {}});
      return judge->ask(requests);
    };
  }
  const ScoreResult result = mmbench::score(rows, path, options);
  warn_unresolved(result, judge != nullptr);
  if (judge) {
    judge->count_unparseable(result.judge_unparseable);
    judge->log_metrics();
  }
  return to_metrics(result, judge != nullptr);
}

std::vector<Row> read_predictions(const Config& cfg) {
  std::vector<Row> rows = read_rows(cfg.predictions, /*need_prediction=*/true);
  if (!cfg.data.empty()) rows = merge(std::move(rows), cfg.predictions, read_rows(cfg.data, false), cfg.data);
  return rows;
}

// The file extension of an image by its first bytes (the model's loader goes by content; the name helps people).
std::string image_extension(const std::string& bytes) {
  if (bytes.rfind("\x89PNG", 0) == 0) return ".png";
  if (bytes.rfind("\xFF\xD8", 0) == 0) return ".jpg";
  if (bytes.rfind("GIF8", 0) == 0) return ".gif";
  if (bytes.rfind("BM", 0) == 0) return ".bmp";
  if (bytes.size() > 12 && bytes.compare(8, 4, "WEBP") == 0) return ".webp";
  return ".img";
}

class MmBench : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit MmBench(const mmr::Options&) : ScoringBenchmark({"mmbench", "predictions", kUsage, {"predictions"}}) {}
  static const char* summary() {
    return "MMBench: official rule extraction, choice-extractor judge and circular evaluation (overall, L2, L3)";
  }

  void run(StageContext& ctx) override {
    const Config cfg = read_options<Config>(ctx.options());
    if (!benchmarks::given(ctx.options(), "predictions") || !benchmarks::given(cfg.judge))
      return ScoringBenchmark::run(ctx);
    ctx.log().info("mmbench: scoring {} with the choice-extractor judge", describe(ctx.options(), cfg));
    benchmarks::record(ctx, score_rows(ctx, cfg, read_predictions(cfg), cfg.predictions), "predictions",
                       scored_files(cfg));
  }

 protected:
  MetricList score_config(const mmr::Options& o, const Config& cfg) const override {
    // Only `runner score` gets here with a judge (a stage with one scores in run()): it has no stage to cache in.
    if (benchmarks::given(cfg.judge))
      throw ConfigError(o.where("judge") + "`runner score` cannot ask a judge; score in an experiment stage "
                        "{benchmark: mmbench, predictions: ..., judge: ..., extractor_prompt: ...} to resolve the "
                        "rows the rules cannot");
    if (cfg.data.empty())
      spdlog::info("mmbench: no 'data' (the MMBench TSV): categories come from the predictions file, if it has them");
    ScoreOptions options;
    options.rules = parse_rule_version(cfg.rules);
    const ScoreResult result = mmbench::score(read_predictions(cfg), cfg.predictions, options);
    warn_unresolved(result, false);
    return to_metrics(result, false);
  }
  std::vector<std::string> scored_files(const Config& cfg) const override { return {cfg.predictions}; }
  std::string describe(const mmr::Options&, const Config& cfg) const override {
    return "'" + cfg.predictions + "'" + (cfg.data.empty() ? "" : " with the MMBench TSV '" + cfg.data + "'");
  }

  void evaluate(StageContext& ctx, const Config& cfg) override {
    require(ctx.options(), {"data"});
    const Table table = read_tsv(cfg.data, "MMBench TSV");
    std::vector<Row> rows = read_rows(table, false);
    // `limit`: the first N questions (main rows in file order), with all their rotated passes.
    std::set<int64_t> questions;
    for (const Row& row : rows)
      if (row.index < kPassStride && (cfg.eval.limit <= 0 || static_cast<int64_t>(questions.size()) < cfg.eval.limit))
        questions.insert(row.index);
    std::vector<Row> selected;
    for (Row& row : rows)
      if (questions.count(row.index % kPassStride)) selected.push_back(std::move(row));

    // The images, decoded into the stage folder. A row whose image is a short integer (the newer VLMEvalKit
    // TSVs) uses the image of that index.
    const fs::path image_dir = ctx.stage_dir() / "images";
    fs::create_directories(image_dir);
    std::map<int64_t, fs::path> image_of;
    for (const Row& row : selected) {
      if (row.image.size() > 64) {
        const std::string bytes = base64_decode(row.image, fmt::format("{}:{}", cfg.data, row.line));
        const fs::path file = image_dir / (std::to_string(row.index) + image_extension(bytes));
        write_file_atomic(file, bytes);
        image_of[row.index] = file;
      }
    }
    std::vector<benchmarks::ImageQuestion> prompts;
    for (const Row& row : selected) {
      fs::path image;
      if (auto it = image_of.find(row.index); it != image_of.end()) {
        image = it->second;
      } else {
        int64_t other = -1;
        try {
          other = std::stoll(row.image);
        } catch (const std::exception&) {
        }
        auto ref = image_of.find(other);
        if (ref == image_of.end())
          throw DataError(fmt::format("{}:{}: index {}: no image (the 'image' cell is neither base64 nor the index "
                                      "of a row with one)", cfg.data, row.line, row.index));
        image = ref->second;
      }
      prompts.push_back({llava_prompt(row), image.string()});
    }
    const std::vector<std::string> replies =
        benchmarks::answer_image_questions(ctx, cfg.eval, prompts, "mmbench answers");

    std::string answers;
    std::map<int64_t, std::string> predictions;
    for (size_t i = 0; i < selected.size(); ++i) {
      // As the submission file is read back: a reply pandas reads as NaN (empty, "None", ...) is "nan".
      selected[i].prediction = is_pandas_na(replies[i]) ? "nan" : replies[i];
      selected[i].has_prediction = true;
      predictions[selected[i].index] = replies[i];
      answers += benchmarks::jsonl::llava_answer_line(
          selected[i].index, llava_question_text(selected[i]), replies[i],
          fmt::format("{}-{}", cfg.eval.model_id, selected[i].index),
          cfg.eval.model_id);
    }
    benchmarks::write_artifact(ctx, "answers", "answers.jsonl", answers);
    benchmarks::write_artifact(ctx, "submission", "submission.tsv", submission_tsv(table, predictions));
    MetricList metrics = {{"n_answers", static_cast<double>(selected.size())}};
    for (const auto& m : score_rows(ctx, cfg, selected, cfg.data)) metrics.push_back(m);
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::mmbench

MMR_PLUGIN(Benchmark, "mmbench", "1.0.0", mmr::mmbench::MmBench)
