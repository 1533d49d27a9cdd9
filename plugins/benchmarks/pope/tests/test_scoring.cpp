// POPE scoring against hand-computed references and the official eval_pope.py rules (see ../scoring.h).
#include <gtest/gtest.h>

#include <string>

#include "core/api/error.h"
#include "plugins/benchmarks/common/testing.h"
#include "plugins/benchmarks/pope/scoring.h"
#include "plugins/benchmarks/pope/tests/references.h"

namespace {

using namespace mmr::pope;
using namespace mmr::benchmarks::testing;

const std::string kSmall = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/pope/small/";
const std::string kOfficial = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/pope/llava_v1.5_eval/";

ScoreInputs small_inputs(const std::string& answers = kSmall + "answers.jsonl") {
  ScoreInputs in;
  in.answers_path = answers;
  in.questions_path = kSmall + "questions.jsonl";
  in.label_files = {{"adversarial", kSmall + "coco_pope_adversarial.json"}, {"random", kSmall + "coco_pope_random.json"}};
  return in;
}

// ---- the yes/no rule of eval_pope.py ----

TEST(PopeScoring, ParsesPlainNoAsNo) {
  EXPECT_FALSE(parse_yes_no("No"));
  EXPECT_FALSE(parse_yes_no("no"));
  EXPECT_FALSE(parse_yes_no("No."));
}

TEST(PopeScoring, CountsNotAsNo) { EXPECT_FALSE(parse_yes_no("There is not a dog in the image.")); }

TEST(PopeScoring, DropsCommasBeforeSplitting) {
  EXPECT_FALSE(parse_yes_no("No, there is none"));  // "No," -> "No"
  EXPECT_TRUE(parse_yes_no("Yes,no"));              // -> "Yesno", one word
  EXPECT_TRUE(parse_yes_no("there is no,dog"));     // -> "nodog"
}

TEST(PopeScoring, OnlyReadsTheFirstSentence) {
  EXPECT_TRUE(parse_yes_no("Yes. No, not at all."));
  EXPECT_FALSE(parse_yes_no("No. Yes."));
}

TEST(PopeScoring, MatchesWordsCaseSensitively) {
  // Only "No", "not", "no" count: "NO", "Not" and "nope" are yes.
  EXPECT_TRUE(parse_yes_no("NO"));
  EXPECT_TRUE(parse_yes_no("Not really"));
  EXPECT_TRUE(parse_yes_no("nope"));
}

TEST(PopeScoring, SplitsOnSingleSpacesOnly) {
  // str.split(' ') keeps "No\n" and "\tno" as words that are not "No"/"no".
  EXPECT_TRUE(parse_yes_no("No\n"));
  EXPECT_TRUE(parse_yes_no("\tno"));
  EXPECT_FALSE(parse_yes_no("  no  "));
}

TEST(PopeScoring, AnythingElseIsYes) {
  EXPECT_TRUE(parse_yes_no("Yes"));
  EXPECT_TRUE(parse_yes_no(""));
  EXPECT_TRUE(parse_yes_no("I cannot tell"));
  EXPECT_TRUE(parse_yes_no("knot"));
}

// ---- arithmetic ----

TEST(PopeScoring, ComputesMetricsAsEvalPope) {
  // pred: Y Y N N Y, label: Y N N Y Y -> TP=2, FP=1, TN=1, FN=1.
  // precision 2/3, recall 2/3, F1 = 2*(2/3)*(2/3)/(4/3) = 2/3, accuracy 3/5, yes-ratio 3/5.
  SplitMetrics m = compute_metrics({true, true, false, false, true}, {true, false, false, true, true});
  EXPECT_EQ(m.tp, 2);
  EXPECT_EQ(m.fp, 1);
  EXPECT_EQ(m.tn, 1);
  EXPECT_EQ(m.fn, 1);
  EXPECT_DOUBLE_EQ(m.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.recall, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.f1, 2.0 / 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.6);
  EXPECT_DOUBLE_EQ(m.yes_ratio, 0.6);
}

TEST(PopeScoring, GivesZeroInsteadOfDividingByZero) {
  SplitMetrics m = compute_metrics({false, false}, {true, false});  // never says yes: TP+FP = 0
  EXPECT_EQ(m.precision, 0);
  EXPECT_EQ(m.f1, 0);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
}

// ---- whole files ----

TEST(PopeScoring, ScoresSmallFilesPerSplitAndMean) {
  // The references are derived in references.h.
  ScoreResult r = score(small_inputs());
  ASSERT_EQ(r.splits.size(), 2u);
  EXPECT_EQ(r.splits[0].split, "adversarial");
  EXPECT_EQ(r.splits[0].metrics.tp, 1);
  EXPECT_EQ(r.splits[0].metrics.fp, 1);
  EXPECT_EQ(r.splits[0].metrics.tn, 1);
  EXPECT_EQ(r.splits[0].metrics.fn, 1);
  EXPECT_DOUBLE_EQ(r.splits[0].metrics.f1, 0.5);
  EXPECT_EQ(r.splits[1].split, "random");
  EXPECT_DOUBLE_EQ(r.splits[1].metrics.precision, 2.0 / 3);
  EXPECT_DOUBLE_EQ(r.splits[1].metrics.recall, 1.0);
  EXPECT_DOUBLE_EQ(r.splits[1].metrics.f1, 0.8);
  EXPECT_DOUBLE_EQ(r.splits[1].metrics.yes_ratio, 1.0);
  EXPECT_EQ(r.n_unscored_answers, 1);
  EXPECT_DOUBLE_EQ(r.mean_f1, 0.65);  // (0.5 + 0.8) / 2

  const mmr::MetricList m = to_metrics(r);
  expect_metrics(m, references::kSmallScores);
  expect_counts(m, references::kSmallCounts);
}

TEST(PopeScoring, FindsLabelFilesAndSplitNamesInAFolder) {
  auto files = find_label_files(kSmall);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].split, "adversarial");
  EXPECT_EQ(files[1].split, "random");
  EXPECT_EQ(split_from_label_filename("coco_pope_popular.json"), "popular");
  expect_data_error([] { split_from_label_filename("pope_popular.json"); }, {"coco_pope_<split>.json"});
}

