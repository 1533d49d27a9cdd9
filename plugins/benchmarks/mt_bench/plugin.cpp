// The MT-Bench benchmark plugin: scores FastChat single-answer judgment files with show_result.py's arithmetic
// (scoring.h).
//
//   runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]
//
// As an experiment stage, `{benchmark: mt_bench, judgments: ..., questions: ...}` records every metric, the judgment
// file (copied into the stage folder) and scores.json.
// Without `judgments`, `{benchmark: mt_bench, model: {...}, questions: question.jsonl, judge_prompts: ...,
// reference_answers: reference_answer/gpt-4.jsonl, judge: {...}}` evaluates a model as FastChat's
// gen_model_answer.py does: two turns, the first answer in the context of the second, the temperature of the
// question's category (common.py's temperature_config; sampled when > 0, seeded by the trial seed), 1024 new
// tokens; with `image_folder`, each question's first turn also shows an image drawn (seeded) from that folder, as
// the seed's "random-coco" runs did. Writes model_answer.jsonl in FastChat's format, judges both turns with
// FastChat's single-answer prompts (temperature 0, 2048 tokens; reference answers for math, reasoning, coding),
// writes judgments.jsonl in FastChat's judgment format and scores it.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/evaluation.h"
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
    OptionSchema schema = {
        {"judgments", "path", "", "FastChat judgment JSONL (model_judgment/<judge>_single.jsonl) to score; without "
                                  "it the stage evaluates 'model'"},
        {"questions", "path", "", "MT-Bench question.jsonl: adds the per-category means and checks question ids"},
        {"models", "any", "", "only these models (show_result.py's --model-list): a list, comma-separated on the "
                              "command line"},
        {"judge_prompts", "path", "", "FastChat's judge_prompts.jsonl; needed to judge"},
        {"reference_answers", "path", "", "reference answers (reference_answer/gpt-4.jsonl) for math, reasoning "
                                          "and coding; needed to judge those"},
        {"judge", "any", "", "the judge: a judge plugin name or map; without it answers are written, not judged"},
    };
    for (auto& spec : benchmarks::evaluation_options("1024")) {
      if (spec.name == "image_folder")
        spec.help = "optional: pair each question with an image drawn (seeded) from this folder (\"random-coco\")";
      schema.push_back(spec);
    }
    return schema;
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("judgments")) return evaluate(ctx);
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("mt_bench: scoring '{}'", in.judgments);
    record(ctx, score_inputs(in), "judgments", {in.judgments});
  }

  // Image files of a folder, sorted by name (the draw depends on nothing but the folder's contents and the seed).
  static std::vector<std::string> folder_images(const std::string& dir) {
    if (!fs::is_directory(dir)) throw IoError(fmt::format("option 'image_folder': '{}' is not a folder", dir));
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
    if (files.empty()) throw IoError(fmt::format("option 'image_folder': no .jpg/.jpeg/.png file in '{}'", dir));
    return files;
  }

  void evaluate(StageContext& ctx) {
    const Options& o = ctx.options();
    benchmarks::check_can_evaluate(ctx, "judgments", kUsage);
    check_keys(o, option_schema(), {"questions"});
    const std::string questions_path = o.get<std::string>("questions");
    const std::vector<Question> questions = benchmarks::first_n(read_questions(questions_path), o.get<int64_t>("limit"));
    const std::string model_id = o.get<std::string>("model_id");
    std::vector<std::string> images(questions.size());
    if (o.has("image_folder")) {
      const std::vector<std::string> pool = folder_images(o.get<std::string>("image_folder"));
      std::mt19937_64 rng(ctx.seed());
      for (auto& image : images) image = pool[rng() % pool.size()];
    }
    std::vector<GenerationConfig> configs;
    for (const auto& q : questions) {
      if (q.turns.size() != 2)
        throw DataError(fmt::format("{}:{}: question {} has {} turns; MT-Bench questions have 2", questions_path,
                                    q.line, q.question_id, q.turns.size()));
      GenerationConfig c;
      c.temperature = temperature_for_category(q.category);
      c.max_new_tokens = o.get<int64_t>("max_new_tokens");
      c.seed = ctx.seed();
      configs.push_back(c);
    }
    benchmarks::LoadedModel m = benchmarks::load_model(ctx);
    const int64_t batch_size = o.get<int64_t>("batch_size");
    // Turn 1, then turn 2 with the first answer in the conversation (gen_model_answer.py's loop over turns).
    std::vector<ChatSample> prompts;
    for (size_t i = 0; i < questions.size(); ++i) {
      ChatSample s;
      s.turns.push_back({"human", (images[i].empty() ? "" : "<image>\n") + questions[i].turns[0]});
      if (!images[i].empty()) s.images.push_back(images[i]);
      prompts.push_back(std::move(s));
    }
    const std::vector<std::string> first = benchmarks::generate_all(ctx, *m.model, prompts, configs, batch_size,
                                                                    "mt_bench turn 1");
    for (size_t i = 0; i < questions.size(); ++i) {
      prompts[i].turns.push_back({"gpt", first[i]});
      prompts[i].turns.push_back({"human", questions[i].turns[1]});
    }
    const std::vector<std::string> second = benchmarks::generate_all(ctx, *m.model, prompts, configs, batch_size,
                                                                     "mt_bench turn 2");
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::vector<AnswerRecord> records;
    std::vector<ModelAnswer> answers;
    for (size_t i = 0; i < questions.size(); ++i) {
      records.push_back({questions[i].question_id, fmt::format("{}-{}", model_id, questions[i].question_id), model_id,
                         {first[i], second[i]}, now});
      answers.push_back({0, questions[i].question_id, model_id, {first[i], second[i]}});
    }
    const fs::path answers_path = benchmarks::write_artifact(
        ctx, "answers", "model_answer.jsonl", [&](const std::string& p) { write_model_answers(p, records); });
    MetricList metrics = {{"n_answers", static_cast<double>(records.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, metrics, answers_path);
    if (!judge) return;
    check_keys(o, option_schema(), {"judge_prompts"});
    const auto judge_prompts = read_judge_prompts(o.get<std::string>("judge_prompts"));
    std::map<int64_t, ModelAnswer> references;
    if (o.has("reference_answers"))
      for (auto& a : read_model_answers(o.get<std::string>("reference_answers"))) references[a.question_id] = a;
    std::vector<mt_bench::JudgeRequest> built;
    std::vector<int64_t> built_question;
    for (size_t i = 0; i < questions.size(); ++i) {
      const ModelAnswer* reference = nullptr;
      if (needs_reference(questions[i].category)) {
        auto it = references.find(questions[i].question_id);
        if (it == references.end())
          throw DataError(fmt::format("question {} ({}) is judged against a reference answer, and option "
                                      "'reference_answers' has none for it", questions[i].question_id,
                                      questions[i].category));
        reference = &it->second;
      }
      for (int turn = 1; turn <= 2; ++turn) {
        built.push_back(build_judge_request(judge_prompts, questions[i], answers[i], reference, turn));
        built_question.push_back(questions[i].question_id);
      }
    }
    std::vector<mmr::JudgeRequest> requests;
    for (const auto& b : built) requests.push_back({b.system_prompt, b.user_prompt, kJudgeTemperature, kJudgeMaxTokens, {}});
    const std::vector<std::string> texts = judge->ask(requests);
    std::string lines;
    for (size_t i = 0; i < built.size(); ++i) {
      const double rating = parse_rating(texts[i]);
      if (rating == -1) judge->count_unparseable();
      lines += judgment_line(built_question[i], model_id, judge->identity(), built[i], texts[i], rating, now) + "\n";
    }
    const fs::path judgments_path = benchmarks::write_artifact(
        ctx, "judgments", "judgments.jsonl", [&](const std::string& p) { benchmarks::write_text(p, lines); });
    for (const auto& metric : score_files(judgments_path.string(), questions_path)) metrics.push_back(metric);
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::mt_bench

MMR_PLUGIN(Benchmark, "mt_bench", "1.0.0", mmr::mt_bench::MtBench)
