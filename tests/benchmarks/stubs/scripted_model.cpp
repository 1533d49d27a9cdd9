// Test-only model plugin "scripted_model" (torch-free): a ChatModel whose reply to a conversation is looked up by
// the text of its last human turn in a JSON object file (`replies`), else "Echo: " + that text. Every prompt is
// appended to `log` as one JSON line {turns, images, max_new_tokens, temperature, image_preprocessing}, so a test
// sees what the benchmark asked for ("image_preprocessing": the last mode set, "" when none was). With
// `image_choice: false` it has no preprocessing to choose, as a text-only model. Stands in for the tiny LLaVA model
// where the torch build is not available.
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <sstream>

#include "core/api/chat_api.h"

namespace {

class ScriptedModel : public mmr::ChatModel {
 public:
  explicit ScriptedModel(const mmr::Options& o)
      : log_(o.get<std::string>("log", "")), image_choice_(o.get<bool>("image_choice", true)) {
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
            {"log", "output", "", "append each prompt as a JSON line", false},
            {"image_choice", "bool", "true", "whether set_image_preprocessing succeeds", false}};
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
                                                              {"temperature", config.temperature},
                                                              {"image_preprocessing", image_preprocessing_}}.dump()
                                     << "\n";
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
  bool set_image_preprocessing(const std::string& mode) override {
    if (image_choice_) image_preprocessing_ = mode;
    return image_choice_;
  }

 private:
  std::string log_;
  bool image_choice_ = true;
  std::string image_preprocessing_;
  std::map<std::string, std::string> replies_;
};

}  // namespace

MMR_PLUGIN(Model, "scripted_model", "0.1.0", ScriptedModel)
