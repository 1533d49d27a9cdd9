// Test-only model plugin "scripted_model" (torch-free): a ChatModel whose reply to a conversation is looked up by
// the text of its last human turn in a JSON object file (`replies`), else "Echo: " + that text. Every prompt is
// appended to `log` as one JSON line {turns, images, max_new_tokens, temperature}, so a test sees what the
// benchmark asked for. Stands in for the tiny LLaVA model where the torch build is not available.
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "core/api/chat_api.h"

namespace {

class ScriptedModel : public mmr::ChatModel {
 public:
  explicit ScriptedModel(const mmr::Options& o) : log_(o.get<std::string>("log", "")) {
    const std::string path = o.get<std::string>("replies", "");
    if (path.empty()) return;
    std::ifstream in(path);
    if (!in) throw mmr::IoError("scripted_model: cannot open replies '" + path + "'");
    const nlohmann::json doc = nlohmann::json::parse(in);  // named: iterating a temporary's items() warns in GCC 12
    for (const auto& [k, v] : doc.items()) replies_[k] = v.get<std::string>();
  }
  static const char* summary() { return "test model: scripted replies by prompt text"; }
  static mmr::OptionSchema option_schema() {
    return {{"replies", "path", "", "JSON object: last human turn -> reply", false},
            {"log", "path", "", "append each prompt as a JSON line", false}};
  }

  std::vector<mmr::Generation> generate(const std::vector<mmr::ChatSample>& prompts,
                                        const mmr::GenerationConfig& config) override {
    std::vector<mmr::Generation> out;
    for (const auto& p : prompts) {
      const std::string last = p.turns.back().text;
      if (!log_.empty()) {
        nlohmann::json turns = nlohmann::json::array();
        for (const auto& t : p.turns) turns.push_back({t.role, t.text});
        std::ofstream(log_, std::ios::app) << nlohmann::json{{"turns", turns}, {"images", p.images},
                                                              {"max_new_tokens", config.max_new_tokens},
                                                              {"temperature", config.temperature}}.dump() << "\n";
      }
      auto it = replies_.find(last);
      mmr::Generation g;
      g.text = " " + (it != replies_.end() ? it->second : "Echo: " + last) + "\n";  // the benchmark strips
      g.finish_reason = "eos";
      out.push_back(g);
    }
    return out;
  }
  void set_prompt_template(const std::string&) override {}

 private:
  std::string log_;
  std::map<std::string, std::string> replies_;
};

}  // namespace

MMR_PLUGIN(Model, "scripted_model", "0.1.0", ScriptedModel)
