// The pair builder on hand-made groups, and the world's pairs.jsonl against the paper's rule.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/pairs.h"
#include "png_probe.h"

using namespace mmr::synthetic;

namespace {

// A group whose candidate i has Helpfulness = Correctness = 0 and Coherence = sums[i] (so H+C+Coh = sums[i]),
// and Verbosity = 10 * i.
ScoredGroup group(const std::string& id, const std::vector<double>& sums) {
  ScoredGroup g;
  g.id = id;
  g.image = "img.png";
  g.question = "q?";
  for (size_t i = 0; i < sums.size(); ++i) {
    g.candidates.push_back({"response " + std::to_string(i),
                            {{"Helpfulness", 0}, {"Correctness", 0}, {"Coherence", sums[i]},
                             {"Complexity", 0}, {"Verbosity", 10.0 * i}}});
  }
  return g;
}

// The message of the DataError that `fn` must throw.
template <class F>
std::string data_error(F&& fn) {
  try {
    fn();
  } catch (const mmr::DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected DataError";
  return "";
}

}  // namespace

TEST(SyntheticPairs, ChosenIsTheBestRejectedIsRandomAmongThoseAtLeastTheGapLower) {
  // Sums 12, 11, 7, 4: chosen 0; rejected 2 or 3 (both <= 10), never 1 (11 > 10).
  std::set<size_t> rejected;
  for (uint64_t seed = 0; seed < 64; ++seed) {
    const PairResult r = build_pairs({group("g", {12, 11, 7, 4})}, PairRule{}, seed);
    ASSERT_EQ(r.pairs.size(), 1u);
    EXPECT_EQ(r.pairs[0].chosen_index, 0u);
    EXPECT_EQ(r.pairs[0].chosen, "response 0");
    EXPECT_EQ(r.pairs[0].chosen_score, 12);
    rejected.insert(r.pairs[0].rejected_index);
  }
  EXPECT_EQ(rejected, (std::set<size_t>{2, 3})) << "both eligible responses get drawn across seeds";
}

TEST(SyntheticPairs, SpreadUnderTheGapIsSkippedAndCounted) {
  const PairResult r = build_pairs({group("a", {12, 11, 11}), group("b", {12, 12}), group("c", {9, 10.5})},
                                   PairRule{}, 1);
  EXPECT_TRUE(r.pairs.empty());
  EXPECT_EQ(r.stats.groups, 3u);
  EXPECT_EQ(r.stats.skipped_small_spread, 3u);
  EXPECT_EQ(r.stats.pairs, 0u);
}

TEST(SyntheticPairs, AGapOfExactlyMinGapIsEnough) {
  const PairResult r = build_pairs({group("a", {8, 10})}, PairRule{}, 1);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].chosen_index, 1u);
  EXPECT_EQ(r.pairs[0].rejected_index, 0u);
}

TEST(SyntheticPairs, TiesForBestKeepTheEarliestCandidate) {
  const PairResult r = build_pairs({group("t", {7, 12, 12, 4})}, PairRule{}, 3);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].chosen_index, 1u);
  EXPECT_TRUE(r.pairs[0].rejected_index == 0 || r.pairs[0].rejected_index == 3);
}

TEST(SyntheticPairs, TooFewCandidatesAreCountedApart) {
  const PairResult r = build_pairs({group("one", {12}), group("none", {})}, PairRule{}, 1);
  EXPECT_EQ(r.stats.skipped_too_few_candidates, 2u);
  EXPECT_EQ(r.stats.skipped_small_spread, 0u);
}

TEST(SyntheticPairs, RuleAttributesAndGapAreConfigurable) {
  // By Verbosity alone (0, 10, 20) with gap 15: chosen 2 (20), rejected 0 (0 <= 5).
  PairRule rule;
  rule.attributes = {"Verbosity"};
  rule.min_gap = 15;
  const PairResult r = build_pairs({group("v", {12, 11, 7})}, rule, 1);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(r.pairs[0].chosen_index, 2u);
  EXPECT_EQ(r.pairs[0].rejected_index, 0u);
}

TEST(SyntheticPairs, RejectedDependsOnlyOnSeedAndGroupId) {
  std::vector<ScoredGroup> groups;
  for (int i = 0; i < 40; ++i) groups.push_back(group("g" + std::to_string(i), {12, 4, 4, 4, 4, 4, 4}));
  const PairResult all = build_pairs(groups, PairRule{}, 5);
  std::vector<ScoredGroup> odd;
  for (size_t i = 1; i < groups.size(); i += 2) odd.push_back(groups[i]);
  const PairResult subset = build_pairs(odd, PairRule{}, 5);
  for (size_t k = 0; k < subset.pairs.size(); ++k) {
    EXPECT_EQ(subset.pairs[k].rejected_index, all.pairs[2 * k + 1].rejected_index);
  }
  std::set<size_t> drawn;
  for (const auto& p : all.pairs) drawn.insert(p.rejected_index);
  EXPECT_GT(drawn.size(), 3u);
}

