// Transforms: exact fractions (rounding edge cases), reproducible by seed, nested subsets, flip semantics,
// shuffle, max_rows, filter, and YAML errors that name file:line:column.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "helpers.h"

using namespace mmr;
using namespace mmr::data;
using namespace mmr::data::test;

namespace {

std::vector<PreferenceRow> pairs(size_t n) {
  std::vector<PreferenceRow> rows(n);
  for (size_t i = 0; i < n; ++i) {
    rows[i].id = "p" + std::to_string(i);
    rows[i].prompt = {{"human", "q" + std::to_string(i)}};
    rows[i].chosen.text = "good" + std::to_string(i);
    rows[i].rejected.text = "bad" + std::to_string(i);
    rows[i].ref_win_logp = -1.0 * i;
    rows[i].ref_rej_logp = -100.0 - i;
    rows[i].ref_win_avg_logp = -0.5;
    rows[i].ref_rej_avg_logp = -2.5;
    rows[i].ref_win_per_token_logp = {-0.25, -0.75};
    rows[i].ref_rej_per_token_logp = {-1, -2, -3};
    rows[i].extra = {{"win_input_ids", {1, 2}}, {"rej_input_ids", {3}}, {"category", i % 2 ? "odd" : "even"}};
    rows[i].origin = {"mem", static_cast<int64_t>(i + 1)};
  }
  return rows;
}

std::vector<std::string> ids(const std::vector<PreferenceRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.id);
  return out;
}

std::set<std::string> flipped_ids(const std::vector<PreferenceRow>& rows) {
  std::set<std::string> out;
  for (const auto& r : rows)
    if (r.flipped) out.insert(r.id);
  return out;
}

Fraction frac(const std::string& s) { return parse_fraction(s, "test: "); }

RowSet preference_set(size_t n) {
  RowSet s;
  s.kind = RowKind::Preference;
  s.preferences = pairs(n);
  return s;
}

std::vector<Transform> transforms(const std::string& yaml) { return parse_transforms(YAML::Load(yaml), "exp.yaml"); }

