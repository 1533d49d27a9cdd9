// MT-Bench's evaluation protocol end to end, with the real runner, the torch-free stub model
// (tests/benchmarks/stubs/) and the real openai_compatible judge talking to a chat endpoint on loopback
// (tests/benchmarks/chat_server.h). Table 7's setup (mllm-dpo's gen_model_answer.py --use-random-cocoimage):
// "<image>\n" before every turn with a new image drawn for each, seeded, centre-cropped; FastChat's judge (gpt-4,
// temperature 0, 2048 tokens).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "plugins/benchmarks/common/testing.h"
#include "tests/benchmarks/benchmark_cli.h"
#include "tests/benchmarks/chat_server.h"

namespace fs = std::filesystem;
using mmr::test::ChatServer;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::metric;
using nlohmann::json;

namespace {

const std::string kStubs = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();
const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mt_bench/";
const std::vector<std::string> kImages = {"a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"};

class MtBenchEvaluation : public mmr::test::BenchmarkCli {
 protected:
  MtBenchEvaluation() : BenchmarkCli("mmr_mt_bench_evaluation", {kStubs}) {}

  // A folder of five (empty: the stub model never opens them) images and a file that is not one.
  std::string image_folder() {
    const fs::path folder = dir_ / "coco";
    fs::create_directories(folder);
    for (const auto& name : kImages) std::ofstream(folder / name) << "";
    std::ofstream(folder / "notes.txt") << "not an image";
    return folder.string();
  }
  // One mt_bench stage over the first two questions (both writing: judged without a reference).
  std::string experiment(const ChatServer& server, const std::string& extra) {
    return write("exp.yaml", "name: mt\nstages:\n  - {name: mt, benchmark: mt_bench, model: {plugin: scripted_model, "
        "log: " + model_log() + "}, questions: " + kData + "question.jsonl, judge_prompts: " + kData +
        "judge_prompts.jsonl, limit: 2, judge: {plugin: openai_compatible, base_url: '" + server.base_url() + "'}" +
        extra + "}\n");
  }
  std::string model_log() const { return (dir_ / "model.jsonl").string(); }
  // The images of each prompt the model was given, in order (turn 1 of both questions, then turn 2).
  std::vector<json> images_shown() {
    std::vector<json> out;
    for (const auto& p : json_lines(model_log())) out.push_back(p["images"]);
    return out;
  }
  static std::string rating(const json&) { return "The answer is fine. Rating: [[7]]"; }
};

}  // namespace

TEST_F(MtBenchEvaluation, EveryTurnShowsANewImageDrawnWithTheSeedCentreCropped) {
  ChatServer server(rating);
  const std::string folder = image_folder();
  const std::string spec = experiment(server, ", image_folder: " + folder + ", image_seed: 7");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;

  const auto prompts = json_lines(model_log());
  ASSERT_EQ(prompts.size(), 4u);  // two questions, two turns
  const std::set<std::string> pool = {folder + "/a.jpg", folder + "/b.jpg", folder + "/c.jpg", folder + "/d.jpg",
                                      folder + "/e.jpg"};
  for (size_t q = 0; q < 2; ++q) {
    const json& first = prompts[q];
    const json& second = prompts[q + 2];
    EXPECT_EQ(first["image_preprocessing"], "center_crop") << "gen_model_answer.py: image_processor.preprocess";
    // Turn 1: "<image>\n" + the question, one image; turn 2: the first exchange, then "<image>\n" + the second
    // question, the first turn's image and a new one.
    ASSERT_EQ(first["turns"].size(), 1u);
    EXPECT_EQ(first["turns"][0][1].get<std::string>().rfind("<image>\n", 0), 0u) << first.dump();
    ASSERT_EQ(first["images"].size(), 1u);
    ASSERT_EQ(second["turns"].size(), 3u);
    EXPECT_EQ(second["turns"][2][1].get<std::string>().rfind("<image>\n", 0), 0u) << second.dump();
    ASSERT_EQ(second["images"].size(), 2u);
    EXPECT_EQ(second["images"][0], first["images"][0]);
    for (const auto& image : second["images"]) EXPECT_EQ(pool.count(image.get<std::string>()), 1u) << image;
  }
  // The judge map named no model: FastChat's gpt-4, temperature 0, 2048 tokens, both turns of both questions.
  const auto bodies = server.bodies();
  ASSERT_EQ(bodies.size(), 4u);
  for (const auto& b : bodies) {
    EXPECT_EQ(b["model"], "gpt-4");
    EXPECT_EQ(b["temperature"], 0.0);
    EXPECT_EQ(b["max_tokens"], 2048);
  }
  EXPECT_DOUBLE_EQ(metric(all_stage_metrics()["mt"], "model/overall"), 7.0);

  // The same seed draws the same images; another seed others.
  const std::vector<json> drawn = images_shown();
  fs::remove(model_log());
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(images_shown(), drawn);
  fs::remove(model_log());
  ASSERT_EQ(runner({experiment(server, ", image_folder: " + folder + ", image_seed: 8")}).status, 0);
  EXPECT_NE(images_shown(), drawn);
}

TEST_F(MtBenchEvaluation, AListFileNamesTheImagesRelativeToItsFolder) {
  ChatServer server(rating);
  const std::string folder = image_folder();
  const std::string list = (fs::path(folder) / "list.txt").string();
  std::ofstream(list) << "b.jpg\n\nd.jpg\n";
  ASSERT_EQ(runner({experiment(server, ", image_folder: " + list)}).status, 0);
  for (const auto& images : images_shown())
    for (const auto& image : images)
      EXPECT_TRUE(image == folder + "/b.jpg" || image == folder + "/d.jpg") << image;
}

TEST_F(MtBenchEvaluation, WithoutImagesTheTurnsAreTextAndNoPreprocessingIsSet) {
  ChatServer server(rating);
  ASSERT_EQ(runner({experiment(server, "")}).status, 0);
  for (const auto& p : json_lines(model_log())) {
    EXPECT_TRUE(p["images"].empty());
    EXPECT_EQ(p["image_preprocessing"], "");
    EXPECT_EQ(p["turns"][0][1].get<std::string>().find("<image>"), std::string::npos);
    EXPECT_EQ(p["max_new_tokens"], 1024);
  }
}
