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
// tokens. With `image_folder` (the paper's Table 7, mllm-dpo's gen_model_answer.py --use-random-cocoimage), every
// turn starts with "<image>\n" and shows an image drawn at random (seeded by `image_seed`) from that folder or list,
// a new one per turn, centre-cropped as that script did, so the second turn's conversation holds two images. (The
// script tokenized the prompt with the plain tokenizer, so "<image>" stayed text and the image never reached the
// language model; here it does. See README.md.) Writes model_answer.jsonl in FastChat's format, judges both turns
// with FastChat's single-answer prompts (gpt-4 unless the judge names a model, temperature 0, 2048 tokens;
// reference answers for math, reasoning, coding), writes judgments.jsonl in FastChat's judgment format and scores it.
#include <fmt/format.h>
#include <spdlog/logger.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/benchmark.h"
#include "plugins/benchmarks/common/jsonl.h"
#include "plugins/benchmarks/mt_bench/scoring.h"

namespace mmr::mt_bench {
namespace {

namespace fs = std::filesystem;

struct Config {
  std::string judgments, questions;
  std::vector<std::string> models;
  std::string judge_prompts, reference_answers;
  int64_t image_seed = -1;
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
                                          "not judged", "judge");
    o.bind("image_seed", &image_seed, -1, "seed of the images drawn with image_folder (-1: the trial seed)");
    // mllm-dpo's llava/eval/gen_model_answer.py: --max-new-token 1024 (:293-296); with --use-random-cocoimage the
    // image goes through the bare CLIP processor, image_processor.preprocess(random_cocoimage) (:160): the centre
    // crop. Without images no preprocessing is set.
    eval.bind(o, {1024, "center_crop", "optional (Table 7): a folder of images (its .jpg/.jpeg/.png files; COCO "
                                       "train2017 in the paper) or a file listing image paths, one per line; every "
                                       "turn then shows one drawn at random"});
  }
};

// FastChat's single-answer judge: gen_judgment.py's --judge-model default and run_judge_single's settings.
benchmarks::JudgeProtocol mt_judge() {
  return {"gpt-4", kJudgeTemperature, kJudgeMaxTokens,
          "FastChat llm_judge/gen_judgment.py --judge-model, common.py run_judge_single"};
}

// The image paths a list file names, one per line, relative to the file's folder.
std::vector<std::string> listed_images(const std::string& list) {
  std::vector<std::string> files;
  std::istringstream lines(benchmarks::jsonl::read_text_file(list, "MT-Bench image list"));
  for (std::string line; std::getline(lines, line);)
    if (!python_strip(line).empty()) files.push_back((fs::path(list).parent_path() / python_strip(line)).string());
  return files;
}

// A folder's image files sorted by name (the draw depends on nothing but the folder's contents and the seed).
std::vector<std::string> folder_images(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string ext = ascii_lower(e.path().extension().string());
    if (e.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png")) files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// The images drawn from: `image_folder`, a folder or a list file.
std::vector<std::string> image_pool(const std::string& source) {
  if (!fs::is_regular_file(source) && !fs::is_directory(source))
    throw IoError(fmt::format("option 'image_folder': '{}' is neither a folder nor a list file", source));
  std::vector<std::string> files = fs::is_directory(source) ? folder_images(source) : listed_images(source);
  if (files.empty())
    throw IoError(fmt::format("option 'image_folder': no image in '{}' (expected .jpg/.jpeg/.png files, or one path "
                              "a line)", source));
  return files;
}

// Per question, one image per turn (none without `image_folder`), drawn with replacement in question order:
// gen_model_answer.py draws a new random.choice for every turn (:158-159, get_random_cocoimage :36-52). Its draws
// were unseeded; these are seeded, so a rerun shows the same images.
std::vector<std::array<std::string, 2>> draw_images(const Config& cfg, size_t n, uint64_t seed) {
  std::vector<std::array<std::string, 2>> images(n);
  if (cfg.eval.image_folder.empty()) return images;
  const std::vector<std::string> pool = image_pool(cfg.eval.image_folder);
  std::mt19937_64 rng(seed);
  for (auto& turns : images)
    for (auto& image : turns) image = pool[rng() % pool.size()];
  return images;
}

// A human turn; with an image, "<image>\n" before the text (gen_model_answer.py:143-144) and the image shown.
void add_turn(ChatSample& sample, const std::string& text, const std::string& image) {
  sample.turns.push_back({"human", (image.empty() ? "" : "<image>\n") + text});
  if (!image.empty()) sample.images.push_back(image);
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
  const uint64_t image_seed = cfg.image_seed >= 0 ? static_cast<uint64_t>(cfg.image_seed) : ctx.seed();
  const auto images = draw_images(cfg, questions.size(), image_seed);
  const std::vector<GenerationConfig> configs = generation_configs(cfg, questions, ctx.seed());
  benchmarks::LoadedModel m = benchmarks::load_model(ctx, cfg.eval, !cfg.eval.image_folder.empty());
  std::vector<ChatSample> prompts(questions.size());
  for (size_t i = 0; i < questions.size(); ++i) add_turn(prompts[i], questions[i].turns[0], images[i][0]);
  const auto first = benchmarks::generate_all(ctx, *m.model, prompts, configs, cfg.eval.batch_size, "mt_bench turn 1");
  for (size_t i = 0; i < questions.size(); ++i) {
    prompts[i].turns.push_back({"gpt", first[i]});
    add_turn(prompts[i], questions[i].turns[1], images[i][1]);
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
  const benchmarks::JudgeSettings settings = benchmarks::judge_settings(cfg.judge, mt_judge());
  std::vector<mmr::JudgeRequest> requests;
  for (const auto& b : built)
    requests.push_back({b.system_prompt, b.user_prompt, settings.temperature, settings.max_tokens, {}});
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

    auto judge = benchmarks::judge_or_finish(ctx, cfg.judge, mt_judge(), metrics, answers_path);
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

MMR_PLUGIN(Benchmark, "mt_bench", "1.1.0", mmr::mt_bench::MtBench)
