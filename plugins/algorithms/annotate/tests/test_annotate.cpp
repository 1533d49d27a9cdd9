// The annotate stage's pure parts: the built-in rubrics, prompt building, reply parsing (both request forms),
// candidate rows (the candidates form and LLaVA-RLHF's human-preference rows). The stage itself, with a judge on
// loopback: test_annotate_stage.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/api/error.h"
#include "plugins/algorithms/annotate/annotate.h"

namespace fs = std::filesystem;
using namespace mmr::annotate;

TEST(AnnotateRubric, BuiltInRubricHasBothPlaceholdersAndAsksForTheFiveAttributes) {
  EXPECT_NO_THROW(check_rubric(kDefaultRubric, "built-in"));
  for (const char* a : kAttributes) EXPECT_NE(std::string(kDefaultRubric).find(std::string(a) + ": <0-4>"), std::string::npos) << a;
}

TEST(AnnotateRubric, RubricWithoutResponsePlaceholderIsRefusedNamingTheFile) {
  try {
    check_rubric("Rate {question}", "my_rubric.txt");
    FAIL() << "no exception";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("my_rubric.txt"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("{response}"), std::string::npos);
  }
}

TEST(AnnotatePrompt, ReplacesEachPlaceholderOnceAndKeepsBracesInTheTexts) {
  EXPECT_EQ(build_prompt("Q={question} R={response}.", "what {is} it?", "a {response}"),
            "Q=what {is} it? R=a {response}.");
}

TEST(AnnotateParse, ReadsFiveScoresInAnyCaseWithMarkdown) {
  const auto s = parse_scores("Sure.\n**Helpfulness**: 3\ncorrectness: 4\n- Coherence: 2\nComplexity:1\nVerbosity: 0\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->at("Helpfulness"), 3);
  EXPECT_EQ(s->at("Correctness"), 4);
  EXPECT_EQ(s->at("Coherence"), 2);
  EXPECT_EQ(s->at("Complexity"), 1);
  EXPECT_EQ(s->at("Verbosity"), 0);
}

TEST(AnnotateParse, MissingAttributeOutOfRangeOrFractionalScoreIsUnparseable) {
  EXPECT_FALSE(parse_scores("Helpfulness: 3\nCorrectness: 4\nCoherence: 2\nComplexity: 1\n").has_value());
  EXPECT_FALSE(parse_scores("Helpfulness: 5\nCorrectness: 4\nCoherence: 2\nComplexity: 1\nVerbosity: 0").has_value());
  EXPECT_FALSE(parse_scores("Helpfulness: 3.5\nCorrectness: 4\nCoherence: 2\nComplexity: 1\nVerbosity: 0").has_value());
  EXPECT_FALSE(parse_scores("Helpfulness: 10\nCorrectness: 4\nCoherence: 2\nComplexity: 1\nVerbosity: 0").has_value());
  EXPECT_FALSE(parse_scores("").has_value());
}

TEST(AnnotateParse, AttributeNamedInsideASentenceIsNotAScore) {
  EXPECT_FALSE(parse_scores("The Helpfulness: 3 is fine\nCorrectness: 4\nCoherence: 2\nComplexity: 1\nVerbosity: 0")
                   .has_value());
}

TEST(AnnotateRows, ReadsStringAndObjectCandidatesAndTurnQuestions) {
  const fs::path p = fs::temp_directory_path() / "annotate_rows_ok.jsonl";
  std::ofstream(p) << R"({"id": "a", "image": "x.png", "question": "Q1", "candidates": ["r1", {"response": "r2"}]})"
                   << "\n\n"
                   << R"({"id": "b", "question": {"from": "human", "value": "Q2"}, "candidates": [{"text": "r3"}]})"
                   << "\n";
  const auto rows = read_candidate_rows(p.string());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].question, "Q1");
  EXPECT_EQ(rows[0].responses, (std::vector<std::string>{"r1", "r2"}));
  EXPECT_EQ(rows[1].line, 3);
  EXPECT_EQ(rows[1].question, "Q2");
  EXPECT_EQ(rows[1].responses, (std::vector<std::string>{"r3"}));
}

TEST(AnnotateRows, BadRowsNameFileLineAndField) {
  const fs::path p = fs::temp_directory_path() / "annotate_rows_bad.jsonl";
  std::ofstream(p) << R"({"id": "a", "question": "Q", "candidates": []})" << "\n";
  try {
    read_candidate_rows(p.string());
    FAIL() << "no exception";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":1:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("candidates"), std::string::npos) << e.what();
  }
  std::ofstream(p) << R"({"id": "a", "question": "Q", "candidates": [{"score": 1}]})" << "\n";
  EXPECT_THROW(read_candidate_rows(p.string()), mmr::DataError);
}

