// LLaVA-Bench scoring against hand-computed references, a golden prompt built with the official f-string layout,
// and the documented parse_score rule (see ../scoring.h).
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "core/api/error.h"
#include "plugins/benchmarks/llava_bench/scoring.h"

namespace {

using namespace mmr::llava_bench;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/llava_bench/";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "llavabench_" + name;
  std::ofstream(path) << text;
  return path;
}

double metric(const mmr::MetricList& list, const std::string& name) {
  for (const auto& m : list) {
    if (m.name == name) return m.value;
  }
  ADD_FAILURE() << "no metric " << name;
  return -1;
}

template <typename Fn>
void expect_data_error(Fn fn, std::initializer_list<std::string> pieces) {
  try {
    fn();
    ADD_FAILURE() << "expected mmr::DataError";
  } catch (const mmr::DataError& e) {
    for (const auto& p : pieces) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

// ---- summarize_gpt_review.py ----

TEST(LlavaBenchScoring, SummarizesPerCategoryAndAll) {
  // conv: ref (8+7)/2 = 7.5, model (7+5)/2 = 6.0 -> 6/7.5*100 = 80.0
  // detail: ref (9+10)/2 = 9.5, model (6+7)/2 = 6.5 -> 68.421... -> 68.4
  // complex: the failed review [-1, -1] is averaged in: ref (8-1)/2 = 3.5, model 3.5 -> 100.0
  // all: ref 41/6 = 6.8333 -> 6.833, model 32/6 = 5.3333 -> 5.333; 5.333/6.833*100 = 78.048... -> 78.0
  ReviewSummary s = summarize_file(kDir + "reviews_small.jsonl");
  EXPECT_EQ(s.config, "reviews_small");
  ASSERT_EQ(s.categories.size(), 4u);
  EXPECT_EQ(s.categories[0].name, "all");  // Python's sorted() order
  EXPECT_EQ(s.categories[1].name, "llava_bench_complex");
  EXPECT_EQ(s.categories[2].name, "llava_bench_conv");
  EXPECT_EQ(s.categories[3].name, "llava_bench_detail");
  EXPECT_DOUBLE_EQ(s.categories[0].reference_mean, 6.833);
  EXPECT_DOUBLE_EQ(s.categories[0].model_mean, 5.333);
  EXPECT_DOUBLE_EQ(s.categories[0].relative, 78.0);
  EXPECT_EQ(s.categories[0].n, 6);
  EXPECT_EQ(s.categories[0].n_failed, 1);
  EXPECT_DOUBLE_EQ(s.categories[1].relative, 100.0);
  EXPECT_DOUBLE_EQ(s.categories[2].relative, 80.0);
  EXPECT_DOUBLE_EQ(s.categories[3].relative, 68.4);

  mmr::MetricList m = to_metrics(s);
  EXPECT_DOUBLE_EQ(metric(m, "all"), 78.0);
  EXPECT_DOUBLE_EQ(metric(m, "llava_bench_conv"), 80.0);
  EXPECT_DOUBLE_EQ(metric(m, "llava_bench_conv/reference"), 7.5);
  EXPECT_DOUBLE_EQ(metric(m, "llava_bench_complex/n_failed"), 1);
  // x10 and rounded to 1 place: round(6.833 * 10, 1) = 68.3, round(5.333 * 10, 1) = 53.3.
  EXPECT_DOUBLE_EQ(metric(m, "all/reference_score"), 68.3);
  EXPECT_DOUBLE_EQ(metric(m, "all/model_score"), 53.3);
}

TEST(LlavaBenchScoring, RoundsTheMeansBeforeTheRatio) {
  // tuples [1,2], [1,2], [2,1]: means 4/3 and 5/3, rounded to 1.333 and 1.667 first;
  // 1.667/1.333*100 = 125.0937... -> 125.1 (the unrounded ratio 125.0 would give 125.0).
  ReviewSummary s = summarize_file(kDir + "reviews_rounding.jsonl");
  EXPECT_DOUBLE_EQ(s.categories[0].relative, 125.1);
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
  // Without question 4 (the failed review): complex = [8, 8] -> 100.0;
  // all: ref (8+9+8+7+10)/5 = 8.4, model (7+6+8+5+7)/5 = 6.6 -> 78.571... -> 78.6
  ReviewSummary s = summarize_file(kDir + "reviews_small.jsonl", {4});
  EXPECT_EQ(s.categories[0].n, 5);
  EXPECT_DOUBLE_EQ(s.categories[0].relative, 78.6);
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
  const std::string path = ::testing::TempDir() + "llavabench_written.jsonl";
  {
    std::ofstream out(path);
    ReviewRequest r;
    r.id = 1;
    r.question_id = 0;
    r.answer1_id = "0";
    r.answer1_id_is_int = true;
    r.answer2_id = "m";
    r.category = "llava_bench_conv";
    out << review_line(r, "6 3", parse_score("6 3")) << "\n";
  }
  EXPECT_DOUBLE_EQ(score_file(path)[0].value, 50.0);  // "all": 3/6*100
  EXPECT_NE(read_text(path).find("\"answer1_id\":0,"), std::string::npos);
}

TEST(LlavaBenchScoring, WritesAnswersInModelVqaFormat) {
  const std::string path = ::testing::TempDir() + "llavabench_answers.jsonl";
  write_answers(path, {{3, "Describe.", "A \"cat\".", "id3", "m"}});
  EXPECT_EQ(read_text(path), "{\"question_id\":3,\"prompt\":\"Describe.\",\"text\":\"A \\\"cat\\\".\",\"answer_id\":\"id3\","
                             "\"model_id\":\"m\",\"metadata\":{}}\n");
  EXPECT_EQ(read_answers(path)[0].text, "A \"cat\".");
}

}  // namespace
