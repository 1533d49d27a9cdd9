// The MM-Vet benchmark plugin: scores GPT-4 grade files with mm-vet_evaluator.py's arithmetic (scoring.h).
//
//   runner score mm_vet grades=FILE [metadata=mm-vet.json] [num_run=N] [decimal_places=1]
//
// As an experiment stage, `{benchmark: mm_vet, grades: ..., metadata: ...}` scores an existing grade file and
// records every metric, the grade file (copied into the stage folder) and scores.json.
// Without `grades`, `{benchmark: mm_vet, model: {...}, questions: llava-mm-vet.jsonl, image_folder: ...,
// metadata: mm-vet.json, grader_prompt: grader_prompt.txt, judge: {...}}` evaluates a model as LLaVA's
// model_vqa.py did ("<image>\n" + question, greedy, 1024 new tokens, the image centre-cropped), writes results.json
// (MM-Vet's model-output format, "v1_<question_id>" keys), grades every answer `num_run` times with the judge in
// the evaluator's loop (gpt-4-0613 unless the judge names a model, max_tokens 3, temperature 0, retries with the
// retry message and rising temperature, 0 after 5 unparsable replies; each run cached apart), writes the grade file
// (grades.json, one score per run) and scores it as the evaluator does: per column the mean over runs, `std` over
// the runs' totals. With `limit`, the scores are over the evaluated samples only.
#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/common/jsonl.h"
#include "plugins/benchmarks/mm_vet/scoring.h"

namespace mmr::mm_vet {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string grades, metadata;
  int num_run = 0, decimal_places = 1;
  std::string questions, grader_prompt;
  YAML::Node judge;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    o.bind("grades", &grades, "", "the evaluator's grade file (<model>_<gpt>-grade-<N>runs.json) to score; without "
                                  "it the stage evaluates 'model'", "path");
    o.bind("metadata", &metadata, "", "mm-vet.json from the MM-Vet release (capabilities, ground truth); needed to "
                                      "grade", "path");
    o.bind("num_run", &num_run, 0, "the evaluator's --num_run. Scoring a file: the runs to score (0: every sample's "
                                   "run count, which must be equal). Evaluating: the grading runs (0: 1, the "
                                   "evaluator's default; the MM-Vet paper used 5, LLaVA-1.5's published grades 3)");
    o.bind("decimal_places", &decimal_places, 1, "rounding of the reported values (the evaluator's --decimal_places)");
    o.bind("questions", &questions, "", "LLaVA's MM-Vet question JSONL (llava-mm-vet.jsonl: question_id, image, text)",
           "path");
    o.bind("grader_prompt", &grader_prompt, "", "grader_prompt.txt (the evaluator's few-shot prompt); needed to grade",
           "path");
    o.bind("judge", &judge, YAML::Node(), "the grader: a judge plugin name or map; without it answers are written, "
                                          "not graded", "judge");
    // LLaVA-1.5's scripts/v1_5/eval/mmvet.sh (and mllm-dpo's mmvet.sh:5-11, mmvet_steer.sh:9-16) run
    // llava/eval/model_vqa.py with --temperature 0 (greedy) and conv-mode vicuna_v1; model_vqa.py hard-codes
    // max_new_tokens=1024 (mllm-dpo model_vqa.py:74) and preprocesses with the bare CLIP processor (:59): the
    // centre crop.
    eval.bind(o, {1024, "center_crop"});
    o.check(num_run >= 0, "num_run", "expected 0 (take it from the file) or more");
    o.check(decimal_places >= 0, "decimal_places", "expected 0 or more");
  }
};

// A question of llava-mm-vet.jsonl and the model's answer to it.
struct Item {
  int64_t question_id;
  std::string image, text, answer;
};

std::vector<Item> read_items(const std::string& path, int64_t limit) {
  using namespace benchmarks::jsonl;
  std::vector<Item> items;
  for (const auto& row : read_jsonl(path, "MM-Vet question file"))
    items.push_back({int_field(row, "question_id", path), string_field(row, "image", path),
                     string_field(row, "text", path), ""});
  return benchmarks::first_n(std::move(items), limit);
}

// The metadata sample of each answered question ("v1_<question_id>"), in question order.
std::vector<Sample> samples_for(const Config& cfg, const std::vector<Item>& items) {
  std::map<std::string, Sample> by_id;
  for (auto& sample : read_metadata(cfg.metadata)) by_id.emplace(sample.id, std::move(sample));
  std::vector<Sample> samples;
  for (const Item& item : items) {
    const std::string key = result_key(item.question_id);
    auto found = by_id.find(key);
    if (found == by_id.end())
      throw DataError(fmt::format("{}: no sample '{}' (the answer to question {} of '{}')", cfg.metadata, key,
                                  item.question_id, cfg.questions));
    samples.push_back(found->second);
  }
  return samples;
}

// The evaluator's grader: --gpt_model's default and its request settings (the first attempt's temperature; the
// retries raise it, grader_temperature).
benchmarks::JudgeProtocol grader() {
  return {"gpt-4-0613", grader_temperature(0), kGraderMaxTokens,
          "MM-Vet's mm-vet_evaluator.py:54 --gpt_model, :223-230"};
}

