// reference_match: the grading rule on hand-worked cases, the replies to prompts built by the real prompt builders
// (plugins/benchmarks/mt_bench and mm_vet with the official template files, the annotate stage's build_prompt with
// rubric_with_reference.txt), read back by each benchmark's own parser, and the plugin loaded by the registry.
// Expected values are worked out by hand in the comments (F1 = 2c / (response + reference tokens)).
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/registry.h"
#include "plugins/algorithms/annotate/annotate.h"
#include "plugins/benchmarks/mm_vet/scoring.h"
#include "plugins/benchmarks/mt_bench/scoring.h"
#include "plugins/judges/reference_match/reference_match.h"

namespace fs = std::filesystem;
using namespace mmr::reference_match;
namespace mtb = mmr::mt_bench;

namespace {

const std::string kData = std::string(MMR_TEST_DATA_DIR) + "/benchmarks/";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string replace_once(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

mmr::JudgeReply ask(const std::string& system, const std::string& user) {
  return grade(mmr::JudgeRequest{system, user, 0.0, 2048, {}});
}

// An MT-Bench question judged against the reference, as plugins/benchmarks/mt_bench builds the prompts.
struct MtBenchCase {
  std::map<std::string, mtb::JudgePrompt> prompts = mtb::read_judge_prompts(kData + "mt_bench/judge_prompts.jsonl");
  mtb::Question question{1, 7, "math", {"What is 347 + 1289?", "Reverse the string \"planet\"."}};
  mtb::ModelAnswer reference{1, 7, "reference", {"347 + 1289 = 1636.", "The reversed string is \"tenalp\"."}};

  mtb::JudgeRequest request(const std::vector<std::string>& answer_turns, int turn) const {
    const mtb::ModelAnswer answer{1, 7, "model", answer_turns};
    return mtb::build_judge_request(prompts, question, answer, &reference, turn);
  }
  mmr::JudgeReply reply(const std::vector<std::string>& answer_turns, int turn) const {
    const mtb::JudgeRequest r = request(answer_turns, turn);
    return ask(r.system_prompt, r.user_prompt);
  }
};

std::string mm_vet_prompt() { return mmr::mm_vet::read_grader_prompt(kData + "mm_vet/grader_prompt.txt"); }

std::string rubric_file() { return read_text(std::string(MMR_REFERENCE_MATCH_DIR) + "/rubric_with_reference.txt"); }

// The annotate stage's prompt for a row with a reference answer.
std::string rubric_prompt(const std::string& question, const std::string& reference, const std::string& response) {
  return mmr::annotate::build_prompt(rubric_file(), question, response, reference);
}

}  // namespace

// ---- the rule ----

TEST(ReferenceMatchRule, NormalisesCaseAndPunctuationButKeepsSignsAndDecimalPoints) {
  EXPECT_EQ(normalise("Hello, World!  It's 3.5, -1 and x-1; 1,636. (+7) end."),
            "hello world its 3.5 -1 and x1 1636 +7 end");
  EXPECT_EQ(normalise("  A\tb\n\nC  "), "a b c");
  EXPECT_EQ(normalise("In uppercase: \"RED APPLE\"."), "in uppercase red apple");
  EXPECT_EQ(normalise("...!?"), "");
  EXPECT_EQ(tokens("347 + 1289 = 1636."), (std::vector<std::string>{"347", "1289", "1636"}));
  EXPECT_TRUE(tokens(" .. ").empty());
}

TEST(ReferenceMatchRule, TokenF1IsSquadsMultisetOverlap) {
  const TokenF1 f = token_f1("the cat sat", "the cat");  // c = 2 of 3 + 2 tokens: F1 = 4/5
  EXPECT_EQ(f.common, 2);
  EXPECT_EQ(f.reference_tokens, 3);
  EXPECT_EQ(f.response_tokens, 2);
  EXPECT_FALSE(f.exact);
  EXPECT_DOUBLE_EQ(f.value(), 0.8);
  const TokenF1 repeated = token_f1("a a b", "a a a");  // each reference token matches once: c = 2, F1 = 4/6
  EXPECT_EQ(repeated.common, 2);
  EXPECT_DOUBLE_EQ(repeated.value(), 4.0 / 6.0);
}

TEST(ReferenceMatchRule, ExactNormalisedMatchIsFullMarksEvenWhenBothAreEmpty) {
  EXPECT_TRUE(token_f1("There are 3 red circles.", "there are 3 RED circles").exact);
  EXPECT_EQ(token_f1("There are 3 red circles.", "there are 3 RED circles").scaled(9), 9);
  const TokenF1 empty = token_f1("", "...");
  EXPECT_TRUE(empty.exact);
  EXPECT_DOUBLE_EQ(empty.value(), 1.0);
  EXPECT_EQ(empty.scaled(10), 10);
  EXPECT_DOUBLE_EQ(token_f1("a b", "").value(), 0.0);  // SQuAD: an empty side against a non-empty one is 0
  EXPECT_DOUBLE_EQ(token_f1("", "a b").value(), 0.0);
  EXPECT_EQ(mt_bench_rating("a b", ""), 1);
  EXPECT_EQ(mt_bench_rating("word", "Word."), 10);
}

TEST(ReferenceMatchRule, RoundsHalvesUpExactlyFromTheCounts) {
  const TokenF1 half = token_f1("a b c d", "a b x y");  // c = 2, 8 tokens: F1 = 1/2
  EXPECT_EQ(half.scaled(9), 5);                         // 4.5 -> 5
  EXPECT_EQ(half.scaled(10), 5);
  EXPECT_EQ(half.scaled(4), 2);
  const TokenF1 quarter = token_f1("a b c d", "a x y z");  // F1 = 1/4
  EXPECT_EQ(quarter.scaled(10), 3);                          // 2.5 -> 3
  EXPECT_EQ(quarter.scaled(9), 2);                           // 2.25 -> 2
  EXPECT_EQ(quarter.scaled(4), 1);
  EXPECT_TRUE(better(half, quarter));
  EXPECT_FALSE(better(quarter, half));
  EXPECT_FALSE(better(half, half));
  EXPECT_TRUE(better(token_f1("a", "a"), half));
}

TEST(ReferenceMatchRule, MtBenchRatingIsOnePlusNineF1) {
  EXPECT_EQ(mt_bench_rating("347 + 1289 = 1636.", "347 + 1289 = 1636."), 10);
  EXPECT_EQ(mt_bench_rating("347 + 1289 = 1636.", "The answer is 1636."), 4);  // 2/7 x 9 = 2.57 -> 3
  EXPECT_EQ(mt_bench_rating("347 + 1289 = 1636.", "347 + 1289 = 1637."), 7);   // 4/6 x 9 = 6
  EXPECT_EQ(mt_bench_rating("347 + 1289 = 1636.", "I do not know."), 1);
}

// The limits the README states, pinned: order is invisible, and the answer word is one token of a sentence.
TEST(ReferenceMatchRule, BlindSpotsTheReadmeDocuments) {
  EXPECT_EQ(mt_bench_rating("In ascending order: 7, 19, 42.", "In ascending order: 42, 7, 19."), 10);
  // [yes there is a purple cross in the image] vs [no there is no ...]: c = 7 of 9 + 9, F1 = 0.78
  const std::string no = "No, there is no purple cross in the image.", yes = "Yes, there is a purple cross in the image.";
  EXPECT_EQ(mm_vet_tenths(no, yes), 8);
  EXPECT_EQ(mt_bench_rating(no, yes), 8);
  EXPECT_EQ(mt_bench_rating("347 + 1289 = 1636.", "Echo: What is 347 + 1289?"), 6);  // c = 2 of 5 + 3: F1 = 0.5
  EXPECT_EQ(mt_bench_rating("There are 3 red circles.", "3"), 4);                     // c = 1 of 1 + 5: F1 = 0.33
}

TEST(ReferenceMatchRule, MmVetTakesTheBestOrAlternativeAndDropsAndMarkers) {
  // "<AND>" dropped: [-1, -5] vs [x, -1, or, x, -5]: c = 2, F1 = 4/7 = 0.57 -> 0.6
  EXPECT_EQ(mm_vet_tenths("-1 <AND> -5", "x = -1 or x = -5"), 6);
  // "<OR>": [-1] vs [x, -5] gives 0; [-5] vs [x, -5] gives 2/3 -> 0.7
  EXPECT_EQ(mm_vet_tenths("-1 <OR> -5", "x = -5"), 7);
  EXPECT_EQ(mm_vet_tenths("The triangle is red.", "the triangle is red"), 10);
  EXPECT_EQ(mm_vet_tenths("The triangle is red.", ""), 0);
}

TEST(ReferenceMatchRule, CoherencePenalisesEmptyRepeatedAndUnterminatedText) {
  const std::string ref = "There are 3 red circles.";
  EXPECT_EQ(coherence(ref, "There are 3 red circles."), 4);
  EXPECT_EQ(coherence(ref, ""), 0);
  EXPECT_EQ(coherence(ref, " ?! "), 0);                        // no token left
  EXPECT_EQ(coherence(ref, "There are 3 red circles circles circles."), 2);
  EXPECT_EQ(coherence(ref, "There are 3 red circles"), 3);     // the reference ends a sentence, this does not
  EXPECT_EQ(coherence(ref, "There are are are 3 red"), 1);
  EXPECT_EQ(coherence(ref, "He said \"three.\""), 4);          // closing quotes after the full stop
  EXPECT_EQ(coherence("3", "3"), 4);                           // a short-form reference asks for no full stop
  EXPECT_EQ(coherence(ref, "circles, circles. Circles!"), 2);  // the run is over normalised tokens
}

TEST(ReferenceMatchRule, VerbosityComesFromTheLengthRatio) {
  const std::vector<std::pair<int64_t, int>> by_response_tokens = {
      {0, 0}, {3, 0}, {4, 1}, {6, 1}, {7, 2}, {10, 2}, {13, 2}, {14, 3}, {20, 3}, {21, 4}};
  for (const auto& [n, want] : by_response_tokens) EXPECT_EQ(verbosity(n, 10), want) << n << " of 10 tokens";
  EXPECT_EQ(verbosity(0, 0), 2);
  EXPECT_EQ(verbosity(1, 0), 4);
}

TEST(ReferenceMatchRule, HelpSteerScoresFollowTheRule) {
  const std::string ref = "There are 3 red circles.";
  // {Helpfulness, Correctness, Coherence, Complexity, Verbosity}
  auto five = [&](const std::string& response) {
    const HelpSteerScores s = helpsteer_scores(ref, response);
    return std::vector<int>{s.helpfulness, s.correctness, s.coherence, s.complexity, s.verbosity};
  };
  EXPECT_EQ(five(ref), (std::vector<int>{4, 4, 4, 1, 2}));
  // 7 tokens, c = 5: F1 = 10/12 -> round(3.33) = 3; a run of three and no full stop: 4 - 2 - 1; 7/5 = 1.4 -> 3
  EXPECT_EQ(five("There are 3 red circles circles circles"), (std::vector<int>{3, 3, 1, 1, 3}));
  // [3]: c = 1, F1 = 2/6 -> round(1.33) = 1; 1/5 = 0.2 -> 0
  EXPECT_EQ(five("3."), (std::vector<int>{1, 1, 4, 1, 0}));
  EXPECT_EQ(five(""), (std::vector<int>{0, 0, 0, 1, 0}));
}

// ---- the template matcher ----

TEST(ReferenceMatchTemplate, RepeatedFieldsRepeatAndShortestValuesComeFirst) {
  const auto m = match_template("A{x}B{y}C{x}", "A12B3B4C12");
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->at("x"), "12");
  EXPECT_EQ(m->at("y"), "3B4");
  // a = "x" leaves "-y" unmatched at the end, so the matcher backtracks to a = "x-y".
  const auto back = match_template("{a}-{b}!{a}", "x-y-z!x-y");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->at("a"), "x-y");
  EXPECT_EQ(back->at("b"), "z");
  EXPECT_FALSE(match_template("[{x}]", "[abc").has_value());
  EXPECT_FALSE(match_template("A{x}B{x}", "A1B2").has_value());
  const auto literal_braces = match_template("{not a field} <0-4> {x}", "{not a field} <0-4> v");
  ASSERT_TRUE(literal_braces.has_value());
  EXPECT_EQ(literal_braces->at("x"), "v");
}

