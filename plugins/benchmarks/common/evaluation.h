// What every benchmark does the same way when it evaluates a model (run() without a file to score): the options
// of the evaluation, creating the model, generating replies in batches with progress and Ctrl-C checks, resolving
// image paths, writing result files atomically, and creating the judge. Header-only and torch-free (the model is
// reached through core/api/chat_api.h); no statics, so nothing is shared between plugin libraries at run time.
#pragma once

#include <fmt/format.h>
#include <spdlog/logger.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/api/chat_api.h"
#include "core/api/plugin_api.h"
#include "core/lib/judging/judging.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/kill_point.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/file_scoring.h"

namespace mmr::benchmarks {

// What a benchmark's official script did when it generated answers: the defaults of its evaluation options. Each
// benchmark quotes the script and line beside its values.
struct Protocol {
  int64_t max_new_tokens;           // the script's generation limit
  const char* image_preprocessing;  // the mode the script forced, or "model": it left it to the model's config
  const char* image_folder_help = "folder the question file's image names are relative to";
};

// The options every evaluating benchmark shares; a benchmark's Config binds them after its own.
struct EvaluationConfig {
  YAML::Node model;
  std::string image_folder;
  int64_t batch_size = 0, limit = 0, max_new_tokens = 0;
  std::string model_id, image_preprocessing;

