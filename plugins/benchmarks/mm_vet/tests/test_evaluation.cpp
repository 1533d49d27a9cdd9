// MM-Vet's evaluation protocol end to end, with the real runner and the torch-free stub model and judge
// (tests/benchmarks/stubs/): model_vqa.py's generation (centre crop, greedy, 1024 tokens) reaches the model, and
// `num_run` grades every answer once per run, each run cached apart, aggregated as mm-vet_evaluator.py's
// export_result does (per column the mean over runs; std over the runs' totals).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "plugins/benchmarks/common/testing.h"
#include "tests/benchmarks/benchmark_cli.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::metric;

namespace {

const std::string kStubs = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();
const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mm_vet/";

// The five samples of metadata_small.json, the stub model's answer to each, and the grader's reply in runs 1-3.
// Per-run totals (sum / 5 * 100): 70, 40, 70 -> total 60.0, std = sqrt((10^2 + 20^2 + 10^2) / 3) = sqrt(200) = 14.1;
// rec (v1_0, v1_2): 100, 75, 100 -> 91.7; ocr (v1_1, v1_3, v1_4): 50, 16.7, 50 -> 38.9; math (v1_1, v1_4): 50, 0,
// 75 -> 41.7; know (v1_2): 100; the capability sets {rec} 83.3, {ocr, math} 41.7, {rec, know} 100, {ocr} 33.3.
struct Sample {
  const char* question;
  const char* answer;
  std::vector<std::string> grades;
};
const std::vector<Sample> kSamples = {{"What is shown?", "a dog", {"1.0", "0.5", "1.0"}},
                                      {"What is x?", "x is -1", {"0.0", "0.0", "1.0"}},
                                      {"Who painted it?", "Leonardo", {"1.0", "1.0", "1.0"}},
                                      {"What does the sign say?", "STOP", {"0.5", "0.5", "0.0"}},
                                      {"What is 2+3?", "six", {"1.0", "0.0", "0.5"}}};

class MmVetEvaluation : public mmr::test::BenchmarkCli {
 protected:
  MmVetEvaluation() : BenchmarkCli("mmr_mm_vet_evaluation", {kStubs}) {}

  // An experiment of one mm_vet stage with the stub model and judge; `extra`: more options of the stage.
  std::string experiment(const std::string& extra) {
    std::filesystem::create_directories(dir_ / "images");  // the stub model reads no image, but the folder is checked
    nlohmann::json replies = nlohmann::json::object(), grades = nlohmann::json::object();
    std::string questions;
    for (size_t i = 0; i < kSamples.size(); ++i) {
      questions += nlohmann::json{{"question_id", i}, {"image", "v1_" + std::to_string(i) + ".png"},
                                  {"text", kSamples[i].question}}.dump() + "\n";
      replies[std::string("<image>\n") + kSamples[i].question] = kSamples[i].answer;
      grades[kSamples[i].answer] = kSamples[i].grades;
    }
    return write("exp.yaml", "name: mmvet\nstages:\n  - {name: mmvet, benchmark: mm_vet, model: {plugin: "
        "scripted_model, replies: " + write("replies.json", replies.dump()) + ", log: " + model_log() + "}, "
        "questions: " + write("questions.jsonl", questions) + ", image_folder: " + (dir_ / "images").string() +
        ", metadata: " + kData + "metadata_small.json, grader_prompt: " + kData + "grader_prompt.txt, judge: {plugin: "
        "scripted_judge, grades: " + write("grades.json", grades.dump()) + ", log: " + judge_log() + "}" + extra + "}\n");
  }
  std::string model_log() const { return (dir_ / "model.jsonl").string(); }
  std::string judge_log() const { return (dir_ / "judge.jsonl").string(); }
};

}  // namespace

