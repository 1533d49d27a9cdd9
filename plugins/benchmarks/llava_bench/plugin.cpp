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
// Without `reviews`, `{benchmark: llava_bench, model: {...}, questions: questions.jsonl, image_folder: ...,
// context: context.jsonl, reference_answers: answers_gpt4.jsonl, rules: rule.json, judge: {...}}` evaluates a model
// as LLaVA's model_vqa.py did ("<image>\n" + question, greedy, 1024 new tokens, the image centre-cropped), writes
// answers.jsonl in LLaVA's answer format, has the judge review each (reference, model) pair once as
// eval_gpt_review_bench.py does (its system prompt; gpt-4-0314 unless the judge names a model, temperature 0.2,
// 1024 tokens), writes reviews.jsonl in that script's format and scores it. The script reviews each pair once per
// invocation and summarize_gpt_review.py prints each review file on its own (the three review files LLaVA
// published for LLaVA-1.5-13B, eval1-3, are three invocations; `runner score` takes several files), so the stage
// reviews once.
#include <fmt/format.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <array>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace mmr::llava_bench {
namespace {

namespace fs = std::filesystem;

// The integer question ids of option `ignore` (the script's --ignore).
std::set<int64_t> question_ids(const Options& o, const std::vector<std::string>& ids) {
  std::set<int64_t> out;
  for (const std::string& id : ids) {
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(id, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != id.size() || id.empty())
      throw ConfigError(fmt::format("{}option 'ignore': expected integer question ids, found '{}'", o.where("ignore"),
                                    id));
    out.insert(value);
  }
  return out;
}

struct Config {
  std::vector<std::string> reviews;
  std::set<int64_t> ignore;
  std::string questions, context, reference_answers, rules;
  bool join_caption_characters = true;
  YAML::Node judge;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    benchmarks::bind_list(o, "reviews", &reviews, "review JSONL file(s) written by eval_gpt_review_bench.py: a path "
                          "or a list (comma-separated on the command line); without it the stage evaluates 'model'", "paths");
    std::vector<std::string> ignored;
    benchmarks::bind_list(o, "ignore", &ignored, "question ids to skip (the script's --ignore): a list, "
                          "comma-separated on the command line");
    if (o.reading()) ignore = question_ids(o.options(), ignored);
    o.bind("questions", &questions, "", "questions.jsonl (question_id, image, text, category)", "path");
    o.bind("context", &context, "", "context.jsonl (image captions for the reviewer); needed to review", "path");
    o.bind("reference_answers", &reference_answers, "", "answers_gpt4.jsonl (answer 1 of each review); needed to "
                                                        "review", "path");
    o.bind("rules", &rules, "", "rule.json (the reviewer prompts per category); needed to review", "path");
    o.bind("join_caption_characters", &join_caption_characters, true, "join a string caption's characters with "
           "newlines, as the official script's '\\n'.join(caption) does");
    o.bind("judge", &judge, YAML::Node(), "the reviewer: a judge plugin name or map; without it answers are written, "
                                          "not reviewed", "judge");
    // LLaVA-1.5's scripts/v1_5/eval/llavabench.sh (and mllm-dpo's, :58-65) run llava/eval/model_vqa.py with
    // --temperature 0 (greedy) and conv-mode vicuna_v1; model_vqa.py hard-codes max_new_tokens=1024 (mllm-dpo
    // model_vqa.py:74) and preprocesses with the bare CLIP processor, image_processor.preprocess(image) (:59):
    // shortest side to 336, then the centre crop, where training padded.
    eval.bind(o, {1024, "center_crop"});
  }
};

// eval_gpt_review_bench.py's reviewer (mllm-dpo and LLaVA @ ce1aa08 alike).
benchmarks::JudgeProtocol reviewer() {
  return {std::string(kReviewerModel), kReviewerTemperature, kReviewerMaxTokens,
          "LLaVA's llava/eval/eval_gpt_review_bench.py:17-26, --max-tokens 1024 (:60)"};
}

