// LLaVA-Bench scoring against hand-computed references, a golden prompt built with the official f-string layout,
// and the documented parse_score rule (see ../scoring.h).
#include <gtest/gtest.h>

#include "core/api/error.h"
#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/llava_bench/scoring.h"
#include "plugins/benchmarks/llava_bench/tests/references.h"

namespace {

using namespace mmr::llava_bench;
using namespace mmr::benchmarks::testing;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/llava_bench/";

// ---- summarize_gpt_review.py ----

TEST(LlavaBenchScoring, SummarizesPerCategoryAndAll) {
  // The references are derived in references.h.
  ReviewSummary s = summarize_file(kDir + "reviews_small.jsonl");
  EXPECT_EQ(s.config, "reviews_small");
  ASSERT_EQ(s.categories.size(), 4u);
  // Python's sorted() order.
  expect_names(s.categories, {"all", "llava_bench_complex", "llava_bench_conv", "llava_bench_detail"});
  EXPECT_DOUBLE_EQ(s.categories[0].reference_mean, 6.833);
  EXPECT_DOUBLE_EQ(s.categories[0].model_mean, 5.333);
  EXPECT_DOUBLE_EQ(s.categories[0].relative, 78.0);
  EXPECT_EQ(s.categories[0].n, 6);
  EXPECT_EQ(s.categories[0].n_failed, 1);
  EXPECT_DOUBLE_EQ(s.categories[1].relative, 100.0);
  EXPECT_DOUBLE_EQ(s.categories[2].relative, 80.0);
  EXPECT_DOUBLE_EQ(s.categories[3].relative, 68.4);

  const mmr::MetricList m = to_metrics(s);
  expect_metrics(m, references::kSmallScores);
  expect_counts(m, references::kSmallCounts);
}

TEST(LlavaBenchScoring, RoundsTheMeansBeforeTheRatio) {
  ReviewSummary s = summarize_file(kDir + "reviews_rounding.jsonl");
  EXPECT_DOUBLE_EQ(s.categories[0].relative, references::kRoundingAll);
}

TEST(LlavaBenchScoring, PythonRoundIsCorrectlyRoundedHalfEven) {
  // Python: round(2.675, 2) == 2.67 (the float is below the tie), round(0.125, 2) == 0.12 (exact tie -> even),
  // round(68.42105263157895, 1) == 68.4, round(72.75, 1) == 72.8.
  EXPECT_DOUBLE_EQ(python_round(2.675, 2), 2.67);
  EXPECT_DOUBLE_EQ(python_round(0.125, 2), 0.12);
  EXPECT_DOUBLE_EQ(python_round(68.42105263157895, 1), 68.4);
  EXPECT_DOUBLE_EQ(python_round(72.75, 1), 72.8);
}

TEST(LlavaBenchScoring, SkipsIgnoredQuestions) {
  ReviewSummary s = summarize_file(kDir + "reviews_small.jsonl", {4});
  EXPECT_EQ(s.categories[0].n, 5);
  EXPECT_DOUBLE_EQ(s.categories[0].relative, references::kSmallAllIgnoring4);
}

TEST(LlavaBenchScoring, LinesWithoutCategoryCountOnlyInAll) {
  // No category: "tuple" if present, else "score". ref (8+6)/2 = 7, model (6+6)/2 = 6 -> 85.714... -> 85.7
  const std::string path = write_temp("nocat.jsonl", "{\"question_id\": 1, \"score\": [8, 6]}\n"
                                                     "{\"question_id\": 2, \"tuple\": [6, 6], \"score\": [1, 1]}\n");
  ReviewSummary s = summarize_file(path);
  ASSERT_EQ(s.categories.size(), 1u);
  EXPECT_DOUBLE_EQ(s.categories[0].relative, 85.7);
}

TEST(LlavaBenchScoring, NamesTheConfigAsTheScriptPrintsIt) {
  EXPECT_EQ(config_name("/x/reviews/llava-v1.5-13b-eval1.jsonl"), "llava-v1.5-13b-eval1");
  EXPECT_EQ(config_name("gpt4_text_llava.jsonl"), "llava");
}

TEST(LlavaBenchScoring, MalformedReviewNamesFileAndLine) {
  const std::string path = write_temp("bad.jsonl", "{\"category\": \"c\", \"tuple\": [1, 2]}\n\n{\"category\": \"c\", \"tuple\": [1, 2]\n");
  expect_data_error([&] { read_reviews(path); }, {path + ":3:", "malformed JSON"});
  const std::string three = write_temp("three.jsonl", "{\"category\": \"c\", \"tuple\": [1, 2, 3]}\n");
  expect_data_error([&] { read_reviews(three); }, {three + ":1:", "[reference_score, model_score]"});
  const std::string none = write_temp("none.jsonl", "{\"category\": \"c\", \"score\": [1, 2]}\n");
  expect_data_error([&] { read_reviews(none); }, {none + ":1:", "missing key \"tuple\""});
}

// ---- parse_score ----

TEST(LlavaBenchScoring, ParsesTwoScoresFromTheFirstLine) {
  EXPECT_EQ(parse_score("8 9\nAssistant 1 was..."), (std::array<double, 2>{8, 9}));
  EXPECT_EQ(parse_score("7.5,8"), (std::array<double, 2>{7.5, 8}));   // ',' -> ' '
  EXPECT_EQ(parse_score("8 9\r\nmore"), (std::array<double, 2>{8, 9}));  // float() strips the '\r'
}

TEST(LlavaBenchScoring, ReturnsMinusOneWhenNotExactlyTwoFloats) {
  const std::array<double, 2> failed{-1, -1};
  EXPECT_EQ(parse_score("8, 9"), failed);  // "8  9" splits into 3 pieces
  EXPECT_EQ(parse_score("8 9 "), failed);
  EXPECT_EQ(parse_score("Assistant 1: 8"), failed);
  EXPECT_EQ(parse_score("eight nine"), failed);
  EXPECT_EQ(parse_score(""), failed);
}

// ---- review prompts ----

TEST(LlavaBenchScoring, BuildsTheReviewPromptAsTheOfficialScript) {
  // expected_review_prompt_q0.txt was written by python3 with eval_gpt_review_bench.py's f-string layout
  // ('\n'.join over the caption string, so one character per line); see tests/data/benchmarks/README.md.
  const auto rules = read_rules(kDir + "rule.json");
  const auto questions = read_questions(kDir + "questions.jsonl");
  const auto context = read_context(kDir + "context.jsonl");
  const auto reference = read_answers(kDir + "answers_gpt4.jsonl");
  const std::string got = build_review_prompt(rules.at("llava_bench_conv"), context.at(questions[0].image),
                                              questions[0].text, reference[0].text, "It is Diamond Head in Hawaii.");
  EXPECT_EQ(got, read_text(kDir + "expected_review_prompt_q0.txt"));
}

TEST(LlavaBenchScoring, JoinsCaptionCodePointsNotBytes) {
  EXPECT_EQ(join_caption("\"Hi!\""), "H\ni\n!");
  EXPECT_EQ(join_caption("\"caf\\u00e9\""), "c\na\nf\n\xc3\xa9");
  EXPECT_EQ(join_caption("[\"one\", \"two\"]"), "one\ntwo");
  EXPECT_EQ(join_caption("\"Hi!\"", /*join_string_characters=*/false), "Hi!");
}

TEST(LlavaBenchScoring, BuildsOneRequestPerQuestion) {
  const auto questions = read_questions(kDir + "questions.jsonl");
  const auto reference = read_answers(kDir + "answers_gpt4.jsonl");
  auto requests = build_review_requests(questions, read_context(kDir + "context.jsonl"), reference, reference,
                                        read_rules(kDir + "rule.json"));
  ASSERT_EQ(requests.size(), 60u);  // PROVENANCE.md: 60 questions
  EXPECT_EQ(requests[0].id, 1);
  EXPECT_EQ(requests[0].category, "llava_bench_conv");
  EXPECT_EQ(requests[1].category, "llava_bench_detail");
  EXPECT_EQ(requests[0].answer1_id, "TeyehNxHw5j8naXfEWaxWd");
  const std::string line = review_line(requests[0], "8 9\nfine", parse_score("8 9\nfine"));
  EXPECT_EQ(line.substr(0, 80), R"({"id":1,"question_id":0,"answer1_id":"TeyehNxHw5j8naXfEWaxWd","answer2_id":"Teye)");
  EXPECT_NE(line.find(R"("tuple":[8.0,9.0]})"), std::string::npos) << line;

  auto shifted = reference;
  shifted.erase(shifted.begin());
  shifted.push_back(reference.front());
  expect_data_error([&] {
    build_review_requests(questions, read_context(kDir + "context.jsonl"), reference, shifted,
                          read_rules(kDir + "rule.json"));
  }, {"row 1 pairs question_id 0"});
}

TEST(LlavaBenchScoring, WrittenReviewLinesScoreBack) {
  ReviewRequest r;
  r.id = 1;
  r.question_id = 0;
  r.answer1_id = "0";
  r.answer1_id_is_int = true;
  r.answer2_id = "m";
  r.category = "llava_bench_conv";
  const std::string path = write_temp("written.jsonl", review_line(r, "6 3", parse_score("6 3")) + "\n");
  EXPECT_DOUBLE_EQ(score_file(path)[0].value, 50.0);  // "all": 3/6*100
  EXPECT_NE(read_text(path).find("\"answer1_id\":0,"), std::string::npos);
}

TEST(LlavaBenchScoring, WritesAnswersInModelVqaFormat) {
  const std::string path = write_temp("answers.jsonl", answers_jsonl({{3, "Describe.", "A \"cat\".", "id3", "m"}}));
  EXPECT_EQ(read_text(path), "{\"question_id\":3,\"prompt\":\"Describe.\",\"text\":\"A \\\"cat\\\".\",\"answer_id\":\"id3\","
                             "\"model_id\":\"m\",\"metadata\":{}}\n");
  EXPECT_EQ(read_answers(path)[0].text, "A \"cat\".");
}

}  // namespace