TEST_F(MmVetEvaluation, GeneratesAsModelVqaDid) {
  ASSERT_EQ(runner({experiment("")}).status, 0);
  const auto prompts = json_lines(model_log());
  ASSERT_EQ(prompts.size(), kSamples.size());
  for (const auto& p : prompts) {
    EXPECT_EQ(p["image_preprocessing"], "center_crop") << "model_vqa.py: image_processor.preprocess";
    EXPECT_EQ(p["max_new_tokens"], 1024);
    EXPECT_EQ(p["temperature"], 0.0);
  }
  EXPECT_EQ(prompts[0]["turns"][0][1], "<image>\nWhat is shown?");
  EXPECT_EQ(prompts[0]["images"][0], (dir_ / "images" / "v1_0.png").string());
}

TEST_F(MmVetEvaluation, ThreeRunsAskTheGraderThreeTimesPerAnswerAndARerunAsksNothing) {
  const std::string spec = experiment(", num_run: 3");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  auto m = all_stage_metrics()["mmvet"];
  const std::map<std::string, double> expected = {
      {"total", 60.0}, {"std", 14.1}, {"run_1/total", 70.0}, {"run_2/total", 40.0}, {"run_3/total", 70.0},
      {"rec", 91.7}, {"ocr", 38.9}, {"math", 41.7}, {"know", 100.0}, {"integration/rec", 83.3},
      {"integration/ocr_math", 41.7}, {"integration/rec_know", 100.0}, {"integration/ocr", 33.3},
      {"judge/requests", 15}, {"judge/sent", 15}, {"judge/cache_hits", 0}, {"grading/failed_samples", 0}};
  for (const auto& [name, value] : expected) EXPECT_DOUBLE_EQ(metric(m, name), value) << name;

  // The evaluator's request for every (answer, run): max_tokens 3, temperature 0, the same message each run.
  const auto sent = json_lines(judge_log());
  ASSERT_EQ(sent.size(), 15u);
  for (const auto& s : sent) {
    EXPECT_EQ(s["max_tokens"], 3);
    EXPECT_EQ(s["temperature"], 0.0);
  }
  // The grade file holds one score per run, in run order; scored again it gives the same numbers.
  const auto files = artifacts();
  const nlohmann::json grades = nlohmann::json::parse(mmr::benchmarks::testing::read_text(files.at("grades")));
  EXPECT_EQ(grades["v1_0"]["score"], nlohmann::json({1.0, 0.5, 1.0}));
  EXPECT_EQ(grades["v1_4"]["score"], nlohmann::json({1.0, 0.0, 0.5}));
  const auto rescored = score({"mm_vet", "grades=" + files.at("grades"), "metadata=" + kData + "metadata_small.json"});
  EXPECT_DOUBLE_EQ(metric(rescored, "total"), 60.0);
  EXPECT_DOUBLE_EQ(metric(rescored, "std"), 14.1);

  // A forced rerun finds every run's reply in the cache: nothing is sent, the scores stay.
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(json_lines(judge_log()).size(), 15u);
  m = all_stage_metrics()["mmvet"];
  EXPECT_EQ(metric(m, "judge/sent"), 0);
  EXPECT_EQ(metric(m, "judge/cache_hits"), 15);
  EXPECT_DOUBLE_EQ(metric(m, "total"), 60.0);
  EXPECT_DOUBLE_EQ(metric(m, "std"), 14.1);
}

TEST_F(MmVetEvaluation, TheFirstRunIsThePlainRequestSoMoreRunsAskOnlyTheNewOnes) {
  ASSERT_EQ(runner({experiment("")}).status, 0);  // num_run 0: one run, as the evaluator's default
  EXPECT_EQ(json_lines(judge_log()).size(), 5u);
  auto m = all_stage_metrics()["mmvet"];
  EXPECT_DOUBLE_EQ(metric(m, "total"), 70.0);
  EXPECT_DOUBLE_EQ(metric(m, "std"), 0.0);

  ASSERT_EQ(runner({experiment(", num_run: 3")}).status, 0);
  EXPECT_EQ(json_lines(judge_log()).size(), 15u) << "runs 2 and 3 are new; run 1 is the cached one";
  m = all_stage_metrics()["mmvet"];
  EXPECT_EQ(metric(m, "judge/cache_hits"), 5);
  EXPECT_EQ(metric(m, "judge/sent"), 10);
}