TEST(AnnotatePrompt, ReferencePlaceholderIsFilledFromTheRowsReference) {
  const std::string rubric = "Q: {question}\nRef: {reference}\nA: {response}";
  EXPECT_TRUE(wants_reference(rubric));
  EXPECT_FALSE(wants_reference(kDefaultRubric));
  EXPECT_EQ(build_prompt(rubric, "2+2?", "5", "2 + 2 = 4."), "Q: 2+2?\nRef: 2 + 2 = 4.\nA: 5");
}

TEST(AnnotateRows, ReferenceIsReadAndMustBeAString) {
  const auto path = std::filesystem::temp_directory_path() / ("mmr_annotate_ref_" + std::to_string(getpid()));
  std::ofstream(path) << R"({"id": "a", "question": "q", "reference": "r", "candidates": ["x"]})" "\n"
                      << R"({"id": "b", "question": "q", "reference": 3, "candidates": ["x"]})" "\n";
  try {
    read_candidate_rows(path.string());
    ADD_FAILURE() << "a numeric reference was accepted";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(":2: \"reference\": expected a string"), std::string::npos) << e.what();
  }
  std::ofstream(path) << R"({"id": "a", "question": "q", "reference": "r", "candidates": ["x"]})" "\n";
  EXPECT_EQ(read_candidate_rows(path.string())[0].reference, "r");
  std::filesystem::remove(path);
}

// ---- all candidates of a prompt in one request (request: per_prompt, the default) ----

namespace {

const std::string kReasoning =
    "I would answer: a red ball on grass.\n"
    "Candidate 1 names the ball and its colour; Candidate 2 calls it blue, which is wrong; Candidate 3 rambles.\n"
    "Scores follow.\n";

std::string scores_block(const std::vector<std::string>& lines) {
  std::string out = "[Scores]\n";
  for (const auto& l : lines) out += l + "\n";
  return out;
}

const std::string kLine1 = "Candidate 1: Helpfulness:4,Correctness:4,Coherence:4,Complexity:1,Verbosity:2";
const std::string kLine2 = "Candidate 2: Helpfulness:1,Correctness:0,Coherence:3,Complexity:1,Verbosity:2";
const std::string kLine3 = "Candidate 3: Helpfulness:2,Correctness:3,Coherence:1,Complexity:2,Verbosity:4";

}  // namespace

TEST(AnnotateAllCandidatesRubric, BuiltInRubricHasItsPlaceholdersTheFiveAttributesAndTheFormat) {
  EXPECT_NO_THROW(check_rubric(kAllCandidatesRubric, "built-in", RequestForm::PerPrompt));
  const std::string rubric = kAllCandidatesRubric;
  for (const char* a : kAttributes) EXPECT_NE(rubric.find(std::string(a) + ":"), std::string::npos) << a;
  EXPECT_NE(rubric.find("[Scores]"), std::string::npos);
  EXPECT_NE(rubric.find("Reason first"), std::string::npos);
  EXPECT_EQ(rubric.find("{response}"), std::string::npos);
}

