// The world's bench/pope files with the real runner and the real pope plugin: `runner score pope` with answers
// that repeat the labels scores F1 100 on every split, and an evaluation stage over a synthetic data stage's world
// (questions, labels and image_folder from `${artifact:data/world}`) runs with a torch-free stub model.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "plugins/datasets/synthetic/world.h"
#include "world_cli.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using nlohmann::json;
using world_cli::read_jsonl;

namespace {

// The world of both tests, as JSON for generate_world and as flow YAML for a data stage.
const json kConfig = {{"seed", 11}, {"image_size", 168}, {"num_train_images", 6}, {"num_eval_images", 8},
                      {"num_text_tasks", 4}, {"num_eval_text_tasks", 4}};
const std::string kConfigYaml =
    "{seed: 11, image_size: 168, num_train_images: 6, num_eval_images: 8, num_text_tasks: 4, num_eval_text_tasks: 4}";

class SyntheticBenchCli : public world_cli::WorldCli {
 protected:
  SyntheticBenchCli() : WorldCli("mmr_synthetic_bench_cli") {}
};

}  // namespace

TEST_F(SyntheticBenchCli, RunnerScorePopeGivesF1HundredForAnswersThatRepeatTheLabels) {
  const fs::path world = dir_ / "world";
  mmr::synthetic::generate_world(mmr::synthetic::WorldConfig::from_json(kConfig), world);
  const fs::path pope = world / "bench" / "pope";
  // LLaVA's answer lines, in question-file order: each split's i-th question answered with its i-th label.
  std::map<std::string, std::vector<json>> labels;
  for (const char* split : {"random", "popular", "adversarial"})
    labels[split] = read_jsonl(pope / "labels" / (std::string("coco_pope_") + split + ".json"));
  std::map<std::string, size_t> next;
  std::string answers;
  for (const json& q : read_jsonl(pope / "llava_pope_test.jsonl")) {
    const std::string split = q.at("category");
    const std::string label = labels.at(split).at(next[split]++).at("label");
    answers += json{{"question_id", q.at("question_id")}, {"prompt", q.at("text")},
                    {"text", label == "yes" ? "Yes" : "No"}, {"answer_id", "a"}, {"model_id", "oracle"},
                    {"metadata", json::object()}}.dump() + "\n";
  }
  const std::string answers_path = write("answers.jsonl", answers);
  const auto m = score({"pope", "answers=" + answers_path, "questions=" + (pope / "llava_pope_test.jsonl").string(),
                        "labels=" + (pope / "labels").string()});
  for (const char* split : {"random", "popular", "adversarial"}) {
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/f1"), 100.0) << split;
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/accuracy"), 100.0) << split;
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/n"), static_cast<double>(labels.at(split).size())) << split;
    EXPECT_GT(labels.at(split).size(), 0u);
  }
  EXPECT_DOUBLE_EQ(m.at("mean/f1"), 100.0);
  EXPECT_DOUBLE_EQ(m.at("unscored_answers"), 0.0);
}

TEST_F(SyntheticBenchCli, PopeStageEvaluatesAModelOnTheWorldOfADataStage) {
  if (!stubs_built()) GTEST_SKIP() << no_stubs();
  // The stub model without replies echoes the prompt, which has no "no"/"not": every answer parses as "yes".
  const std::string spec = write("exp.yaml", "name: world_pope\nstages:\n"
      "  - {name: data, dataset: synthetic, config: " + kConfigYaml + "}\n"
      "  - {name: pope, benchmark: pope, model: scripted_model, model_id: echo,\n"
      "     questions: \"${artifact:data/world}/bench/pope/llava_pope_test.jsonl\",\n"
      "     labels: \"${artifact:data/world}/bench/pope/labels\", image_folder: \"${artifact:data/world}/images\"}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  const auto all = all_stage_metrics();
  ASSERT_EQ(all.count("pope"), 1u) << run.err;
  const auto& m = all.at("pope");
  const double probes = all.at("data").at("world/bench_pope");
  EXPECT_GT(probes, 0);
  EXPECT_DOUBLE_EQ(m.at("n_answers"), probes);
  for (const char* split : {"random", "popular", "adversarial"}) {
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/yes_ratio"), 100.0) << split;
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/recall"), 100.0) << split;
    EXPECT_DOUBLE_EQ(m.at(std::string(split) + "/precision"), 50.0) << split;  // yes and no probes are balanced
  }
}
