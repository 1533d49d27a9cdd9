// reference_match through the normal judge path, end to end with the real runner: a synthetic data stage writes
// the world, and the mt_bench and mm_vet plugins evaluate a torch-free stub model (tests/benchmarks/stubs) on its
// bench/ files, judged by reference_match through the judge cache. A model that answers with the world's own
// answers gets full marks; one that echoes the question gets the lowest.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "plugins/datasets/synthetic/tests/world_cli.h"
#include "plugins/datasets/synthetic/world.h"
#include "plugins/judges/reference_match/reference_match.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using nlohmann::json;
using world_cli::read_jsonl;

namespace {

const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/";

// The same world as JSON (generated here to know its answers) and as the data stage's flow YAML.
const json kConfig = {{"seed", 3}, {"image_size", 168}, {"num_train_images", 4}, {"num_eval_images", 6},
                      {"questions_per_image", 3}, {"num_text_tasks", 4}, {"num_eval_text_tasks", 12}};
const std::string kConfigYaml = "{seed: 3, image_size: 168, num_train_images: 4, num_eval_images: 6, "
                                "questions_per_image: 3, num_text_tasks: 4, num_eval_text_tasks: 12}";

class ReferenceMatchE2e : public world_cli::WorldCli {
 protected:
  ReferenceMatchE2e() : WorldCli("mmr_reference_match_e2e") {}

  void SetUp() override {
    BenchmarkCli::SetUp();
    if (!stubs_built()) GTEST_SKIP() << no_stubs();
    world_ = dir_ / "world";
    mmr::synthetic::generate_world(mmr::synthetic::WorldConfig::from_json(kConfig), world_);
  }

  // A stage of the experiment file over the data stage's world.
  static std::string world_path(const std::string& rel) { return "\"${artifact:data/world}/" + rel + "\""; }

  fs::path world_;
};

}  // namespace

TEST_F(ReferenceMatchE2e, MtBenchRatesTheWorldsAnswersTenAndAnEchoOne) {
  // The stub model's reply to a turn is looked up by the turn's text: the world's answer to that task.
  json replies = json::object();
  for (const json& task : read_jsonl(world_ / "text_eval.jsonl"))
    replies[task.at("text").get<std::string>()] = task.at("answer");
  const std::string replies_path = write("replies.json", replies.dump());
  auto stage = [&](const std::string& name, const std::string& model) {
    return "  - {name: " + name + ", benchmark: mt_bench, model: " + model + ", model_id: " + name + ",\n" +
           "     questions: " + world_path("bench/mt_bench/question.jsonl") + ", judge_prompts: " + kData +
           "mt_bench/judge_prompts.jsonl,\n     reference_answers: " +
           world_path("bench/mt_bench/reference_answer.jsonl") + ", judge: reference_match}\n";
  };
  const std::string spec =
      write("exp.yaml", "name: world_mt\nstages:\n  - {name: data, dataset: synthetic, config: " + kConfigYaml +
                            "}\n" + stage("oracle", "{plugin: scripted_model, replies: " + replies_path + "}") +
                            stage("echo", "scripted_model"));
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  const auto all = all_stage_metrics();
  const auto& oracle = all.at("oracle");
  EXPECT_DOUBLE_EQ(oracle.at("oracle/overall"), 10.0);
  EXPECT_DOUBLE_EQ(oracle.at("oracle/turn_1"), 10.0);
  EXPECT_DOUBLE_EQ(oracle.at("oracle/turn_2"), 10.0);
  EXPECT_DOUBLE_EQ(oracle.at("oracle/n_judgments"), 12.0);  // 6 two-turn questions from 12 tasks
  EXPECT_DOUBLE_EQ(oracle.at("oracle/n_failed"), 0.0);
  EXPECT_DOUBLE_EQ(oracle.at("judge/unparseable"), 0.0);
  // The echo ("Echo: " + the turn's text) is rated turn by turn against that turn's reference and question. Less
  // the question, its answer-bearing tokens are [echo], in no reference: 0, rating 1, on every turn whose
  // reference has answer-bearing tokens. The four sorting turns of this world (seed 3: two number lists, two word
  // lists) have references with none and are graded by order: the echo holds the list in the question's order,
  // never already sorted here, so 1 again. Every one of the 12 turns is rated 1 (token-f1-v1 gave the echo credit
  // for the reference words it shares with the question: 6 on "What is 777 - 27?", 8 on the descending sort).
  const auto questions = read_jsonl(world_ / "bench/mt_bench/question.jsonl");
  const auto references = read_jsonl(world_ / "bench/mt_bench/reference_answer.jsonl");
  ASSERT_EQ(questions.size(), 6u);
  for (size_t i = 0; i < questions.size(); ++i)
    for (size_t turn = 0; turn < 2; ++turn) {
      const std::string question = questions[i].at("turns")[turn].get<std::string>();
      EXPECT_EQ(mmr::reference_match::mt_bench_rating(
                    question, references[i].at("choices")[0].at("turns")[turn].get<std::string>(), "Echo: " + question),
                1)
          << question;
    }
  const auto& echo = all.at("echo");
  EXPECT_DOUBLE_EQ(echo.at("echo/overall"), 1.0);
  EXPECT_DOUBLE_EQ(echo.at("echo/turn_1"), 1.0);
  EXPECT_DOUBLE_EQ(echo.at("echo/turn_2"), 1.0);
  EXPECT_DOUBLE_EQ(echo.at("echo/n_failed"), 0.0);

  // A rerun asks the judge nothing: every judgment comes from the cache under reference_match's identity.
  const ProcessResult again = runner({spec, "--force"});
  ASSERT_EQ(again.status, 0) << again.err;
  const auto rerun = all_stage_metrics();
  EXPECT_DOUBLE_EQ(rerun.at("oracle").at("judge/sent"), 0.0);
  EXPECT_DOUBLE_EQ(rerun.at("oracle").at("judge/cache_hits"), 12.0);
  EXPECT_DOUBLE_EQ(rerun.at("oracle").at("oracle/overall"), 10.0);
}