// ---- the prompt formats, built by the real builders ----

TEST(ReferenceMatchFormats, EmbeddedFastChatPromptsEqualJudgePromptsJsonl) {
  const auto prompts = mtb::read_judge_prompts(kData + "mt_bench/judge_prompts.jsonl");
  EXPECT_EQ(prompts.at("single-math-v1").system_prompt, kMtBenchSingleMathSystem);
  EXPECT_EQ(prompts.at("single-math-v1").prompt_template, kMtBenchSingleMathTemplate);
  EXPECT_EQ(prompts.at("single-math-v1-multi-turn").system_prompt, kMtBenchMultiTurnMathSystem);
  EXPECT_EQ(prompts.at("single-math-v1-multi-turn").prompt_template, kMtBenchMultiTurnMathTemplate);
}

TEST(ReferenceMatchFormats, MtBenchSingleMathRatesTheFirstTurnAgainstTheFirstReference) {
  const MtBenchCase c;
  const mtb::JudgeRequest r = c.request({"The answer is 1636.", "anything"}, 1);
  ASSERT_EQ(r.prompt_name, "single-math-v1");
  const auto seen = recognise({r.system_prompt, r.user_prompt, 0.0, 2048, {}});
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->format, Format::kMtBenchSingleMath);
  EXPECT_EQ(seen->reference, "347 + 1289 = 1636.");
  EXPECT_EQ(seen->response, "The answer is 1636.");
  const mmr::JudgeReply reply = c.reply({"The answer is 1636.", "anything"}, 1);
  ASSERT_TRUE(reply.ok) << reply.error;
  EXPECT_EQ(reply.text, "Rating: [[4]]");  // 2/7 x 9 = 2.57 -> 3, + 1
  EXPECT_EQ(mtb::parse_rating(reply.text), 4);
  EXPECT_EQ(c.reply({"347 + 1289 = 1636.", ""}, 1).text, "Rating: [[10]]");
  EXPECT_EQ(c.reply({"", ""}, 1).text, "Rating: [[1]]");
}

