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
#include <spdlog/logger.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/mt_bench/scoring.h"

namespace mmr::mt_bench {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string judgments, questions;
  std::vector<std::string> models;
  std::string judge_prompts, reference_answers;
  YAML::Node judge;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    o.bind("judgments", &judgments, "", "FastChat judgment JSONL (model_judgment/<judge>_single.jsonl) to score; "
                                        "without it the stage evaluates 'model'", "path");
    o.bind("questions", &questions, "", "MT-Bench question.jsonl: adds the per-category means and checks question ids",
           "path");
    benchmarks::bind_list(o, "models", &models, "only these models (show_result.py's --model-list): a list, "
                          "comma-separated on the command line");
    o.bind("judge_prompts", &judge_prompts, "", "FastChat's judge_prompts.jsonl; needed to judge", "path");
    o.bind("reference_answers", &reference_answers, "", "reference answers (reference_answer/gpt-4.jsonl) for math, "
                                                        "reasoning and coding; needed to judge those", "path");
    o.bind("judge", &judge, YAML::Node(), "the judge: a judge plugin name or map; without it answers are written, "
                                          "not judged");
    eval.bind(o, 1024, "optional: pair each question with an image drawn (seeded) from this folder (\"random-coco\")");
  }
};

// Image files of a folder, sorted by name (the draw depends on nothing but the folder's contents and the seed).
std::vector<std::string> folder_images(const std::string& dir) {
  if (!fs::is_directory(dir)) throw IoError(fmt::format("option 'image_folder': '{}' is not a folder", dir));
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string ext = ascii_lower(e.path().extension().string());
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw IoError(fmt::format("option 'image_folder': no .jpg/.jpeg/.png file in '{}'", dir));
  return files;
}

// One image per question drawn from `image_folder` (none without it).
std::vector<std::string> draw_images(const Config& cfg, size_t n, uint64_t seed) {
  std::vector<std::string> images(n);
  if (cfg.eval.image_folder.empty()) return images;
  const std::vector<std::string> pool = folder_images(cfg.eval.image_folder);
  std::mt19937_64 rng(seed);
  for (auto& image : images) image = pool[rng() % pool.size()];
  return images;
}

// gen_model_answer.py's settings per question: its category's temperature, the stage's token limit.
std::vector<GenerationConfig> generation_configs(const Config& cfg, const std::vector<Question>& questions,
                                                 uint64_t seed) {
  std::vector<GenerationConfig> configs;
  for (const auto& q : questions) {
    if (q.turns.size() != 2)
      throw DataError(fmt::format("{}:{}: question {} has {} turns; MT-Bench questions have 2", cfg.questions, q.line,
                                  q.question_id, q.turns.size()));
    GenerationConfig c;
    c.temperature = temperature_for_category(q.category);
    c.max_new_tokens = cfg.eval.max_new_tokens;
    c.seed = seed;
    configs.push_back(c);
  }
  return configs;
}

// Turn 1, then turn 2 with the first answer in the conversation (gen_model_answer.py's loop over turns).
std::vector<ModelAnswer> answer_both_turns(StageContext& ctx, const Config& cfg, const std::vector<Question>& questions) {
  const std::vector<std::string> images = draw_images(cfg, questions.size(), ctx.seed());
  const std::vector<GenerationConfig> configs = generation_configs(cfg, questions, ctx.seed());
  benchmarks::LoadedModel m = benchmarks::load_model(ctx, cfg.eval);
  std::vector<ChatSample> prompts;
  for (size_t i = 0; i < questions.size(); ++i) {
    ChatSample s;
    s.turns.push_back({"human", (images[i].empty() ? "" : "<image>\n") + questions[i].turns[0]});
    if (!images[i].empty()) s.images.push_back(images[i]);
    prompts.push_back(std::move(s));
  }
  const auto first = benchmarks::generate_all(ctx, *m.model, prompts, configs, cfg.eval.batch_size, "mt_bench turn 1");
  for (size_t i = 0; i < questions.size(); ++i) {
    prompts[i].turns.push_back({"gpt", first[i]});
    prompts[i].turns.push_back({"human", questions[i].turns[1]});
  }
  const auto second = benchmarks::generate_all(ctx, *m.model, prompts, configs, cfg.eval.batch_size, "mt_bench turn 2");
  std::vector<ModelAnswer> answers;
  for (size_t i = 0; i < questions.size(); ++i)
    answers.push_back({0, questions[i].question_id, cfg.eval.model_id, {first[i], second[i]}});
  return answers;
}

