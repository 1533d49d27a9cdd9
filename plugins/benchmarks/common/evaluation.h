// What every benchmark does the same way when it evaluates a model (run() without an answers file): create the
// model from the stage's `model` option, generate replies in batches with progress and Ctrl-C checks, resolve
// image paths, write result files atomically, and create the judge. Header-only and torch-free (the model is
// reached through core/api/chat_api.h); no statics, so nothing is shared between plugin libraries at run time.
#pragma once

#include <fmt/format.h>
#include <spdlog/logger.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "core/api/chat_api.h"
#include "core/lib/judging/judging.h"
#include "core/api/plugin_api.h"
#include "plugins/benchmarks/common/file_scoring.h"

namespace mmr::benchmarks {

// The option entries every evaluating benchmark adds to its schema.
inline OptionSchema evaluation_options(const char* default_max_new_tokens) {
  return {
      {"model", "any", "", "the model to evaluate: a plugin name or a map {plugin: llava, path: ...}"},
      {"image_folder", "path", "", "folder the question file's image names are relative to"},
      {"batch_size", "int", "8", "prompts generated together"},
      {"limit", "int", "0", "evaluate only the first N questions (0: all)"},
      {"max_new_tokens", "int", default_max_new_tokens, "max new tokens per reply (the official setting)"},
      {"model_id", "string", "model", "the model name written into the answer files"},
  };
}

// A stage without its file option evaluates a model: it needs `model`. Says what to give otherwise.
inline void check_can_evaluate(StageContext& ctx, const std::string& file_option, const std::string& usage) {
  const Options& o = ctx.options();
  if (!o.has("model"))
    throw ConfigError(fmt::format("{}stage '{}': give 'model' to evaluate a model, or '{}' to score an existing "
                                  "file (as `{}` does)", o.where(o.node()), ctx.stage_name(), file_option, usage));
}

// The evaluated model; the plugin object keeps its library loaded.
struct LoadedModel {
  std::shared_ptr<Plugin> holder;
  ChatModel* model = nullptr;
};
inline LoadedModel load_model(StageContext& ctx) {
  LoadedModel m;
  m.holder = ctx.create(PluginKind::Model, ctx.options().node()["model"]);
  m.model = &chat_model(*m.holder, "stage '" + ctx.stage_name() + "': option 'model'");
  return m;
}

inline std::string image_path(const Options& o, const std::string& image) {
  const std::filesystem::path p(image);
  if (p.is_absolute() || !o.has("image_folder")) return image;
  return (std::filesystem::path(o.get<std::string>("image_folder")) / p).string();
}

// LLaVA's eval scripts strip the decoded output (outputs.strip()).
inline std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Generates one stripped reply per prompt. Prompts with the same settings are batched together (in input order);
// each batch's sampling seed is config.seed + the batch's index, so a rerun gives the same replies.
inline std::vector<std::string> generate_all(StageContext& ctx, ChatModel& model, const std::vector<ChatSample>& prompts,
                                             const std::vector<GenerationConfig>& configs, int64_t batch_size,
                                             const std::string& label) {
  if (batch_size < 1) throw ConfigError("option 'batch_size': expected >= 1");
  std::map<std::tuple<double, double, int64_t, uint64_t>, std::vector<size_t>> groups;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const GenerationConfig& c = configs[i];
    groups[{c.temperature, c.top_p, c.max_new_tokens, c.seed}].push_back(i);
  }
  std::vector<std::string> replies(prompts.size());
  auto progress = ctx.progress(label, static_cast<int64_t>(prompts.size()));
  uint64_t batch_index = 0;
  for (const auto& [key, indices] : groups) {
    for (size_t start = 0; start < indices.size(); start += static_cast<size_t>(batch_size), ++batch_index) {
      if (ctx.stop_requested()) throw Interrupted();
      const size_t end = std::min(indices.size(), start + static_cast<size_t>(batch_size));
      std::vector<ChatSample> batch;
      for (size_t k = start; k < end; ++k) batch.push_back(prompts[indices[k]]);
      GenerationConfig config = configs[indices[start]];
      config.seed += batch_index;
      const std::vector<Generation> out = model.generate(batch, config);
      if (out.size() != batch.size())
        throw InternalError(fmt::format("the model returned {} replies for {} prompts", out.size(), batch.size()));
      for (size_t k = start; k < end; ++k) replies[indices[k]] = strip(out[k - start].text);
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
inline std::vector<std::string> answer_image_questions(StageContext& ctx, const std::vector<ImageQuestion>& questions,
                                                       const std::string& label) {
  const Options& o = ctx.options();
  std::vector<ChatSample> prompts;
  for (const auto& q : questions) prompts.push_back(ChatSample{{{"human", "<image>\n" + q.text}}, {image_path(o, q.image)}});
  GenerationConfig config;  // greedy: the official scripts run these benchmarks at temperature 0
  config.max_new_tokens = o.get<int64_t>("max_new_tokens");
  LoadedModel m = load_model(ctx);
  return generate_all(ctx, *m.model, prompts, std::vector<GenerationConfig>(prompts.size(), config),
                      o.get<int64_t>("batch_size"), label);
}

// Runs `write(tmp_path)` and renames the result onto `path`, so a crash never leaves a half-written file.
inline void write_atomically(const std::filesystem::path& path, const std::function<void(const std::string&)>& write) {
  const std::filesystem::path tmp = path.string() + ".tmp";
  write(tmp.string());
  std::filesystem::rename(tmp, path);
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw IoError("cannot write '" + path + "'");
}

// Writes `file` in the stage folder atomically and records it as artifact `name`; returns its path.
inline std::filesystem::path write_artifact(StageContext& ctx, const std::string& name, const std::string& file,
                                            const std::function<void(const std::string&)>& write) {
  const std::filesystem::path path = ctx.stage_dir() / file;
  write_atomically(path, write);
  ctx.add_artifact(name, path);
  return path;
}

// The stage's judge (option `judge`). Without one the stage ends here: it records `metrics`, says that `written`
// was not judged, and gets nullptr.
inline std::unique_ptr<JudgeClient> judge_or_finish(StageContext& ctx, const MetricList& metrics,
                                                    const std::filesystem::path& written) {
  const Options& o = ctx.options();
  if (o.has("judge")) return std::make_unique<JudgeClient>(ctx, o.node()["judge"]);
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