TEST(ReferenceMatchFormats, MtBenchMultiTurnRatesTheSecondAnswerAgainstTheSecondReference) {
  const MtBenchCase c;
  // The first answer imitates the conversation's headers; the second is still found.
  const std::string tricky_first = "1636.\n\n### User:\nfake\n\n### Assistant A:\nfake";
  const mtb::JudgeRequest r = c.request({tricky_first, "The reversed string is \"planet\"."}, 2);
  ASSERT_EQ(r.prompt_name, "single-math-v1-multi-turn");
  const auto seen = recognise({r.system_prompt, r.user_prompt, 0.0, 2048, {}});
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->format, Format::kMtBenchSingleMathMultiTurn);
  EXPECT_EQ(seen->reference, "The reversed string is \"tenalp\".");
  EXPECT_EQ(seen->response, "The reversed string is \"planet\".");
  // [the reversed string is planet] vs [... tenalp]: c = 4, F1 = 8/10, 7.2 -> 7, + 1
  EXPECT_EQ(c.reply({tricky_first, "The reversed string is \"planet\"."}, 2).text, "Rating: [[8]]");
  EXPECT_EQ(c.reply({"wrong", "the reversed string is TENALP"}, 2).text, "Rating: [[10]]");
}

TEST(ReferenceMatchFormats, MtBenchReasoningUsesTheSamePromptsAndGeneralCategoriesAreRefused) {
  MtBenchCase c;
  c.question.category = "reasoning";
  EXPECT_EQ(c.reply({"347 + 1289 = 1636.", "x"}, 1).text, "Rating: [[10]]");
  c.question.category = "writing";  // single-v1: FastChat gives no reference, so there is nothing to match
  const mmr::JudgeReply reply = c.reply({"347 + 1289 = 1636.", "x"}, 1);
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("without a reference answer (single-v1)"), std::string::npos) << reply.error;
}

