// reference_match: the grading rule on hand-worked cases, the replies to prompts built by the real prompt builders
// (plugins/benchmarks/mt_bench and mm_vet with the official template files, the annotate stage's build_prompt with
// rubric_with_reference.txt), read back by each benchmark's own parser, and the plugin loaded by the registry.
// Expected values are worked out by hand in the comments: [..] lists normalised tokens, "less the question" the
// answer-bearing ones, F1 = 2c / (response + reference answer-bearing tokens).
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

// The questions of the cases below. Normalised: [what is 347 1289], [how many red circles are there], [is there a
// purple cross in the image], [sort these numbers in ascending order 42 7 19].
const std::string kSum = "What is 347 + 1289?";
const std::string kCount = "How many red circles are there?";
const std::string kCross = "Is there a purple cross in the image?";
const std::string kSort = "Sort these numbers in ascending order: 42, 7, 19.";

TEST(ReferenceMatchRule, AnswerTokensAreTheTokensTheQuestionDoesNotHaveAsMultisets) {
  EXPECT_EQ(answer_tokens(kSum, "347 + 1289 = 1636."), (std::vector<std::string>{"1636"}));
  EXPECT_EQ(answer_tokens(kCount, "There are 3 red circles."), (std::vector<std::string>{"3"}));
  // [no there is no purple cross in the image] less [is there a purple cross in the image]: "no" twice
  EXPECT_EQ(answer_tokens(kCross, "No, there is no purple cross in the image."),
            (std::vector<std::string>{"no", "no"}));
  // One occurrence removed per question token; the rest keep their order.
  EXPECT_EQ(answer_tokens("the cat", "The the cat sat."), (std::vector<std::string>{"the", "sat"}));
  EXPECT_TRUE(answer_tokens(kSort, "In ascending order: 7, 19, 42.").empty());  // all six are the question's
  EXPECT_EQ(answer_tokens("", "a b"), (std::vector<std::string>{"a", "b"}));
}

TEST(ReferenceMatchRule, ScoreIsF1OfTheAnswerBearingTokens) {
  // [i count 3 circles] less the question: [i count 3] against [3]: c = 1, F1 = 2 / (3 + 1) = 1/2
  const AnswerScore f = answer_score(kCount, "There are 3 red circles.", "I count 3 circles");
  EXPECT_EQ(f.basis, AnswerScore::Basis::kAnswerTokens);
  EXPECT_EQ(f.common, 1);
  EXPECT_EQ(f.reference_tokens, 1);
  EXPECT_EQ(f.response_tokens, 3);
  EXPECT_DOUBLE_EQ(f.value(), 0.5);
  // Each reference token matches once: [a a b c] less [b] is [a a c], against [a a a]: c = 2, F1 = 4/6
  const AnswerScore repeated = answer_score("b?", "a a b c", "a a a");
  EXPECT_EQ(repeated.common, 2);
  EXPECT_DOUBLE_EQ(repeated.value(), 4.0 / 6.0);
  // The response's answer-bearing tokens are empty: 0, whatever else it shares with the reference.
  const AnswerScore echo = answer_score(kSum, "347 + 1289 = 1636.", "What is 347 + 1289?");
  EXPECT_EQ(echo.response_tokens, 0);
  EXPECT_DOUBLE_EQ(echo.value(), 0.0);
}

TEST(ReferenceMatchRule, WithoutAQuestionTheScoreIsPlainTokenF1) {
  // Nothing to subtract: SQuAD's token F1 of token-f1-v1. [the cat sat] vs [the cat]: c = 2, F1 = 4/5
  EXPECT_DOUBLE_EQ(answer_score("", "the cat sat", "the cat").value(), 0.8);
  EXPECT_EQ(mt_bench_rating("", "347 + 1289 = 1636.", "Echo: What is 347 + 1289?"), 6);  // c = 2 of 5 + 3: 1/2
}

