// The benchmark plugins end to end: the real `runner` binary scores the test files in tests/data/benchmarks with
// `runner score <benchmark> ... --format json`, and an experiment stage records the same scores in the results
// database. Expected values are the hand-computed references of the scoring libraries' own tests
// (plugins/benchmarks/<name>/tests/test_scoring.cpp), re-derived in the comments here.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "process.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;

namespace {

const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const std::string kPlugins = (fs::path(MMR_TEST_BINARY_DIR) / "plugins").string();
const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/";
const std::string kPope = kData + "pope/small/";
const std::string kMmVet = kData + "mm_vet/";
const std::string kWild = kData + "llava_bench/";
const std::string kMt = kData + "mt_bench/";

class ScoreCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_score_cli_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "results" / "r.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  ProcessResult runner(const std::vector<std::string>& rest) {
    std::vector<std::string> argv = {kRunner, "--results", db_, "--plugin-path", kPlugins};
    argv.insert(argv.end(), rest.begin(), rest.end());
    return mmr::test::run(argv);
  }

  // `runner score <args> --format json` → metric name → value; fails the test on a non-zero exit.
  std::map<std::string, double> score(std::vector<std::string> args) {
    args.insert(args.begin(), "score");
    args.push_back("--format");
    args.push_back("json");
    const ProcessResult r = runner(args);
    EXPECT_EQ(r.status, 0) << r.err;
    std::map<std::string, double> out;
    if (r.status != 0) return out;
    const nlohmann::json rows = nlohmann::json::parse(r.out);
    for (const auto& row : rows) out[row.at("metric").get<std::string>()] = row.at("value").get<double>();
    return out;
  }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  fs::path dir_;
  std::string db_;
};

double at(const std::map<std::string, double>& m, const std::string& name) {
  auto it = m.find(name);
  if (it == m.end()) {
    std::string have;
    for (const auto& [k, v] : m) have += " " + k;
    ADD_FAILURE() << "no metric '" << name << "'; have:" << have;
    return -1;
  }
  return it->second;
}

// The process failed with exit code 2 and stderr mentions every piece.
void expect_usage_error(const ProcessResult& r, std::initializer_list<std::string> pieces) {
  EXPECT_EQ(r.status, 2) << r.err;
  for (const auto& p : pieces) EXPECT_NE(r.err.find(p), std::string::npos) << "missing '" << p << "' in: " << r.err;
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

// ---- POPE ----

TEST_F(ScoreCli, PopeScoresEachSplitAndTheMeanFromALabelFolder) {
  // adversarial (by position): "Yes"/yes TP, "No, there is not."/no TN, "No"/yes FN, "Yes, there is a bus."/no FP
  //   -> TP=FP=TN=FN=1: F1 = accuracy = 50.
  // random: "Yes."/yes TP, "There is a cup. It is not full."/yes TP (first sentence only), "Yes"/no FP
  //   -> P = 2/3, R = 1, F1 = 0.8, accuracy 2/3, yes-ratio 1.
  // The popular answer has no label file: unscored, and counted. mean F1 = (50 + 80) / 2 = 65.
  const auto m = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                        "labels=" + kPope});
  EXPECT_DOUBLE_EQ(at(m, "adversarial/f1"), 50.0);
  EXPECT_DOUBLE_EQ(at(m, "adversarial/accuracy"), 50.0);
  for (const char* c : {"adversarial/tp", "adversarial/fp", "adversarial/tn", "adversarial/fn"})
    EXPECT_EQ(at(m, c), 1.0) << c;
  EXPECT_EQ(at(m, "adversarial/n"), 4.0);
  EXPECT_DOUBLE_EQ(at(m, "random/f1"), 80.0);
  EXPECT_DOUBLE_EQ(at(m, "random/precision"), 100.0 * 2 / 3);
  EXPECT_DOUBLE_EQ(at(m, "random/recall"), 100.0);
  EXPECT_DOUBLE_EQ(at(m, "random/accuracy"), 100.0 * 2 / 3);
  EXPECT_DOUBLE_EQ(at(m, "random/yes_ratio"), 100.0);
  EXPECT_DOUBLE_EQ(at(m, "mean/f1"), 65.0);
  EXPECT_DOUBLE_EQ(at(m, "mean/accuracy"), 100 * (0.5 + 2.0 / 3) / 2);
  EXPECT_EQ(at(m, "unscored_answers"), 1.0);
  EXPECT_EQ(m.count("popular/f1"), 0u);
}

