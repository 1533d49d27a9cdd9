// The annotate stage end to end: the real runner binary, the real openai_compatible judge over HTTP, and a scripted
// chat-completions server on loopback (tests/benchmarks/chat_server.h) that plays the judge. Checks what the pure
// tests cannot: retries are new requests (so the cache does not answer them) and are counted, a rerun asks nothing
// again, the per-candidate form still sends one request per candidate, and LLaVA-RLHF rows flow into
// judge_agreement.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "plugins/algorithms/annotate/annotate.h"
#include "tests/benchmarks/benchmark_cli.h"
#include "tests/benchmarks/chat_server.h"

using mmr::test::ProcessResult;
using nlohmann::json;

namespace {

// The judge on loopback (tests/benchmarks/chat_server.h) answering each user prompt with `reply`.
using Reply = std::function<std::string(const std::string& prompt)>;
std::unique_ptr<mmr::test::ChatServer> judge_server(Reply reply) {
  return std::make_unique<mmr::test::ChatServer>(
      [reply](const json& body) { return reply(mmr::test::ChatServer::last_message(body)); });
}
std::string judge_spec(const mmr::test::ChatServer& server) {
  return "{plugin: openai_compatible, base_url: '" + server.base_url() + "', model: gemini-test, concurrency: 1}";
}

bool contains(const std::string& text, const std::string& piece) { return text.find(piece) != std::string::npos; }

// A score line of the per-prompt format: Helpfulness h, Correctness c, the other three `rest`.
std::string line(int k, int h, int c, int rest = 2) {
  const std::string r = std::to_string(rest);
  return "Candidate " + std::to_string(k) + ": Helpfulness:" + std::to_string(h) + ",Correctness:" +
         std::to_string(c) + ",Coherence:" + r + ",Complexity:" + r + ",Verbosity:" + r + "\n";
}

class AnnotateStage : public mmr::test::BenchmarkCli {
 protected:
  AnnotateStage() : BenchmarkCli("mmr_annotate_stage") {}

  std::vector<json> scored_rows() { return json_lines(artifacts().at("scored_candidates")); }
  std::string stage(const std::string& options, const std::string& judge) {
    return "name: annotate_stage\nstages:\n  - {name: annotate, algorithm: annotate, " + options + ", judge: " + judge +
           "}\n";
  }
};

// Row "ball" (3 candidates): the first reply has no score block, the retry is read. Row "sky" (2 candidates): never
// readable, so after the first request and max_retries = 2 retries its candidates are left out.
std::string scripted_reply(const std::string& prompt) {
  if (!contains(prompt, "What is on the grass?")) return "Both candidates seem fine to me.";
  if (!contains(prompt, "Attempt 2")) return "Candidate 1 is the best. Candidate 2 is wrong.";
  return "Candidate 1 is right; 2 gets the colour wrong; 3 is vague.\n[Scores]\n" + line(1, 4, 4) + line(2, 1, 0) +
         line(3, 2, 3);
}

const char* kTwoRows =
    R"({"id": "ball", "question": "What is on the grass?", "candidates": ["A red ball.", "A blue ball.", )"
    R"("Something."]})" "\n"
    R"({"id": "sky", "question": "What colour is the sky?", "candidates": [{"response": "Blue."}, )"
    R"({"response": "Green."}, ""]})" "\n";

}  // namespace

TEST_F(AnnotateStage, AllCandidatesInOneRequestRetriesUnparseableRepliesAsNewRequestsAndCountsThem) {
  const auto server = judge_server(scripted_reply);
  const std::string spec = write("exp.yaml", stage("candidates: " + write("c.jsonl", kTwoRows), judge_spec(*server)));
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  auto m = all_stage_metrics()["annotate"];
  // Requests: ball, sky; then ball and sky again (attempt 2), sky once more (attempt 3).
  EXPECT_EQ(m["judge/sent"], 5);
  EXPECT_EQ(m["judge/unparseable"], 4);  // ball once, sky three times
  EXPECT_EQ(m["retries"], 3);
  EXPECT_EQ(m["requests_unscored"], 1);
  EXPECT_EQ(m["candidates_in"], 5);
  EXPECT_EQ(m["candidates_empty"], 1);
  EXPECT_EQ(m["candidates_scored"], 3);
  EXPECT_EQ(m["candidates_unparseable"], 2);
  EXPECT_EQ(m["rows_written"], 1);
  EXPECT_EQ(m["rows_without_scores"], 1);
  EXPECT_NEAR(m["mean/Helpfulness"], 7.0 / 3.0, 1e-12);  // (4 + 1 + 2) / 3, as the query prints it

  const std::vector<std::string> prompts = server->prompts();
  ASSERT_EQ(prompts.size(), 5u);
  EXPECT_TRUE(contains(prompts[0], "[Candidate 1]\nA red ball.\n[End of Candidate 1]\n\n[Candidate 2]\nA blue ball."));
  EXPECT_TRUE(contains(prompts[0], "[Candidate 3]\nSomething.\n[End of Candidate 3]"));
  EXPECT_TRUE(contains(prompts[1], "[Candidate 2]\nGreen.\n[End of Candidate 2]"));
  EXPECT_FALSE(contains(prompts[1], "[Candidate 3]"));  // the empty response is not shown
  EXPECT_EQ(prompts[2], prompts[0] + mmr::annotate::retry_note(1));
  EXPECT_EQ(prompts[4], prompts[1] + mmr::annotate::retry_note(2));

  const auto rows = scored_rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["id"], "ball");
  ASSERT_EQ(rows[0]["candidates"].size(), 3u);
  EXPECT_EQ(rows[0]["candidates"][1]["response"], "A blue ball.");
  EXPECT_EQ(rows[0]["candidates"][1]["scores"]["Correctness"], 0);
  EXPECT_EQ(rows[0]["candidates"][2]["scores"]["Helpfulness"], 2);

  // A rerun asks nothing: every attempt's request is in the cache, the unreadable ones too.
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(server->prompts().size(), 5u);
  m = all_stage_metrics()["annotate"];
  EXPECT_EQ(m["judge/cache_hits"], 5);
  EXPECT_EQ(m["candidates_scored"], 3);
}

