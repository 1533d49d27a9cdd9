// MMBench scoring against the official rules as PROVENANCE.md documents them and hand-computed references
// (see ../scoring.h and references.h).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "core/api/error.h"
#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/mmbench/scoring.h"
#include "plugins/benchmarks/mmbench/tests/references.h"

namespace {

using namespace mmr::mmbench;
using namespace mmr::benchmarks::testing;
namespace ref = mmr::mmbench::references;

const std::string kDir = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/mmbench/";
const std::string kData = kDir + "dev_small.tsv";
const std::string kPredictions = kDir + "predictions_small.tsv";

OptionList abcd() { return {{'A', "oil painting"}, {'B', "sketch"}, {'C', "photograph"}, {'D', "cartoon"}}; }
constexpr auto k2024 = RuleVersion::k2024_01;
constexpr auto k2023 = RuleVersion::k2023_11;

std::vector<Row> small_rows() {
  return merge(read_rows(kPredictions, true), kPredictions, read_rows(kData, false), kData);
}

// ---- rule extraction (can_infer) ----

TEST(MmBenchRules, TakesASingleStandaloneLetter) {
  EXPECT_EQ(can_infer("C", abcd(), k2024), 'C');
  EXPECT_EQ(can_infer("The answer is B.", abcd(), k2024), 'B');
  EXPECT_EQ(can_infer("(D) cartoon", abcd(), k2024), 'D');
  EXPECT_EQ(can_infer("[A]", abcd(), k2024), 'A');
  EXPECT_EQ(can_infer("Answer:C", abcd(), k2024), 'C');   // ':' becomes a space
  EXPECT_EQ(can_infer("**B**", abcd(), k2024), 'B');      // '*' too
}

TEST(MmBenchRules, TwoLettersAreUnresolvedUnlessOneOptionTextMatches) {
  EXPECT_EQ(can_infer("A or B", abcd(), k2024), std::nullopt);
  EXPECT_EQ(can_infer("A or B, the sketch", abcd(), k2024), 'B');  // falls through to the text rule
}

TEST(MmBenchRules, LettersInsideWordsAndLowerCaseLettersDoNotCount) {
  EXPECT_EQ(can_infer("Because", abcd(), k2024), std::nullopt);
  EXPECT_EQ(can_infer("a", abcd(), k2024), std::nullopt);
  EXPECT_EQ(can_infer("B-", abcd(), k2024), std::nullopt);  // '-' is not one of the replaced characters
}

TEST(MmBenchRules, FallsBackToASingleContainedOptionTextIgnoringCase) {
  EXPECT_EQ(can_infer("It is a Photograph of a street", abcd(), k2024), 'C');
  EXPECT_EQ(can_infer("an oil painting or a sketch", abcd(), k2024), std::nullopt);  // two texts
  EXPECT_EQ(can_infer("a watercolour", abcd(), k2024), std::nullopt);
}

TEST(MmBenchRules, The2024RulesCheckOnlyTheRowsLettersAndReadZ) {
  const OptionList two = {{'A', "yes"}, {'B', "no"}};
  EXPECT_EQ(can_infer("C", two, k2024), std::nullopt);
  EXPECT_EQ(can_infer("C", two, k2023), 'C');  // llm_fastroll_1107.py checks A-E whatever the row has
  EXPECT_EQ(can_infer("E", abcd(), k2023), 'E');
  EXPECT_EQ(can_infer("Z", abcd(), k2024), 'Z');
  EXPECT_EQ(can_infer("Z", abcd(), k2023), std::nullopt);
  EXPECT_EQ(can_infer("A Z", abcd(), k2024), 'A');  // Z only when no option letter occurs
}

TEST(MmBenchRules, RefusalsAreTheNoMatchLetterAndApiFailuresUnresolved) {
  EXPECT_EQ(can_infer("Sorry, I can't help with images of people yet.", abcd(), k2024), 'Z');
  EXPECT_EQ(can_infer("Cannot determine the answer. A", abcd(), k2023), 'E');
  EXPECT_EQ(can_infer("Failed to obtain answer via API. A", abcd(), k2024), std::nullopt);
}

// ---- the choice-extractor prompt ----

TEST(MmBenchJudgePrompt, FillsTheOfficialTemplateWithQuestionOptionsAndPrediction) {
  const std::string tmpl = read_text(kDir + "choice_extractor_prompt_en.txt");
  const std::string p = extractor_prompt(tmpl, "Is the cat on the left?", {{'A', "no"}, {'B', "yes"}}, "No, not yes");
  // The template's last example, filled as Python's str.format fills it (the template adds "?" after the question).
  const std::string tail = "Example 3: \nQuestion: Is the cat on the left??\nOptions: There are several options: \n"
                           "A. no\nB. yes\n\nAnswer: No, not yes\nYour output: ";
  ASSERT_GE(p.size(), tail.size());
  EXPECT_EQ(p.substr(p.size() - tail.size()), tail);
  EXPECT_EQ(p.substr(0, 50), tmpl.substr(0, 50));
  expect_data_error([] { extractor_prompt("only {} and {}", "q", {}, "p"); }, {"expected 3 '{}' slots", "found 2"});
}

// ---- reading the TSV ----

TEST(MmBenchTsv, ReadsTheLegacyDevColumnsQuotedCellsAndMissingOptions) {
  const std::vector<Row> rows = read_rows(kData, false);
  ASSERT_EQ(rows.size(), 14u);
  EXPECT_EQ(rows[1].index, 1);
  EXPECT_EQ(rows[1].hint, "Look at the animals.");
  ASSERT_EQ(rows[1].options.size(), 2u);  // C and D are empty: missing
  EXPECT_EQ(rows[1].l2_category, "finegrained_perception (instance-level)");
  EXPECT_EQ(rows[0].hint, "");
  EXPECT_EQ(rows[4].question, "Which animal is \"it\"?");  // "" inside a quoted cell
  EXPECT_EQ(rows[5].index, 1000000);
  EXPECT_EQ(rows[5].answer, "B");
  EXPECT_FALSE(rows[0].has_prediction);
  const std::vector<Row> predictions = read_rows(kPredictions, true);
  EXPECT_EQ(predictions[7].prediction, "(D)\nphotograph");  // a quoted cell with a line break
  EXPECT_EQ(predictions[8].line, 11);                       // the next row starts a line later
}

TEST(MmBenchTsv, MissingCellsAreReadAsPandasReadsThem) {
  EXPECT_TRUE(is_pandas_na(""));
  EXPECT_TRUE(is_pandas_na("NaN"));
  EXPECT_TRUE(is_pandas_na("N/A"));
  EXPECT_FALSE(is_pandas_na("None"));  // pandas 1.x, as the 2023-24 evaluators ran; pandas 2.0 added it
  EXPECT_FALSE(is_pandas_na("none"));
  const std::string path = write_temp("na.tsv", "index\tprediction\tanswer\tA\tB\tC\n7\t\tA\tx\tN/A\ty\n");
  const std::vector<Row> rows = read_rows(path, true);
  EXPECT_EQ(rows[0].prediction, "nan");  // the evaluator's str(NaN)
  ASSERT_EQ(rows[0].options.size(), 2u);  // B is missing; C still counts, as build_choices skips only B
  EXPECT_EQ(rows[0].options[1].letter, 'C');
}

TEST(MmBenchTsv, BadRowsNameTheFileAndLine) {
  expect_data_error([] { read_rows(write_temp("idx.tsv", "index\tprediction\n1\tA\nx1\tB\n"), true); },
                    {"idx.tsv:3:", "index 'x1'"});
  expect_data_error([] { read_rows(write_temp("nopred.tsv", "index\tanswer\n1\tA\n"), true); },
                    {"nopred.tsv:1:", "no 'prediction' column"});
  expect_data_error([] { read_rows(write_temp("wide.tsv", "index\tprediction\n1\tA\tB\n"), true); },
                    {"wide.tsv:2:", "3 cells", "2 columns"});
  expect_data_error([] { read_rows(write_temp("quote.tsv", "index\tprediction\n1\t\"A\n"), true); },
                    {"quote.tsv:2:", "not closed"});
  EXPECT_THROW(read_rows(kDir + "no_such.tsv", true), mmr::IoError);
}

TEST(MmBenchTsv, MergeTakesMissingColumnsFromTheDataAndRejectsADifferentAnswer) {
  const std::vector<Row> rows = small_rows();
  EXPECT_EQ(rows[0].category, "image_style");
  EXPECT_EQ(rows[1].hint, "Look at the animals.");
  const std::string bad = write_temp("bad_answer.tsv", "index\tprediction\tanswer\n1000000\tB\tC\n");
  expect_data_error([&] { merge(read_rows(bad, true), bad, read_rows(kData, false), kData); },
                    {"bad_answer.tsv:2:", "index 1000000", "answer 'C'", "says 'B'"});
  const std::string unknown = write_temp("unknown.tsv", "index\tprediction\n9\tB\n");
  expect_data_error([&] { merge(read_rows(unknown, true), unknown, read_rows(kData, false), kData); },
                    {"unknown.tsv:2:", "index 9 is not in"});
}

// ---- circular evaluation ----

TEST(MmBenchScoring, AQuestionCountsOnlyIfEveryPassIsRight) {
  const ScoreResult r = score(small_rows(), kPredictions, {});
  const mmr::MetricList m = to_metrics(r, false);
  expect_metrics(m, ref::kSmallScores);
  expect_counts(m, ref::kSmallCounts);
  ASSERT_EQ(r.verdicts.size(), 5u);
  EXPECT_TRUE(r.verdicts[0].hit);
  EXPECT_EQ(r.verdicts[2].how, "rule");  // q2: its second pass is wrong
  EXPECT_FALSE(r.verdicts[2].hit);
  EXPECT_EQ(r.verdicts[3].how, "unresolved");
  expect_names(r.l2, {"AR", "CP", "FP-S", "LR"});  // sorted by the full l2-category name, then abbreviated
}

TEST(MmBenchScoring, The2023RulesCountTheLetterEAsAnAnswer) {
  ScoreOptions options;
  options.rules = k2023;
  EXPECT_DOUBLE_EQ(score(small_rows(), kPredictions, options).overall.percent(), ref::kSmall2023Overall);
}

TEST(MmBenchScoring, WithoutTheDataFileThereAreNoAbilityScores) {
  const ScoreResult r = score(read_rows(kPredictions, true), kPredictions, {});
  EXPECT_DOUBLE_EQ(r.overall.percent(), 40.0);
  EXPECT_TRUE(r.l2.empty());
  EXPECT_TRUE(r.categories.empty());
}

TEST(MmBenchScoring, TheJudgeGetsTheUnresolvedPassesOfUndecidedQuestionsInIndexOrder) {
  const std::string tmpl = read_text(kDir + "choice_extractor_prompt_en.txt");
  std::vector<std::vector<std::string>> rounds;
  ScoreOptions options;
  options.prompt_template = tmpl;
  options.ask = [&](const std::vector<std::string>& prompts) {
    rounds.push_back(prompts);
    std::vector<std::string> replies;
    for (const auto& p : prompts) {
      if (p.find("Answer: No, not yes\n") != std::string::npos) replies.push_back("B");
      else if (p.find("Answer: B C\n") != std::string::npos) replies.push_back("The answer is B");
      else if (p.find("Answer: It could be A or C\n") != std::string::npos) replies.push_back("Z");
      else replies.push_back("?");
    }
    return replies;
  };
  const ScoreResult r = score(small_rows(), kPredictions, options);
  // Round 1: q1's second pass and q3's first; round 2: q3's second (its first was right). q2 is wrong by the
  // rules, so its unresolved third pass is never sent.
  ASSERT_EQ(rounds.size(), 2u);
  ASSERT_EQ(rounds[0].size(), 2u);
  EXPECT_NE(rounds[0][0].find("Question: Is the cat on the left??\nOptions: There are several options: \nA. no\n"
                              "B. yes\n\nAnswer: No, not yes\nYour output: "), std::string::npos);
  EXPECT_NE(rounds[0][1].find("Answer: B C\n"), std::string::npos);
  ASSERT_EQ(rounds[1].size(), 1u);
  EXPECT_NE(rounds[1][0].find("Answer: It could be A or C\n"), std::string::npos);
  EXPECT_DOUBLE_EQ(r.overall.percent(), ref::kSmallWithJudgeOverall);
  EXPECT_EQ(r.judge_requests, 3);
  EXPECT_EQ(r.judge_resolved_rows, 3);
  EXPECT_EQ(r.unresolved_rows, 0);
  EXPECT_EQ(r.verdicts[1].how, "judge");
  EXPECT_TRUE(r.verdicts[1].hit);
  EXPECT_FALSE(r.verdicts[3].hit);  // the judge's Z for a pass whose answer is A
}

TEST(MmBenchScoring, AJudgeReplyTheRulesCannotReadLeavesThePassUnresolvedAndCounted) {
  ScoreOptions options;
  options.prompt_template = read_text(kDir + "choice_extractor_prompt_en.txt");
  options.ask = [](const std::vector<std::string>& prompts) {
    return std::vector<std::string>(prompts.size(), "Unclear.");
  };
  const ScoreResult r = score(small_rows(), kPredictions, options);
  EXPECT_EQ(r.judge_requests, 2);  // one round: both replies unreadable, no second round
  EXPECT_EQ(r.judge_unparseable, 2);
  EXPECT_EQ(r.unresolved_questions, 2);
  EXPECT_EQ(r.unresolved_rows, 3);
  EXPECT_DOUBLE_EQ(r.overall.percent(), 40.0);
}

TEST(MmBenchScoring, DuplicateIndexesAndPassesWithoutTheirQuestionAreErrors) {
  const std::string dup = write_temp("dup.tsv", "index\tprediction\tanswer\tA\tB\n1\tA\tA\tx\ty\n1\tA\tA\tx\ty\n");
  expect_data_error([&] { score(read_rows(dup, true), dup, {}); }, {"dup.tsv:3:", "index 1 appears twice"});
  const std::string orphan = write_temp("orphan.tsv", "index\tprediction\tanswer\tA\tB\n1000005\tA\tA\tx\ty\n");
  expect_data_error([&] { score(read_rows(orphan, true), orphan, {}); }, {"orphan.tsv:2:", "question 5"});
  const std::string no_answer = write_temp("noanswer.tsv", "index\tprediction\tA\tB\n1\tA\tx\ty\n");
  expect_data_error([&] { score(read_rows(no_answer, true), no_answer, {}); }, {"noanswer.tsv:2:", "no answer"});
}

// ---- evaluation pieces ----

TEST(MmBenchEvaluation, BuildsLlavasSinglePredictionPrompt) {
  const std::vector<Row> rows = read_rows(kData, false);
  EXPECT_EQ(llava_prompt(rows[1]), "Look at the animals.\nIs the cat on the left?\nA. yes\nB. no\n"
                                   "Answer with the option's letter from the given choices directly.");
  EXPECT_EQ(llava_question_text(rows[2]), "What will the weather be tomorrow?\nA. It will rain\nB. It will snow\n"
                                          "C. It will be sunny");
  Row gap;  // options stop at the first missing letter, as model_vqa_mmbench.py does
  gap.question = "Q";
  gap.options = {{'A', "x"}, {'C', "z"}};
  EXPECT_EQ(llava_question_text(gap), "Q\nA. x");
  gap.options = {{'A', "x"}, {'B', "None"}, {'C', "z"}};  // the script's str(x).lower() == 'none' check
  EXPECT_EQ(llava_question_text(gap), "Q\nA. x");
}

TEST(MmBenchEvaluation, WritesTheSubmissionColumnsAndReadsThemBack) {
  const Table data = read_tsv(kData, "MMBench TSV");
  const std::string tsv = submission_tsv(data, {{4, "B \"dog\""}, {1000004, "A"}});
  const std::string first_line = tsv.substr(0, tsv.find('\n'));
  EXPECT_EQ(first_line, "index\tquestion\tA\tB\tC\tD\tprediction\tanswer\tsplit");
  const std::string path = write_temp("submission.tsv", tsv);
  const std::vector<Row> rows = read_rows(path, true);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].prediction, "B \"dog\"");
  EXPECT_EQ(rows[0].question, "Which animal is \"it\"?");
  EXPECT_EQ(rows[1].answer, "A");
}

TEST(MmBenchEvaluation, DecodesBase64Images) {
  EXPECT_EQ(base64_decode("aGVsbG8=", "x"), "hello");
  EXPECT_EQ(base64_decode("aGVs\nbG8h", "x"), "hello!");
  EXPECT_EQ(base64_decode("aGVs!bG8=", "x"), "hello");   // as Python's b64decode: the '!' is skipped
  const std::vector<Row> rows = read_rows(kData, false);
  EXPECT_EQ(base64_decode(rows[0].image, "x").substr(1, 3), "PNG");
  expect_data_error([] { base64_decode("aGV$", "f.tsv:3"); }, {"f.tsv:3", "not valid base64"});
}

}  // namespace