TEST(ReferenceMatchFormats, MmVetGraderMessageGradesTheLastRowInBothForms) {
  const std::string prompt = mm_vet_prompt();
  const std::string q = "How many red circles are there?", gt = "There are 3 red circles.";
  for (bool retry : {false, true}) {
    const mmr::JudgeReply same = ask("", mmr::mm_vet::build_grader_message(prompt, q, gt, gt, retry));
    ASSERT_TRUE(same.ok) << same.error;
    EXPECT_EQ(same.text, "1.0");
    EXPECT_EQ(mmr::mm_vet::parse_grader_reply(same.text), 1.0);
    // A prediction with the table's separator and a blank line is still the prediction: [3, 4, second, paragraph]
    // vs [there, are, 3, red, circles]: c = 1, F1 = 2/9, 2.2 -> 0.2
    const std::string odd = "3 | 4\n\nsecond paragraph";
    const std::string message = mmr::mm_vet::build_grader_message(prompt, q, gt, odd, retry);
    const auto seen = recognise({"", message, 0.0, 3, {}});
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->format, Format::kMmVetGrader);
    EXPECT_EQ(seen->reference, gt);
    EXPECT_EQ(seen->response, odd);
    EXPECT_EQ(ask("", message).text, "0.2");
  }
  const std::string x = "What is x in the equation?";
  EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, x, "-1<AND>-5", "x = -1 or x = -5")).text, "0.6");
  EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, x, "-1<OR>-5", "x = -5")).text, "0.7");
  EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, x, "-1<OR>-5", "")).text, "0.0");
  EXPECT_EQ(mmr::mm_vet::parse_grader_reply("0.0"), 0.0);
}

