// The MMBench plugin end to end: the real `runner` binary scores the hand-made submission files in
// tests/data/benchmarks/mmbench with `runner score mmbench ... --format json`, and an experiment stage sends the
// rows the rules cannot resolve to the real openai_compatible judge over HTTP on loopback, where a scripted
// chat-completions server (tests/benchmarks/chat_server.h) plays the choice extractor. Expected values are the
// hand-computed references of plugins/benchmarks/mmbench/tests/references.h.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/mmbench/tests/references.h"
#include "benchmark_cli.h"
#include "chat_server.h"
#include "process.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::expect_counts;
using mmr::benchmarks::testing::expect_metrics;
using mmr::benchmarks::testing::metric;
using mmr::benchmarks::testing::read_text;
namespace ref = mmr::mmbench::references;

namespace {

const std::string kPlugins = (fs::path(MMR_TEST_BINARY_DIR) / "plugins").string();
const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mmbench/";
const std::string kData = kDir + "dev_small.tsv";
const std::string kPredictions = kDir + "predictions_small.tsv";
const std::string kPrompt = kDir + "choice_extractor_prompt_en.txt";

// The loopback chat endpoint answering the choice-extractor prompts of predictions_small.tsv as references.h says
// (or as a test's policy says), recording every prompt it was sent.
class ExtractorServer : public mmr::test::ChatServer {
 public:
  using Policy = std::function<std::string(const std::string& prompt)>;
  explicit ExtractorServer(Policy policy = references_policy)
      : ChatServer([policy](const nlohmann::json& body) { return policy(last_message(body)); }) {}

  // The replies references.h assumes for predictions_small.tsv.
  static std::string references_policy(const std::string& prompt) {
    if (prompt.find("Answer: No, not yes\n") != std::string::npos) return "B";
    if (prompt.find("Answer: B C\n") != std::string::npos) return "The answer is B";
    if (prompt.find("Answer: It could be A or C\n") != std::string::npos) return "Z";
    return "Unclear.";
  }
};

class MmBenchCli : public mmr::test::BenchmarkCli {
 protected:
  MmBenchCli() : BenchmarkCli("mmr_mmbench_cli") {}

  // `runner score mmbench <args> --format json` → metric name → value.
  std::map<std::string, double> score(std::vector<std::string> args, std::string* err = nullptr) {
    args.insert(args.begin(), "mmbench");
    return BenchmarkCli::score(std::move(args), err);
  }
  std::map<std::string, std::map<std::string, double>> stage_metrics() { return all_stage_metrics(); }
};

using mmr::test::expect_usage_error;

}  // namespace

TEST_F(MmBenchCli, ScoresASubmissionFileWithCircularEvaluationAndAbilities) {
  std::string err;
  const auto m = score({"predictions=" + kPredictions, "data=" + kData}, &err);
  expect_metrics(m, ref::kSmallScores);
  expect_counts(m, ref::kSmallCounts);
  // Rows nobody resolved are counted wrong and said so, never silently.
  EXPECT_NE(err.find("3 row(s) of 2 question(s) could not be resolved"), std::string::npos) << err;
}

TEST_F(MmBenchCli, ScoresWithoutTheDataFileAndWithThe2023Rules) {
  const auto bare = score({"predictions=" + kPredictions});
  EXPECT_DOUBLE_EQ(metric(bare, "overall"), 40.0);
  EXPECT_EQ(bare.count("l2/CP"), 0u);  // LLaVA's submission columns have no categories
  const auto old = score({"predictions=" + kPredictions, "data=" + kData, "rules=2023-11"});
  EXPECT_DOUBLE_EQ(metric(old, "overall"), ref::kSmall2023Overall);
}

TEST_F(MmBenchCli, ArgumentErrorsNameTheKeyAndTheFile) {
  expect_usage_error(runner({"score", "mmbench", "data=" + kData}),
                     {"missing required option 'predictions'", "known options: predictions, data, rules",
                      "usage: runner score mmbench predictions=FILE"});
  expect_usage_error(runner({"score", "mmbench", "predictions=" + kPredictions, "answers=x"}),
                     {"unknown option 'answers'", "known options: predictions, data"});
  expect_usage_error(runner({"score", "mmbench", "predictions=" + kPredictions, "rules=2025"}),
                     {"rules: expected one of 2024-01, 2023-11, found '2025'"});
  expect_usage_error(runner({"score", "mmbench", "predictions=" + kPredictions, "judge=openai_compatible"}),
                     {"`runner score` cannot ask a judge", "experiment stage"});
  const std::string missing = (dir_ / "llava-v1.5-13b.tsv").string();
  const ProcessResult r = runner({"score", "mmbench", "predictions=" + missing});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(missing), std::string::npos) << r.err;
}

