// MT-Bench scoring against hand-computed references (cross-checked with pandas), golden judge prompts built with
// Python's str.format, and FastChat's documented rating patterns (see ../scoring.h).
#include <gtest/gtest.h>

#include "core/api/error.h"
#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/mt_bench/scoring.h"
#include "plugins/benchmarks/mt_bench/tests/references.h"

namespace {

using namespace mmr::mt_bench;
using namespace mmr::benchmarks::testing;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mt_bench/";

// ---- show_result.py ----

TEST(MtBenchScoring, AveragesPerTurnAndOverallExcludingFailures) {
  // The references are derived in references.h.
  auto scores = score(read_judgments(kDir + "judgments_small.jsonl"), nullptr);
  ASSERT_EQ(scores.size(), 2u);
  EXPECT_EQ(scores[0].model, "other");  // best overall first
  EXPECT_DOUBLE_EQ(scores[0].turn_1->mean, 8.0);
  EXPECT_DOUBLE_EQ(scores[0].turn_2->mean, 7.5);
  EXPECT_DOUBLE_EQ(scores[0].overall->mean, 7.875);
  EXPECT_EQ(scores[0].n_duplicates, 1);
  EXPECT_EQ(scores[0].n_failed, 1);
  EXPECT_EQ(scores[1].model, "tiny-model");
  EXPECT_DOUBLE_EQ(scores[1].turn_1->mean, 8.0);
  EXPECT_EQ(scores[1].turn_1->n, 1);
  EXPECT_DOUBLE_EQ(scores[1].turn_2->mean, 4.5);
  EXPECT_DOUBLE_EQ(scores[1].overall->mean, 17.0 / 3);
  EXPECT_EQ(scores[1].n_judgments, 4);

  const mmr::MetricList m = to_metrics(scores);
  expect_metrics(m, references::kSmallScores);
  expect_counts(m, references::kSmallCounts);
}

TEST(MtBenchScoring, AveragesPerCategoryWithTheQuestionFile) {
  expect_metrics(score_files(kDir + "judgments_small.jsonl", kDir + "question.jsonl"), references::kSmallCategoryScores);
}

TEST(MtBenchScoring, FiltersByModelList) {
  ScoreOptions o;
  o.model_list = {"tiny-model"};
  mmr::MetricList m = score_files(kDir + "judgments_small.jsonl", "", o);
  EXPECT_DOUBLE_EQ(metric(m, "tiny-model/overall"), 17.0 / 3);
  for (const auto& v : m) EXPECT_EQ(v.name.rfind("other/", 0), std::string::npos) << v.name;
}

TEST(MtBenchScoring, MeansWithKahanSummationAsPandas) {
  // pandas 1.5.3: DataFrame({'model': ['a']*3, 'score': [1e16, 1, 1]}).groupby('model').mean() == 3333333333333334.0
  // (= (1e16 + 2) / 3), while a plain left-to-right sum gives 1e16 / 3 = 3333333333333333.5.
  EXPECT_EQ(kahan_mean({1e16, 1.0, 1.0}), 3333333333333334.0);
}

TEST(MtBenchScoring, RejectsBadJudgmentLines) {
  const std::string bad = write_temp("bad.jsonl", "{\"question_id\": 81, \"model\": \"m\", \"score\": 8, \"turn\": 1}\n"
                                                  "{\"question_id\": 81, \"model\": \"m\", \"score\": 8, \"turn\": 3}\n");
  expect_data_error([&] { read_judgments(bad); }, {bad + ":2:", "\"turn\" to be 1 or 2"});
  const std::string malformed = write_temp("malformed.jsonl", "{\"question_id\": 81,\n");
  expect_data_error([&] { read_judgments(malformed); }, {malformed + ":1:", "malformed JSON"});
  const std::string noscore = write_temp("noscore.jsonl", "{\"question_id\": 81, \"model\": \"m\", \"turn\": 1}\n");
  expect_data_error([&] { read_judgments(noscore); }, {noscore + ":1:", "missing key \"score\""});
  const std::string unknown = write_temp("unknown.jsonl", "{\"question_id\": 5, \"model\": \"m\", \"score\": 8, \"turn\": 1}\n");
  expect_data_error([&] { score_files(unknown, kDir + "question.jsonl"); }, {unknown, "question_id 5", "not in the question file"});
}

// ---- judge prompts ----

TEST(MtBenchScoring, PicksTheOfficialJudgePrompt) {
  EXPECT_EQ(judge_prompt_name("writing", false), "single-v1");
  EXPECT_EQ(judge_prompt_name("math", false), "single-math-v1");
  EXPECT_EQ(judge_prompt_name("reasoning", true), "single-math-v1-multi-turn");
  EXPECT_EQ(judge_prompt_name("coding", false), "single-math-v1");
  EXPECT_EQ(judge_prompt_name("stem", true), "single-v1-multi-turn");
  EXPECT_DOUBLE_EQ(temperature_for_category("writing"), 0.7);
  EXPECT_DOUBLE_EQ(temperature_for_category("stem"), 0.1);
  EXPECT_DOUBLE_EQ(temperature_for_category("coding"), 0.0);
}

TEST(MtBenchScoring, BuildsJudgePromptsAsPythonFormat) {
  // The expected files were written by python3 with str.format, as run_judge_single calls it
  // (see tests/data/benchmarks/README.md). The answer "Aloha from {Hawaii}!" checks that braces in values stay.
  const auto prompts = read_judge_prompts(kDir + "judge_prompts.jsonl");
  const auto questions = read_questions(kDir + "question.jsonl");
  const auto answers = read_model_answers(kDir + "model_answer_small.jsonl");
  const auto refs = read_model_answers(kDir + "reference_answer_gpt-4.jsonl");
  auto find_q = [&](int64_t id) { return *std::find_if(questions.begin(), questions.end(), [&](auto& q) { return q.question_id == id; }); };
  auto find_r = [&](int64_t id) { return &*std::find_if(refs.begin(), refs.end(), [&](auto& r) { return r.question_id == id; }); };

  JudgeRequest r81 = build_judge_request(prompts, find_q(81), answers[0], nullptr, 1);
  EXPECT_EQ(r81.prompt_name, "single-v1");
  EXPECT_EQ(r81.system_prompt, "You are a helpful assistant.");
  EXPECT_EQ(r81.user_prompt, read_text(kDir + "expected_judge_prompt_q81_turn1.txt"));

  JudgeRequest r111 = build_judge_request(prompts, find_q(111), answers[1], find_r(111), 2);
  EXPECT_EQ(r111.prompt_name, "single-math-v1-multi-turn");
  EXPECT_EQ(r111.turn, 2);
  EXPECT_EQ(r111.user_prompt, read_text(kDir + "expected_judge_prompt_q111_turn2.txt"));

  expect_data_error([&] { build_judge_request(prompts, find_q(111), answers[1], nullptr, 1); }, {"question 111", "reference"});
}

TEST(MtBenchScoring, FormatsTemplatesLikePythonStrFormat) {
  EXPECT_EQ(format_template("{a} {{b}} {a}", {{"a", "x{y}"}}), "x{y} {b} x{y}");
  expect_data_error([] { format_template("{missing}", {}); }, {"{missing}"});
  expect_data_error([] { format_template("{a!r}", {{"a", "x"}}); }, {"unsupported"});
  expect_data_error([] { format_template("a } b", {}); }, {"single '}'"});
}

// ---- rating parsing ----

TEST(MtBenchScoring, ParsesDoubleBracketRatingFirst) {
  EXPECT_EQ(parse_rating("Explanation [5] ... Rating: [[8]]"), 8);
  EXPECT_EQ(parse_rating("Rating: [[7.5]]"), 7.5);
  EXPECT_EQ(parse_rating("[[8.]]"), 8);
  EXPECT_EQ(parse_rating("[[10]] and later [[2]]"), 10);
}

TEST(MtBenchScoring, FallsBackToSingleBrackets) {
  EXPECT_EQ(parse_rating("Rating: [6]"), 6);
  EXPECT_EQ(parse_rating("[[rating]] then [[ 9 ]] then [3]"), 3);
  EXPECT_EQ(parse_rating("[[8]"), 8);  // no "[[x]]", but "[8]" from the second bracket
}

TEST(MtBenchScoring, ReturnsMinusOneWithoutARating) {
  EXPECT_EQ(parse_rating("I would rate it 8/10."), -1);
  EXPECT_EQ(parse_rating("[[.5]]"), -1);   // \d+ needs a digit before the dot
  EXPECT_EQ(parse_rating("[[-3]]"), -1);
  EXPECT_EQ(parse_rating("[[08]]"), -1);   // ast.literal_eval("08") raises
  EXPECT_EQ(parse_rating(""), -1);
}

// ---- writers ----

TEST(MtBenchScoring, WritesJudgmentsThatScoreBack) {
  const auto prompts = read_judge_prompts(kDir + "judge_prompts.jsonl");
  const auto questions = read_questions(kDir + "question.jsonl");
  const auto answers = read_model_answers(kDir + "model_answer_small.jsonl");
  JudgeRequest r = build_judge_request(prompts, questions[0], answers[0], nullptr, 1);
  const std::string text = judgment_line(81, "m", "gpt-4", r, "Good. [[9]]", parse_rating("Good. [[9]]"), 1.5) + "\n" +
                           judgment_line(81, "m", "gpt-4", r, "???", parse_rating("???"), 1.5) + "\n";
  const std::string path = write_temp("written.jsonl", text);
  EXPECT_NE(text.find("\"judge\":[\"gpt-4\",\"single-v1\"]"), std::string::npos);
  EXPECT_NE(text.find("\"score\":9,\"turn\":1"), std::string::npos);
  EXPECT_NE(text.find("\"score\":-1,"), std::string::npos);
  mmr::MetricList m = score_files(path);
  EXPECT_DOUBLE_EQ(metric(m, "m/overall"), 9.0);
  EXPECT_DOUBLE_EQ(metric(m, "m/n_failed"), 1.0);
}

TEST(MtBenchScoring, WritesModelAnswersInFastChatFormat) {
  const std::string path = write_temp("answers.jsonl", model_answers_jsonl({{81, "id81", "mine", {"one", "two"}, 2.5}}));
  EXPECT_EQ(read_text(path), "{\"question_id\":81,\"answer_id\":\"id81\",\"model_id\":\"mine\",\"choices\":[{\"index\":0,"
                             "\"turns\":[\"one\",\"two\"]}],\"tstamp\":2.5}\n");
  auto back = read_model_answers(path);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].turns[1], "two");
}

}  // namespace
