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
// as LLaVA's model_vqa.py did ("<image>\n" + question, greedy, 1024 new tokens), writes answers.jsonl in LLaVA's
// answer format, has the judge review each (reference, model) pair as eval_gpt_review_bench.py does (its system
// prompt, temperature 0.2, 1024 tokens), writes reviews.jsonl in that script's format and scores it.
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
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace mmr::llava_bench {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUsage = "runner score llava_bench reviews=FILE[,FILE...] [ignore=ID[,ID...]]";

// The shared argument and recording helpers (plugins/benchmarks/common/file_scoring.h).
using benchmarks::list_option;
using benchmarks::record;
void check_keys(const Options& o, const OptionSchema& schema, const std::vector<std::string>& required) {
  benchmarks::check_keys(o, schema, required, kUsage);
}

// ---- LLaVA-Bench ----

struct Inputs {
  std::vector<std::string> reviews;
  std::set<int64_t> ignore;
};

Inputs inputs_from(const Options& o, const OptionSchema& schema) {
  check_keys(o, schema, {"reviews"});
  Inputs in;
  in.reviews = list_option(o, "reviews");
  if (o.has("ignore")) {
    for (const std::string& id : list_option(o, "ignore")) {
      size_t used = 0;
      int64_t value = 0;
      try {
        value = std::stoll(id, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != id.size() || id.empty())
        throw ConfigError(fmt::format("{}option 'ignore': expected integer question ids, found '{}'",
                                      o.where(o.node()["ignore"]), id));
      in.ignore.insert(value);
    }
  }
  return in;
}

MetricList score_inputs(const Inputs& in) {
  std::vector<ReviewSummary> summaries;
  for (const auto& path : in.reviews) summaries.push_back(summarize_file(path, in.ignore));
  if (summaries.size() == 1) return to_metrics(summaries[0]);

  // Several files: a block per file, named by its config, then the mean of each relative score.
  std::set<std::string> configs;
  for (size_t i = 0; i < summaries.size(); ++i)
    if (!configs.insert(summaries[i].config).second)
      throw ConfigError(fmt::format("review files '{}' and another both have the config name '{}' (the file name "
                                    "without gpt4_text_ and .jsonl); give them distinct names",
                                    in.reviews[i], summaries[i].config));
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

class LlavaBench : public Benchmark {
 public:
  explicit LlavaBench(const Options&) {}
  static const char* summary() {
    return "LLaVA-Bench in-the-wild: scores GPT-4 review files with summarize_gpt_review.py's arithmetic "
           "(100 x model / reference, per category and overall)";
  }
  static OptionSchema option_schema() {
    OptionSchema schema = {
        {"reviews", "any", "", "review JSONL file(s) written by eval_gpt_review_bench.py: a path or a list "
                               "(comma-separated on the command line); without it the stage evaluates 'model'"},
        {"ignore", "any", "", "question ids to skip (the script's --ignore): a list, comma-separated on the "
                              "command line"},
        {"questions", "path", "", "questions.jsonl (question_id, image, text, category)"},
        {"context", "path", "", "context.jsonl (image captions for the reviewer); needed to review"},
        {"reference_answers", "path", "", "answers_gpt4.jsonl (answer 1 of each review); needed to review"},
        {"rules", "path", "", "rule.json (the reviewer prompts per category); needed to review"},
        {"join_caption_characters", "bool", "true", "join a string caption's characters with newlines, as the "
                                                    "official script's '\\n'.join(caption) does"},
        {"judge", "any", "", "the reviewer: a judge plugin name or map; without it answers are written, not reviewed"},
    };
    for (auto& spec : benchmarks::evaluation_options("1024")) schema.push_back(spec);
    return schema;
  }

  void run(StageContext& ctx) override {
    const Options& o = ctx.options();
    if (!o.has("reviews")) return evaluate(ctx);
    const Inputs in = inputs_from(o, option_schema());
    ctx.log().info("llava_bench: scoring {} review file(s)", in.reviews.size());
    record(ctx, score_inputs(in), "reviews", in.reviews);
  }

  void evaluate(StageContext& ctx) {
    const Options& o = ctx.options();
    benchmarks::check_can_evaluate(ctx, "reviews", kUsage);
    check_keys(o, option_schema(), {"questions", "image_folder"});
    const int64_t limit = o.get<int64_t>("limit");
    const std::vector<Question> questions = benchmarks::first_n(read_questions(o.get<std::string>("questions")), limit);
    const std::string model_id = o.get<std::string>("model_id");

    std::vector<benchmarks::ImageQuestion> prompts;
    for (const auto& q : questions) prompts.push_back({q.text, q.image});
    const std::vector<std::string> replies = benchmarks::answer_image_questions(ctx, prompts, "llava_bench answers");
    std::vector<AnswerRecord> records;
    std::vector<Answer> answers;
    for (size_t i = 0; i < questions.size(); ++i) {
      const std::string answer_id = fmt::format("{}-{}", model_id, questions[i].question_id);
      records.push_back({questions[i].question_id, questions[i].text, replies[i], answer_id, model_id});
      answers.push_back({0, questions[i].question_id, answer_id, replies[i]});
    }
    const fs::path answers_path = benchmarks::write_artifact(
        ctx, "answers", "answers.jsonl", [&](const std::string& p) { write_answers(p, records); });
    MetricList metrics = {{"n_answers", static_cast<double>(records.size())}};

    auto judge = benchmarks::judge_or_finish(ctx, metrics, answers_path);
    if (!judge) return;
    check_keys(o, option_schema(), {"context", "reference_answers", "rules"});
    const auto context = read_context(o.get<std::string>("context"), o.get<bool>("join_caption_characters"));
    const std::vector<Answer> references =
        benchmarks::first_n(read_answers(o.get<std::string>("reference_answers")), limit);
    const std::vector<ReviewRequest> reviews =
        build_review_requests(questions, context, references, answers, read_rules(o.get<std::string>("rules")));
    std::vector<JudgeRequest> requests;
    for (const auto& r : reviews)
      requests.push_back({std::string(kReviewerSystemPrompt), r.content, kReviewerTemperature, kReviewerMaxTokens, {}});
    const std::vector<std::string> texts = judge->ask(requests);
    std::string lines;
    for (size_t i = 0; i < reviews.size(); ++i) {
      const std::array<double, 2> tuple = parse_score(texts[i]);
      if (tuple[0] == -1 && tuple[1] == -1) judge->count_unparseable();
      lines += review_line(reviews[i], texts[i], tuple) + "\n";
    }
    const fs::path reviews_path = benchmarks::write_artifact(
        ctx, "reviews", "reviews.jsonl", [&](const std::string& p) { benchmarks::write_text(p, lines); });
    for (const auto& metric : score_file(reviews_path.string())) metrics.push_back(metric);
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }

  MetricList score(const Options& args) override { return score_inputs(inputs_from(args, option_schema())); }
};

}  // namespace
}  // namespace mmr::llava_bench

MMR_PLUGIN(Benchmark, "llava_bench", "1.0.0", mmr::llava_bench::LlavaBench)