TEST(ReferenceMatchRule, ExactNormalisedMatchIsFullMarksEvenWhenBothAreEmpty) {
  const AnswerScore same = answer_score(kCount, "There are 3 red circles.", "there are 3 RED circles");
  EXPECT_EQ(same.basis, AnswerScore::Basis::kExact);
  EXPECT_EQ(same.scaled(9), 9);
  const AnswerScore empty = answer_score("q", "", "...");
  EXPECT_EQ(empty.basis, AnswerScore::Basis::kExact);
  EXPECT_DOUBLE_EQ(empty.value(), 1.0);
  EXPECT_EQ(empty.scaled(10), 10);
  // Also where the reference has no answer-bearing token, and where the question is the reference itself.
  EXPECT_EQ(answer_score(kSort, "In ascending order: 7, 19, 42.", "in ascending order 7 19 42").scaled(9), 9);
  EXPECT_EQ(mt_bench_rating("word", "word", "Word."), 10);
  EXPECT_DOUBLE_EQ(answer_score("q", "a b", "").value(), 0.0);  // no answer-bearing token in the response
  // An empty reference (no order to find) against a non-empty response: 0, as in SQuAD.
  EXPECT_DOUBLE_EQ(answer_score("q", "", "a b").value(), 0.0);
  EXPECT_EQ(mt_bench_rating(kSum, "a b", ""), 1);
}

TEST(ReferenceMatchRule, RoundsHalvesUpExactlyFromTheCounts) {
  const AnswerScore half = answer_score("q", "a b c d", "a b x y");  // c = 2, 8 tokens: F1 = 1/2
  EXPECT_EQ(half.scaled(9), 5);                                       // 4.5 -> 5
  EXPECT_EQ(half.scaled(10), 5);
  EXPECT_EQ(half.scaled(4), 2);
  const AnswerScore quarter = answer_score("q", "a b c d", "a x y z");  // F1 = 1/4
  EXPECT_EQ(quarter.scaled(10), 3);                                     // 2.5 -> 3
  EXPECT_EQ(quarter.scaled(9), 2);                                      // 2.25 -> 2
  EXPECT_EQ(quarter.scaled(4), 1);
  EXPECT_TRUE(better(half, quarter));
  EXPECT_FALSE(better(quarter, half));
  EXPECT_FALSE(better(half, half));
  EXPECT_TRUE(better(answer_score("q", "a", "a"), half));
  const AnswerScore ordered =
      answer_score(kSort, "In ascending order: 7, 19, 42.", "Sorted in ascending order: 7, 19, 42");
  EXPECT_EQ(ordered.basis, AnswerScore::Basis::kOrder);
  EXPECT_TRUE(better(ordered, half));
  EXPECT_FALSE(better(answer_score(kSort, "In ascending order: 7, 19, 42.", "42 7 19"), quarter));  // 0
}

TEST(ReferenceMatchRule, MtBenchRatingIsOnePlusNineTimesTheScore) {
  const std::string ref = "347 + 1289 = 1636.";  // answer-bearing: [1636]
  EXPECT_EQ(mt_bench_rating(kSum, ref, ref), 10);
  EXPECT_EQ(mt_bench_rating(kSum, ref, "1636"), 10);
  EXPECT_EQ(mt_bench_rating(kSum, ref, "The answer is 1636."), 6);  // [the answer 1636]: 2/4 x 9 = 4.5 -> 5, + 1
  EXPECT_EQ(mt_bench_rating(kSum, ref, "347 + 1289 = 1637."), 1);   // [1637]: c = 0
  EXPECT_EQ(mt_bench_rating(kSum, ref, "I do not know."), 1);
}

// What token-f1-v1 got wrong (its ratings in brackets), fixed.
TEST(ReferenceMatchRule, EchoedQuestionGetsNoCredit) {
  // [echo what is 347 1289] less the question: [echo] against [1636]: c = 0 -> rating 1 (v1: 6)
  EXPECT_EQ(mt_bench_rating(kSum, "347 + 1289 = 1636.", "Echo: What is 347 + 1289?"), 1);
  EXPECT_EQ(mt_bench_rating(kSum, "347 + 1289 = 1636.", "What is 347 + 1289?"), 1);  // nothing left: 0 (v1: 4/7 -> 6)
  // [echo how many red circles are there] less the question: [echo] against [3]: 0 (v1: 0.7)
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "Echo: How many red circles are there?"), 0);
}