TEST(ReferenceMatchFormats, RubricFileIsAnnotatesRubricWithTheReferenceBlockAndIsBuiltIn) {
  const std::string file = rubric_file();
  EXPECT_EQ(file, kRubricWithReference);
  EXPECT_EQ(file, replace_once(mmr::annotate::kDefaultRubric, "[Response]\n",
                               "[Reference answer]\n{reference}\n\n[Response]\n"));
  EXPECT_NO_THROW(mmr::annotate::check_rubric(file, "rubric_with_reference.txt"));
}

TEST(ReferenceMatchFormats, AnnotateRubricWithReferenceRepliesFiveScoresAnnotateParses) {
  const std::string prompt = rubric_prompt("How many red circles are there?", "There are 3 red circles.",
                                           "There are 3 red circles circles circles");
  const auto seen = recognise({"", prompt, 0.0, -1, {}});
  ASSERT_TRUE(seen.has_value());
  EXPECT_EQ(seen->format, Format::kAnnotateRubricWithReference);
  EXPECT_EQ(seen->reference, "There are 3 red circles.");
  const mmr::JudgeReply reply = ask("", prompt);
  ASSERT_TRUE(reply.ok) << reply.error;
  EXPECT_EQ(reply.text, "Helpfulness: 3\nCorrectness: 3\nCoherence: 1\nComplexity: 1\nVerbosity: 3");
  const auto scores = mmr::annotate::parse_scores(reply.text);
  ASSERT_TRUE(scores.has_value());
  EXPECT_EQ(*scores, (std::map<std::string, int>{{"Helpfulness", 3}, {"Correctness", 3}, {"Coherence", 1},
                                                 {"Complexity", 1}, {"Verbosity", 3}}));
  EXPECT_EQ(ask("", rubric_prompt("q", "There are 3 red circles.", "There are 3 red circles.")).text,
            "Helpfulness: 4\nCorrectness: 4\nCoherence: 4\nComplexity: 1\nVerbosity: 2");
}

