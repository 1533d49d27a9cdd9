// The AlpacaEval 1.0 benchmark plugin: scores an official annotations file (results/<model>/annotations.json,
// judged by the alpaca_eval_gpt4 annotator against text-davinci-003) with alpaca_eval's win-rate arithmetic, and
// evaluates a model the way the paper's repository did (scoring.h).
//
//   runner score alpaca_eval annotations=FILE
//
// Reports win_rate (draws count half) and standard_error (pandas' sem, ddof = 1), discrete_win_rate, n_wins,
// n_wins_base, n_draws, n_total, avg_length (the leaderboard's columns), and n_rows / n_dropped (rows whose
// preference is null or outside [1, 2], which the official code drops silently).
// As an experiment stage, `{benchmark: alpaca_eval, annotations: ...}` records every metric, the annotations file
// (copied into the stage folder) and scores.json.
// Without `annotations`, `{benchmark: alpaca_eval, model: {...}, instructions: alpaca_eval_v1_eval_set.json,
// annotators_config: evaluators_configs/alpaca_eval_gpt4, judge: {...}}` evaluates a model as mllm-dpo's
// gen_model_answeralpaca.py did (each instruction the single user turn, no image, greedy, 1024 new tokens, the
// reply stripped), writes model_outputs.json in alpaca_eval's format, annotates every pair with the
// alpaca_eval_gpt4 annotator as configured (prompt template, temperature, max_tokens; position randomisation;
// identical outputs are draws without a judge call; unparseable replies get preference null and are counted),
// writes annotations.json in the official format and scores it. `limit` evaluates the first N instructions only.
#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"
#include "plugins/benchmarks/alpaca_eval/scoring.h"
#include "plugins/benchmarks/common/benchmark.h"

namespace mmr::alpaca_eval {
namespace {

struct Config {
  std::string annotations;
  std::string instructions, annotators_config;
  YAML::Node judge;
  benchmarks::EvaluationConfig eval;

  void bind(OptionBinder& o) {
    o.bind("annotations", &annotations, "", "an AlpacaEval annotations file (results/<model>/annotations.json: "
                                            "instruction, output_1, output_2, preference) to score; without it the "
                                            "stage evaluates 'model'", "path");
    o.bind("instructions", &instructions, "", "the evaluation set with the reference outputs "
                                              "(alpaca_eval_v1_eval_set.json: instruction, output, ...)", "path");
    o.bind("annotators_config", &annotators_config, "", "the annotator's folder holding configs.yaml "
                                                        "(evaluators_configs/alpaca_eval_gpt4); needed to judge", "path");
    o.bind("judge", &judge, YAML::Node(), "the annotator's judge: a judge plugin name or map; without it the "
                                          "outputs are written, not judged", "judge");
    // mllm-dpo's llava/eval/gen_model_answeralpaca.py: greedy, max_new_tokens 1024; the instructions have no image.
    eval.bind(o, {1024, "model"});
  }
};

// The annotator as its configs.yaml sets it (completions_kwargs: model_name, temperature, max_tokens).
benchmarks::JudgeProtocol annotator_protocol(const AnnotatorConfig& a) {
  return {a.model_name, a.temperature, a.max_tokens, "alpaca_eval evaluators_configs/" + a.name + "/configs.yaml"};
}

// gen_model_answeralpaca.py: each instruction is the single user turn, no image, greedy decoding.
std::vector<EvalRecord> generate_outputs(StageContext& ctx, const Config& cfg, const std::vector<EvalRecord>& reference) {
  std::vector<ChatSample> prompts;
  for (const auto& r : reference) prompts.push_back(ChatSample{{{"human", r.instruction}}, {}});
  GenerationConfig config;  // temperature 0: greedy
  config.max_new_tokens = cfg.eval.max_new_tokens;
  benchmarks::LoadedModel m = benchmarks::load_model(ctx, cfg.eval);
  const std::vector<std::string> replies =
      benchmarks::generate_all(ctx, *m.model, prompts, std::vector<GenerationConfig>(prompts.size(), config),
                               cfg.eval.batch_size, "alpaca_eval outputs");
  std::vector<EvalRecord> outputs;
  for (size_t i = 0; i < reference.size(); ++i)
    outputs.push_back({reference[i].dataset, reference[i].instruction, replies[i], cfg.eval.model_id});
  return outputs;
}

class AlpacaEval : public benchmarks::ScoringBenchmark<Config> {
 public:
  explicit AlpacaEval(const Options&)
      : ScoringBenchmark({"alpaca_eval", "annotations", "runner score alpaca_eval annotations=FILE", {"annotations"}}) {}
  static const char* summary() {
    return "AlpacaEval 1.0: scores alpaca_eval_gpt4 annotation files with alpaca_eval's arithmetic (win rate with "
           "draws as half, standard error of the mean); evaluates a model against text-davinci-003 with that annotator";
  }

 protected:
  MetricList score_config(const Options&, const Config& cfg) const override { return score_file(cfg.annotations); }
  std::vector<std::string> scored_files(const Config& cfg) const override { return {cfg.annotations}; }

  void evaluate(StageContext& ctx, const Config& cfg) override {
    require(ctx.options(), {"instructions"});
    if (!cfg.eval.image_folder.empty())  // a shared evaluation option that would otherwise be ignored silently
      throw ConfigError(fmt::format("{}option 'image_folder': AlpacaEval is text-only (the instructions have no "
                                    "images); leave it out", ctx.options().where(ctx.options().node()["image_folder"])));
    const std::vector<EvalRecord> reference = benchmarks::first_n(read_eval_set(cfg.instructions), cfg.eval.limit);
    const std::vector<EvalRecord> outputs = generate_outputs(ctx, cfg, reference);
    const std::filesystem::path outputs_path =
        benchmarks::write_artifact(ctx, "model_outputs", "model_outputs.json", model_outputs_json(outputs));
    MetricList metrics = {{"n_answers", static_cast<double>(outputs.size())}};

    if (!benchmarks::given(cfg.judge)) return benchmarks::finish_unjudged(ctx, metrics, outputs_path);
    require(ctx.options(), {"annotators_config"});
    const AnnotatorConfig annotator = read_annotator_config(cfg.annotators_config);
    auto judge = benchmarks::make_judge(ctx, cfg.judge, annotator_protocol(annotator));
    const benchmarks::JudgeSettings settings = benchmarks::judge_settings(cfg.judge, annotator_protocol(annotator));
    const Annotated annotated = annotate(annotator, reference, outputs, [&](const std::vector<PairRequest>& pairs) {
      std::vector<JudgeRequest> requests;
      for (const auto& p : pairs) requests.push_back({p.system, p.user, settings.temperature, settings.max_tokens, {}});
      return judge->ask(requests);
    });
    judge->count_unparseable(annotated.n_unparseable);
    const std::filesystem::path annotations_path =
        benchmarks::write_artifact(ctx, "annotations", "annotations.json", annotations_json(annotated.records));
    for (const auto& metric : score_file(annotations_path.string())) metrics.push_back(metric);
    metrics.push_back({"annotator/judged", static_cast<double>(annotated.n_judged)});
    metrics.push_back({"annotator/identical_outputs", static_cast<double>(annotated.n_identical)});
    judge->log_metrics();
    benchmarks::record_metrics(ctx, metrics);
  }
};

}  // namespace
}  // namespace mmr::alpaca_eval

MMR_PLUGIN(Benchmark, "alpaca_eval", "1.0.0", mmr::alpaca_eval::AlpacaEval)