TEST(ReferenceMatchRule, WrongYesOrNoInSentenceFormGetsZero) {
  const std::string no = "No, there is no purple cross in the image.";    // answer-bearing: [no no]
  const std::string yes = "Yes, there is a purple cross in the image.";  // answer-bearing: [yes]
  // [yes] against [no no]: c = 0 (v1: F1 7/9 = 0.78 -> MM-Vet 0.8, MT-Bench 8)
  EXPECT_EQ(mm_vet_tenths(kCross, no, yes), 0);
  EXPECT_EQ(mt_bench_rating(kCross, no, yes), 1);
  EXPECT_EQ(mm_vet_tenths(kCross, yes, no), 0);  // [no no] against [yes]
  EXPECT_EQ(helpsteer_scores(kCross, no, yes).correctness, 0);
}

TEST(ReferenceMatchRule, CountOffByOneGetsZero) {
  // [2] against [3]: c = 0 (v1: c = 4 of 5 + 5, F1 0.8 -> MM-Vet 0.8, MT-Bench 8)
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "There are 2 red circles."), 0);
  EXPECT_EQ(mt_bench_rating(kCount, "There are 3 red circles.", "There are 2 red circles."), 1);
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "There are 4 red circles."), 0);
}

TEST(ReferenceMatchRule, WrongSortOrderGetsZeroAndTheRightOrderFullMarks) {
  // Every reference token is the question's: graded by order. [in ascending order 42 7 19] does not contain
  // [in ascending order 7 19 42]: 0 (v1: the same tokens, F1 1 -> MT-Bench 10)
  const std::string ref = "In ascending order: 7, 19, 42.";
  EXPECT_EQ(answer_score(kSort, ref, "x").basis, AnswerScore::Basis::kOrder);
  EXPECT_EQ(mt_bench_rating(kSort, ref, "In ascending order: 42, 7, 19."), 1);
  EXPECT_EQ(mt_bench_rating(kSort, ref, "In ascending order: 7, 42, 19."), 1);
  EXPECT_EQ(mt_bench_rating(kSort, ref, "Echo: " + kSort), 1);  // the question's order is not the answer's
  // [sorted in ascending order 7 19 42 done] contains it: 1 -> 10
  EXPECT_EQ(mt_bench_rating(kSort, ref, "Sorted in ascending order: 7, 19, 42. Done."), 10);
  const std::string words = "Sort these words alphabetically: pear, apple, fig.";
  EXPECT_EQ(mm_vet_tenths(words, "Alphabetically: apple, fig, pear.", "Alphabetically: pear, apple, fig."), 0);
  EXPECT_EQ(mm_vet_tenths(words, "Alphabetically: apple, fig, pear.", "alphabetically: apple, fig, pear!"), 10);
  // Reversing word order: [green blue red] are all the question's words.
  const std::string reverse = "Reverse the order of the words: red blue green.";
  EXPECT_EQ(mt_bench_rating(reverse, "green blue red", "red blue green"), 1);
  EXPECT_EQ(mt_bench_rating(reverse, "green blue red", "The words reversed: green blue red."), 10);
}

TEST(ReferenceMatchRule, RightAnswerInALongerSentenceGetsFullOrNearlyFullMarks) {
  // [347 1289 is 1636] less [what is 347 1289]: [1636] against [1636]: 1 -> 10 (v1: 6/7 -> 9)
  EXPECT_EQ(mt_bench_rating(kSum, "347 + 1289 = 1636.", "347 + 1289 is 1636."), 10);
  // A short reference: [there are 3 red circles] less the question: [3] against [3]: 1.0 (v1: 2/6 -> 0.3)
  EXPECT_EQ(mm_vet_tenths(kCount, "3", "There are 3 red circles."), 10);
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "3"), 10);  // and the other way round (v1: 0.3)
  // [no there is no purple cross] less the question: [no no] against [no no]: 1.0 (v1: 12/15 -> 0.8)
  EXPECT_EQ(mm_vet_tenths(kCross, "No, there is no purple cross in the image.", "No, there is no purple cross."), 10);
  // [yes there is one purple cross in the image] less the question: [yes one] against [yes]: c = 1,
  // F1 = 2/3 -> MM-Vet round(6.67) = 0.7, MT-Bench 1 + round(6) = 7
  const std::string yes = "Yes, there is a purple cross in the image.";
  EXPECT_EQ(mm_vet_tenths(kCross, yes, "Yes, there is one purple cross in the image."), 7);
  EXPECT_EQ(mt_bench_rating(kCross, yes, "Yes, there is one purple cross in the image."), 7);
  // [the reversed string is tenalp as asked] less [reverse the string planet]: [reversed is tenalp as asked]
  // against [reversed is tenalp]: c = 3, F1 = 6/8 -> 1 + round(6.75) = 8
  EXPECT_EQ(mt_bench_rating("Reverse the string \"planet\".", "The reversed string is \"tenalp\".",
                            "The reversed string is \"tenalp\", as asked."),
            8);
}

