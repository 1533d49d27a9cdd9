// The benchmark plugins end to end: the real `runner` binary scores the test files in tests/data/benchmarks with
// `runner score <benchmark> ... --format json`, and an experiment stage records the same scores in the results
// database. Expected values are the hand-computed references the scoring libraries' own tests check too
// (plugins/benchmarks/<name>/tests/references.h, where they are derived).
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/llava_bench/tests/references.h"
#include "plugins/benchmarks/mm_vet/tests/references.h"
#include "plugins/benchmarks/mt_bench/tests/references.h"
#include "plugins/benchmarks/pope/tests/references.h"
#include "benchmark_cli.h"
#include "process.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::expect_counts;
using mmr::benchmarks::testing::expect_metrics;
using mmr::benchmarks::testing::metric;
using mmr::benchmarks::testing::read_text;
namespace pope_ref = mmr::pope::references;
namespace mm_vet_ref = mmr::mm_vet::references;
namespace wild_ref = mmr::llava_bench::references;
namespace mt_ref = mmr::mt_bench::references;

namespace {

const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/";
const std::string kPope = kData + "pope/small/";
const std::string kMmVet = kData + "mm_vet/";
const std::string kWild = kData + "llava_bench/";
const std::string kMt = kData + "mt_bench/";

class ScoreCli : public mmr::test::BenchmarkCli {
 protected:
  ScoreCli() : BenchmarkCli("mmr_score_cli") {}
};

using mmr::test::expect_usage_error;

}  // namespace

// ---- POPE ----

TEST_F(ScoreCli, PopeScoresEachSplitAndTheMeanFromALabelFolder) {
  // The popular answer has no label file: unscored, and counted.
  const auto m = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                        "labels=" + kPope});
  expect_metrics(m, pope_ref::kSmallScores);
  expect_counts(m, pope_ref::kSmallCounts);
  EXPECT_EQ(metric(m, "unscored_answers"), 1.0);
  EXPECT_EQ(m.count("popular/f1"), 0u);
}

TEST_F(ScoreCli, PopeTakesAListOfLabelFilesAndScoresOnlyThoseSplits) {
  const auto both = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                           "labels=" + kPope + "coco_pope_adversarial.json," + kPope + "coco_pope_random.json"});
  EXPECT_DOUBLE_EQ(metric(both, "mean/f1"), 65.0);  // (50 + 80) / 2
  // Only the random split: its F1 is the mean; the adversarial and popular answers are unscored (4 + 1).
  const auto random = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                             "labels=" + kPope + "coco_pope_random.json", "check_alignment=false"});
  EXPECT_DOUBLE_EQ(metric(random, "mean/f1"), 80.0);
  EXPECT_EQ(random.count("adversarial/f1"), 0u);
  EXPECT_EQ(metric(random, "unscored_answers"), 5.0);
}

TEST_F(ScoreCli, PopeNamesAMissingArgumentAndListsTheKnownOnes) {
  const ProcessResult r = runner({"score", "pope", "answers=" + kPope + "answers.jsonl",
                                  "questions=" + kPope + "questions.jsonl"});
  expect_usage_error(r, {"missing required option 'labels'", "known options: answers, questions, labels, "
                         "check_alignment", "usage: runner score pope answers=FILE"});
}

TEST_F(ScoreCli, PopeRejectsAnUnknownArgumentAndABadBoolean) {
  expect_usage_error(runner({"score", "pope", "answer=" + kPope + "answers.jsonl"}),
                     {"unknown option 'answer'", "known options: answers, questions, labels, check_alignment"});
  expect_usage_error(runner({"score", "pope", "answers=" + kPope + "answers.jsonl",
                             "questions=" + kPope + "questions.jsonl", "labels=" + kPope, "check_alignment=maybe"}),
                     {"option 'check_alignment'", "expected a boolean", "maybe"});
}