std::string config_error(const std::string& yaml) {
  try {
    transforms(yaml);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(Fraction, RoundsHalfUpExactlyFromTheDecimalText) {
  EXPECT_EQ(frac("0.25").of(10), 3u);  // 2.5 -> 3
  EXPECT_EQ(frac("0.35").of(10), 4u);  // 3.5 -> 4; in binary floating point 0.35 * 10 is 3.4999...
  EXPECT_EQ(frac("0.7").of(5), 4u);    // 3.5 -> 4
  EXPECT_EQ(frac("0.1").of(5), 1u);    // 0.5 -> 1
  EXPECT_EQ(frac("0.5").of(1), 1u);
  EXPECT_EQ(frac("0.49").of(1), 0u);
  EXPECT_EQ(frac("0.25").of(4), 1u);
  EXPECT_EQ(frac("0.75").of(5034), 3776u);  // 3775.5 -> 3776
  EXPECT_EQ(frac("0.25").of(5034), 1259u);  // 1258.5 -> 1259
  EXPECT_EQ(frac("0").of(100), 0u);
  EXPECT_EQ(frac("1").of(100), 100u);
  EXPECT_EQ(frac("1.0").of(7), 7u);
  EXPECT_EQ(frac("2.5e-1").of(10), 3u);
  EXPECT_EQ(frac("1/3").of(10), 3u);
  EXPECT_EQ(frac("2/3").of(10), 7u);
  EXPECT_EQ(frac("0.000001").of(1000000), 1u);
  EXPECT_EQ(frac("0.5").of(0), 0u);
}

TEST(Fraction, RejectsValuesOutsideZeroToOne) {
  for (const char* bad : {"1.5", "-0.1", "abc", "", "0.5x", "3/2", "1/0", ".", "1e"}) {
    try {
      frac(bad);
      ADD_FAILURE() << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("expected a fraction between 0 and 1"), std::string::npos) << e.what();
    }
  }
}

TEST(KeepFraction, KeepsExactlyRoundFNInInputOrder) {
  for (size_t n : {0u, 1u, 2u, 3u, 7u, 10u, 101u}) {
    for (const char* f : {"0", "0.1", "0.25", "0.5", "0.75", "1"}) {
      auto rows = pairs(n);
      keep_fraction(rows, frac(f), 42);
      EXPECT_EQ(rows.size(), frac(f).of(n)) << n << " " << f;
      for (size_t i = 1; i < rows.size(); ++i) EXPECT_LT(rows[i - 1].origin.row, rows[i].origin.row);
    }
  }
}

TEST(KeepFraction, SameSeedSameSubsetOtherSeedAnother) {
  auto a = pairs(100), b = pairs(100), c = pairs(100);
  keep_fraction(a, frac("0.5"), 7);
  keep_fraction(b, frac("0.5"), 7);
  keep_fraction(c, frac("0.5"), 8);
  EXPECT_EQ(ids(a), ids(b));
  EXPECT_NE(ids(a), ids(c));
}

TEST(KeepFraction, SmallerFractionsAreSubsetsOfLargerOnes) {
  std::vector<std::set<std::string>> subsets;
  for (const char* f : {"0.25", "0.5", "0.75", "1"}) {
    auto rows = pairs(203);
    keep_fraction(rows, frac(f), 11);
    const auto v = ids(rows);
    subsets.emplace_back(v.begin(), v.end());
  }
  for (size_t i = 1; i < subsets.size(); ++i)
    EXPECT_TRUE(std::includes(subsets[i].begin(), subsets[i].end(), subsets[i - 1].begin(), subsets[i - 1].end())) << i;
}

TEST(FlipFraction, SwapsChosenRejectedAndEveryWinRejField) {
  auto rows = pairs(1);
  Counters counts;
  flip_fraction(rows, frac("1"), 3, counts);
  const PreferenceRow& r = rows[0];
  EXPECT_TRUE(r.flipped);
  EXPECT_EQ(counts.at("flipped"), 1);
  EXPECT_EQ(r.chosen.text, "bad0");
  EXPECT_EQ(r.rejected.text, "good0");
  EXPECT_EQ(*r.ref_win_logp, -100.0);
  EXPECT_EQ(*r.ref_rej_logp, 0.0);
  EXPECT_EQ(*r.ref_win_avg_logp, -2.5);
  EXPECT_EQ(*r.ref_rej_avg_logp, -0.5);
  EXPECT_EQ(r.ref_win_per_token_logp, (std::vector<double>{-1, -2, -3}));
  EXPECT_EQ(r.ref_rej_per_token_logp, (std::vector<double>{-0.25, -0.75}));
  EXPECT_EQ(r.extra["win_input_ids"], nlohmann::json({3}));
  EXPECT_EQ(r.extra["rej_input_ids"], nlohmann::json({1, 2}));
  EXPECT_EQ(r.extra["category"], "even");
  // Flipping again restores the pair.
  auto twice = rows;
  flip(twice[0]);
  EXPECT_EQ(to_json(twice[0]), to_json(pairs(1)[0]));
}

TEST(FlipFraction, FlipsExactlyRoundFNNestedAndReproducible) {
  std::set<std::string> previous;
  for (const char* f : {"0", "0.25", "0.5", "0.75", "1"}) {
    auto rows = pairs(10);
    Counters counts;
    flip_fraction(rows, frac(f), 5, counts);
    const auto flipped = flipped_ids(rows);
    EXPECT_EQ(flipped.size(), frac(f).of(10)) << f;  // 0, 3, 5, 8, 10
    EXPECT_EQ(counts["flipped"], static_cast<int64_t>(flipped.size()));
    EXPECT_TRUE(std::includes(flipped.begin(), flipped.end(), previous.begin(), previous.end())) << f;
    previous = flipped;
    auto again = pairs(10);
    Counters c2;
    flip_fraction(again, frac(f), 5, c2);
    EXPECT_EQ(flipped_ids(again), flipped);
    for (const auto& r : rows) EXPECT_EQ(r.flipped, r.chosen.text.rfind("bad", 0) == 0);
  }
}

TEST(Transforms, PipelineSeedsComeFromTheTransformTheDatasetOrTheTrial) {
  auto run = [](const std::string& yaml, uint64_t seed) {
    RowSet s = preference_set(40);
    Counters counts;
    apply_transforms(s, transforms(yaml), seed, counts);
    return ids(s.preferences);
  };
  EXPECT_EQ(run("[{fraction: 0.5}]", 1), run("[{fraction: 0.5}]", 1));
  EXPECT_NE(run("[{fraction: 0.5}]", 1), run("[{fraction: 0.5}]", 2));
  EXPECT_EQ(run("[{fraction: {value: 0.5, seed: 9}}]", 1), run("[{fraction: {value: 0.5, seed: 9}}]", 2));
  EXPECT_EQ(run("[{fraction: 0.5}]", 9), run("[{fraction: {value: 0.5, seed: 9}}]", 1));
  EXPECT_EQ(run("[{fraction: 0.5}]", 1).size(), 20u);
}

TEST(Transforms, ShuffleMaxRowsAndFilter) {
  RowSet s = preference_set(10);
  Counters counts;
  apply_transforms(s, transforms("[shuffle, {max_rows: 4}]"), 3, counts);
  ASSERT_EQ(s.preferences.size(), 4u);
  EXPECT_EQ(counts.at("dropped_by_max_rows"), 6);
  RowSet again = preference_set(10);
  apply_transforms(again, transforms("[{shuffle: true}, {max_rows: 4}]"), 3, counts);
  EXPECT_EQ(ids(s.preferences), ids(again.preferences));
  EXPECT_NE(ids(s.preferences), (std::vector<std::string>{"p0", "p1", "p2", "p3"}));
  RowSet unshuffled = preference_set(3);
  apply_transforms(unshuffled, transforms("[{shuffle: false}]"), 3, counts);
  EXPECT_EQ(ids(unshuffled.preferences), (std::vector<std::string>{"p0", "p1", "p2"}));

  auto filtered = [](const std::string& yaml) {
    RowSet f = preference_set(6);
    Counters c;
    apply_transforms(f, transforms(yaml), 1, c);
    return ids(f.preferences);
  };
  EXPECT_EQ(filtered("[{filter: {field: category, equals: odd}}]"), (std::vector<std::string>{"p1", "p3", "p5"}));
  EXPECT_EQ(filtered("[{filter: {field: id, in: [p0, p4, p9]}}]"), (std::vector<std::string>{"p0", "p4"}));
  EXPECT_EQ(filtered("[{filter: {field: chosen.value, regex: '[2-3]$'}}]"), (std::vector<std::string>{"p2", "p3"}));
  EXPECT_EQ(filtered("[{filter: {field: category, equals: odd, not: true}}]"), (std::vector<std::string>{"p0", "p2", "p4"}));
  EXPECT_EQ(filtered("[{filter: {field: ref_win_logp, equals: -2.0}}]"), (std::vector<std::string>{"p2"}));
  EXPECT_EQ(filtered("[{filter: {field: no_such_field, equals: x}}]"), std::vector<std::string>{});
}

TEST(Transforms, YamlErrorsNameTheLineAndTheKey) {
  EXPECT_EQ(config_error("- shuffle\n- {fractoin: 0.5}\n"),
            "exp.yaml:2:3: unknown transform 'fractoin'; known transforms: build_pairs, filter, flip_fraction, "
            "fraction, image_folder, max_rows, shuffle");
  EXPECT_EQ(config_error("[{fraction: 1.5}]"),
            "exp.yaml:1:13: transform 'fraction': expected a fraction between 0 and 1 (e.g. 0.25), found '1.5': greater than 1");
  EXPECT_EQ(config_error("[{flip_fraction: {value: 0.5, sed: 1}}]"),
            "exp.yaml:1:31: transform 'flip_fraction': unknown key 'sed'; known keys: seed, value");
  EXPECT_EQ(config_error("[{filter: {field: id, equals: a, regex: b}}]"),
            "exp.yaml:1:2: transform 'filter': give exactly one of equals, in, regex");
  EXPECT_EQ(config_error("[{max_rows: many}]"), "exp.yaml:1:13: transform 'max_rows': expected a non-negative integer, found 'many'");
  // A node at the very start of a document has no position to show (Options::where prints just the file).
  EXPECT_EQ(config_error("{fraction: 0.5}"),
            "exp.yaml: option 'transforms': expected a list such as [{fraction: 0.5}, shuffle]");
}

TEST(Transforms, TransformsThatDoNotFitTheRowsAreConfigErrors) {
  try {
    output_kind(RowKind::Conversation, transforms("[{flip_fraction: 0.5}]"));
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "exp.yaml:1:2: transform 'flip_fraction' needs preference rows, but gets conversation rows");
  }
  EXPECT_EQ(output_kind(RowKind::ScoredCandidates, transforms("[build_pairs, {flip_fraction: 0.5}]")), RowKind::Preference);
  EXPECT_THROW(output_kind(RowKind::ScoredCandidates, transforms("[{flip_fraction: 0.5}, build_pairs]")), ConfigError);
}

TEST(Transforms, BuildPairsRejectedIsLowestByDefaultOrRandom) {
  EXPECT_FALSE(transforms("[build_pairs]")[0].rule.rejected_random);
  EXPECT_TRUE(transforms("[{build_pairs: {rejected: random}}]")[0].rule.rejected_random);
  try {
    transforms("[{build_pairs: {rejected: worst}}]");
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'rejected' expects lowest or random, found 'worst'"), std::string::npos)
        << e.what();
  }
}

TEST(Rng, SplitMixIsTheReferenceSequence) {
  // SplitMix64 from seed 0 (Vigna's reference: splitmix64.c).
  SplitMix64 g(0);
  EXPECT_EQ(g.next(), 0xE220A8397B1DCDAFULL);
  EXPECT_EQ(g.next(), 0x6E789E6AA1B965F4ULL);
  EXPECT_EQ(permutation(5, 1).size(), 5u);
  auto p = permutation(1000, 3);
  std::sort(p.begin(), p.end());
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(p[i], i);
}