// Several files: a block per file, named by its config, then the mean of each relative score.
MetricList combine(const std::vector<std::string>& files, const std::vector<ReviewSummary>& summaries) {
  std::set<std::string> configs;
  for (size_t i = 0; i < summaries.size(); ++i)
    if (!configs.insert(summaries[i].config).second)
      throw ConfigError(fmt::format("review files '{}' and another both have the config name '{}' (the file name "
                                    "without gpt4_text_ and .jsonl); give them distinct names",
                                    files[i], summaries[i].config));
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

// The model's answers: LLaVA's answer file lines, and the same answers as the reviewer's answer 2.
struct Answers {
  std::vector<AnswerRecord> records;
  std::vector<Answer> for_review;
};
Answers answers_of(const Config& cfg, const std::vector<Question>& questions, const std::vector<std::string>& replies) {
  Answers a;
  for (size_t i = 0; i < questions.size(); ++i) {
    const std::string answer_id = fmt::format("{}-{}", cfg.eval.model_id, questions[i].question_id);
    a.records.push_back({questions[i].question_id, questions[i].text, replies[i], answer_id, cfg.eval.model_id});
    a.for_review.push_back({0, questions[i].question_id, answer_id, replies[i]});
  }
  return a;
}

// Has the judge review every (reference, model) pair; returns reviews.jsonl's text.
std::string review(JudgeClient& judge, const Config& cfg, const std::vector<Question>& questions,
                   const std::vector<Answer>& answers) {
  const auto context = read_context(cfg.context, cfg.join_caption_characters);
  const std::vector<Answer> references = benchmarks::first_n(read_answers(cfg.reference_answers), cfg.eval.limit);
  const std::vector<ReviewRequest> reviews =
      build_review_requests(questions, context, references, answers, read_rules(cfg.rules));
  const benchmarks::JudgeSettings settings = benchmarks::judge_settings(cfg.judge, reviewer());
  std::vector<JudgeRequest> requests;
  for (const auto& r : reviews)
    requests.push_back({std::string(kReviewerSystemPrompt), r.content, settings.temperature, settings.max_tokens, {}});
  const std::vector<std::string> texts = judge.ask(requests);
  std::string lines;
  for (size_t i = 0; i < reviews.size(); ++i) {
    const std::array<double, 2> tuple = parse_score(texts[i]);
    if (tuple[0] == -1 && tuple[1] == -1) judge.count_unparseable();
    lines += review_line(reviews[i], texts[i], tuple) + "\n";
  }
  return lines;
}

class LlavaBench : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit LlavaBench(const Options&)
      : ScoringBenchmark({"llava_bench", "reviews", "runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]",
                          {"reviews"}}) {}
  static const char* summary() {
    return "LLaVA-Bench in-the-wild: scores GPT-4 review files with summarize_gpt_review.py's arithmetic "
           "(100 x model / reference, per category and overall)";
  }

 protected:
  MetricList score_config(const Options&, const Config& cfg) const override {
    std::vector<ReviewSummary> summaries;
    for (const auto& path : cfg.reviews) summaries.push_back(summarize_file(path, cfg.ignore));
    return summaries.size() == 1 ? to_metrics(summaries[0]) : combine(cfg.reviews, summaries);
  }
  std::vector<std::string> scored_files(const Config& cfg) const override { return cfg.reviews; }
  std::string describe(const Options&, const Config& cfg) const override {
    return fmt::format("{} review file(s)", cfg.reviews.size());
  }

  void evaluate(StageContext& ctx, const Config& cfg) override {
    require(ctx.options(), {"questions", "image_folder"});
    const std::vector<Question> questions = benchmarks::first_n(read_questions(cfg.questions), cfg.eval.limit);
    std::vector<benchmarks::ImageQuestion> prompts;
    for (const auto& q : questions) prompts.push_back({q.text, q.image});
    const Answers answers =
        answers_of(cfg, questions, benchmarks::answer_image_questions(ctx, cfg.eval, prompts, "llava_bench answers"));
    const fs::path answers_path =
        benchmarks::write_artifact(ctx, "answers", "answers.jsonl", answers_jsonl(answers.records));
    MetricList metrics = {{"n_answers", static_cast<double>(answers.records.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, cfg.judge, reviewer(), metrics, answers_path);
    if (!judge) return;
    require(ctx.options(), {"context", "reference_answers", "rules"});
    const fs::path reviews_path = benchmarks::write_artifact(ctx, "reviews", "reviews.jsonl",
                                                             review(*judge, cfg, questions, answers.for_review));
    for (const auto& metric : score_file(reviews_path.string())) metrics.push_back(metric);
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::llava_bench

MMR_PLUGIN(Benchmark, "llava_bench", "1.1.0", mmr::llava_bench::LlavaBench)
