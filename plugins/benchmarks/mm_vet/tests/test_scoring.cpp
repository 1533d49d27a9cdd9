// MM-Vet scoring against hand-computed references and the documented evaluator behaviour (see ../scoring.h).
#include <gtest/gtest.h>

#include "core/api/error.h"
#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/mm_vet/scoring.h"
#include "plugins/benchmarks/mm_vet/tests/references.h"

namespace {

using namespace mmr::mm_vet;
using namespace mmr::benchmarks::testing;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mm_vet/";

// ---- numpy arithmetic the evaluator relies on ----

TEST(MmVetScoring, RoundsLikeNumpyNotLikePythonFloats) {
  // np.round(x, d) = rint(x * 10**d) / 10**d. 0.35*10 rounds to exactly 3.5 and rint(3.5) = 4, so 0.4, while
  // Python's round(0.35, 1) on a float gives 0.3; likewise 2.675 -> 2.68 (Python: 2.67). Exact ties go to even.
  // Reference values printed by numpy 1.24.2 (np.round): 0.4, 2.68, 36.2, 36.4, 0.4.
  EXPECT_DOUBLE_EQ(numpy_round(0.35, 1), 0.4);
  EXPECT_DOUBLE_EQ(numpy_round(2.675, 2), 2.68);
  EXPECT_DOUBLE_EQ(numpy_round(36.25, 1), 36.2);
  EXPECT_DOUBLE_EQ(numpy_round(36.35, 1), 36.4);
  EXPECT_DOUBLE_EQ(numpy_round(0.45, 1), 0.4);
  EXPECT_DOUBLE_EQ(numpy_round(0.25, 1), 0.2);
  EXPECT_DOUBLE_EQ(numpy_round(41.666666666666664, 1), 41.7);
}

TEST(MmVetScoring, StdIsThePopulationStd) {
  // values 56, 44: mean 50, deviations +-6, variance 36, std 6 (ddof = 0).
  EXPECT_DOUBLE_EQ(numpy_std({56.0, 44.0}), 6.0);
  EXPECT_DOUBLE_EQ(numpy_mean({1, 2, 3, 4}), 2.5);
}

TEST(MmVetScoring, SumsInNumpyPairwiseOrder) {
  // References printed by numpy 1.24.2: np.sum([0.1]*200) == 20.0 (Python's sum gives 20.000000000000014);
  // np.sum([1e16] + [1.0]*8 + [3.0]*7) - 1e16 == 28.0; np.sum([1, 1e16, -1e16]) == 0.0 (0 + 1 + 1e16 - 1e16).
  EXPECT_EQ(numpy_sum(std::vector<double>(200, 0.1)), 20.0);
  std::vector<double> v = {1e16, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3};
  EXPECT_EQ(numpy_sum(v) - 1e16, 28.0);
  EXPECT_EQ(numpy_sum({1, 1e16, -1e16}), 0.0);
}

// ---- scoring ----

TEST(MmVetScoring, ScoresCapabilitiesIntegrationsAndRuns) {
  // The references are derived in references.h.
  const auto grades = read_grade_file(kDir + "grades_small_2runs.json");
  const auto meta = read_metadata(kDir + "metadata_small.json");
  ScoreResult r = score(grades, &meta);
  EXPECT_EQ(r.num_run, 2);
  EXPECT_DOUBLE_EQ(r.total.value, 50.0);
  EXPECT_DOUBLE_EQ(r.std, 6.0);
  ASSERT_EQ(r.runs.size(), 2u);
  EXPECT_DOUBLE_EQ(r.runs[0], 56.0);
  EXPECT_DOUBLE_EQ(r.runs[1], 44.0);
  ASSERT_EQ(r.capabilities.size(), 4u);
  expect_names(r.capabilities, {"ocr", "rec", "math", "know"});  // by count, ties by first occurrence
  EXPECT_DOUBLE_EQ(r.capabilities[0].value, 41.7);
  EXPECT_DOUBLE_EQ(r.capabilities[1].value, 62.5);
  EXPECT_DOUBLE_EQ(r.capabilities[2].value, 50.0);
  ASSERT_EQ(r.integrations.size(), 4u);
  EXPECT_EQ(r.integrations[0].name, "ocr_math");
  EXPECT_EQ(r.integrations[0].count, 2);
  EXPECT_DOUBLE_EQ(r.integrations[0].value, 50.0);

  expect_metrics(to_metrics(r), references::kSmallScores);
}

TEST(MmVetScoring, ScoresTheTotalWithoutMetadata) {
  mmr::MetricList m = score_files(kDir + "grades_small_2runs.json", "");
  expect_metrics(m, references::kTotalOnlyScores);
  EXPECT_EQ(m.size(), 4u);  // total, std, run_1/total, run_2/total
}

TEST(MmVetScoring, ScoresOnlyTheFirstRunsWhenAsked) {
  ScoreOptions o;
  o.num_run = 1;
  expect_metrics(score_files(kDir + "grades_small_2runs.json", kDir + "metadata_small.json", o),
                 references::kFirstRunScores);
}

TEST(MmVetScoring, RejectsUnequalRunCounts) {
  const std::string path = write_temp("unequal.json", R"({"v1_0": {"score": [1.0, 0.5]}, "v1_1": {"score": [0.0]}})");
  expect_data_error([&] { score_files(path, ""); }, {path, "\"v1_1\" has 1 scores", "--num_run"});
}

TEST(MmVetScoring, RejectsMissingAndUnknownSamples) {
  const std::string missing = write_temp("missing.json", R"({"v1_0": {"score": [1.0]}})");
  expect_data_error([&] { score_files(missing, kDir + "metadata_small.json"); }, {missing, "no grade for sample \"v1_1\""});
  const std::string unknown = write_temp("unknown.json", R"({"v1_9": {"score": [1.0]}})");
  expect_data_error([&] { score_files(unknown, kDir + "metadata_small.json"); }, {unknown, "\"v1_9\" is not in the metadata"});
}

TEST(MmVetScoring, MalformedGradeFileNamesFileAndLine) {
  const std::string path = write_temp("malformed.json", "{\n  \"v1_0\": {\"score\": [1.0]},\n  \"v1_1\": {\"score\": [0.5,]}\n}\n");
  expect_data_error([&] { read_grade_file(path); }, {path + ":3:", "malformed JSON"});
  const std::string bad = write_temp("badscore.json", R"({"v1_0": {"score": ["1.0"]}})");
  expect_data_error([&] { read_grade_file(bad); }, {bad, "\"v1_0\"", "numeric"});
  // Found by fuzz/fuzz_bench_mm_vet: nlohmann throws out_of_range, not parse_error, for a number past a double's
  // range, which escaped as an exception of its own.
  const std::string huge = write_temp("huge.json", R"({"v1_0": {"imagename": 1e3080, "score": [1.0]}})");
  expect_data_error([&] { read_metadata(huge); }, {huge, "malformed JSON", "number overflow parsing '1e3080'"});
  expect_data_error([&] { read_grade_file(huge); }, {huge, "malformed JSON", "number overflow parsing '1e3080'"});
  // A value nested far past any real file: refused while parsing (quoting it in an error would recurse per level).
  const std::string deep = write_temp("deep.json", "{\"v1_0\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  expect_data_error([&] { read_grade_file(deep); }, {deep, "malformed JSON", "nested deeper than 256 levels"});
}

// ---- grading ----

TEST(MmVetScoring, BuildsTheGraderMessageWithPaddedAndOr) {
  const std::string prompt = read_grader_prompt(kDir + "grader_prompt.txt");
  EXPECT_EQ(prompt.size(), 2290u);  // PROVENANCE.md: 2290 bytes, ends with a newline
  const std::string m = build_grader_message(prompt, "What is x in the equation?", "-1<AND>-5", "x = 3");
  EXPECT_EQ(m, prompt + "\nWhat is x in the equation? | -1 <AND> -5 | x = 3 | ");
  EXPECT_EQ(pad_ground_truth("a<OR>b<AND>c"), "a <OR> b <AND> c");
  EXPECT_EQ(build_grader_message("P", "q", "a", "p", /*retry=*/true),
            "P\nq | a | p | \nPredict the correctness of the answer (digit): ");
}

TEST(MmVetScoring, ParsesTheFirstSpaceSeparatedTokenAsAFloatInRange) {
  EXPECT_EQ(parse_grader_reply("0.5"), 0.5);
  EXPECT_EQ(parse_grader_reply("1.0"), 1.0);
  EXPECT_EQ(parse_grader_reply("1"), 1.0);
  EXPECT_EQ(parse_grader_reply("0.8 because"), 0.8);
  EXPECT_EQ(parse_grader_reply("\n0.3"), 0.3);  // split(" ")[0] = "\n0.3", strip() -> "0.3"
  EXPECT_EQ(parse_grader_reply(".5"), 0.5);
  EXPECT_EQ(parse_grader_reply("1e-1"), 0.1);
  EXPECT_EQ(parse_grader_reply("0.1_0"), 0.1);  // Python float() accepts underscores between digits
}

TEST(MmVetScoring, RejectsRepliesTheEvaluatorRetries) {
  EXPECT_FALSE(parse_grader_reply(" 0.5"));  // split(" ")[0] is ""
  EXPECT_FALSE(parse_grader_reply("1.5"));
  EXPECT_FALSE(parse_grader_reply("-0.1"));
  EXPECT_FALSE(parse_grader_reply("Correct"));
  EXPECT_FALSE(parse_grader_reply("0.7."));
  EXPECT_FALSE(parse_grader_reply("0.5,"));
  EXPECT_FALSE(parse_grader_reply(""));
  EXPECT_FALSE(parse_grader_reply("nan"));
  EXPECT_FALSE(parse_grader_reply("0__5"));
}

TEST(MmVetScoring, RetriesWithRisingTemperatureThenGivesZero) {
  std::vector<std::pair<bool, double>> calls;  // (retry message?, temperature)
  auto ask = [&](const std::string& message, double t) {
    calls.push_back({message.find("(digit): ") != std::string::npos, t});
    return std::string("Correct!");
  };
  GradeOutcome g = grade_sample("P", "q", "a", "p", ask);
  EXPECT_TRUE(g.failed);
  EXPECT_EQ(g.score, 0.0);
  ASSERT_EQ(calls.size(), 5u);
  EXPECT_EQ(calls[0], std::make_pair(false, 0.0));
  EXPECT_EQ(calls[1], std::make_pair(true, 0.0));
  EXPECT_EQ(calls[2], std::make_pair(true, 0.5));
  EXPECT_EQ(calls[3], std::make_pair(true, 1.0));
  EXPECT_EQ(calls[4], std::make_pair(true, 1.5));
}

TEST(MmVetScoring, StopsAtTheFirstParsableReply) {
  int n = 0;
  auto ask = [&](const std::string&, double) { return ++n == 1 ? std::string("The answer") : std::string("0.7\n"); };
  GradeOutcome g = grade_sample("P", "q", "a", "p", ask);
  EXPECT_FALSE(g.failed);
  EXPECT_EQ(g.score, 0.7);
  EXPECT_EQ(g.content, "0.7");
  EXPECT_EQ(g.attempts, 2);
}

// ---- writers ----

TEST(MmVetScoring, WritesResultsAsConvertMmvetForEval) {
  EXPECT_EQ(results_json({{result_key(0), "A dog."}, {result_key(1), "caf\xc3\xa9"}}), "{\n  \"v1_0\": \"A dog.\",\n  \"v1_1\": \"caf\\u00e9\"\n}");
}

TEST(MmVetScoring, WrittenGradeFileScoresTheSame) {
  const std::string path = write_temp("grades_rt.json", grade_file_json(read_grade_file(kDir + "grades_small_2runs.json")));
  mmr::MetricList m = score_files(path, kDir + "metadata_small.json");
  EXPECT_DOUBLE_EQ(metric(m, "total"), 50.0);
  EXPECT_DOUBLE_EQ(metric(m, "ocr"), 41.7);
  EXPECT_NE(read_text(path).find("\"v1_0\": {\n        \"model\": [\n            \"gpt-4-0613\","), std::string::npos);
}

}  // namespace
