// The annotate stage's pure parts: the built-in rubric, prompt building, reply parsing, candidate rows.
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