TEST(PopeScoring, ReadsTheOfficialAugust2023LabelFiles) {
  // Counts from PROVENANCE.md and a python3 json/collections.Counter pass over the same files:
  // adversarial/popular 3000 lines (1500 yes), random 2910 lines (1500 yes).
  for (auto [split, n, n_yes] : {std::tuple{"adversarial", 3000, 1500}, std::tuple{"popular", 3000, 1500},
                                std::tuple{"random", 2910, 1500}}) {
    auto labels = read_labels(kOfficial + "coco_pope_" + split + ".json");
    EXPECT_EQ(static_cast<int>(labels.size()), n) << split;
    int yes = 0;
    for (const auto& l : labels) yes += l.is_yes;
    EXPECT_EQ(yes, n_yes) << split;
  }
}

TEST(PopeScoring, ScoresAllYesOnTheOfficialRandomSplit) {
  // Build LLaVA-style questions (ids 10000001..) and all-"Yes" answers for the official random split:
  // TP=1500, FP=1410 -> precision 1500/2910, recall 1, F1 = 2P/(P+1) = 3000/4410, yes-ratio 1.
  auto labels = read_labels(kOfficial + "coco_pope_random.json");
  std::string questions, answers;
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string id = std::to_string(10000001 + i);
    questions += "{\"question_id\": " + id + ", \"image\": \"" + labels[i].image + "\", \"text\": \"" + labels[i].text +
                 "\\nAnswer the question using a single word or phrase.\", \"category\": \"random\"}\n";
    answers += "{\"question_id\": " + id + ", \"text\": \"Yes\"}\n";
  }
  ScoreInputs in;
  in.questions_path = write_temp("allyes_q.jsonl", questions);
  in.answers_path = write_temp("allyes_a.jsonl", answers);
  in.label_files = {{"random", kOfficial + "coco_pope_random.json"}};
  ScoreResult r = score(in);
  EXPECT_EQ(r.splits[0].metrics.tp, 1500);
  EXPECT_EQ(r.splits[0].metrics.fp, 1410);
  EXPECT_DOUBLE_EQ(r.splits[0].metrics.f1, 3000.0 / 4410);
}

// ---- errors ----