TEST_F(MmBenchCli, AStageAsksTheChoiceExtractorOverHttpOnceAndRecordsTheScores) {
  ExtractorServer server;
  const std::string spec = write("exp.yaml", "name: mmbench_judge\nstages:\n"
      "  - {name: mmbench, benchmark: mmbench, predictions: " + kPredictions + ", data: " + kData +
      ", extractor_prompt: " + kPrompt + ", judge: {plugin: openai_compatible, base_url: '" + server.base_url() +
      "', model: gpt-3.5-turbo-0613, concurrency: 1}}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  auto m = stage_metrics()["mmbench"];
  EXPECT_DOUBLE_EQ(metric(m, "overall"), ref::kSmallWithJudgeOverall);
  EXPECT_DOUBLE_EQ(metric(m, "l2/FP-S"), 100.0);  // q1, right once the judge read its second pass
  EXPECT_EQ(metric(m, "unresolved_rows"), 0);
  EXPECT_EQ(metric(m, "judge/extracted"), 3);
  EXPECT_EQ(metric(m, "judge/sent"), 3);
  EXPECT_EQ(metric(m, "judge/unparseable"), 0);
  // The official prompt, filled as the evaluator fills it, for q1's second pass; q2's unresolved pass (its
  // question already wrong by the rules) was never sent.
  const std::vector<std::string> prompts = server.prompts();
  ASSERT_EQ(prompts.size(), 3u);
  const std::string tmpl = read_text(kPrompt);
  EXPECT_EQ(prompts[0], tmpl.substr(0, tmpl.find("{}")) + "Is the cat on the left??\nOptions: There are several "
                        "options: \nA. no\nB. yes\n\nAnswer: No, not yes\nYour output: ");
  for (const auto& p : prompts) EXPECT_EQ(p.find("I don't know"), std::string::npos);

  // A forced rerun finds every reply in the judge cache: nothing is sent again, the scores are the same.
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  m = stage_metrics()["mmbench"];
  EXPECT_EQ(server.prompts().size(), 3u);
  EXPECT_EQ(metric(m, "judge/sent"), 0);
  EXPECT_EQ(metric(m, "judge/cache_hits"), 3);
  EXPECT_DOUBLE_EQ(metric(m, "overall"), ref::kSmallWithJudgeOverall);
}

TEST_F(MmBenchCli, AStageWithoutAJudgeRecordsTheUnresolvedCountAndKeepsTheScoredFile) {
  const std::string spec = write("exp.yaml", "name: mmbench_rules\nstages:\n"
      "  - {name: mmbench, benchmark: mmbench, predictions: " + kPredictions + ", data: " + kData + "}\n");
  ASSERT_EQ(runner({spec}).status, 0);
  const auto m = stage_metrics()["mmbench"];
  expect_metrics(m, ref::kSmallScores);
  expect_counts(m, ref::kSmallCounts);
  const ProcessResult q = runner({"query", "SELECT name, path FROM artifacts ORDER BY 1", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  std::map<std::string, std::string> artifacts;
  for (const auto& a : nlohmann::json::parse(q.out)) artifacts[a.at("name")] = a.at("path");
  ASSERT_EQ(artifacts.count("predictions"), 1u) << q.out;
  EXPECT_EQ(read_text(artifacts["predictions"]), read_text(kPredictions));
  ASSERT_EQ(artifacts.count("scores"), 1u) << q.out;
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(read_text(artifacts["scores"])).at("overall").get<double>(), 40.0);
}

TEST_F(MmBenchCli, AJudgeWithoutTheExtractorPromptIsAConfigError) {
  const std::string spec = write("exp.yaml", "name: mmbench_no_prompt\nstages:\n"
      "  - {name: mmbench, benchmark: mmbench, predictions: " + kPredictions +
      ", judge: {plugin: openai_compatible, base_url: 'http://127.0.0.1:9/v1', model: m}}\n");
  EXPECT_NE(runner({spec}).status, 0);
  const ProcessResult q = runner({"query", "SELECT error FROM trials", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_NE(q.out.find("option 'judge' needs 'extractor_prompt'"), std::string::npos) << q.out;
}

// ---- evaluating a model ----

// The tiny LLaVA (tests/data/tiny-llava) answers every row of dev_small.tsv on CPU; its answers ("bbbbbb"-like
// noise) resolve by no rule, so every pass goes to the choice extractor, here a server that knows the key and
// answers with the letter of the right option's text. Needs the llava plugin (built with LibTorch); the
// torch-free build skips this test.
TEST_F(MmBenchCli, EvaluatesTheTinyModelWritesTheSubmissionAndResumesWithoutAskingTheJudgeAgain) {
  const fs::path llava = fs::path(kPlugins) / "models" / "libllava.so";
  if (!fs::exists(llava)) GTEST_SKIP() << "no llava plugin in this build (" << llava << ")";
  const std::map<std::string, std::string> key = {{"What is the style", "photograph"}, {"Is the cat", "yes"},
      {"What will the weather", "It will rain"}, {"Where was this photo", "forest"}, {"Which animal", "a dog"}};
  ExtractorServer server([key](const std::string& prompt) {
    const std::string example = prompt.substr(prompt.find("Example 3"));
    for (const auto& [question, text] : key)
      if (example.find(question) != std::string::npos)
        for (char letter = 'A'; letter <= 'D'; ++letter)
          if (example.find(std::string(1, letter) + ". " + text + "\n") != std::string::npos)
            return std::string(1, letter);
    return std::string("Unclear.");
  });
  const std::string model = "{plugin: llava, path: " + std::string(MMR_TEST_DATA_DIR) + "/tiny-llava/model}";
  const std::string spec = write("exp.yaml", "name: mmbench_tiny\nstages:\n"
      "  - {name: mmbench, benchmark: mmbench, model: " + model + ", data: " + kData + ", max_new_tokens: 6, "
      "batch_size: 4, model_id: tiny, extractor_prompt: " + kPrompt + ", judge: {plugin: openai_compatible, "
      "base_url: '" + server.base_url() + "', model: gpt-3.5-turbo-0613}}\n");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  auto m = stage_metrics()["mmbench"];
  EXPECT_EQ(metric(m, "n_answers"), 14);
  EXPECT_EQ(metric(m, "n_questions"), 5);
  // Whatever the tiny model says, a pass the rules cannot read is the judge's; the key makes every one right.
  EXPECT_EQ(metric(m, "rule_resolved_rows") + metric(m, "judge/extracted"), 14);
  EXPECT_DOUBLE_EQ(metric(m, "overall"), 100.0);
  EXPECT_EQ(metric(m, "judge/sent"), static_cast<double>(server.prompts().size()));

  // The submission file has LLaVA's converter columns; scored without a judge it gives the rules' verdict.
  const ProcessResult q = runner({"query", "SELECT name, path FROM artifacts", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  std::map<std::string, std::string> artifacts;
  for (const auto& a : nlohmann::json::parse(q.out)) artifacts[a.at("name")] = a.at("path");
  const std::string submission = read_text(artifacts.at("submission"));
  EXPECT_EQ(submission.substr(0, submission.find('\n')), "index\tquestion\tA\tB\tC\tD\tprediction\tanswer\tsplit");
  const auto rescored = score({"predictions=" + artifacts.at("submission"), "data=" + kData});
  EXPECT_EQ(metric(rescored, "rule_resolved_rows"), metric(m, "rule_resolved_rows"));
  EXPECT_EQ(metric(rescored, "n_rows"), 14);
  // LLaVA's answer lines, one per row, the prompt without the final instruction.
  const std::string answers = read_text(artifacts.at("answers"));
  EXPECT_NE(answers.find("\"prompt\":\"Look at the animals.\\nIs the cat on the left?\\nA. yes\\nB. no\""),
            std::string::npos) << answers;

  // A forced rerun generates the same greedy answers and finds every judge reply in the cache.
  const size_t sent = server.prompts().size();
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  m = stage_metrics()["mmbench"];
  EXPECT_EQ(server.prompts().size(), sent);
  EXPECT_EQ(metric(m, "judge/sent"), 0);
  EXPECT_DOUBLE_EQ(metric(m, "overall"), 100.0);
}
