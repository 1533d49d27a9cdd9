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
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/evaluation.h"
#include "plugins/benchmarks/common/file_scoring.h"
#include "plugins/benchmarks/common/jsonl.h"
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
    OptionSchema schema = {
        {"grades", "path", "", "the evaluator's grade file (<model>_<gpt>-grade-<N>runs.json) to score; without it "
                               "the stage evaluates 'model'"},
        {"metadata", "path", "", "mm-vet.json from the MM-Vet release (capabilities, ground truth); needed to grade"},
        {"num_run", "int", "0", "runs to score (the evaluator's --num_run); 0 = every sample's run count, which "
                                "must be equal"},
        {"decimal_places", "int", "1", "rounding of the reported values (the evaluator's --decimal_places)"},
        {"questions", "path", "", "LLaVA's MM-Vet question JSONL (llava-mm-vet.jsonl: question_id, image, text)"},
        {"grader_prompt", "path", "", "grader_prompt.txt (the evaluator's few-shot prompt); needed to grade"},
        {"judge", "any", "", "the grader: a judge plugin name or map; without it answers are written, not graded"},
    };
    for (auto& spec : benchmarks::evaluation_options("1024")) schema.push_back(spec);
    return schema;
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("grades")) return evaluate(ctx);
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("mm_vet: scoring '{}'{}", in.grades, in.metadata.empty() ? "" : " with metadata '" + in.metadata + "'");
    record(ctx, score_inputs(in), "grades", {in.grades});
  }

  void evaluate(StageContext& ctx) {
    const Options& o = ctx.options();
    benchmarks::check_can_evaluate(ctx, "grades", kUsage);
    check_keys(o, option_schema(), {"questions", "image_folder"});
    const std::string questions_path = o.get<std::string>("questions");
    struct Item {
      int64_t question_id;
      std::string image, text;
    };
    std::vector<Item> items;
    for (const auto& row : benchmarks::read_jsonl(questions_path, "MM-Vet question file"))
      items.push_back({benchmarks::int_field(row, "question_id", questions_path),
                       benchmarks::string_field(row, "image", questions_path),
                       benchmarks::string_field(row, "text", questions_path)});
    items = benchmarks::first_n(std::move(items), o.get<int64_t>("limit"));

    std::vector<benchmarks::ImageQuestion> prompts;
    for (const auto& it : items) prompts.push_back({it.text, it.image});
    const std::vector<std::string> replies = benchmarks::answer_image_questions(ctx, prompts, "mm_vet answers");
    std::vector<std::pair<std::string, std::string>> results;
    for (size_t i = 0; i < items.size(); ++i) results.emplace_back(result_key(items[i].question_id), replies[i]);
    const fs::path results_path = benchmarks::write_artifact(
        ctx, "results", "results.json", [&](const std::string& p) { write_results(p, results); });
    MetricList metrics = {{"n_answers", static_cast<double>(results.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, metrics, results_path);
    if (!judge) return;
    check_keys(o, option_schema(), {"metadata", "grader_prompt"});
    const std::string metadata_path = o.get<std::string>("metadata");
    std::map<std::string, Sample> by_id;
    for (auto& sample : read_metadata(metadata_path)) by_id.emplace(sample.id, std::move(sample));
    const std::string prompt = read_grader_prompt(o.get<std::string>("grader_prompt"));

    std::vector<const Sample*> samples;
    std::vector<JudgeRequest> first_round;
    for (const auto& [key, prediction] : results) {
      auto found = by_id.find(key);
      if (found == by_id.end())
        throw DataError(fmt::format("{}: no sample '{}' (the answer to question {} of '{}')", metadata_path, key,
                                    key.substr(3), questions_path));
      samples.push_back(&found->second);
      first_round.push_back({"", build_grader_message(prompt, found->second.question, found->second.answer,
                                                      prediction), grader_temperature(0), kGraderMaxTokens, {}});
    }
    judge->prefetch(first_round);
    std::vector<SampleGrade> grades;
    int64_t failed = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      const GradeOutcome g = grade_sample(prompt, samples[i]->question, samples[i]->answer, results[i].second,
                                          [&](const std::string& message, double temperature) {
                                            return judge->ask_one({"", message, temperature, kGraderMaxTokens, {}});
                                          });
      judge->count_unparseable(g.failed ? g.attempts : g.attempts - 1);
      failed += g.failed;
      grades.push_back({samples[i]->id, {judge->identity()}, {g.content}, {g.score}});
    }
    const fs::path grades_path = benchmarks::write_artifact(
        ctx, "grades", "grades.json", [&](const std::string& p) { write_grade_file(p, grades); });

    std::vector<Sample> evaluated;
    for (const Sample* s : samples) evaluated.push_back(*s);
    ScoreOptions options;
    options.decimal_places = o.get<int>("decimal_places");
    for (const auto& metric : to_metrics(mm_vet::score(grades, &evaluated, options))) metrics.push_back(metric);
    metrics.push_back({"grading/failed_samples", static_cast<double>(failed)});
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::mm_vet

MMR_PLUGIN(Benchmark, "mm_vet", "1.0.0", mmr::mm_vet::MmVet)