TEST(PopeScoring, MalformedLineNamesFileAndLine) {
  std::string text = read_text(kSmall + "answers.jsonl");
  auto pos = text.find('\n', text.find('\n') + 1);  // end of line 2
  text.insert(pos + 1, "{\"question_id\": 99, \"text\": \n");  // line 3
  const std::string path = write_temp("malformed.jsonl", text);
  expect_data_error([&] { read_answers(path); }, {path + ":3:", "malformed JSON"});
  // A line nested far past any real row: refused while parsing (the error quoting its "text" would recurse).
  const std::string deep = write_temp("deep.jsonl", "{\"question_id\": 1, \"text\": " + std::string(100000, '[') +
                                                         std::string(100000, ']') + "}\n");
  expect_data_error([&] { read_answers(deep); }, {deep + ":1:", "malformed JSON", "nested deeper than 256 levels"});
}

TEST(PopeScoring, RejectsDuplicateAnswers) {
  std::string text = read_text(kSmall + "answers.jsonl") + "{\"question_id\": 2, \"text\": \"No\"}\n";
  const std::string path = write_temp("dup.jsonl", text);
  expect_data_error([&] { read_answers(path); }, {path + ":9:", "duplicate", "question_id 2", "line 3"});
}

TEST(PopeScoring, RejectsAnswersForUnknownQuestions) {
  std::string text = read_text(kSmall + "answers.jsonl") + "{\"question_id\": 77, \"text\": \"No\"}\n";
  const std::string path = write_temp("unknown.jsonl", text);
  expect_data_error([&] { score(small_inputs(path)); }, {path + ":9:", "question_id 77", "not in the question file"});
}

TEST(PopeScoring, NamesTheMissingAnswer) {
  std::string text = read_text(kSmall + "answers.jsonl");
  const auto start = text.find("{\"question_id\": 3,");
  text.erase(start, text.find('\n', start) - start + 1);
  const std::string path = write_temp("missing.jsonl", text);
  expect_data_error([&] { score(small_inputs(path)); }, {"'adversarial' has 3 answers but", "4 labels", "question_id 3"});
}

TEST(PopeScoring, RejectsAnswersOutOfQuestionOrder) {
  // Swap the answers of questions 1 and 2: positional pairing would be wrong.
  std::string text = read_text(kSmall + "answers.jsonl");
  const auto a = text.find("{\"question_id\": 1,"), b = text.find("{\"question_id\": 2,");
  const std::string line1 = text.substr(a, text.find('\n', a) - a), line2 = text.substr(b, text.find('\n', b) - b);
  text.replace(b, line2.size(), line1);
  text.replace(a, line1.size(), line2);
  const std::string path = write_temp("swapped.jsonl", text);
  expect_data_error([&] { score(small_inputs(path)); }, {path + ":2:", "does not match label line"});

  // Without the check we pair by position exactly as eval_pope.py: "No, there is not." vs yes (FN),
  // "Yes" vs no (FP), "No" vs yes (FN), "Yes, there is a bus." vs no (FP).
  ScoreInputs in = small_inputs(path);
  in.check_alignment = false;
  ScoreResult r = score(in);
  EXPECT_EQ(r.splits[0].metrics.tp, 0);
  EXPECT_EQ(r.splits[0].metrics.fp, 2);
  EXPECT_EQ(r.splits[0].metrics.fn, 2);
}

TEST(PopeScoring, RejectsLabelsOtherThanYesOrNo) {
  const std::string path = write_temp("coco_pope_bad.json", "{\"label\": \"yes\"}\n{\"label\": \"Yes\"}\n");
  expect_data_error([&] { read_labels(path); }, {path + ":2:", "\"yes\" or \"no\"", "\"Yes\""});
}

TEST(PopeScoring, RejectsMissingKeys) {
  const std::string path = write_temp("nokey.jsonl", "{\"question_id\": 1}\n");
  expect_data_error([&] { read_answers(path); }, {path + ":1:", "missing key \"text\""});
}

TEST(PopeScoring, WritesAnswersThatReadBack) {
  const std::string path =
      write_temp("written.jsonl", answers_jsonl({{question_id_from_int(7), "Is there a dog?", "No caf\xc3\xa9", "x1", "m"}}));
  EXPECT_EQ(read_text(path),
            "{\"question_id\":7,\"prompt\":\"Is there a dog?\",\"text\":\"No caf\\u00e9\",\"answer_id\":\"x1\","
            "\"model_id\":\"m\",\"metadata\":{}}\n");
  auto answers = read_answers(path);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].text, "No caf\xc3\xa9");
  EXPECT_EQ(answers[0].question_id, question_id_from_int(7));
}

}  // namespace