TEST(SyntheticPairs, MissingAttributeIsADataErrorNamingGroupAndKey) {
  ScoredGroup g = group("broken", {12, 4});
  g.candidates[1].scores.erase("Correctness");
  const std::string what = data_error([&] { build_pairs({g}, PairRule{}, 1); });
  EXPECT_NE(what.find("broken"), std::string::npos) << what;
  EXPECT_NE(what.find("Correctness"), std::string::npos) << what;
}

TEST(SyntheticPairs, ParsesScoredRowsAndWritesDpoRows) {
  const nlohmann::json row = nlohmann::json::parse(R"({"id": "x1", "question": "What is 2 + 2?", "candidates": [
      {"response": "4", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 4}},
      {"response": "5", "scores": {"Helpfulness": 1, "Correctness": 0, "Coherence": 3.5}}]})");
  const ScoredGroup g = scored_group_from_json(row, "rows.jsonl:3");
  EXPECT_TRUE(g.image.empty());
  const PairResult r = build_pairs({g}, PairRule{}, 1);
  ASSERT_EQ(r.pairs.size(), 1u);
  EXPECT_EQ(to_dpo_row(r.pairs[0]).dump(),
            R"({"id":"x1","question":"What is 2 + 2?","chosen":{"from":"gpt","value":"4"},)"
            R"("rejected":{"from":"gpt","value":"5"}})");
  ScoredGroup with_image = g;
  with_image.image = "a.png";
  const PairResult r2 = build_pairs({with_image}, PairRule{}, 1);
  EXPECT_EQ(to_dpo_row(r2.pairs[0]).dump().rfind(R"({"id":"x1","image":"a.png","question")", 0), 0u);

  const std::string what = data_error([] {
    scored_group_from_json(nlohmann::json::parse(R"({"id": "x2", "question": "q", "candidates": [{"response": "r",
        "scores": {"Helpfulness": "high"}}]})"), "rows.jsonl:7");
  });
  EXPECT_NE(what.find("rows.jsonl:7"), std::string::npos) << what;
  EXPECT_NE(what.find("Helpfulness"), std::string::npos) << what;
}

TEST(SyntheticPairs, WorldPairsFollowThePaperRule) {
  const auto& world = synth_test::small_world();
  std::map<std::string, nlohmann::json> groups;
  for (const auto& row : synth_test::read_jsonl(world / "scored_candidates.jsonl")) groups[row.at("id")] = row;
  auto sum = [](const nlohmann::json& c) {
    const auto& s = c.at("scores");
    return s.at("Helpfulness").get<int>() + s.at("Correctness").get<int>() + s.at("Coherence").get<int>();
  };
  std::set<std::string> paired;
  for (const auto& pair : synth_test::read_jsonl(world / "pairs.jsonl")) {
    const auto& g = groups.at(pair.at("id"));
    EXPECT_EQ(pair.at("question"), g.at("question"));
    EXPECT_EQ(pair.contains("image"), g.contains("image"));
    EXPECT_EQ(pair.at("chosen").at("from"), "gpt");
    EXPECT_EQ(pair.at("rejected").at("from"), "gpt");
    int best = -1;
    for (const auto& c : g.at("candidates")) best = std::max(best, sum(c));
    int chosen_sum = -1, rejected_sum = 99;
    for (const auto& c : g.at("candidates")) {
      if (c.at("response") == pair.at("chosen").at("value")) chosen_sum = std::max(chosen_sum, sum(c));
      if (c.at("response") == pair.at("rejected").at("value")) rejected_sum = std::min(rejected_sum, sum(c));
    }
    EXPECT_EQ(chosen_sum, best) << pair.dump();
    EXPECT_LE(rejected_sum, best - 2) << pair.dump();
    paired.insert(pair.at("id"));
  }
  const auto manifest = synth_test::read_json(world / "manifest.json");
  size_t small_spread = 0;
  for (const auto& [id, g] : groups) {
    int lo = 99, hi = -1;
    for (const auto& c : g.at("candidates")) {
      lo = std::min(lo, sum(c));
      hi = std::max(hi, sum(c));
    }
    EXPECT_EQ(paired.count(id) == 1, hi - lo >= 2) << id;
    small_spread += hi - lo < 2;
  }
  EXPECT_GT(small_spread, 0u) << "some groups are skipped, as with real samples";
  EXPECT_EQ(manifest.at("counts").at("pairs").at("skipped_small_spread"), small_spread);
  EXPECT_EQ(manifest.at("counts").at("pairs").at("pairs"), paired.size());
}
