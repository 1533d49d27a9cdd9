// The `local_model` judge: a model plugin (e.g. llava) loaded in-process through the stage's context, answering
// each request with the model's own conversation template. The system prompt, when a request has one, is put
// before the user prompt in the one human turn ("<system>\n\n<user>"): LLaVA's vicuna_v1 template has a fixed
// system line of its own. A request's images are announced with "<image>\n" in front, as LLaVA's data has them.
// Greedy at temperature 0; a positive temperature (a benchmark's override) samples with the configured seed, so
// the same request gives the same reply.
//
// Deliberately not here: caching and parsing (core/lib/judging/judging.h and the benchmarks).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/api/chat_api.h"
#include "core/api/plugin_api.h"

namespace mmr::judges {
namespace {

// The text of one human turn: the system prompt before the user prompt, "<image>\n" per image in front.
std::string turn_text(const JudgeRequest& r) {
  std::string text = r.system.empty() ? r.user : r.system + "\n\n" + r.user;
  for (size_t n = 0; n < r.images.size(); ++n) text = "<image>\n" + text;
  return text;
}

class LocalModel : public Judge {
 public:
  struct Config {
    YAML::Node model;
    double temperature = 0;
    int64_t max_tokens = 0, batch_size = 0;
    uint64_t seed = 0;

    void bind(OptionBinder& o) {
      o.required("model", &model, "the model: a plugin name, or a map {plugin: llava, path: ..., ...}", "model");
      o.bind("temperature", &temperature, 0.0, "0 = greedy; a benchmark may override it per request");
      o.bind("max_tokens", &max_tokens, 1024, "max new tokens of a reply unless a benchmark overrides it");
      o.bind("batch_size", &batch_size, 8, "requests generated together");
      o.bind("seed", &seed, 0, "sampling seed (used only at temperature > 0)");
      o.check(batch_size >= 1, "batch_size", "expected >= 1");
    }
  };

  explicit LocalModel(const Options& o) : cfg_(read_options<Config>(o)) {
    YAML::Emitter e;
    e << YAML::Flow << cfg_.model;
    model_text_ = e.c_str();
  }
  static const char* summary() { return "judge with a model plugin loaded in-process (greedy unless told otherwise)"; }

  std::string identity() const override {
    return fmt::format("local_model model={} temperature={} max_tokens={} seed={}", model_text_, cfg_.temperature,
                       cfg_.max_tokens, cfg_.seed);
  }

  void attach(StageContext& ctx) override {
    holder_ = ctx.create(PluginKind::Model, cfg_.model);
    model_ = &chat_model(*holder_, "judge local_model");
  }

  // Requests with the same settings are generated together, in batches.
  std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) override {
    if (!model_) throw InternalError("local_model judge used before attach()");
    std::map<std::pair<double, int64_t>, std::vector<size_t>> groups;
    for (size_t i = 0; i < requests.size(); ++i) {
      const JudgeRequest& r = requests[i];
      groups[{r.temperature >= 0 ? r.temperature : cfg_.temperature, r.max_tokens >= 0 ? r.max_tokens : cfg_.max_tokens}]
          .push_back(i);
    }
    std::vector<JudgeReply> replies(requests.size());
    for (const auto& [settings, indices] : groups) {
      GenerationConfig config;
      config.temperature = settings.first;
      config.max_new_tokens = settings.second;
      config.seed = cfg_.seed;
      generate_group(requests, indices, config, replies);
    }
    return replies;
  }

 private:
  void generate_group(const std::vector<JudgeRequest>& requests, const std::vector<size_t>& indices,
                      const GenerationConfig& config, std::vector<JudgeReply>& replies) {
    const size_t step = static_cast<size_t>(cfg_.batch_size);
    for (size_t start = 0; start < indices.size(); start += step) {
      const size_t end = std::min(indices.size(), start + step);
      std::vector<ChatSample> prompts;
      for (size_t k = start; k < end; ++k)
        prompts.push_back(ChatSample{{{"human", turn_text(requests[indices[k]])}}, requests[indices[k]].images});
      const std::vector<Generation> out = model_->generate(prompts, config);
      for (size_t k = start; k < end; ++k) replies[indices[k]] = JudgeReply{true, out[k - start].text, ""};
    }
  }

  const Config cfg_;
  std::string model_text_;
  std::shared_ptr<Plugin> holder_;
  ChatModel* model_ = nullptr;
};

}  // namespace
}  // namespace mmr::judges

MMR_PLUGIN(Judge, "local_model", "1.0.0", mmr::judges::LocalModel)
