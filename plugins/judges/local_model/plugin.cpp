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

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/api/chat_api.h"
#include "core/api/plugin_api.h"

namespace mmr::judges {
namespace {

class LocalModel : public Judge {
 public:
  explicit LocalModel(const Options& o)
      : model_spec_(o.node()["model"]),
        temperature_(o.get<double>("temperature")),
        max_tokens_(o.get<int64_t>("max_tokens")),
        batch_size_(o.get<int64_t>("batch_size")),
        seed_(o.get<uint64_t>("seed")) {
    if (batch_size_ < 1) throw ConfigError(o.where(o.node()["batch_size"]) + "option 'batch_size': expected >= 1");
    YAML::Emitter e;
    e << YAML::Flow << model_spec_;
    model_text_ = e.c_str();
  }
  static const char* summary() { return "judge with a model plugin loaded in-process (greedy unless told otherwise)"; }
  static OptionSchema option_schema() {
    return {
        {"model", "any", "", "the model: a plugin name, or a map {plugin: llava, path: ..., ...}", true},
        {"temperature", "float", "0.0", "0 = greedy; a benchmark may override it per request"},
        {"max_tokens", "int", "1024", "max new tokens of a reply unless a benchmark overrides it"},
        {"batch_size", "int", "8", "requests generated together"},
        {"seed", "int", "0", "sampling seed (used only at temperature > 0)"},
    };
  }

  std::string identity() const override {
    return fmt::format("local_model model={} temperature={} max_tokens={} seed={}", model_text_, temperature_,
                       max_tokens_, seed_);
  }

  void attach(StageContext& ctx) override {
    holder_ = ctx.create(PluginKind::Model, model_spec_);
    model_ = &chat_model(*holder_, "judge local_model");
  }

  std::vector<JudgeReply> judge(const std::vector<JudgeRequest>& requests) override {
    if (!model_) throw InternalError("local_model judge used before attach()");
    // Requests with the same settings are generated together, in batches.
    std::map<std::pair<double, int64_t>, std::vector<size_t>> groups;
    for (size_t i = 0; i < requests.size(); ++i) {
      const JudgeRequest& r = requests[i];
      groups[{r.temperature >= 0 ? r.temperature : temperature_, r.max_tokens >= 0 ? r.max_tokens : max_tokens_}]
          .push_back(i);
    }
    std::vector<JudgeReply> replies(requests.size());
    for (const auto& [settings, indices] : groups) {
      GenerationConfig config;
      config.temperature = settings.first;
      config.max_new_tokens = settings.second;
      config.seed = seed_;
      for (size_t start = 0; start < indices.size(); start += static_cast<size_t>(batch_size_)) {
        const size_t end = std::min(indices.size(), start + static_cast<size_t>(batch_size_));
        std::vector<ChatSample> prompts;
        for (size_t k = start; k < end; ++k) {
          const JudgeRequest& r = requests[indices[k]];
          std::string text = r.system.empty() ? r.user : r.system + "\n\n" + r.user;
          for (size_t n = 0; n < r.images.size(); ++n) text = "<image>\n" + text;
          prompts.push_back(ChatSample{{{"human", text}}, r.images});
        }
        const std::vector<Generation> out = model_->generate(prompts, config);
        for (size_t k = start; k < end; ++k) replies[indices[k]] = JudgeReply{true, out[k - start].text, ""};
      }
    }
    return replies;
  }

 private:
  YAML::Node model_spec_;
  std::string model_text_;
  double temperature_;
  int64_t max_tokens_;
  int64_t batch_size_;
  uint64_t seed_;
  std::shared_ptr<Plugin> holder_;
  ChatModel* model_ = nullptr;
};

}  // namespace
}  // namespace mmr::judges

MMR_PLUGIN(Judge, "local_model", "1.0.0", mmr::judges::LocalModel)