  void bind(OptionBinder& o, const Protocol& p) {
    o.bind("model", &model, YAML::Node(), "the model to evaluate: a plugin name or a map {plugin: llava, path: ...}",
           "model");
    o.bind("image_folder", &image_folder, "", p.image_folder_help, "path");
    o.bind("batch_size", &batch_size, 8, "prompts generated together");
    o.bind("limit", &limit, 0, "evaluate only the first N questions (0: all)");
    o.bind("max_new_tokens", &max_new_tokens, p.max_new_tokens, "max new tokens per reply (the official setting)");
    o.bind("model_id", &model_id, "model", "the model name written into the answer files");
    o.one_of("image_preprocessing", &image_preprocessing, p.image_preprocessing,
             {"model", "pad", "center_crop", "resize"}, "how images are made square for the vision tower (the "
             "official script's by default; model: the model's own, e.g. LLaVA's image_aspect_ratio)");
  }
};

// A stage without its file option evaluates a model: it needs `model`. Says what to give otherwise.
inline void check_can_evaluate(StageContext& ctx, const std::string& file_option, const std::string& usage) {
  const Options& o = ctx.options();
  if (!given(o, "model"))
    throw ConfigError(fmt::format("{}stage '{}': give 'model' to evaluate a model, or '{}' to score an existing "
                                  "file (as `{}` does)", o.where(o.node()), ctx.stage_name(), file_option, usage));
}

// The evaluated model; the plugin object keeps its library loaded.
struct LoadedModel {
  std::shared_ptr<Plugin> holder;
  ChatModel* model = nullptr;
};
// Sets the stage's image preprocessing on the model ("model" keeps the model's own). A model without that choice
// (a text-only model, a stand-in) keeps its own way, with a warning: the protocol is then not the official one.
inline void apply_image_preprocessing(StageContext& ctx, ChatModel& model, const std::string& mode) {
  if (mode == "model") return;
  if (!model.set_image_preprocessing(mode))
    ctx.log().warn("stage '{}': option 'image_preprocessing' is '{}', but the model has no such choice: it "
                   "preprocesses images its own way", ctx.stage_name(), mode);
}
// `shows_images`: whether the stage will show it images (a text-only MT-Bench run does not set the preprocessing).
inline LoadedModel load_model(StageContext& ctx, const EvaluationConfig& cfg, bool shows_images = true) {
  LoadedModel m;
  m.holder = ctx.create(PluginKind::Model, cfg.model);
  m.model = &chat_model(*m.holder, "stage '" + ctx.stage_name() + "': option 'model'");
  if (shows_images) apply_image_preprocessing(ctx, *m.model, cfg.image_preprocessing);
  return m;
}

inline std::string image_path(const EvaluationConfig& cfg, const std::string& image) {
  const std::filesystem::path p(image);
  if (p.is_absolute() || cfg.image_folder.empty()) return image;
  return (std::filesystem::path(cfg.image_folder) / p).string();
}

// Prompt indices grouped by generation settings, each group in input order.
using SettingsGroups = std::map<std::tuple<double, double, int64_t, uint64_t>, std::vector<size_t>>;
inline SettingsGroups group_by_settings(const std::vector<GenerationConfig>& configs) {
  SettingsGroups groups;
  for (size_t i = 0; i < configs.size(); ++i) {
    const GenerationConfig& c = configs[i];
    groups[{c.temperature, c.top_p, c.max_new_tokens, c.seed}].push_back(i);
  }
  return groups;
}

// Generates one stripped reply per prompt (LLaVA's eval scripts keep outputs.strip()). Prompts with the same
// settings are batched together (in input order); each batch's sampling seed is config.seed + the batch's
// index, so a rerun gives the same replies.
inline std::vector<std::string> generate_all(StageContext& ctx, ChatModel& model, const std::vector<ChatSample>& prompts,
                                             const std::vector<GenerationConfig>& configs, int64_t batch_size,
                                             const std::string& label) {
  if (batch_size < 1) throw ConfigError("option 'batch_size': expected >= 1");
  const size_t step = static_cast<size_t>(batch_size);
  std::vector<std::string> replies(prompts.size());
  auto progress = ctx.progress(label, static_cast<int64_t>(prompts.size()));
  uint64_t batch_index = 0;
  // The rate after the first batch, which also pays the model's warm-up (kernels loaded, CUDA graphs captured).
  std::chrono::steady_clock::time_point first_done;
  size_t after_first = 0;
  for (const auto& [key, indices] : group_by_settings(configs)) {
    for (size_t start = 0; start < indices.size(); start += step, ++batch_index) {
      if (ctx.stop_requested()) throw Interrupted();
      const size_t end = std::min(indices.size(), start + step);
      std::vector<ChatSample> batch;
      for (size_t k = start; k < end; ++k) batch.push_back(prompts[indices[k]]);
      GenerationConfig config = configs[indices[start]];
      config.seed += batch_index;
      const std::vector<Generation> out = model.generate(batch, config);
      if (out.size() != batch.size())
        throw InternalError(fmt::format("the model returned {} replies for {} prompts", out.size(), batch.size()));
      for (size_t k = start; k < end; ++k) replies[indices[k]] = std::string(python_strip(out[k - start].text));
      progress->advance(static_cast<int64_t>(end - start));
      if (batch_index == 0) first_done = std::chrono::steady_clock::now();
      else after_first += end - start;
      kill_point("eval.after_batch");  // some replies generated, none written (a rerun generates them again)
    }
  }
  progress->finish();
  if (after_first > 0) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - first_done).count();
    ctx.log().info("{}: {:.2f} replies/s after the first batch ({} replies in {:.2f} s; the first pays the warm-up)",
                   label, static_cast<double>(after_first) / s, after_first, s);
  }
  return replies;
}

// How LLaVA's model_vqa.py / model_vqa_loader.py answer: one human turn per question, "<image>\n" + text with its
// image (relative to `image_folder`), greedy, the stage's max_new_tokens, in batches of batch_size.
struct ImageQuestion {
  std::string text;
  std::string image;
};
inline std::vector<std::string> answer_image_questions(StageContext& ctx, const EvaluationConfig& cfg,
                                                       const std::vector<ImageQuestion>& questions,
                                                       const std::string& label) {
  std::vector<ChatSample> prompts;
  for (const auto& q : questions) prompts.push_back(ChatSample{{{"human", "<image>\n" + q.text}}, {image_path(cfg, q.image)}});
  GenerationConfig config;  // greedy: the official scripts run these benchmarks at temperature 0
  config.max_new_tokens = cfg.max_new_tokens;
  LoadedModel m = load_model(ctx, cfg);
  return generate_all(ctx, *m.model, prompts, std::vector<GenerationConfig>(prompts.size(), config), cfg.batch_size,
                      label);
}