// What answer-tokens-v2 still gets wrong, as the README states.
TEST(ReferenceMatchRule, RemainingLimitsTheReadmeDocuments) {
  // Reference words the question lacks are answer-bearing even when they only frame the answer: the letter count
  // off by one keeps "appears" ([appears 2] against [appears 3]: c = 1, F1 = 1/2 -> MT-Bench 6, MM-Vet 0.5), the
  // bare right word loses the frame ([tenalp] against [reversed is tenalp]: 2/4 -> 6), the wrong word keeps it
  // ([reversed is] against [reversed is tenalp]: 4/5 -> 1 + round(7.2) = 8), and a position one row off shares
  // [at the ... left] (c = 3 of 4 + 4: 0.75 -> MM-Vet 0.8).
  const std::string letter_q = "How many times does the letter \"a\" appear in \"banana\"?";
  const std::string letter_ref = "The letter \"a\" appears 3 times in \"banana\".";
  EXPECT_EQ(mt_bench_rating(letter_q, letter_ref, "The letter \"a\" appears 2 times in \"banana\"."), 6);
  EXPECT_EQ(mm_vet_tenths(letter_q, letter_ref, "The letter \"a\" appears 2 times in \"banana\"."), 5);
  const std::string rev_q = "Reverse the string \"planet\".", rev_ref = "The reversed string is \"tenalp\".";
  EXPECT_EQ(mt_bench_rating(rev_q, rev_ref, "tenalp"), 6);
  EXPECT_EQ(mt_bench_rating(rev_q, rev_ref, "The reversed string is \"planet\"."), 8);
  EXPECT_EQ(mm_vet_tenths("Where is the red circle?", "The red circle is at the top left.",
                          "The red circle is at the bottom left."),
            8);
  // Words outside the question cost precision: [the answer 1636] against [1636] is 1/2 -> 6 (above), and
  // [i see 3] against [3] the same -> MM-Vet 0.5.
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "I see 3 red circles."), 5);
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "3 or 4"), 5);  // a hedge: [3 or 4] against [3]: 2/4
  EXPECT_EQ(mm_vet_tenths(kCount, "There are 3 red circles.", "There are three."), 0);  // no number words
  // A word problem's reference holds its working, and the working's numbers and words the question lacks are
  // answer-bearing: 15 of them here ([6 so 6 22 after giving she has 22 16 6 the answer is 6]), so the right
  // final answer alone rates low: [the answer is 6]: c = 4, F1 = 8/19 -> 1 + round(3.79) = 5; [6]: 2/16 -> 2.
  const std::string apples_q = "Anna has 16 apples. She buys 3 bags with 2 apples each and gives away 16 apples. "
                               "How many apples does Anna have now?";
  const std::string apples_ref = "Anna buys 3 * 2 = 6 apples, so she has 16 + 6 = 22 apples. After giving away 16, "
                                 "she has 22 - 16 = 6 apples. The answer is 6.";
  EXPECT_EQ(answer_tokens(apples_q, apples_ref).size(), 15u);
  EXPECT_EQ(mt_bench_rating(apples_q, apples_ref, "The answer is 6."), 5);
  EXPECT_EQ(mt_bench_rating(apples_q, apples_ref, "6"), 2);
  // The working right and the last step wrong: 13 of the 15 shared, 2 x 6 -> 7: F1 = 26/30 -> 1 + round(7.8) = 9.
  EXPECT_EQ(mt_bench_rating(apples_q, apples_ref,
                            "Anna buys 3 * 2 = 6 apples, so she has 16 + 6 = 22 apples. After giving away 16, she "
                            "has 22 - 16 = 7 apples. The answer is 7."),
            9);
  // Order-graded answers need the reference's whole sentence: the bare sorted list misses "in ascending order".
  EXPECT_EQ(mt_bench_rating(kSort, "In ascending order: 7, 19, 42.", "7, 19, 42"), 1);
  // It is a containment test: wrong orders beside the right one do not count against it.
  EXPECT_EQ(mt_bench_rating(kSort, "In ascending order: 7, 19, 42.",
                            "In ascending order: 42, 7, 19. No: in ascending order: 7, 19, 42."),
            10);
  // An answer that is one of the question's words leaves the reference no answer-bearing token either: [blue]
  // does not contain [it is blue].
  EXPECT_EQ(mm_vet_tenths("Is it red or blue?", "It is blue.", "Blue."), 0);
  // Case is normalised away: in an uppercase task only [in] is answer-bearing, so the title-cased wrong answer
  // is an exact match (10) and the bare right answer has no answer-bearing token (1).
  const std::string upper_q = "Convert \"red apple\" to uppercase.", upper_ref = "In uppercase: \"RED APPLE\".";
  EXPECT_EQ(mt_bench_rating(upper_q, upper_ref, "In uppercase: \"Red Apple\"."), 10);
  EXPECT_EQ(mt_bench_rating(upper_q, upper_ref, "RED APPLE"), 1);
}

