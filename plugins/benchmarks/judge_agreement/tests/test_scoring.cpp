// judge_agreement: Pearson's r of each attribute's score difference with the human label, worked out by hand.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/api/error.h"
#include "plugins/benchmarks/judge_agreement/scoring.h"

namespace fs = std::filesystem;
using namespace mmr::judge_agreement;

namespace {

fs::path write(const std::string& name, const std::string& text) {
  const fs::path p = fs::temp_directory_path() / ("mmr_agreement_" + std::to_string(getpid()) + "_" + name);
  std::ofstream(p) << text;
  return p;
}

// A row: the human preferred response `pref`; Helpfulness = Correctness = Coherence = h1 / h2, Verbosity 2 in both.
std::string row(const std::string& id, int pref, int h1, int h2) {
  auto cand = [](int h) {
    return "{\"response\": \"r\", \"scores\": {\"Helpfulness\": " + std::to_string(h) + ", \"Correctness\": " +
           std::to_string(h) + ", \"Coherence\": " + std::to_string(h) + ", \"Complexity\": 1, \"Verbosity\": 2}}";
  };
  return "{\"id\": \"" + id + "\", \"question\": \"q\", \"preference\": " + std::to_string(pref) +
         ", \"candidates\": [" + cand(h1) + ", " + cand(h2) + "]}\n";
}

double metric(const mmr::MetricList& m, const std::string& name) {
  for (const auto& v : m)
    if (v.name == name) return v.value;
  ADD_FAILURE() << "no metric " << name;
  return 0;
}

}  // namespace

TEST(JudgeAgreement, PearsonOfScoreDifferencesWithTheHumanLabel) {
  // x = h1 - h2 = [2, -2, 0, 1], y = [+1, -1, +1, -1]: mean x 0.25, mean y 0; sxy = 1.75 + 2.25 - 0.25 - 0.75 = 3,
  // sxx = 3.0625 + 5.0625 + 0.0625 + 0.5625 = 8.75, syy = 4: r = 3 / sqrt(35) = 0.50709255283711 (numpy.corrcoef).
  const fs::path f = write("a.jsonl", row("a", 1, 4, 2) + row("b", 2, 1, 3) + row("c", 1, 3, 3) + row("d", 2, 2, 1) +
                                          "{\"id\": \"e\", \"preference\": 1, \"candidates\": [{\"response\": \"only\"}]}\n");
  const auto m = agreement_metrics(read_scored_pairs(f.string()));
  EXPECT_NEAR(metric(m, "pearson/Helpfulness"), 3 / std::sqrt(35.0), 1e-12);
  EXPECT_NEAR(metric(m, "pearson/quality"), 3 / std::sqrt(35.0), 1e-12);  // 3x the same differences: same r
  EXPECT_TRUE(std::isnan(metric(m, "pearson/Verbosity")));               // no difference in any pair
  EXPECT_EQ(metric(m, "n_pairs"), 4);
  EXPECT_EQ(metric(m, "n_skipped"), 1);  // a row left with one scored response
  fs::remove(f);
}

TEST(JudgeAgreement, PerfectAndInverseAgreement) {
  // x mean 0, y mean 0: sxy = 1 + 1 + 2 + 2 = 6, sxx = 10, syy = 4: r = 6 / sqrt(40) = 0.9486832980505138.
  EXPECT_NEAR(pearson({1, -1, 2, -2}, {1, -1, 1, -1}), 6 / std::sqrt(40.0), 1e-15);
  EXPECT_NEAR(pearson({3, -3}, {1, -1}), 1.0, 1e-15);
  EXPECT_NEAR(pearson({-3, 3}, {1, -1}), -1.0, 1e-15);
  EXPECT_TRUE(std::isnan(pearson({1}, {1})));
}

TEST(JudgeAgreement, BadRowsNameTheFileAndLine) {
  auto error_of = [](const std::string& text) {
    const fs::path f = write("bad.jsonl", text);
    try {
      read_scored_pairs(f.string());
    } catch (const mmr::DataError& e) {
      fs::remove(f);
      return std::string(e.what());
    }
    fs::remove(f);
    return std::string();
  };
  EXPECT_NE(error_of(row("a", 1, 4, 2) + "{\"id\": \"b\", \"preference\": 0, \"candidates\": []}\n")
                .find("bad.jsonl:2: \"preference\": expected 1 or 2"), std::string::npos);
  EXPECT_NE(error_of("{\"preference\": 2, \"candidates\": [{\"Helpfulness\": \"high\"}, {}]}\n")
                .find(":1: score 'Helpfulness': expected a number, found \"high\""), std::string::npos);
  EXPECT_NE(error_of("not json\n").find(":1: malformed JSON line"), std::string::npos);
}
