// AlpacaEval end to end: the real `runner` binary scores the annotation files in tests/data/benchmarks/alpaca_eval
// with `runner score alpaca_eval annotations=FILE --format json`, and an experiment stage records the same scores.
// Expected values are the python3 references in plugins/benchmarks/alpaca_eval/tests/references.h. (A file of its
// own beside test_score_cli.cpp, with the same harness.) The evaluation runs with torch-free stub model and judge
// plugins (tests/benchmarks/stubs/), so it runs in builds without LibTorch.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "plugins/benchmarks/alpaca_eval/tests/references.h"
#include "plugins/benchmarks/common/testing.h"
#include "benchmark_cli.h"
#include "process.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;
using mmr::benchmarks::testing::expect_counts;
using mmr::benchmarks::testing::expect_metrics;
using mmr::benchmarks::testing::read_text;
namespace ref = mmr::alpaca_eval::references;

namespace {

const std::string kStubs = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();
const std::string kAe = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/alpaca_eval/";

class AlpacaEvalCli : public mmr::test::BenchmarkCli {
 protected:
  AlpacaEvalCli() : BenchmarkCli("mmr_alpaca_eval_cli", {kStubs}) {}

  // stage -> metric -> value (final metrics of the newest attempt).
  std::map<std::string, double> stage_metrics(const std::string& stage) {
    const ProcessResult q = runner({"query", "SELECT stage, name, value FROM final_metrics", "--format", "json"});
    EXPECT_EQ(q.status, 0) << q.err;
    std::map<std::string, double> out;
    for (const auto& row : nlohmann::json::parse(q.out))
      if (row["stage"] == stage) out[row["name"]] = row["value"].get<double>();
    return out;
  }
};

}  // namespace

TEST_F(AlpacaEvalCli, ScoresWinRateStandardErrorAndCounts) {
  const auto m = score({"alpaca_eval", "annotations=" + kAe + "annotations_edge_cases.json"});
  expect_metrics(m, ref::kEdgeScores);
  expect_counts(m, ref::kEdgeCounts);
}

TEST_F(AlpacaEvalCli, ScoresRowsOfTheSharedDavinciAnnotations) {
  const auto m = score({"alpaca_eval", "annotations=" + kAe + "annotations_davinci_subset.json"});
  expect_metrics(m, ref::kDavinciScores);
  expect_counts(m, ref::kDavinciCounts);
}

TEST_F(AlpacaEvalCli, ArgumentErrorsNameTheKeyAndTheFile) {
  const ProcessResult none = runner({"score", "alpaca_eval"});
  EXPECT_EQ(none.status, 2) << none.err;
  EXPECT_NE(none.err.find("missing required option 'annotations'"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("usage: runner score alpaca_eval annotations=FILE"), std::string::npos) << none.err;
  const ProcessResult unknown = runner({"score", "alpaca_eval", "annotations=" + kAe + "annotations_edge_cases.json",
                                        "annotator=gpt4"});
  EXPECT_EQ(unknown.status, 2) << unknown.err;
  EXPECT_NE(unknown.err.find("unknown option 'annotator'"), std::string::npos) << unknown.err;
  const std::string bad = write("bad.json", "[{\"output_2\": \"x\"}]");
  const ProcessResult r = runner({"score", "alpaca_eval", "annotations=" + bad});
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(bad + ": row 0"), std::string::npos) << r.err;
}