TEST(ReferenceMatchRule, MmVetTakesTheBestOrAlternativeAndDropsAndMarkers) {
  const std::string x = "What is x in the equation?";  // [what is x in the equation]
  // "<AND>" dropped: [-1 -5] against [x -1 or x -5] less one x: [-1 or x -5]: c = 2, F1 = 4/6 = 0.67 -> 0.7
  EXPECT_EQ(mm_vet_tenths(x, "-1 <AND> -5", "x = -1 or x = -5"), 7);
  // "<OR>": [-1] against [-5] gives 0; [-5] against [-5] gives 1.0
  EXPECT_EQ(mm_vet_tenths(x, "-1 <OR> -5", "x = -5"), 10);
  EXPECT_EQ(mm_vet_tenths(x, "-1 <OR> -5", "x = -3"), 0);
  EXPECT_EQ(mm_vet_tenths("What colour is the triangle?", "The triangle is red.", "the triangle is red"), 10);
  EXPECT_EQ(mm_vet_tenths("What colour is the triangle?", "The triangle is red.", ""), 0);
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
  const std::string ref = "There are 3 red circles.";  // answer-bearing against kCount: [3]
  // {Helpfulness, Correctness, Coherence, Complexity, Verbosity}
  auto five = [&](const std::string& response) {
    const HelpSteerScores s = helpsteer_scores(kCount, ref, response);
    return std::vector<int>{s.helpfulness, s.correctness, s.coherence, s.complexity, s.verbosity};
  };
  EXPECT_EQ(five(ref), (std::vector<int>{4, 4, 4, 1, 2}));
  // [3 circles circles] against [3]: c = 1, F1 = 2/4 -> round(2) = 2; a run of three and no full stop: 4 - 2 - 1;
  // 7 of 5 tokens = 1.4 -> 3
  EXPECT_EQ(five("There are 3 red circles circles circles"), (std::vector<int>{2, 2, 1, 1, 3}));
  // [3] against [3]: 4; 1 of 5 tokens = 0.2 -> 0
  EXPECT_EQ(five("3."), (std::vector<int>{4, 4, 4, 1, 0}));
  // [2] against [3]: 0; 5 of 5 tokens -> 2
  EXPECT_EQ(five("There are 2 red circles."), (std::vector<int>{0, 0, 4, 1, 2}));
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
  EXPECT_EQ(seen->question, "What is 347 + 1289?");
  EXPECT_EQ(seen->reference, "347 + 1289 = 1636.");
  EXPECT_EQ(seen->response, "The answer is 1636.");
  const mmr::JudgeReply reply = c.reply({"The answer is 1636.", "anything"}, 1);
  ASSERT_TRUE(reply.ok) << reply.error;
  EXPECT_EQ(reply.text, "Rating: [[6]]");  // [the answer 1636] against [1636]: 2/4 x 9 = 4.5 -> 5, + 1
  EXPECT_EQ(mtb::parse_rating(reply.text), 6);
  EXPECT_EQ(c.reply({"347 + 1289 = 1636.", ""}, 1).text, "Rating: [[10]]");
  EXPECT_EQ(c.reply({"", ""}, 1).text, "Rating: [[1]]");
  EXPECT_EQ(c.reply({"Echo: What is 347 + 1289?", ""}, 1).text, "Rating: [[1]]");  // [echo] against [1636]
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
  EXPECT_EQ(seen->question, "Reverse the string \"planet\".");  // the judged turn's question
  EXPECT_EQ(seen->reference, "The reversed string is \"tenalp\".");
  EXPECT_EQ(seen->response, "The reversed string is \"planet\".");
  // Less [reverse the string planet]: [reversed is] against [reversed is tenalp]: c = 2, F1 = 4/5, 7.2 -> 7, + 1
  EXPECT_EQ(c.reply({tricky_first, "The reversed string is \"planet\"."}, 2).text, "Rating: [[8]]");
  EXPECT_EQ(c.reply({"wrong", "the reversed string is TENALP"}, 2).text, "Rating: [[10]]");
  // An echo of the second question leaves [echo]: 1. (Less the FIRST question it would keep [the string] of
  // [echo reverse the string planet], against [the reversed string is tenalp]: c = 2, 4/10 -> 5.)
  EXPECT_EQ(c.reply({"1636", "Echo: Reverse the string \"planet\"."}, 2).text, "Rating: [[1]]");
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
    // A prediction with the table's separator and a blank line is still the prediction: [3 4 second paragraph]
    // (none of them the question's) against [3], the ground truth less the question: c = 1, F1 = 2/5 -> 0.4
    const std::string odd = "3 | 4\n\nsecond paragraph";
    const std::string message = mmr::mm_vet::build_grader_message(prompt, q, gt, odd, retry);
    const auto seen = recognise({"", message, 0.0, 3, {}});
    ASSERT_TRUE(seen.has_value());
    EXPECT_EQ(seen->format, Format::kMmVetGrader);
    EXPECT_EQ(seen->question, q);
    EXPECT_EQ(seen->reference, gt);
    EXPECT_EQ(seen->response, odd);
    EXPECT_EQ(ask("", message).text, "0.4");
    // The count off by one: [2] against [3]
    EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, q, gt, "There are 2 red circles.", retry)).text,
              "0.0");
  }
  const std::string x = "What is x in the equation?";  // the cases of MmVetTakesTheBestOrAlternative...
  EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, x, "-1<AND>-5", "x = -1 or x = -5")).text, "0.7");
  EXPECT_EQ(ask("", mmr::mm_vet::build_grader_message(prompt, x, "-1<OR>-5", "x = -5")).text, "1.0");
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
  EXPECT_EQ(seen->question, "How many red circles are there?");
  EXPECT_EQ(seen->reference, "There are 3 red circles.");
  const mmr::JudgeReply reply = ask("", prompt);
  ASSERT_TRUE(reply.ok) << reply.error;
  // [3 circles circles] against [3]: F1 = 2/4 -> 2; the rest as in HelpSteerScoresFollowTheRule
  EXPECT_EQ(reply.text, "Helpfulness: 2\nCorrectness: 2\nCoherence: 1\nComplexity: 1\nVerbosity: 3");
  const auto scores = mmr::annotate::parse_scores(reply.text);
  ASSERT_TRUE(scores.has_value());
  EXPECT_EQ(*scores, (std::map<std::string, int>{{"Helpfulness", 2}, {"Correctness", 2}, {"Coherence", 1},
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
  EXPECT_EQ(judge->identity(), "reference_match 2.0.0 rule=answer-tokens-v2");
  const std::string grader =
      mmr::mm_vet::build_grader_message(mm_vet_prompt(), "What colour is the square?", "The square is blue.", "blue");
  const auto replies = judge->judge({{"", grader, 0.0, 3, {}}, {"", "hello", -1, -1, {}}, {"", grader, 1.5, 3, {}}});
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_TRUE(replies[0].ok);
  EXPECT_EQ(replies[0].text, "1.0");  // [blue] against [the square is blue] less the question, [blue]
  EXPECT_FALSE(replies[1].ok);
  EXPECT_EQ(replies[2].text, replies[0].text);  // deterministic at any temperature
  EXPECT_THROW(registry.create(mmr::PluginKind::Judge, "reference_match", YAML::Load("{model: gpt-4}"), "test"),
               mmr::Error);
}