// The judge requests of both turns of every question, with the reference answer where the category needs one.
std::vector<JudgeRequest> judge_requests(const Config& cfg, const std::vector<Question>& questions,
                                         const std::vector<ModelAnswer>& answers) {
  const auto prompts = read_judge_prompts(cfg.judge_prompts);
  std::map<int64_t, ModelAnswer> references;
  if (!cfg.reference_answers.empty())
    for (auto& a : read_model_answers(cfg.reference_answers)) references[a.question_id] = a;
  std::vector<JudgeRequest> requests;
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
    for (int turn = 1; turn <= 2; ++turn)
      requests.push_back(build_judge_request(prompts, questions[i], answers[i], reference, turn));
  }
  return requests;
}

// Judges both turns; returns judgments.jsonl's text.
std::string judge_answers(JudgeClient& judge, const Config& cfg, const std::vector<Question>& questions,
                          const std::vector<ModelAnswer>& answers, double now) {
  const std::vector<JudgeRequest> built = judge_requests(cfg, questions, answers);
  std::vector<mmr::JudgeRequest> requests;
  for (const auto& b : built) requests.push_back({b.system_prompt, b.user_prompt, kJudgeTemperature, kJudgeMaxTokens, {}});
  const std::vector<std::string> texts = judge.ask(requests);
  std::string lines;
  for (size_t i = 0; i < built.size(); ++i) {
    const double rating = parse_rating(texts[i]);
    if (rating == -1) judge.count_unparseable();
    lines += judgment_line(questions[i / 2].question_id, cfg.eval.model_id, judge.identity(), built[i], texts[i],
                           rating, now) + "\n";
  }
  return lines;
}

class MtBench : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit MtBench(const Options&)
      : ScoringBenchmark({"mt_bench", "judgments",
                          "runner score mt_bench judgments=FILE [questions=question.jsonl] [models=NAME[,NAME...]]",
                          {"judgments"}}) {}
  static const char* summary() {
    return "MT-Bench: scores FastChat single-answer judgment files with show_result.py's arithmetic "
           "(mean score per turn and overall, per model)";
  }

 protected:
  MetricList score_config(const Options&, const Config& cfg) const override {
    ScoreOptions options;
    options.model_list = cfg.models;
    MetricList metrics = score_files(cfg.judgments, cfg.questions, options);
    // show_result.py prints nothing for a --model-list name without judgments; we say so.
    for (const auto& model : cfg.models) {
      const bool found = std::any_of(metrics.begin(), metrics.end(),
                                     [&](const MetricValue& m) { return m.name.rfind(model + "/", 0) == 0; });
      if (!found) throw DataError(fmt::format("{}: no judgments for model '{}' (option 'models')", cfg.judgments, model));
    }
    if (metrics.empty()) throw DataError(cfg.judgments + ": no judgments to score");
    return metrics;
  }
  std::vector<std::string> scored_files(const Config& cfg) const override { return {cfg.judgments}; }

  void evaluate(StageContext& ctx, const Config& cfg) override {
    require(ctx.options(), {"questions"});
    const std::vector<Question> questions = benchmarks::first_n(read_questions(cfg.questions), cfg.eval.limit);
    const std::vector<ModelAnswer> answers = answer_both_turns(ctx, cfg, questions);
    const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    std::vector<AnswerRecord> records;
    for (const ModelAnswer& a : answers)
      records.push_back({a.question_id, fmt::format("{}-{}", a.model_id, a.question_id), a.model_id, a.turns, now});
    const fs::path answers_path =
        benchmarks::write_artifact(ctx, "answers", "model_answer.jsonl", model_answers_jsonl(records));
    MetricList metrics = {{"n_answers", static_cast<double>(records.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, cfg.judge, metrics, answers_path);
    if (!judge) return;
    require(ctx.options(), {"judge_prompts"});
    const fs::path judgments_path = benchmarks::write_artifact(ctx, "judgments", "judgments.jsonl",
                                                               judge_answers(*judge, cfg, questions, answers, now));
    for (const auto& metric : score_files(judgments_path.string(), cfg.questions)) metrics.push_back(metric);
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::mt_bench

MMR_PLUGIN(Benchmark, "mt_bench", "1.0.0", mmr::mt_bench::MtBench)
