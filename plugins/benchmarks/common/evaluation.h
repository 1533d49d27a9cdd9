// What every benchmark does the same way when it evaluates a model (run() without a file to score): the options
// of the evaluation, creating the model, generating replies in batches with progress and Ctrl-C checks, resolving
// image paths, writing result files atomically, and creating the judge. Header-only and torch-free (the model is
// reached through core/api/chat_api.h); no statics, so nothing is shared between plugin libraries at run time.
#pragma once

#include <fmt/format.h>
#include <spdlog/logger.h>

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
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/file_scoring.h"

namespace mmr::benchmarks {

// The options every evaluating benchmark shares; a benchmark's Config binds them after its own.
struct EvaluationConfig {
  YAML::Node model;
  std::string image_folder;
  int64_t batch_size = 0, limit = 0, max_new_tokens = 0;
  std::string model_id;

  // `max_new_tokens`: the benchmark's official setting. `image_folder_help`: what the folder is for.
  void bind(OptionBinder& o, int64_t default_max_new_tokens,
            const char* image_folder_help = "folder the question file's image names are relative to") {
    o.bind("model", &model, YAML::Node(), "the model to evaluate: a plugin name or a map {plugin: llava, path: ...}");
    o.bind("image_folder", &image_folder, "", image_folder_help, "path");
    o.bind("batch_size", &batch_size, 8, "prompts generated together");
    o.bind("limit", &limit, 0, "evaluate only the first N questions (0: all)");
    o.bind("max_new_tokens", &max_new_tokens, default_max_new_tokens, "max new tokens per reply (the official setting)");
    o.bind("model_id", &model_id, "model", "the model name written into the answer files");
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
inline LoadedModel load_model(StageContext& ctx, const EvaluationConfig& cfg) {
  LoadedModel m;
  m.holder = ctx.create(PluginKind::Model, cfg.model);
  m.model = &chat_model(*m.holder, "stage '" + ctx.stage_name() + "': option 'model'");
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
    }
  }
  progress->finish();
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
  ctx.add_artifact(name, path);
  return path;
}

// The stage's judge (option `judge`). Without one the stage ends here: it records `metrics`, says that `written`
// was not judged, and gets nullptr.
inline std::unique_ptr<JudgeClient> judge_or_finish(StageContext& ctx, const YAML::Node& judge,
                                                    const MetricList& metrics, const std::filesystem::path& written) {
  if (given(judge)) return std::make_unique<JudgeClient>(ctx, judge);
  ctx.log().warn("stage '{}': no 'judge' given: the answers are written to {}, not judged", ctx.stage_name(),
                 written.string());
  record_metrics(ctx, metrics);
  return nullptr;
}

// The first `limit` items (all when limit <= 0).
template <typename T>
std::vector<T> first_n(std::vector<T> items, int64_t limit) {
  if (limit > 0 && static_cast<size_t>(limit) < items.size()) items.resize(static_cast<size_t>(limit));
  return items;
}

}  // namespace mmr::benchmarks
