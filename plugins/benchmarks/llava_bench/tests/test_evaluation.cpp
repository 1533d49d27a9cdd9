// LLaVA-Bench's evaluation protocol end to end, with the real runner, the torch-free stub model
// (tests/benchmarks/stubs/) and the real openai_compatible judge talking to a chat endpoint on loopback
// (tests/benchmarks/chat_server.h): model_vqa.py's generation (centre crop, greedy, 1024 tokens) reaches the model,
// and eval_gpt_review_bench.py's reviewer (gpt-4-0314, temperature 0.2, 1024 tokens) is what the judge is sent,
// unless the stage or the judge map says otherwise.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "plugins/benchmarks/common/testing.h"
#include "tests/benchmarks/benchmark_cli.h"
#include "tests/benchmarks/chat_server.h"

namespace fs = std::filesystem;
using mmr::test::ChatServer;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::metric;

namespace {

const std::string kStubs = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();
const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/llava_bench/";

class LlavaBenchEvaluation : public mmr::test::BenchmarkCli {
 protected:
  LlavaBenchEvaluation() : BenchmarkCli("mmr_llava_bench_evaluation", {kStubs}) {}

  // One llava_bench stage over the first two questions; `model` and `judge`: extra options of those maps,
  // `extra`: of the stage.
  std::string experiment(const ChatServer& server, const std::string& model, const std::string& judge,
                         const std::string& extra = "") {
    std::filesystem::create_directories(dir_ / "images");  // the stub model reads no image, but the folder is checked
    return write("exp.yaml", "name: wild\nstages:\n  - {name: wild, benchmark: llava_bench, model: {plugin: "
        "scripted_model, log: " + model_log() + model + "}, questions: " + kData + "questions.jsonl, image_folder: " +
        (dir_ / "images").string() + ", context: " + kData + "context.jsonl, reference_answers: " + kData +
        "answers_gpt4.jsonl, rules: " + kData + "rule.json, limit: 2, judge: {plugin: openai_compatible, base_url: '" +
        server.base_url() + "'" + judge + "}" + extra + "}\n");
  }
  std::string model_log() const { return (dir_ / "model.jsonl").string(); }
  static std::string review(const nlohmann::json&) { return "8 6\nAssistant 2 is less detailed."; }
};

}  // namespace

TEST_F(LlavaBenchEvaluation, DefaultsAreModelVqasGenerationAndEvalGptReviewBenchsReviewer) {
  ChatServer server(review);
  const ProcessResult r = runner({experiment(server, "", "")});
  ASSERT_EQ(r.status, 0) << r.err;

  const auto prompts = json_lines(model_log());
  ASSERT_EQ(prompts.size(), 2u);
  for (const auto& p : prompts) {
    EXPECT_EQ(p["image_preprocessing"], "center_crop") << "model_vqa.py: image_processor.preprocess";
    EXPECT_EQ(p["max_new_tokens"], 1024);
    EXPECT_EQ(p["temperature"], 0.0);
  }
  EXPECT_EQ(prompts[0]["turns"][0][1], "<image>\nWhat is the name of this famous sight in the photo?");
  EXPECT_EQ(prompts[0]["images"][0], (dir_ / "images" / "001.jpg").string());

  // The judge map named no model: the script's reviewer is asked, at its temperature and token limit, once per
  // question (the script reviews each pair once).
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  for (const auto& b : bodies) {
    EXPECT_EQ(b["model"], "gpt-4-0314");
    EXPECT_EQ(b["temperature"], 0.2);
    EXPECT_EQ(b["max_tokens"], 1024);
    EXPECT_EQ(b["messages"][0]["content"], "You are a helpful and precise assistant for checking the quality of the "
                                           "answer.");
  }
  const auto m = all_stage_metrics()["wild"];
  EXPECT_DOUBLE_EQ(metric(m, "all"), 75.0);  // 100 * 6 / 8
  EXPECT_EQ(metric(m, "judge/sent"), 2);
}

TEST_F(LlavaBenchEvaluation, TheStageAndTheJudgeMapOverrideTheDefaultsAndSaySo) {
  ChatServer server(review);
  const ProcessResult r = runner({experiment(server, "", ", model: gpt-4-0613, temperature: 0.7, max_tokens: 300",
                                             ", image_preprocessing: pad, max_new_tokens: 64")});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& p : json_lines(model_log())) {
    EXPECT_EQ(p["image_preprocessing"], "pad");
    EXPECT_EQ(p["max_new_tokens"], 64);
  }
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 2u);
  for (const auto& b : bodies) {
    EXPECT_EQ(b["model"], "gpt-4-0613");
    EXPECT_EQ(b["temperature"], 0.7);
    EXPECT_EQ(b["max_tokens"], 300);
  }
  const std::string log = r.out + r.err;
  EXPECT_NE(log.find("judge model 'gpt-4-0613' is not the official 'gpt-4-0314'"), std::string::npos) << log;
}

TEST_F(LlavaBenchEvaluation, AModelWithoutAPreprocessingChoiceKeepsItsOwnWithAWarning) {
  ChatServer server(review);
  const ProcessResult r = runner({experiment(server, ", image_choice: false", "")});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& p : json_lines(model_log())) EXPECT_EQ(p["image_preprocessing"], "");
  const std::string log = r.out + r.err;
  EXPECT_NE(log.find("option 'image_preprocessing' is 'center_crop', but the model has no such choice"),
            std::string::npos) << log;
}
