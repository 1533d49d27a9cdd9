// Test-only judge plugin "scripted_judge": answers an alpaca_eval_gpt4 ranking prompt by preferring the longer of
// the two answers it is shown ("model_1" on a tie), in the format the prompt asks for; a prompt containing
// "UNPARSEABLE" gets prose instead. An MM-Vet grader message gets the next of the replies that `grades` (a JSON
// object file: prediction -> list of replies) lists for the message's prediction: the n-th time this process is sent
// the same request, entry n (cycling), so repeated grading runs get the replies in order. Every request it receives
// is appended to `log` as one JSON line {system, user, temperature, max_tokens}, so a test can count what was sent
// and what came from the cache.
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <vector>

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

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The prediction of an MM-Vet grader message: its last row is "question | ground truth | prediction | ", maybe
// followed by the retry line.
std::string mm_vet_prediction(std::string user) {
  const std::string retry = "\nPredict the correctness of the answer (digit): ";
  if (ends_with(user, retry)) user.resize(user.size() - retry.size());
  if (ends_with(user, " | ")) user.resize(user.size() - 3);
  const size_t bar = user.rfind(" | ");
  return bar == std::string::npos ? "" : user.substr(bar + 3);
}

class ScriptedJudge : public mmr::Judge {
 public:
  explicit ScriptedJudge(const mmr::Options& o) : log_(o.get<std::string>("log", "")) {
    const std::string path = o.get<std::string>("grades", "");
    if (path.empty()) return;
    std::ifstream in(path);
    if (!in) throw mmr::IoError("scripted_judge: cannot open grades '" + path + "'");
    const nlohmann::json doc = nlohmann::json::parse(in);
    for (const auto& [prediction, replies] : doc.items()) grades_[prediction] = replies.get<std::vector<std::string>>();
  }
  static const char* summary() { return "test judge: ranks the longer answer first, grades MM-Vet from a script"; }
  static mmr::OptionSchema option_schema() {
    return {{"log", "output", "", "append each request as a JSON line", false},
            {"grades", "path", "", "JSON object: MM-Vet prediction -> the replies of successive runs", false}};
  }
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
      if (r.user.rfind("Compare the ground truth and prediction from AI models", 0) == 0) {
        reply.text = grade(r);
      } else if (r.user.find("UNPARSEABLE") != std::string::npos) {
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
  // The next scripted reply for this request's prediction ("0.0" for a prediction without a script).
  std::string grade(const mmr::JudgeRequest& r) {
    const auto found = grades_.find(mm_vet_prediction(r.user));
    const int n = seen_[r.user + "\n" + std::to_string(r.temperature)]++;
    if (found == grades_.end() || found->second.empty()) return "0.0";
    return found->second[static_cast<size_t>(n) % found->second.size()];
  }

  std::string log_;
  std::map<std::string, std::vector<std::string>> grades_;
  std::map<std::string, int> seen_;  // request -> times answered
};

}  // namespace

MMR_PLUGIN(Judge, "scripted_judge", "0.1.0", ScriptedJudge)