// Writes `text` to `file` in the stage folder atomically and records it as artifact `name`; returns its path.
inline std::filesystem::path write_artifact(StageContext& ctx, const std::string& name, const std::string& file,
                                            const std::string& text) {
  const std::filesystem::path path = ctx.stage_dir() / file;
  write_file_atomic(path, text);
  kill_point("eval.artifact_written");
  ctx.add_artifact(name, path);
  return path;
}

// The judge as a benchmark's official script called it: the model it named, the temperature and token limit of
// its requests (-1: left to the client), and where that is written (quoted in the log).
struct JudgeProtocol {
  std::string model;
  double temperature;
  int64_t max_tokens;
  std::string source;
};

// The request settings a benchmark sends: the official ones, except where the stage's `judge` map sets
// `temperature` or `max_tokens` itself; then -1, so the judge's own setting applies.
struct JudgeSettings {
  double temperature;
  int64_t max_tokens;
};
inline JudgeSettings judge_settings(const YAML::Node& spec, const JudgeProtocol& p) {
  const bool map = spec.IsMap();
  return {map && spec["temperature"] ? -1.0 : p.temperature, map && spec["max_tokens"] ? int64_t{-1} : p.max_tokens};
}

// Only an openai_compatible judge names a model; other judges (a local model, a stand-in) have no name to set.
inline bool names_a_model(const YAML::Node& spec) {
  return spec.IsMap() && spec["plugin"] && spec["plugin"].as<std::string>() == "openai_compatible";
}
// An openai_compatible judge map without `model` gets the official model name.
inline YAML::Node with_official_model(const YAML::Node& spec, const JudgeProtocol& p) {
  if (!names_a_model(spec) || spec["model"]) return spec;
  YAML::Node filled = YAML::Clone(spec);
  filled["model"] = p.model;
  return filled;
}

// The stage's judge, the official model filled in where the spec leaves it out. Says which judge grades and how it
// differs from the official one, so that a score is not compared with a published one unknowingly.
inline std::unique_ptr<JudgeClient> make_judge(StageContext& ctx, const YAML::Node& spec, const JudgeProtocol& p) {
  auto judge = std::make_unique<JudgeClient>(ctx, with_official_model(spec, p));
  const JudgeSettings s = judge_settings(spec, p);
  ctx.log().info("stage '{}': judge '{}' (official: {}, temperature {}, max_tokens {}; {}){}", ctx.stage_name(),
                 judge->identity(), p.model, p.temperature, p.max_tokens, p.source,
                 s.temperature < 0 || s.max_tokens < 0 ? "; the judge's own temperature / max_tokens, as given" : "");
  if (names_a_model(spec) && spec["model"] && spec["model"].as<std::string>() != p.model)
    ctx.log().warn("stage '{}': judge model '{}' is not the official '{}' ({}): the scores are not comparable with "
                   "published ones", ctx.stage_name(), spec["model"].as<std::string>(), p.model, p.source);
  return judge;
}

// A stage without a judge ends here: it records `metrics` and says that `written` was not judged.
inline void finish_unjudged(StageContext& ctx, const MetricList& metrics, const std::filesystem::path& written) {
  ctx.log().warn("stage '{}': no 'judge' given: the answers are written to {}, not judged", ctx.stage_name(),
                 written.string());
  record_metrics(ctx, metrics);
}

// The stage's judge (option `judge`, see make_judge), or nullptr after finish_unjudged.
inline std::unique_ptr<JudgeClient> judge_or_finish(StageContext& ctx, const YAML::Node& judge, const JudgeProtocol& p,
                                                    const MetricList& metrics, const std::filesystem::path& written) {
  if (given(judge)) return make_judge(ctx, judge, p);
  finish_unjudged(ctx, metrics, written);
  return nullptr;
}

// The first `limit` items (all when limit <= 0).
template <typename T>
std::vector<T> first_n(std::vector<T> items, int64_t limit) {
  if (limit > 0 && static_cast<size_t>(limit) < items.size()) items.resize(static_cast<size_t>(limit));
  return items;
}

}  // namespace mmr::benchmarks
