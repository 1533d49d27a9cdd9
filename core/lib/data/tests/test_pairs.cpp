// build_pairs by the paper's rule (DESIGN §6): chosen = highest Helpfulness+Correctness+Coherence, rejected = the
// lowest (the authors' idxmin; `rejected: random` draws one at least 2 lower), groups with spread < 2 skipped;
// ties, the gap parameter, determinism.
#include <gtest/gtest.h>

#include <set>

#include "helpers.h"

using namespace mmr;
using namespace mmr::data;

namespace {

// A group whose candidate i has Helpfulness/Correctness/Coherence summing to sums[i] (Complexity/Verbosity vary
// so that they must not count).
ScoredCandidatesRow group(const std::string& id, const std::vector<int>& sums) {
  ScoredCandidatesRow g;
  g.id = id;
  g.question = "q-" + id;
  g.origin = {"groups.jsonl", 1};
  for (size_t i = 0; i < sums.size(); ++i) {
    Candidate c;
    c.response = id + "-r" + std::to_string(i);
    const int s = sums[i];
    c.scores = {{"Helpfulness", std::min(s, 4)}, {"Correctness", std::min(std::max(s - 4, 0), 4)},
                {"Coherence", std::max(s - 8, 0)}, {"Complexity", 4.0 - i}, {"Verbosity", static_cast<double>(i)}};
    g.candidates.push_back(c);
  }
  return g;
}

size_t index_of(const ScoredCandidatesRow& g, const std::string& response) {
  for (size_t i = 0; i < g.candidates.size(); ++i)
    if (g.candidates[i].response == response) return i;
  return SIZE_MAX;
}

PairRule random_rule() {
  PairRule r;
  r.rejected_random = true;
  return r;
}

}  // namespace

TEST(BuildPairs, ByDefaultRejectedIsTheLowestEarliestOfTies) {
  Counters counts;
  const auto out = build_pairs({group("g", {9, 12, 7, 10, 7})}, PairRule{}, 0, counts);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].chosen.text, "g-r1");
  EXPECT_EQ(out[0].rejected.text, "g-r2");  // sums 7 at r2 and r4: pandas' idxmin takes the first
  EXPECT_EQ(out[0].extra["rejected_score"], 7.0);
}

TEST(BuildPairs, RandomRuleDrawsAnyResponseAtLeastTwoLower) {
  const auto g = group("g", {9, 12, 11, 10, 7});
  std::set<size_t> rejected_seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    Counters counts;
    const auto out = build_pairs({g}, random_rule(), seed, counts);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].chosen.text, "g-r1");
    const size_t rej = index_of(g, out[0].rejected.text);
    EXPECT_TRUE(rej == 0 || rej == 3 || rej == 4) << rej;  // sums 9, 10, 7 are <= 12 - 2
    rejected_seen.insert(rej);
    EXPECT_EQ(out[0].prompt[0].value, "q-g");
    EXPECT_EQ(out[0].extra["chosen_score"], 12.0);
    EXPECT_EQ(out[0].extra["rejected_index"], rej);
  }
  EXPECT_EQ(rejected_seen, (std::set<size_t>{0, 3, 4}));  // every eligible response can be drawn
}

TEST(BuildPairs, GroupsWithSpreadUnderTwoOrOneCandidateAreSkippedAndCounted) {
  Counters counts;
  const auto out = build_pairs({group("small", {10, 11, 10}), group("exact", {10, 12}), group("one", {12}),
                                group("none", {})},
                               PairRule{}, 1, counts);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].id, "exact");  // spread exactly 2 is enough
  EXPECT_EQ(out[0].rejected.text, "exact-r0");
  EXPECT_EQ(counts.at("groups_skipped/small_spread"), 1);
  EXPECT_EQ(counts.at("groups_skipped/too_few_candidates"), 2);
  EXPECT_EQ(counts.at("pairs_built"), 1);
}

TEST(BuildPairs, TiesForBestGoToTheEarliestCandidate) {
  Counters counts;
  const auto out = build_pairs({group("t", {8, 12, 12, 5})}, random_rule(), 3, counts);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].chosen.text, "t-r1");
  EXPECT_TRUE(out[0].rejected.text == "t-r0" || out[0].rejected.text == "t-r3");  // the tied r2 is never rejected
}

TEST(BuildPairs, GapAndAttributesAreParameters) {
  Counters counts;
  PairRule gap3 = random_rule();
  gap3.min_gap = 3;
  for (uint64_t seed = 0; seed < 50; ++seed) {
    const auto out = build_pairs({group("g", {12, 10, 9})}, gap3, seed, counts);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].rejected.text, "g-r2");  // only 9 is 3 below 12
  }
  EXPECT_TRUE(build_pairs({group("g", {12, 10})}, gap3, 0, counts).empty());
  // On Verbosity alone (0, 1, 2 by index) the last candidate is best and only the first is 2 lower.
  PairRule verbosity;
  verbosity.attributes = {"Verbosity"};
  const auto out = build_pairs({group("v", {12, 12, 12})}, verbosity, 0, counts);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].chosen.text, "v-r2");
  EXPECT_EQ(out[0].rejected.text, "v-r0");
}

TEST(BuildPairs, DeterministicAndStableUnderSubsetsOfGroups) {
  std::vector<ScoredCandidatesRow> groups;
  for (int i = 0; i < 30; ++i) groups.push_back(group("g" + std::to_string(i), {12, 9, 8, 7, 6, 10}));
  Counters c;
  const auto all = build_pairs(groups, random_rule(), 5, c);
  const auto again = build_pairs(groups, random_rule(), 5, c);
  const std::vector<ScoredCandidatesRow> half(groups.begin() + 15, groups.end());
  const auto some = build_pairs(half, random_rule(), 5, c);
  ASSERT_EQ(all.size(), 30u);
  std::set<std::string> distinct;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].rejected.text, again[i].rejected.text);
    distinct.insert(all[i].rejected.text.substr(all[i].rejected.text.find("-r")));
  }
  for (size_t i = 0; i < some.size(); ++i) EXPECT_EQ(some[i].rejected.text, all[i + 15].rejected.text);
  EXPECT_GT(distinct.size(), 2u);  // the draw really varies between groups
}

TEST(BuildPairs, MissingRuleAttributeIsADataErrorNamingTheRow) {
  PairRule rule;
  rule.attributes = {"Helpfulness", "Honesty"};
  Counters c;
  try {
    build_pairs({group("g", {12, 5})}, rule, 0, c);
    ADD_FAILURE();
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "groups.jsonl:1: bad_score: candidates[0] has no score for 'Honesty' (build_pairs attributes)");
  }
}

TEST(BuildPairs, AsATransformOfTheScoredCandidatesPipeline) {
  RowSet s;
  s.kind = RowKind::ScoredCandidates;
  s.scored = {group("a", {12, 6}), group("b", {11, 11})};
  Counters counts;
  apply_transforms(s, parse_transforms(YAML::Load("[{build_pairs: {min_gap: 2}}, {flip_fraction: 1}]"), "x"), 1, counts);
  ASSERT_EQ(s.kind, RowKind::Preference);
  ASSERT_EQ(s.preferences.size(), 1u);
  EXPECT_EQ(s.preferences[0].chosen.text, "a-r1");  // flipped
  EXPECT_EQ(s.preferences[0].extra["chosen_score"], 6.0);
  EXPECT_EQ(counts.at("groups_read"), 2);
  EXPECT_EQ(counts.at("groups_skipped/small_spread"), 1);
}
