// Test-only judge plugin "paper_rater" for the smoke runs of experiments/paper/ (test_paper_smoke.cpp): the two
// judges whose replies must parse for a stage to produce anything, where the tiny model as a judge cannot.
//   - `annotate`'s all-candidates rubric (its "[Scores]" block): a line per candidate, every attribute of candidate k
//     the same score, taken from a hash of the prompt and k (so the answers of one question get different scores
//     and pairs can be built); its per-candidate rubric ("Helpfulness: <0-4>" ...): five lines, scored the same way;
//   - AlpacaEval's ranking prompt (it names model_1 and model_2): a ranking in the alpaca_eval_gpt4 format, the
//     winner taken from the same hash.
// Anything else gets "[[5]]". Deterministic, so a rerun of a stage gets the same replies.
#include <cstdint>
#include <string>

#include "core/api/plugin_api.h"

namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

// "Candidate k: Helpfulness:s,...,Verbosity:s" for every "[End of Candidate k]" of the prompt.
std::string all_candidates_reply(const std::string& user) {
  std::string out = "Reasoning.\n[Scores]\n";
  for (int k = 1; user.find("[End of Candidate " + std::to_string(k) + "]") != std::string::npos; ++k) {
    const std::string s = std::to_string(fnv1a(user + std::to_string(k)) % 5);
    out += "Candidate " + std::to_string(k) + ": Helpfulness:" + s + ",Correctness:" + s + ",Coherence:" + s +
           ",Complexity:" + s + ",Verbosity:" + s + "\n";
  }
  return out;
}

std::string reply_to(const std::string& user) {
  const uint64_t h = fnv1a(user);
  if (user.find("[Scores]") != std::string::npos && user.find("[End of Candidate 1]") != std::string::npos)
    return all_candidates_reply(user);
  if (user.find("Helpfulness: <0-4>") != std::string::npos) {
    const std::string s = std::to_string(h % 5);
    std::string out;
    for (const char* a : {"Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity"})
      out += std::string(a) + ": " + s + "\n";
    return out;
  }
  if (user.find("model_1") != std::string::npos && user.find("model_2") != std::string::npos) {
    const bool first_wins = h % 2 == 0;
    return std::string("[{'model': 'model_1', 'rank': ") + (first_wins ? "1" : "2") +
           "}, {'model': 'model_2', 'rank': " + (first_wins ? "2" : "1") + "}]";
  }
  return "[[5]]";
}

class PaperRater : public mmr::Judge {
 public:
  explicit PaperRater(const mmr::Options&) {}
  static const char* summary() { return "test judge: scores annotate's rubric and ranks AlpacaEval pairs by a hash"; }
  static mmr::OptionSchema option_schema() { return {}; }
  std::string identity() const override { return "paper_rater"; }
  std::vector<mmr::JudgeReply> judge(const std::vector<mmr::JudgeRequest>& requests) override {
    std::vector<mmr::JudgeReply> out;
    for (const auto& r : requests) out.push_back({true, reply_to(r.user), ""});
    return out;
  }
};

}  // namespace

MMR_PLUGIN(Judge, "paper_rater", "0.1.0", PaperRater)