TEST_F(ScoreCli, PopeNamesAMissingFile) {
  const std::string missing = (dir_ / "no_such_answers.jsonl").string();
  const ProcessResult r = runner({"score", "pope", "answers=" + missing, "questions=" + kPope + "questions.jsonl",
                                  "labels=" + kPope});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
  const std::string labels = (dir_ / "coco_pope_random.json").string();
  const ProcessResult l = runner({"score", "pope", "answers=" + kPope + "answers.jsonl",
                                  "questions=" + kPope + "questions.jsonl", "labels=" + labels});
  EXPECT_NE(l.status, 0);
  EXPECT_NE(l.err.find(labels), std::string::npos) << l.err;
}

// ---- MM-Vet ----

TEST_F(ScoreCli, MmVetScoresCapabilitiesTotalAndRuns) {
  const auto m = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json",
                        "metadata=" + kMmVet + "metadata_small.json"});
  expect_metrics(m, mm_vet_ref::kSmallScores);
}

TEST_F(ScoreCli, MmVetScoresTheTotalWithoutMetadataAndTheFirstRunWhenAsked) {
  const auto total = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json"});
  expect_metrics(total, mm_vet_ref::kTotalOnlyScores);
  EXPECT_EQ(total.size(), 4u);  // total, std, run_1/total, run_2/total
  const auto one = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json",
                          "metadata=" + kMmVet + "metadata_small.json", "num_run=1"});
  expect_metrics(one, mm_vet_ref::kFirstRunScores);
}