// What a grading run needs: the prompt, the samples and answers, and the request settings (a temperature < 0:
// the stage's judge sets its own, for every attempt).
struct Grading {
  std::string prompt;
  const std::vector<Sample>& samples;
  const std::vector<Item>& items;
  benchmarks::JudgeSettings settings;

  JudgeRequest request(const std::string& message, double temperature) const {
    return {"", message, settings.temperature < 0 ? -1.0 : temperature, settings.max_tokens, {}};
  }
};

// One run of the evaluator's loop over every answer (runs() in mm-vet_evaluator.py), appended to `grades`. The
// first round goes to the judge at once (concurrently); the retries, which depend on each reply, one by one. Run
// k is asked and cached apart from the others, as the evaluator asks GPT-4 again for every run.
void grade_run(JudgeClient& judge, const Grading& g, int run, std::vector<SampleGrade>& grades, int64_t& failed) {
  std::vector<JudgeRequest> first_round;
  for (size_t i = 0; i < g.samples.size(); ++i)
    first_round.push_back(g.request(build_grader_message(g.prompt, g.samples[i].question, g.samples[i].answer,
                                                         g.items[i].answer), grader_temperature(0)));
  judge.prefetch(first_round, run);
  for (size_t i = 0; i < g.samples.size(); ++i) {
    const GradeOutcome o = grade_sample(g.prompt, g.samples[i].question, g.samples[i].answer, g.items[i].answer,
                                        [&](const std::string& message, double temperature) {
                                          return judge.ask_one(g.request(message, temperature), run);
                                        });
    judge.count_unparseable(o.failed ? o.attempts : o.attempts - 1);
    failed += o.failed;
    grades[i].model.push_back(judge.identity());
    grades[i].content.push_back(o.content);
    grades[i].score.push_back(o.score);
  }
}

// `num_run` grading runs; each sample's grade holds one score per run, as the evaluator's grade file does.
std::vector<SampleGrade> grade(JudgeClient& judge, const Grading& g, int num_run, int64_t& failed) {
  std::vector<SampleGrade> grades;
  for (const Sample& sample : g.samples) grades.push_back({sample.id, {}, {}, {}});
  for (int run = 0; run < num_run; ++run) grade_run(judge, g, run, grades, failed);
  return grades;
}

class MmVet : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit MmVet(const Options&)
      : ScoringBenchmark({"mm_vet", "grades",
                          "runner score mm_vet grades=FILE [metadata=mm-vet.json] [num_run=N] [decimal_places=1]",
                          {"grades"}}) {}
  static const char* summary() {
    return "MM-Vet: scores GPT-4 grade files with mm-vet_evaluator.py's arithmetic (per capability and total)";
  }

 protected:
  MetricList score_config(const Options&, const Config& cfg) const override {
    if (cfg.metadata.empty())
      spdlog::warn("mm_vet: no metadata (mm-vet.json) given: only the total is scored, over the graded samples");
    return score_files(cfg.grades, cfg.metadata, {cfg.num_run, cfg.decimal_places});
  }
  std::vector<std::string> scored_files(const Config& cfg) const override { return {cfg.grades}; }
  std::string describe(const Options&, const Config& cfg) const override {
    return "'" + cfg.grades + "'" + (cfg.metadata.empty() ? "" : " with metadata '" + cfg.metadata + "'");
  }

  void evaluate(StageContext& ctx, const Config& cfg) override {
    require(ctx.options(), {"questions", "image_folder"});
    std::vector<Item> items = read_items(cfg.questions, cfg.eval.limit);
    std::vector<benchmarks::ImageQuestion> prompts;
    for (const auto& it : items) prompts.push_back({it.text, it.image});
    const std::vector<std::string> replies = benchmarks::answer_image_questions(ctx, cfg.eval, prompts, "mm_vet answers");
    std::vector<std::pair<std::string, std::string>> results;
    for (size_t i = 0; i < items.size(); ++i) {
      items[i].answer = replies[i];
      results.emplace_back(result_key(items[i].question_id), replies[i]);
    }
    const fs::path results_path = benchmarks::write_artifact(ctx, "results", "results.json", results_json(results));
    MetricList metrics = {{"n_answers", static_cast<double>(results.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, cfg.judge, grader(), metrics, results_path);
    if (!judge) return;
    require(ctx.options(), {"metadata", "grader_prompt"});
    const std::vector<Sample> samples = samples_for(cfg, items);
    const Grading grading{read_grader_prompt(cfg.grader_prompt), samples, items,
                          benchmarks::judge_settings(cfg.judge, grader())};
    const int num_run = std::max(cfg.num_run, 1);  // the evaluator's default is one run
    int64_t failed = 0;
    const std::vector<SampleGrade> grades = grade(*judge, grading, num_run, failed);
    benchmarks::write_artifact(ctx, "grades", "grades.json", grade_file_json(grades));
    ScoreOptions options;
    options.num_run = num_run;
    options.decimal_places = cfg.decimal_places;
    for (const auto& metric : to_metrics(mm_vet::score(grades, &samples, options))) metrics.push_back(metric);
    metrics.push_back({"grading/failed_samples", static_cast<double>(failed)});
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::mm_vet

MMR_PLUGIN(Benchmark, "mm_vet", "1.1.0", mmr::mm_vet::MmVet)