TEST(AnnotateAllCandidatesRubric, PerCandidateRubricOrMissingPlaceholderIsRefusedNamingTheFileAndTheForm) {
  try {
    check_rubric(kDefaultRubric, "rubric.txt", RequestForm::PerPrompt);
    FAIL() << "a per-candidate rubric was accepted for per_prompt";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("rubric 'rubric.txt'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("request: per_candidate"), std::string::npos) << e.what();
  }
  try {
    check_rubric("Rate the answers to {question}", "mine.txt", RequestForm::PerPrompt);
    FAIL() << "a rubric without {candidates} was accepted";
  } catch (const mmr::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("rubric 'mine.txt': no {candidates} placeholder"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(check_rubric(kAllCandidatesRubric, "all.txt", RequestForm::PerCandidate), mmr::ConfigError);
}

TEST(AnnotateAllCandidatesPrompt, NumbersThreeCandidatesInOrderAndFillsEveryPlaceholder) {
  const std::string rubric = "Q: {question}\n\n{candidates}\n\nRate all {num_candidates}. Ref: {reference}";
  EXPECT_EQ(build_all_candidates_prompt(rubric, "What {is} it?", {"A ball.", "A {blue} ball.", "Grass\nand a ball."},
                                        "A red ball."),
            "Q: What {is} it?\n\n"
            "[Candidate 1]\nA ball.\n[End of Candidate 1]\n\n"
            "[Candidate 2]\nA {blue} ball.\n[End of Candidate 2]\n\n"
            "[Candidate 3]\nGrass\nand a ball.\n[End of Candidate 3]\n\n"
            "Rate all 3. Ref: A red ball.");
}

TEST(AnnotateAllCandidatesPrompt, BuiltInRubricShowsTheQuestionAndEveryCandidateAndNoPlaceholderIsLeft) {
  const std::string p = build_all_candidates_prompt(kAllCandidatesRubric, "What is on the grass?", {"x", "y", "z"});
  EXPECT_NE(p.find("[Question]\nWhat is on the grass?\n"), std::string::npos);
  EXPECT_NE(p.find("[Candidate 3]\nz\n[End of Candidate 3]"), std::string::npos);
  EXPECT_NE(p.find("each of the 3\ncandidates"), std::string::npos) << p;
  for (const char* placeholder : {"{question}", "{candidates}", "{num_candidates}"})
    EXPECT_EQ(p.find(placeholder), std::string::npos) << placeholder;
}

TEST(AnnotateAllCandidatesParse, ReasoningThenTheBlockGivesEveryCandidatesScores) {
  const auto s = parse_all_candidates_scores(kReasoning + scores_block({kLine1, kLine2, kLine3}), 3);
  ASSERT_TRUE(s.has_value());
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[0], (Scores{{"Helpfulness", 4}, {"Correctness", 4}, {"Coherence", 4}, {"Complexity", 1},
                             {"Verbosity", 2}}));
  EXPECT_EQ((*s)[1].at("Correctness"), 0);
  EXPECT_EQ((*s)[2].at("Verbosity"), 4);
}

TEST(AnnotateAllCandidatesParse, CandidatesInAnyOrderSpacesMarkdownAndBlankLinesAreRead) {
  const std::string reply = kReasoning + "**[Scores]**\n\n" + kLine3 + "\n\n" +
                            "Candidate 1 : verbosity: 2 , helpfulness : 4,Correctness:4, Coherence:4,Complexity:1\n" +
                            "- " + kLine2 + "\n```\n";
  const auto s = parse_all_candidates_scores(reply, 3);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ((*s)[0].at("Helpfulness"), 4);
  EXPECT_EQ((*s)[0].at("Verbosity"), 2);
  EXPECT_EQ((*s)[2].at("Coherence"), 1);
}

TEST(AnnotateAllCandidatesParse, TheLastMarkerCountsSoAFormatQuotedInTheReasoningIsNotRead) {
  const std::string quoted = "The format is:\n[Scores]\nCandidate 1: Helpfulness:0,Correctness:0,Coherence:0,"
                             "Complexity:0,Verbosity:0\nNow my reasoning.\n";
  const auto s = parse_all_candidates_scores(quoted + scores_block({kLine1}), 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ((*s)[0].at("Helpfulness"), 4);
}

TEST(AnnotateAllCandidatesParse, MissingDuplicateOrOutOfRangeCandidateIsUnparseable) {
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1, kLine3}), 3).has_value());
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1, kLine2, kLine2}), 3).has_value());
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1, kLine2, kLine3}), 2).has_value());
  EXPECT_FALSE(parse_all_candidates_scores(
      kReasoning + scores_block({"Candidate 0: Helpfulness:1,Correctness:1,Coherence:1,Complexity:1,Verbosity:1"}), 1)
      .has_value());
}

TEST(AnnotateAllCandidatesParse, ScoreOutsideZeroToFourOrNotASingleIntegerIsUnparseable) {
  for (const std::string bad : {"5", "3.5", "10", "-1", "", "three", "3/4"}) {
    const std::string line = "Candidate 2: Helpfulness:" + bad + ",Correctness:0,Coherence:3,Complexity:1,Verbosity:2";
    EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1, line}), 2).has_value()) << bad;
  }
}

TEST(AnnotateAllCandidatesParse, MissingRepeatedOrUnknownAttributeIsUnparseable) {
  for (const std::string bad : {"Candidate 1: Helpfulness:4,Correctness:4,Coherence:4,Complexity:1",
                                "Candidate 1: Helpfulness:4,Helpfulness:4,Coherence:4,Complexity:1,Verbosity:2",
                                "Candidate 1: Helpfulness:4,Correctness:4,Coherence:4,Complexity:1,Verbosity:2,"
                                "Safety:4",
                                "Candidate 1: Helpful:4,Correctness:4,Coherence:4,Complexity:1,Verbosity:2"})
    EXPECT_FALSE(parse_all_candidates_scores(scores_block({bad}), 1).has_value()) << bad;
}

