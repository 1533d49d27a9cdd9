// POPE's evaluation protocol end to end, with the real runner and the torch-free stub model
// (tests/benchmarks/stubs/): model_vqa_loader.py's generation (greedy, 128 tokens, the image preprocessed as the
// model's config says) reaches the model; image_preprocessing replaces the model's own.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "tests/benchmarks/benchmark_cli.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;

namespace {

const std::string kStubs = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();

class PopeEvaluation : public mmr::test::BenchmarkCli {
 protected:
  PopeEvaluation() : BenchmarkCli("mmr_pope_evaluation", {kStubs}) {}

  std::string experiment(const std::string& extra) {
    const std::string questions = write("questions.jsonl",
        R"({"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "category": "random"})" "\n");
    return write("exp.yaml", "name: pope\nstages:\n  - {name: pope, benchmark: pope, model: {plugin: scripted_model, "
        "log: " + model_log() + "}, questions: " + questions + ", image_folder: " + dir_.string() + extra + "}\n");
  }
  std::string model_log() const { return (dir_ / "model.jsonl").string(); }
};

}  // namespace

TEST_F(PopeEvaluation, ByDefaultTheModelPreprocessesAsItsConfigSays) {
  ASSERT_EQ(runner({experiment("")}).status, 0);
  const auto prompts = json_lines(model_log());
  ASSERT_EQ(prompts.size(), 1u);
  EXPECT_EQ(prompts[0]["image_preprocessing"], "") << "process_images(..., model.config): nothing is set";
  EXPECT_EQ(prompts[0]["max_new_tokens"], 128);
  EXPECT_EQ(prompts[0]["temperature"], 0.0);
  EXPECT_EQ(prompts[0]["turns"][0][1], "<image>\nIs there a dog in the image?\nAnswer the question using a single "
                                       "word or phrase.");
}

TEST_F(PopeEvaluation, TheStageOptionSetsThePreprocessing) {
  ASSERT_EQ(runner({experiment(", image_preprocessing: resize")}).status, 0);
  const auto prompts = json_lines(model_log());
  ASSERT_EQ(prompts.size(), 1u);
  EXPECT_EQ(prompts[0]["image_preprocessing"], "resize");
}

TEST_F(PopeEvaluation, AnUnknownPreprocessingIsAConfigErrorNamingTheValues) {
  const ProcessResult r = runner({experiment(", image_preprocessing: crop")});
  EXPECT_NE(r.status, 0);
  const ProcessResult q = runner({"query", "SELECT error FROM trials", "--format", "json"});
  const std::string said = r.err + q.out;
  EXPECT_NE(said.find("expected one of model, pad, center_crop, resize, found 'crop'"), std::string::npos) << said;
}