TEST_F(AnnotateStage, NoRetriesLeavesTheCandidatesOfAnUnreadableReplyUnscored) {
  const auto server = judge_server(scripted_reply);
  const std::string spec = write("exp.yaml", stage("candidates: " + write("c.jsonl", kTwoRows) + ", max_retries: 0",
                                                   judge_spec(*server)));
  ASSERT_EQ(runner({spec}).status, 0);
  auto m = all_stage_metrics()["annotate"];
  EXPECT_EQ(m["judge/sent"], 2);
  EXPECT_EQ(m["retries"], 0);
  EXPECT_EQ(m["requests_unscored"], 2);
  EXPECT_EQ(m["rows_written"], 0);
}

TEST_F(AnnotateStage, PerCandidateFormAsksOneRequestPerCandidateWithTheOldRubric) {
  const auto server = judge_server([](const std::string& prompt) {
    return std::string("Helpfulness: ") + (contains(prompt, "Green.") ? "0" : "3") +
           "\nCorrectness: 3\nCoherence: 3\nComplexity: 1\nVerbosity: 2\n";
  });
  const std::string spec = write("exp.yaml", stage("candidates: " + write("c.jsonl", kTwoRows) +
                                                   ", request: per_candidate", judge_spec(*server)));
  ASSERT_EQ(runner({spec}).status, 0);
  auto m = all_stage_metrics()["annotate"];
  EXPECT_EQ(m["judge/sent"], 5);
  EXPECT_EQ(m["candidates_scored"], 5);
  EXPECT_EQ(m["retries"], 0);
  for (const std::string& p : server->prompts()) EXPECT_TRUE(contains(p, "Helpfulness: <0-4>")) << p;
  const auto rows = scored_rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["candidates"][1]["scores"]["Helpfulness"], 0);
}

TEST_F(AnnotateStage, APerCandidateRubricFileWithThePerPromptFormIsAnErrorNamingTheFile) {
  const auto server = judge_server(scripted_reply);
  const std::string rubric = write("my_rubric.txt", "Rate {response} for {question}.");
  const std::string spec = write("exp.yaml", stage("candidates: " + write("c.jsonl", kTwoRows) + ", rubric: " + rubric,
                                                   judge_spec(*server)));
  const ProcessResult run = runner({spec});
  EXPECT_NE(run.status, 0);
  const ProcessResult q = runner({"query", "SELECT error FROM trials WHERE error != ''", "--format", "json"});
  EXPECT_TRUE(contains(q.out, "rubric '" + rubric + "': {response} is the per-candidate placeholder")) << q.out;
  EXPECT_TRUE(contains(q.out, "request: per_candidate")) << q.out;
  EXPECT_TRUE(server->prompts().empty());
}

// LLaVA-RLHF's human-preference file as it is (a JSON array) → annotate → judge_agreement: the judge gives the
// candidate humans preferred 4s and the other 0s, so every attribute's difference has the label's sign (r = 1;
// worked out: pair 1 x = 4 - 0, y = +1; pair 2 x = 0 - 4, y = -1).
TEST_F(AnnotateStage, LlavaRlhfRowsAreAnnotatedAsTheyAreAndTheirPreferenceReachesJudgeAgreement) {
  const auto server = judge_server([](const std::string& prompt) {
    const int first = contains(prompt, "sausages") ? 4 : 0, second = 4 - first;  // pair 1: output_2 is wrong
    return "Reasoning.\n[Scores]\n" + line(1, first, first, first) + line(2, second, second, second);
  });
  const std::string pairs = std::string(MMR_ANNOTATE_TEST_DATA) + "/llava_rlhf_pairs.json";
  const std::string spec = write("exp.yaml", "name: fig3\nstages:\n"
      "  - {name: annotate, algorithm: annotate, candidates: " + pairs + ", judge: " + judge_spec(*server) + "}\n"
      "  - {name: agreement, benchmark: judge_agreement, scored: '${artifact:annotate/scored_candidates}'}\n");
  const ProcessResult run = runner({spec});
  ASSERT_EQ(run.status, 0) << run.err;
  const std::vector<std::string> prompts = server->prompts();
  ASSERT_EQ(prompts.size(), 2u);
  EXPECT_TRUE(contains(prompts[0], "[Question]\nWhat should visitors keep in mind when feeding the giraffe?\n"));
  EXPECT_FALSE(contains(prompts[0], "<image>"));
  EXPECT_TRUE(contains(prompts[1], "[Question]\nWhat separates the field from the viewer?\n"));

  const auto rows = scored_rows();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0]["id"], 245946);
  EXPECT_EQ(rows[0]["preference"], 1);
  EXPECT_EQ(rows[0]["hallucination"], true);
  EXPECT_EQ(rows[0]["question"], "What should visitors keep in mind when feeding the giraffe?");
  EXPECT_EQ(rows[0]["candidates"][1]["response"], "Giraffes eat meat, so bring some sausages.");
  EXPECT_EQ(rows[1]["output_2"]["value"], rows[1]["candidates"][1]["response"]);

  auto m = all_stage_metrics()["agreement"];
  EXPECT_EQ(m["n_pairs"], 2);
  EXPECT_DOUBLE_EQ(m["pearson/Helpfulness"], 1.0);
  EXPECT_DOUBLE_EQ(m["pearson/Verbosity"], 1.0);
}