TEST_F(ScoreCli, PopeTakesAListOfLabelFilesAndScoresOnlyThoseSplits) {
  const auto both = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                           "labels=" + kPope + "coco_pope_adversarial.json," + kPope + "coco_pope_random.json"});
  EXPECT_DOUBLE_EQ(at(both, "mean/f1"), 65.0);
  // Only the random split: its F1 is the mean; the adversarial and popular answers are unscored (4 + 1).
  const auto random = score({"pope", "answers=" + kPope + "answers.jsonl", "questions=" + kPope + "questions.jsonl",
                             "labels=" + kPope + "coco_pope_random.json", "check_alignment=false"});
  EXPECT_DOUBLE_EQ(at(random, "mean/f1"), 80.0);
  EXPECT_EQ(random.count("adversarial/f1"), 0u);
  EXPECT_EQ(at(random, "unscored_answers"), 5.0);
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
  // grades (run1, run2): v1_0 rec (1.0, 0.5); v1_1 ocr+math (0, 0); v1_2 rec+know (0.5, 0.5);
  //                      v1_3 ocr (0.3, 0.2); v1_4 math+ocr (1.0, 1.0).
  // total: 2.8/5 = 56, 2.2/5 = 44 -> 50.0, std 6.0. rec: (75, 50) -> 62.5; ocr: (43.33, 40) -> 41.7;
  // math 50.0; know 50.0; integration rec (v1_0) 75.0, ocr (v1_3) 25.0, ocr_math 50.0.
  const auto m = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json",
                        "metadata=" + kMmVet + "metadata_small.json"});
  EXPECT_DOUBLE_EQ(at(m, "total"), 50.0);
  EXPECT_DOUBLE_EQ(at(m, "std"), 6.0);
  EXPECT_DOUBLE_EQ(at(m, "run_1/total"), 56.0);
  EXPECT_DOUBLE_EQ(at(m, "run_2/total"), 44.0);
  EXPECT_DOUBLE_EQ(at(m, "rec"), 62.5);
  EXPECT_DOUBLE_EQ(at(m, "ocr"), 41.7);
  EXPECT_DOUBLE_EQ(at(m, "math"), 50.0);
  EXPECT_DOUBLE_EQ(at(m, "know"), 50.0);
  EXPECT_DOUBLE_EQ(at(m, "integration/rec"), 75.0);
  EXPECT_DOUBLE_EQ(at(m, "integration/ocr"), 25.0);
  EXPECT_DOUBLE_EQ(at(m, "integration/ocr_math"), 50.0);
}

TEST_F(ScoreCli, MmVetScoresTheTotalWithoutMetadataAndTheFirstRunWhenAsked) {
  const auto total = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json"});
  EXPECT_DOUBLE_EQ(at(total, "total"), 50.0);
  EXPECT_EQ(total.size(), 4u);  // total, std, run_1/total, run_2/total
  // num_run=1: run 1 only -> total 56.0, std 0.0, rec (1.0 + 0.5) / 2 = 75.0.
  const auto one = score({"mm_vet", "grades=" + kMmVet + "grades_small_2runs.json",
                          "metadata=" + kMmVet + "metadata_small.json", "num_run=1"});
  EXPECT_DOUBLE_EQ(at(one, "total"), 56.0);
  EXPECT_DOUBLE_EQ(at(one, "std"), 0.0);
  EXPECT_DOUBLE_EQ(at(one, "rec"), 75.0);
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
  // conv: ref (8+7)/2 = 7.5, model (7+5)/2 = 6.0 -> 80.0. detail: 9.5, 6.5 -> 68.4.
  // complex: the failed [-1, -1] is averaged in: 3.5, 3.5 -> 100.0.
  // all: ref 41/6 -> 6.833, model 32/6 -> 5.333; 5.333/6.833*100 -> 78.0; x10 rounded: 68.3, 53.3.
  const auto m = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl"});
  EXPECT_DOUBLE_EQ(at(m, "all"), 78.0);
  EXPECT_DOUBLE_EQ(at(m, "llava_bench_conv"), 80.0);
  EXPECT_DOUBLE_EQ(at(m, "llava_bench_detail"), 68.4);
  EXPECT_DOUBLE_EQ(at(m, "llava_bench_complex"), 100.0);
  EXPECT_DOUBLE_EQ(at(m, "llava_bench_conv/reference"), 7.5);
  EXPECT_DOUBLE_EQ(at(m, "all/reference_score"), 68.3);
  EXPECT_DOUBLE_EQ(at(m, "all/model_score"), 53.3);
  EXPECT_EQ(at(m, "all/n"), 6.0);
  EXPECT_EQ(at(m, "all/n_failed"), 1.0);
  // --ignore 4 drops the failed review: ref 42/5 = 8.4, model 33/5 = 6.6 -> 78.571 -> 78.6.
  const auto ignored = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl", "ignore=4"});
  EXPECT_DOUBLE_EQ(at(ignored, "all"), 78.6);
}

