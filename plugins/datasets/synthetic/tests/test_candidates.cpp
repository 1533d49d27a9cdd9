// Candidates: scores follow the documented rule; each kind is what it claims to be.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>

#include "plugins/datasets/synthetic/candidates.h"
#include "png_probe.h"

using namespace mmr::synthetic;

namespace {

std::string words(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i ? " w" : "w");
  return out;
}

// Base complexity by question text, restating the table in candidates.h.
int base_for_question(const std::string& q) {
  if (q.rfind("How many times does the letter", 0) == 0) return 1;
  if (q.rfind("How many", 0) == 0) return 1;
  if (q.rfind("What colour", 0) == 0) return 0;
  if (q.rfind("Where is", 0) == 0) return 1;
  if (q.rfind("Is there", 0) == 0) return 0;
  if (q.rfind("What is", 0) == 0) return q.find(" * ") != std::string::npos ? 2 : 1;
  if (q.rfind("Reverse", 0) == 0) return 1;
  if (q.rfind("Convert", 0) == 0) return 0;
  if (q.rfind("Sort", 0) == 0) return 2;
  return 3;  // word problems
}

}  // namespace

TEST(SyntheticCandidates, ScoresFollowTheTable) {
  const std::string five = "There are 3 red circles.";
  EXPECT_EQ(score_candidate(CandidateKind::kCorrect, five, 1), (AttributeScores{4, 4, 4, 1, 1}));
  EXPECT_EQ(score_candidate(CandidateKind::kPadded, five, 1), (AttributeScores{3, 4, 4, 1, 1}));
  EXPECT_EQ(score_candidate(CandidateKind::kPartial, five, 0), (AttributeScores{2, 2, 3, 0, 1}));
  EXPECT_EQ(score_candidate(CandidateKind::kHallucinated, five, 2), (AttributeScores{1, 0, 3, 2, 1}));
}

TEST(SyntheticCandidates, VerbosityAndComplexityThresholds) {
  const std::vector<std::pair<int, int>> verbosity = {{0, 0},  {4, 0},  {5, 1},  {10, 1}, {11, 2},
                                                      {20, 2}, {21, 3}, {35, 3}, {36, 4}, {200, 4}};
  for (auto [n, v] : verbosity) {
    EXPECT_EQ(score_candidate(CandidateKind::kCorrect, words(n), 0).verbosity, v) << n << " words";
  }
  EXPECT_EQ(score_candidate(CandidateKind::kCorrect, words(30), 1).complexity, 1);
  EXPECT_EQ(score_candidate(CandidateKind::kCorrect, words(31), 1).complexity, 2);
  EXPECT_EQ(score_candidate(CandidateKind::kCorrect, words(31), 3).complexity, 4);
  EXPECT_EQ(score_candidate(CandidateKind::kCorrect, words(31), 4).complexity, 4) << "clamped to 4";
  EXPECT_EQ(word_count("  a\tb \n c  "), 3);
}

TEST(SyntheticCandidates, KindWeightsAreHonoured) {
  ResponseVariants v{"right", "half right", "wrong", 0};
  Rng rng(1);
  KindWeights only_partial{0, 1, 0, 0};
  for (const Candidate& c : make_candidates(v, 50, only_partial, rng)) {
    EXPECT_EQ(c.kind, CandidateKind::kPartial);
    EXPECT_EQ(c.response, "half right");
  }
  std::map<CandidateKind, int> seen;
  for (const Candidate& c : make_candidates(v, 400, KindWeights{}, rng)) ++seen[c.kind];
  for (CandidateKind k : all_candidate_kinds()) EXPECT_NEAR(seen[k], 100, 35) << candidate_kind_name(k);
}

TEST(SyntheticCandidates, WorldRowsFollowTheRuleAndTheirKinds) {
  const auto& world = synth_test::small_world();
  // Correct answers by id, from the SFT files.
  std::map<std::string, std::string> answer_by_id;
  for (const char* file : {"vqa_train.json", "text_train.json"}) {
    for (const auto& row : synth_test::read_json(world / file)) {
      answer_by_id[row.at("id")] = row.at("conversations")[1].at("value");
    }
  }
  // Present categories by image, from the ground truth.
  std::map<std::string, std::set<std::string>> present;
  for (const auto& row : synth_test::read_jsonl(world / "ground_truth.jsonl")) {
    for (const auto& o : row.at("objects")) {
      present[row.at("image")].insert(o.at("colour").get<std::string>() + " " + o.at("shape").get<std::string>());
    }
  }
  static const std::regex mention(
      R"(\ban? (red|green|blue|yellow|purple|orange|pink|brown|black|grey) (circle|square|triangle|star|cross)\b)");
  const auto rows = synth_test::read_jsonl(world / "scored_candidates.jsonl");
  ASSERT_EQ(rows.size(), answer_by_id.size());
  std::map<std::string, int> kinds;
  int hallucinated_mentions = 0;
  for (const auto& row : rows) {
    const std::string id = row.at("id");
    const std::string question = row.at("question");
    const std::string answer = answer_by_id.at(id);
    const auto& candidates = row.at("candidates");
    ASSERT_EQ(candidates.size(), 4u);
    for (const auto& c : candidates) {
      const std::string kind = c.at("kind");
      const std::string response = c.at("response");
      ++kinds[kind];
      const auto& s = c.at("scores");
      const int n = word_count(response);
      const int base = base_for_question(question);
      const std::map<std::string, std::array<int, 3>> table = {
          {"correct", {4, 4, 4}}, {"padded", {3, 4, 4}}, {"partial", {2, 2, 3}}, {"hallucinated", {1, 0, 3}}};
      const auto& hcc = table.at(kind);
      EXPECT_EQ(s.at("Helpfulness"), hcc[0]) << id;
      EXPECT_EQ(s.at("Correctness"), hcc[1]) << id;
      EXPECT_EQ(s.at("Coherence"), hcc[2]) << id;
      EXPECT_EQ(s.at("Complexity"), std::min(4, base + (n > 30 ? 1 : 0))) << id << ": " << response;
      EXPECT_EQ(s.at("Verbosity"), n <= 4 ? 0 : n <= 10 ? 1 : n <= 20 ? 2 : n <= 35 ? 3 : 4) << id;
      if (kind == "correct") {
        EXPECT_EQ(response, answer) << id;
      }
      if (kind == "padded") {
        EXPECT_NE(response.find(answer), std::string::npos) << id;
        EXPECT_GT(n, word_count(answer) + 3) << id;
      }
      if (kind == "partial" || kind == "hallucinated") {
        EXPECT_NE(response, answer) << id;
      }
      if (kind == "hallucinated" && row.contains("image")) {
        // Every object it names with an article, apart from the one asked about, is absent from the image.
        for (auto it = std::sregex_iterator(response.begin(), response.end(), mention); it != std::sregex_iterator();
             ++it) {
          const std::string object = (*it)[1].str() + " " + (*it)[2].str();
          if (question.find(object) != std::string::npos) continue;
          EXPECT_EQ(present[row.at("image")].count(object), 0u) << id << ": " << response;
          ++hallucinated_mentions;
        }
      }
    }
  }
  for (const char* k : {"correct", "partial", "hallucinated", "padded"}) EXPECT_GT(kinds[k], 50) << k;
  EXPECT_GT(hallucinated_mentions, 20);
}