TEST_F(AlpacaEvalCli, AStageRecordsTheScoresAndKeepsTheAnnotations) {
  const std::string spec = write("exp.yaml", "name: ae\nstages:\n  - {name: ae, benchmark: alpaca_eval, annotations: " +
                                                 kAe + "annotations_edge_cases.json}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  const auto m = stage_metrics("ae");
  // `runner query` prints 15 significant digits: the exact values are checked through `runner score` above.
  for (const auto& [name, value] : ref::kEdgeScores) EXPECT_NEAR(m.at(name), value, 1e-12) << name;
  expect_counts(m, ref::kEdgeCounts);
  const ProcessResult q = runner({"query", "SELECT name, path FROM artifacts ORDER BY 1", "--format", "json"});
  ASSERT_EQ(q.status, 0) << q.err;
  std::map<std::string, std::string> artifacts;
  for (const auto& a : nlohmann::json::parse(q.out)) artifacts[a.at("name").get<std::string>()] = a.at("path").get<std::string>();
  ASSERT_EQ(artifacts.count("annotations"), 1u) << q.out;
  EXPECT_EQ(read_text(artifacts["annotations"]), read_text(kAe + "annotations_edge_cases.json"));
}

TEST_F(AlpacaEvalCli, EvaluatesAModelWritesTheOfficialFilesAndNeverAsksTheJudgeTwice) {
  // The first 4 instructions of eval_set_subset.json (references "Blue", "Test", "Spanish", "ADT"). The stub model
  // answers a longer text (the judge prefers longer: the model wins; the pair is shown switched), the identical
  // "Test" (a draw, never sent), a reply the stub judge answers in prose (dropped, counted), and the shorter "A"
  // (not switched: the reference wins). x = [1, 0.5, 0] -> 50 +- 100 * 0.5 / sqrt(3) (python3: 28.86751345948129).
  const std::string replies = write("replies.json", R"({"What color is the sky": "The sky is blue on a clear day.",
    "Write \"Test\"": "Test", "what language does argentina people speak": "UNPARSEABLE",
    "is queue an ADT or a data structure": "A"})");
  const std::string model_log = (dir_ / "model.jsonl").string(), judge_log = (dir_ / "judge.jsonl").string();
  const std::string spec = write("exp.yaml", "name: ae\nstages:\n  - {name: ae, benchmark: alpaca_eval, "
      "model: {plugin: scripted_model, replies: " + replies + ", log: " + model_log + "}, instructions: " + kAe +
      "eval_set_subset.json, annotators_config: " + kAe + "alpaca_eval_gpt4, limit: 4, model_id: stub, "
      "judge: {plugin: scripted_judge, log: " + judge_log + "}}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;

  auto m = stage_metrics("ae");
  EXPECT_DOUBLE_EQ(m["win_rate"], 50.0);
  EXPECT_NEAR(m["standard_error"], 28.86751345948129, 1e-12);  // `runner query` prints 15 significant digits
  for (const auto& [name, value] : std::map<std::string, double>{
           {"n_answers", 4}, {"n_total", 3}, {"n_rows", 4}, {"n_dropped", 1}, {"n_draws", 1}, {"n_wins", 1},
           {"n_wins_base", 1}, {"annotator/judged", 3}, {"annotator/identical_outputs", 1}, {"judge/sent", 3},
           {"judge/requests", 3}, {"judge/unparseable", 1}})
    EXPECT_EQ(m[name], value) << name;

  // gen_model_answeralpaca.py's generation: the instruction as the only user turn, no image, greedy, 1024 tokens.
  const auto prompts = json_lines(model_log);
  ASSERT_EQ(prompts.size(), 4u);
  for (const auto& p : prompts) {
    EXPECT_EQ(p["turns"].size(), 1u) << p.dump();
    EXPECT_EQ(p["turns"][0][0], "human");
    EXPECT_TRUE(p["images"].empty());
    EXPECT_EQ(p["max_new_tokens"], 1024);
    EXPECT_EQ(p["temperature"], 0.0);
  }
  EXPECT_EQ(prompts[0]["turns"][0][1], "What color is the sky");
  // The annotator as configured: temperature 0, 100 tokens, the template's system message.
  const auto sent = json_lines(judge_log);
  ASSERT_EQ(sent.size(), 3u);
  for (const auto& r : sent) {
    EXPECT_EQ(r["temperature"], 0.0);
    EXPECT_EQ(r["max_tokens"], 100);
    EXPECT_EQ(r["system"], "You are a helpful assistant, that ranks models by the quality of their answers.");
  }

  // The official formats: model outputs (stripped replies) and annotations, which `runner score` scores the same.
  auto files = artifacts();
  ASSERT_EQ(files.count("model_outputs"), 1u);
  const nlohmann::json outputs = nlohmann::json::parse(read_text(files["model_outputs"]));
  ASSERT_EQ(outputs.size(), 4u);
  EXPECT_EQ(outputs[0]["instruction"], "What color is the sky");
  EXPECT_EQ(outputs[0]["output"], "The sky is blue on a clear day.");
  EXPECT_EQ(outputs[0]["generator"], "stub");
  ASSERT_EQ(files.count("annotations"), 1u);
  const nlohmann::json annotations = nlohmann::json::parse(read_text(files["annotations"]));
  ASSERT_EQ(annotations.size(), 4u);
  EXPECT_EQ(annotations[0]["preference"], 2.0);
  EXPECT_EQ(annotations[0]["output_1"], "Blue");
  EXPECT_EQ(annotations[1]["preference"], 1.5);
  EXPECT_TRUE(annotations[1]["raw_completion"].is_null());
  EXPECT_TRUE(annotations[2]["preference"].is_null());
  EXPECT_EQ(annotations[3]["preference"], 1.0);
  const auto rescored = score({"alpaca_eval", "annotations=" + files["annotations"]});
  EXPECT_DOUBLE_EQ(rescored.at("win_rate"), 50.0);
  EXPECT_DOUBLE_EQ(rescored.at("standard_error"), 28.86751345948129);

  // A forced rerun answers every judge request from the cache.
  const ProcessResult forced = runner({spec, "--force"});
  ASSERT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(json_lines(judge_log).size(), 3u);
  m = stage_metrics("ae");
  EXPECT_EQ(m["judge/cache_hits"], 3);
  EXPECT_EQ(m["judge/sent"], 0);
  EXPECT_DOUBLE_EQ(m["win_rate"], 50.0);
}

TEST_F(AlpacaEvalCli, AnEvaluationWithoutAJudgeWritesTheOutputsOnly) {
  const std::string spec = write("exp.yaml", "name: ae\nstages:\n  - {name: ae, benchmark: alpaca_eval, "
      "model: scripted_model, instructions: " + kAe + "eval_set_subset.json, limit: 2}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(stage_metrics("ae")["n_answers"], 2);
  auto files = artifacts();
  ASSERT_EQ(files.count("model_outputs"), 1u);
  EXPECT_EQ(files.count("annotations"), 0u);
  EXPECT_EQ(nlohmann::json::parse(read_text(files["model_outputs"]))[1]["output"], "Echo: Write \"Test\"");
}

TEST_F(AlpacaEvalCli, AnEvaluationRefusesAnImageFolderAndNeedsTheInstructions) {
  const std::string spec = write("exp.yaml", "name: ae\nstages:\n  - {name: ae, benchmark: alpaca_eval, "
      "model: scripted_model, instructions: " + kAe + "eval_set_subset.json, image_folder: /tmp}\n");
  EXPECT_NE(runner({spec}).status, 0);
  const ProcessResult q = runner({"query", "SELECT error FROM trials", "--format", "json"});
  EXPECT_NE(q.out.find("AlpacaEval is text-only"), std::string::npos) << q.out;
  const std::string no_set = write("exp2.yaml", "name: ae2\nstages:\n  - {name: ae, benchmark: alpaca_eval, model: scripted_model}\n");
  EXPECT_NE(runner({no_set}).status, 0);
  const ProcessResult q2 = runner({"query", "SELECT error FROM trials", "--format", "json"});
  EXPECT_NE(q2.out.find("missing required option 'instructions'"), std::string::npos) << q2.out;
}
