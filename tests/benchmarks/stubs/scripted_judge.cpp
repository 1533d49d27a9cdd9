// Test-only judge plugin "scripted_judge": answers an alpaca_eval_gpt4 ranking prompt by preferring the longer of
// the two answers it is shown ("model_1" on a tie), in the format the prompt asks for; a prompt containing
// "UNPARSEABLE" gets prose instead. Every request it receives is appended to `log` as one JSON line {system, user,
// temperature, max_tokens}, so a test can count what was sent and what came from the cache.
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/api/plugin_api.h"

namespace {

// The text of the n-th `"answer": """...""",` block of the prompt (n = 0, 1).
std::string answer(const std::string& user, int n) {
  const std::string open = "\"answer\": \"\"\"";
  size_t at = 0;
  for (int i = 0; i <= n; ++i) {
    at = user.find(open, at);
    if (at == std::string::npos) return "";
    at += open.size();
  }
  return user.substr(at, user.find("\"\"\"", at) - at);
}

class ScriptedJudge : public mmr::Judge {
 public:
  explicit ScriptedJudge(const mmr::Options& o) : log_(o.get<std::string>("log", "")) {}
  static const char* summary() { return "test judge: ranks the longer answer first"; }
  static mmr::OptionSchema option_schema() { return {{"log", "path", "", "append each request as a JSON line", false}}; }
  std::string identity() const override { return "scripted_judge"; }
  std::vector<mmr::JudgeReply> judge(const std::vector<mmr::JudgeRequest>& requests) override {
    std::vector<mmr::JudgeReply> out;
    for (const auto& r : requests) {
      if (!log_.empty())
        std::ofstream(log_, std::ios::app) << nlohmann::json{{"system", r.system}, {"user", r.user},
                                                              {"temperature", r.temperature},
                                                              {"max_tokens", r.max_tokens}}.dump() << "\n";
      mmr::JudgeReply reply;
      reply.ok = true;
      if (r.user.find("UNPARSEABLE") != std::string::npos) {
        reply.text = "Both answers are fine.";
      } else {
        const bool first = answer(r.user, 0).size() >= answer(r.user, 1).size();
        reply.text = std::string("[\n    {'model': 'model_1', 'rank': ") + (first ? "1" : "2") +
                     "},\n    {'model': 'model_2', 'rank': " + (first ? "2" : "1") + "}\n]";
      }
      out.push_back(reply);
    }
    return out;
  }

 private:
  std::string log_;
};

}  // namespace

MMR_PLUGIN(Judge, "scripted_judge", "0.1.0", ScriptedJudge)