TEST_F(ReferenceMatchE2e, MmVetWithTheWorldsAnswersGradesEachMatchingAnswerOne) {
  // Replies keyed by the prompt "<image>\n" + question; a question asked of several images gets the first image's
  // answer, so only the samples whose answer is that one are sure to grade 1.0.
  json replies = json::object();
  for (const json& q : read_jsonl(world_ / "vqa_eval.jsonl")) {
    const std::string prompt = "<image>\n" + q.at("text").get<std::string>();
    if (!replies.contains(prompt)) replies[prompt] = q.at("answer");
  }
  const std::string replies_path = write("replies.json", replies.dump());
  const std::string spec = write("exp.yaml",
      "name: world_mmvet\nstages:\n  - {name: data, dataset: synthetic, config: " + kConfigYaml + "}\n"
      "  - {name: mmvet, benchmark: mm_vet, model: {plugin: scripted_model, replies: " + replies_path + "},\n"
      "     questions: " + world_path("bench/mm_vet/llava-mm-vet.jsonl") + ", image_folder: " + world_path("images") +
      ",\n     metadata: " + world_path("bench/mm_vet/mm-vet.json") + ", grader_prompt: " + kData +
      "mm_vet/grader_prompt.txt, judge: reference_match}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  const auto m = all_stage_metrics().at("mmvet");
  EXPECT_DOUBLE_EQ(m.at("grading/failed_samples"), 0.0);
  EXPECT_DOUBLE_EQ(m.at("judge/unparseable"), 0.0);
  for (const char* capability : {"count", "colour", "position", "existence"})
    EXPECT_EQ(m.count(capability), 1u) << capability;

  // grades.json: "v1_<n>" -> score; metadata: the ground truth of "v1_<n>".
  const ProcessResult q = runner({"query", "SELECT path FROM artifacts WHERE name = 'grades'", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  const json grades = json::parse(std::ifstream(json::parse(q.out).at(0).at("path").get<std::string>()));
  const json metadata = json::parse(std::ifstream(world_ / "bench/mm_vet/mm-vet.json"));
  ASSERT_EQ(grades.size(), metadata.size());
  int exact = 0;
  for (const auto& [id, sample] : metadata.items()) {
    const std::string prompt = "<image>\n" + sample.at("question").get<std::string>();
    const double score = grades.at(id).at("score").at(0);
    EXPECT_EQ(grades.at(id).at("model").at(0), "reference_match 2.0.0 rule=answer-tokens-v2");
    if (replies.at(prompt) == sample.at("answer")) {
      EXPECT_DOUBLE_EQ(score, 1.0) << id;
      ++exact;
    } else {
      EXPECT_LT(score, 1.0) << id;
    }
  }
  EXPECT_GT(exact, static_cast<int>(metadata.size()) / 2);
}