TEST_F(ScoreCli, MmVetArgumentErrorsNameTheKey) {
  expect_usage_error(runner({"score", "mm_vet"}), {"missing required option 'grades'", "known options: grades, "
                                                   "metadata, num_run, decimal_places"});
  expect_usage_error(runner({"score", "mm_vet", "grades=" + kMmVet + "grades_small_2runs.json", "meta=x"}),
                     {"unknown option 'meta'", "known options: grades, metadata"});
  expect_usage_error(runner({"score", "mm_vet", "grades=" + kMmVet + "grades_small_2runs.json", "num_run=two"}),
                     {"option 'num_run'", "expected an integer", "two"});
  const std::string missing = (dir_ / "mm-vet.json").string();
  const ProcessResult r = runner({"score", "mm_vet", "grades=" + kMmVet + "grades_small_2runs.json",
                                  "metadata=" + missing});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

// ---- LLaVA-Bench ----

TEST_F(ScoreCli, LlavaBenchScoresOneReviewFile) {
  const auto m = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl"});
  expect_metrics(m, wild_ref::kSmallScores);
  expect_counts(m, wild_ref::kSmallCounts);
  const auto ignored = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl", "ignore=4"});
  EXPECT_DOUBLE_EQ(metric(ignored, "all"), wild_ref::kSmallAllIgnoring4);
}

TEST_F(ScoreCli, LlavaBenchScoresEachReviewFileAndTheirMean) {
  // One block per file, named by its config, and the mean over the two files of each category both have:
  // all (78.0 + 125.1) / 2, conv (80.0 + 125.1) / 2 (reviews_rounding is all conv); detail/complex are in one file.
  const auto m = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl," + kWild + "reviews_rounding.jsonl"});
  EXPECT_DOUBLE_EQ(metric(m, "reviews_small/all"), 78.0);
  EXPECT_DOUBLE_EQ(metric(m, "reviews_small/llava_bench_detail"), 68.4);
  EXPECT_DOUBLE_EQ(metric(m, "reviews_rounding/all"), wild_ref::kRoundingAll);
  EXPECT_DOUBLE_EQ(metric(m, "mean/all"), (78.0 + 125.1) / 2);
  EXPECT_DOUBLE_EQ(metric(m, "mean/llava_bench_conv"), (80.0 + 125.1) / 2);
  EXPECT_EQ(m.count("mean/llava_bench_detail"), 0u);
  EXPECT_EQ(m.count("all"), 0u);
}

TEST_F(ScoreCli, LlavaBenchArgumentErrorsNameTheKeyAndTheFile) {
  expect_usage_error(runner({"score", "llava_bench"}), {"missing required option 'reviews'", "known options: "
                                                        "reviews, ignore"});
  expect_usage_error(runner({"score", "llava_bench", "review=" + kWild + "reviews_small.jsonl"}),
                     {"unknown option 'review'", "known options: reviews, ignore"});
  expect_usage_error(runner({"score", "llava_bench", "reviews=" + kWild + "reviews_small.jsonl", "ignore=4,x"}),
                     {"option 'ignore'", "expected integer question ids", "'x'"});
  const std::string missing = (dir_ / "llava-v1.5-13b-eval1.jsonl").string();
  const ProcessResult r = runner({"score", "llava_bench", "reviews=" + kWild + "reviews_small.jsonl," + missing});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

// ---- MT-Bench ----

TEST_F(ScoreCli, MtBenchScoresTurnsOverallAndCategories) {
  const auto m = score({"mt_bench", "judgments=" + kMt + "judgments_small.jsonl", "questions=" + kMt + "question.jsonl"});
  expect_metrics(m, mt_ref::kSmallScores);
  expect_counts(m, mt_ref::kSmallCounts);
  expect_metrics(m, mt_ref::kSmallCategoryScores);
}

TEST_F(ScoreCli, MtBenchFiltersByModel) {
  const auto m = score({"mt_bench", "judgments=" + kMt + "judgments_small.jsonl", "models=tiny-model"});
  EXPECT_DOUBLE_EQ(metric(m, "tiny-model/overall"), 17.0 / 3);
  for (const auto& [name, value] : m) EXPECT_NE(name.rfind("other/", 0), 0u) << name;
  const ProcessResult r = runner({"score", "mt_bench", "judgments=" + kMt + "judgments_small.jsonl",
                                  "models=tiny-model,gpt-5"});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("no judgments for model 'gpt-5'"), std::string::npos) << r.err;
}

TEST_F(ScoreCli, MtBenchArgumentErrorsNameTheKeyAndTheFile) {
  expect_usage_error(runner({"score", "mt_bench", "questions=" + kMt + "question.jsonl"}),
                     {"missing required option 'judgments'", "known options: judgments, questions, models"});
  expect_usage_error(runner({"score", "mt_bench", "judgments=" + kMt + "judgments_small.jsonl", "model-list=a"}),
                     {"unknown option 'model-list'", "known options: judgments, questions, models"});
  const std::string missing = (dir_ / "gpt-4_single.jsonl").string();
  const ProcessResult r = runner({"score", "mt_bench", "judgments=" + missing});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

// ---- experiment stages ----

TEST_F(ScoreCli, ExperimentStagesRecordOfficialScoresOfExistingFiles) {
  const std::string spec = write("exp.yaml", R"(name: scores
stages:
  - {name: score, benchmark: pope, answers: )" + kPope + "answers.jsonl, questions: " + kPope +
                                                 "questions.jsonl, labels: " + kPope + R"(}
  - name: wild
    benchmark: llava_bench
    reviews: [)" + kWild + "reviews_small.jsonl, " + kWild + R"(reviews_rounding.jsonl]
)");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;

  const ProcessResult results = runner({"results", "--format", "json"});
  ASSERT_EQ(results.status, 0) << results.err;
  const nlohmann::json rows = nlohmann::json::parse(results.out);
  ASSERT_EQ(rows.size(), 1u) << results.out;
  const nlohmann::json& row = rows[0];
  EXPECT_EQ(row.at("status"), "finished");
  EXPECT_DOUBLE_EQ(row.at("score/adversarial/f1").get<double>(), 50.0);
  EXPECT_DOUBLE_EQ(row.at("score/random/f1").get<double>(), 80.0);
  EXPECT_DOUBLE_EQ(row.at("score/mean/f1").get<double>(), 65.0);
  EXPECT_DOUBLE_EQ(row.at("score/unscored_answers").get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(row.at("wild/mean/all").get<double>(), (78.0 + 125.1) / 2);
  EXPECT_DOUBLE_EQ(row.at("wild/reviews_small/all").get<double>(), 78.0);

  // The scored files are kept beside the metrics: a copy of the answers, the review files, scores.json.
  const ProcessResult q = runner({"query", "SELECT stage || '/' || name, path FROM artifacts ORDER BY 1",
                                  "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  std::map<std::string, std::string> artifacts;
  for (const auto& a : nlohmann::json::parse(q.out))
    artifacts[a.at("stage || '/' || name").get<std::string>()] = a.at("path").get<std::string>();
  ASSERT_EQ(artifacts.count("score/answers"), 1u) << q.out;
  EXPECT_EQ(read_text(artifacts["score/answers"]), read_text(kPope + "answers.jsonl"));
  ASSERT_EQ(artifacts.count("score/scores"), 1u) << q.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(read_text(artifacts["score/scores"])).at("mean/f1").get<double>(), 65.0);
  ASSERT_EQ(artifacts.count("wild/reviews"), 1u) << q.out;
  EXPECT_TRUE(fs::exists(fs::path(artifacts["wild/reviews"]) / "reviews_rounding.jsonl"));
}

TEST_F(ScoreCli, AStageWithoutFilesOrModelSaysWhatToGive) {
  const std::string spec = write("exp.yaml", "name: needs_model\nstages:\n  - {name: eval, benchmark: mm_vet}\n");
  const ProcessResult run = runner({spec});
  EXPECT_EQ(run.status, 1) << run.err;
  const ProcessResult q = runner({"query", "SELECT error FROM trials", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_NE(q.out.find("stage 'eval': give 'model' to evaluate a model, or 'grades' to score an existing file"),
            std::string::npos) << q.out;
  EXPECT_NE(q.out.find("runner score mm_vet grades=FILE"), std::string::npos) << q.out;
}

TEST_F(ScoreCli, AStageWithAnswersButNoLabelsNamesTheMissingOption) {
  const std::string spec = write("exp.yaml", "name: no_labels\nstages:\n  - {name: score, benchmark: pope, answers: " +
                                                 kPope + "answers.jsonl, questions: " + kPope + "questions.jsonl}\n");
  const ProcessResult run = runner({spec});
  EXPECT_NE(run.status, 0);
  const ProcessResult q = runner({"query", "SELECT error FROM trials", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_NE(q.out.find("missing required option 'labels'"), std::string::npos) << q.out;
  EXPECT_NE(q.out.find("exp.yaml"), std::string::npos) << q.out;  // points at the experiment file
}

// ---- judge_agreement (the paper's Figure 3) ----

TEST_F(ScoreCli, JudgeAgreementScoresAFileAndAsAStage) {
  auto pair = [](int pref, int h1, int h2) {
    return "{\"question\": \"q\", \"preference\": " + std::to_string(pref) + ", \"candidates\": [{\"response\": \"a\", "
           "\"Helpfulness\": " + std::to_string(h1) + "}, {\"response\": \"b\", \"Helpfulness\": " + std::to_string(h2) +
           "}]}\n";
  };
  // Differences [2, -2, 0, 1] against the labels [+1, -1, +1, -1]: r = 3 / sqrt(35) (scoring.h's test works it out).
  const std::string file = write("scored.jsonl", pair(1, 4, 2) + pair(2, 1, 3) + pair(1, 3, 3) + pair(2, 2, 1));
  const auto m = score({"judge_agreement", "scored=" + file});
  EXPECT_NEAR(m.at("pearson/Helpfulness"), 3 / std::sqrt(35.0), 1e-12);
  EXPECT_EQ(m.at("n_pairs"), 4);
  EXPECT_EQ(m.count("pearson/quality"), 0u);  // Correctness and Coherence were not scored
  const std::string spec = write("exp.yaml", "name: agreement\nstages:\n  - {name: fig3, benchmark: judge_agreement, "
                                             "scored: " + file + "}\n");
  ASSERT_EQ(runner({spec}).status, 0);
  EXPECT_NEAR(all_stage_metrics()["fig3"]["pearson/Helpfulness"], 3 / std::sqrt(35.0), 1e-12);
  const ProcessResult bad = runner({"score", "judge_agreement", "scores=" + file});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("usage: runner score judge_agreement scored=FILE"), std::string::npos) << bad.err;
}