TEST_F(ScoreCli, LlavaBenchScoresEachReviewFileAndTheirMean) {
  // reviews_rounding: [1,2], [1,2], [2,1] (all conv): means rounded first, 1.667/1.333 -> 125.1.
  // mean over the two files: all (78.0 + 125.1) / 2, conv (80.0 + 125.1) / 2; detail/complex are only in one file.
  const auto m = score({"llava_bench", "reviews=" + kWild + "reviews_small.jsonl," + kWild + "reviews_rounding.jsonl"});
  EXPECT_DOUBLE_EQ(at(m, "reviews_small/all"), 78.0);
  EXPECT_DOUBLE_EQ(at(m, "reviews_small/llava_bench_detail"), 68.4);
  EXPECT_DOUBLE_EQ(at(m, "reviews_rounding/all"), 125.1);
  EXPECT_DOUBLE_EQ(at(m, "mean/all"), (78.0 + 125.1) / 2);
  EXPECT_DOUBLE_EQ(at(m, "mean/llava_bench_conv"), (80.0 + 125.1) / 2);
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
  // tiny-model: turn 1 [8] (the -1 on q111 dropped) = 8; turn 2 [6, 3] = 4.5; overall [8, 6, 3] = 17/3.
  // other: turn 1 [10, 9, 5] = 8 (the duplicate q81 row counts, as in pandas); turn 2 [7.5]; overall 31.5/4 = 7.875.
  // With question.jsonl (q81 writing, q111 math): tiny-model writing [8, 6] = 7, math [3] = 3;
  // other writing [10, 9, 7.5] = 26.5/3, math [5] = 5.
  const auto m = score({"mt_bench", "judgments=" + kMt + "judgments_small.jsonl", "questions=" + kMt + "question.jsonl"});
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/turn_1"), 8.0);
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/turn_2"), 4.5);
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/overall"), 17.0 / 3);
  EXPECT_EQ(at(m, "tiny-model/n_judgments"), 4.0);
  EXPECT_DOUBLE_EQ(at(m, "other/turn_1"), 8.0);
  EXPECT_DOUBLE_EQ(at(m, "other/turn_2"), 7.5);
  EXPECT_DOUBLE_EQ(at(m, "other/overall"), 7.875);
  EXPECT_EQ(at(m, "other/n_failed"), 1.0);
  EXPECT_EQ(at(m, "other/n_duplicates"), 1.0);
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/writing"), 7.0);
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/math"), 3.0);
  EXPECT_DOUBLE_EQ(at(m, "other/writing"), 26.5 / 3);
  EXPECT_DOUBLE_EQ(at(m, "other/math"), 5.0);
}

TEST_F(ScoreCli, MtBenchFiltersByModel) {
  const auto m = score({"mt_bench", "judgments=" + kMt + "judgments_small.jsonl", "models=tiny-model"});
  EXPECT_DOUBLE_EQ(at(m, "tiny-model/overall"), 17.0 / 3);
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
  EXPECT_EQ(slurp(artifacts["score/answers"]), slurp(kPope + "answers.jsonl"));
  ASSERT_EQ(artifacts.count("score/scores"), 1u) << q.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(slurp(artifacts["score/scores"])).at("mean/f1").get<double>(), 65.0);
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