TEST(ReferenceMatchFormats, RubricWhoseReferenceWasNotFilledIsRefused) {
  // A builder that knows only {question} and {response} (annotate before it filled {reference}).
  const std::string prompt = replace_once(replace_once(rubric_file(), "{question}", "q"), "{response}", "an answer.");
  const mmr::JudgeReply reply = ask("", prompt);
  EXPECT_FALSE(reply.ok);
  EXPECT_NE(reply.error.find("{reference} placeholder was not filled"), std::string::npos) << reply.error;
}

TEST(ReferenceMatchFormats, UnknownPromptsGetAnErrorNamingEveryKnownFormat) {
  for (const std::string& user :
       {std::string("Rate this answer: hello"), mmr::annotate::build_prompt(mmr::annotate::kDefaultRubric, "q", "r"),
        std::string("Compare the ground truth and prediction from AI models, to give a correctness score.")}) {
    const mmr::JudgeReply reply = ask("", user);
    EXPECT_FALSE(reply.ok);
    EXPECT_TRUE(reply.text.empty());
    for (const char* name : {"mt_bench_single_math", "mt_bench_single_math_multi_turn", "mm_vet_grader",
                             "annotate_rubric_with_reference", "rubric_with_reference.txt"})
      EXPECT_NE(reply.error.find(name), std::string::npos) << name << " in " << reply.error;
  }
  // The right template with another system prompt is not FastChat's prompt.
  const MtBenchCase c;
  const mtb::JudgeRequest r = c.request({"1636", "x"}, 1);
  EXPECT_FALSE(ask("You are a strict grader.", r.user_prompt).ok);
}

// ---- the plugin ----

TEST(ReferenceMatchPlugin, LoadsThroughTheRegistryAndAnswersEachRequestInOrder) {
  mmr::Registry registry;
  registry.scan(fs::path(MMR_TEST_PLUGIN_DIR) / "judges");
  const auto plugin =
      registry.create(mmr::PluginKind::Judge, "reference_match", YAML::Node(YAML::NodeType::Map), "test");
  auto* judge = dynamic_cast<mmr::Judge*>(plugin.get());
  ASSERT_NE(judge, nullptr);
  EXPECT_EQ(judge->identity(), "reference_match 1.0.0 rule=token-f1-v1");
  const std::string grader = mmr::mm_vet::build_grader_message(mm_vet_prompt(), "q?", "The square is blue.", "blue");
  const auto replies = judge->judge({{"", grader, 0.0, 3, {}}, {"", "hello", -1, -1, {}}, {"", grader, 1.5, 3, {}}});
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_TRUE(replies[0].ok);
  EXPECT_EQ(replies[0].text, "0.4");  // [blue] vs [the square is blue]: c = 1, F1 = 2/5
  EXPECT_FALSE(replies[1].ok);
  EXPECT_EQ(replies[2].text, replies[0].text);  // deterministic at any temperature
  EXPECT_THROW(registry.create(mmr::PluginKind::Judge, "reference_match", YAML::Load("{model: gpt-4}"), "test"),
               mmr::Error);
}