TEST(AnnotateAllCandidatesParse, ProseAfterOrInsideTheBlockOrNoMarkerIsUnparseable) {
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1, kLine2}) + "Hope this helps!\n", 2)
                   .has_value());
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + scores_block({kLine1 + " (a fine answer)", kLine2}), 2)
                   .has_value());
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + "[Scores]\nCandidate 1 is best.\n" + kLine1 + "\n", 1)
                   .has_value());
  EXPECT_FALSE(parse_all_candidates_scores(kReasoning + kLine1 + "\n" + kLine2 + "\n", 2).has_value());
  EXPECT_FALSE(parse_all_candidates_scores("", 1).has_value());
}

TEST(AnnotateRetry, EachAttemptAddsADifferentNoteSoItIsANewRequest) {
  EXPECT_NE(retry_note(1), retry_note(2));
  EXPECT_NE(retry_note(1).find("Attempt 2"), std::string::npos);
  EXPECT_NE(retry_note(1).find("could not be read"), std::string::npos);
}

// ---- LLaVA-RLHF's human-preference rows, read as they are ----

TEST(AnnotateRows, ReadsLlavaRlhfRowsOfAJsonArrayAsTwoCandidatesOfTheLastHumanTurn) {
  const std::string path = std::string(MMR_ANNOTATE_TEST_DATA) + "/llava_rlhf_pairs.json";
  const auto rows = read_candidate_rows(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].line, 2);  // the element starts on the array's second line
  EXPECT_EQ(rows[0].question, "What should visitors keep in mind when feeding the giraffe?");
  EXPECT_EQ(rows[0].responses, (std::vector<std::string>{
                                   "Only feed what the zoo allows, stay calm and keep your hands flat.",
                                   "Giraffes eat meat, so bring some sausages."}));
  EXPECT_EQ(rows[0].image, "giraffe.png");
  EXPECT_EQ(rows[0].row.at("preference"), 1);
  EXPECT_EQ(rows[0].row.at("hallucination"), true);
  EXPECT_EQ(rows[0].row.at("id"), 245946);
  // Multi-turn: the last human turn is the question; a trailing "\n<image>" is dropped with the marker.
  EXPECT_EQ(rows[1].question, "What separates the field from the viewer?");
  EXPECT_EQ(rows[1].responses[1], "A barbed wire fence runs along the front of the field.");
  EXPECT_EQ(rows[1].row.at("preference"), 2);
}

TEST(AnnotateRows, LlavaRlhfMarkerAtTheEndAndConversationNestedInAListAreRead) {
  const fs::path p = fs::temp_directory_path() / ("annotate_rlhf_" + std::to_string(getpid()) + ".jsonl");
  std::ofstream(p) << R"({"id": 1, "conversations": [[{"from": "human", "value": "Which colour?\n<image>"},)"
                   << R"( {"from": "gpt", "value": "Red."}]], "output_1": {"from": "llava", "value": "Red."},)"
                   << R"( "output_2": {"from": "llava", "value": "Blue."}, "preference": 1})" << "\n";
  const auto rows = read_candidate_rows(p.string());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].question, "Which colour?");
  EXPECT_EQ(rows[0].responses, (std::vector<std::string>{"Red.", "Blue."}));
  fs::remove(p);
}

TEST(AnnotateRows, LlavaRlhfRowWithoutOutput2OrHumanTurnNamesFileLineAndField) {
  const fs::path p = fs::temp_directory_path() / ("annotate_rlhf_bad_" + std::to_string(getpid()) + ".jsonl");
  std::ofstream(p) << R"({"id": 1, "conversations": [{"from": "human", "value": "Q?"}],)"
                   << R"( "output_1": {"from": "llava", "value": "A."}, "preference": 1})" << "\n";
  try {
    read_candidate_rows(p.string());
    ADD_FAILURE() << "a row without output_2 was accepted";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(p.string() + ":1: \"output_2\": expected"), std::string::npos) << e.what();
  }
  std::ofstream(p) << R"({"id": 1, "conversations": [{"from": "gpt", "value": "A."}],)"
                   << R"( "output_1": {"value": "A."}, "output_2": {"value": "B."}})" << "\n";
  try {
    read_candidate_rows(p.string());
    ADD_FAILURE() << "a row without a human turn was accepted";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(":1: \"conversations\": no human turn"), std::string::npos) << e.what();
  }
  fs::remove(p);
}
