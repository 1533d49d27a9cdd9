// The MM-Vet benchmark plugin: scores GPT-4 grade files with mm-vet_evaluator.py's arithmetic (scoring.h).
//
//   runner score mm_vet grades=FILE [metadata=mm-vet.json] [num_run=N] [decimal_places=1]
//
// As an experiment stage, `{benchmark: mm_vet, grades: ..., metadata: ...}` scores an existing grade file and
// records every metric, the grade file (copied into the stage folder) and scores.json.
// Without `grades`, `{benchmark: mm_vet, model: {...}, questions: llava-mm-vet.jsonl, image_folder: ...,
// metadata: mm-vet.json, grader_prompt: grader_prompt.txt, judge: {...}}` evaluates a model as LLaVA's
// model_vqa.py did ("<image>\n" + question, greedy, 1024 new tokens), writes results.json (MM-Vet's model-output
// format, "v1_<question_id>" keys), grades every answer with the judge in the evaluator's loop (max_tokens 3,
// temperature 0, retries with the retry message and rising temperature, 0 after 5 unparsable replies), writes the
// grade file (grades.json, one run) and scores it. With `limit`, the scores are over the evaluated samples only.
#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

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
    o.bind("num_run", &num_run, 0, "runs to score (the evaluator's --num_run); 0 = every sample's run count, which "
                                   "must be equal");
    o.bind("decimal_places", &decimal_places, 1, "rounding of the reported values (the evaluator's --decimal_places)");
    o.bind("questions", &questions, "", "LLaVA's MM-Vet question JSONL (llava-mm-vet.jsonl: question_id, image, text)",
           "path");
    o.bind("grader_prompt", &grader_prompt, "", "grader_prompt.txt (the evaluator's few-shot prompt); needed to grade",
           "path");
    o.bind("judge", &judge, YAML::Node(), "the grader: a judge plugin name or map; without it answers are written, "
                                          "not graded");
    eval.bind(o, 1024);
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

// Grades every answer in the evaluator's loop. The first round goes to the judge at once (concurrently); the
// retries, which depend on each reply, one by one.
std::vector<SampleGrade> grade(JudgeClient& judge, const std::string& prompt, const std::vector<Sample>& samples,
                               const std::vector<Item>& items, int64_t& failed) {
  std::vector<JudgeRequest> first_round;
  for (size_t i = 0; i < samples.size(); ++i)
    first_round.push_back({"", build_grader_message(prompt, samples[i].question, samples[i].answer, items[i].answer),
                           grader_temperature(0), kGraderMaxTokens, {}});
  judge.prefetch(first_round);
  std::vector<SampleGrade> grades;
  for (size_t i = 0; i < samples.size(); ++i) {
    const GradeOutcome g = grade_sample(prompt, samples[i].question, samples[i].answer, items[i].answer,
                                        [&](const std::string& message, double temperature) {
                                          return judge.ask_one({"", message, temperature, kGraderMaxTokens, {}});
                                        });
    judge.count_unparseable(g.failed ? g.attempts : g.attempts - 1);
    failed += g.failed;
    grades.push_back({samples[i].id, {judge.identity()}, {g.content}, {g.score}});
  }
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

    auto judge = benchmarks::judge_or_finish(ctx, cfg.judge, metrics, results_path);
    if (!judge) return;
    require(ctx.options(), {"metadata", "grader_prompt"});
    const std::vector<Sample> samples = samples_for(cfg, items);
    int64_t failed = 0;
    const std::vector<SampleGrade> grades =
        grade(*judge, read_grader_prompt(cfg.grader_prompt), samples, items, failed);
    benchmarks::write_artifact(ctx, "grades", "grades.json", grade_file_json(grades));
    ScoreOptions options;
    options.decimal_places = cfg.decimal_places;
    for (const auto& metric : to_metrics(mm_vet::score(grades, &samples, options))) metrics.push_back(metric);
    metrics.push_back({"grading/failed_samples", static_cast<double>(failed)});
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::mm_vet

MMR_PLUGIN(Benchmark, "mm_vet", "1.0.0", mmr::mm_vet::MmVet)
