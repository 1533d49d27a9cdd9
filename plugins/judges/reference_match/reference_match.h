// The `reference_match` judge, torch-free: grades a response against the REFERENCE ANSWER CARRIED IN THE PROMPT,
// deterministically. A stand-in for GPT-4 where the ground truth is known (the synthetic world's benchmarks): it
// reads the judge prompts the benchmark plugins build, takes the question, the reference and the response out of
// them, and answers in the format each benchmark's official parser reads. It judges nothing else: quality beyond the
// overlap with the reference's answer (style, reasoning shown, safety) is invisible to it.
//
// Prompt formats recognised (exact text, as the code that builds each prompt writes it):
//   mt_bench_single_math             FastChat "single-math-v1" (plugins/benchmarks/mt_bench build_judge_request,
//                                    judge_prompts.jsonl): question = {question}, reference = {ref_answer_1},
//                                    response = {answer}; reply "Rating: [[N]]", N = 1 + round(9 score)
//   mt_bench_single_math_multi_turn  FastChat "single-math-v1-multi-turn": question = {question_2}, reference =
//                                    {ref_answer_2}, response = {answer_2} (the judged second turn); reply
//                                    "Rating: [[N]]"
//   mm_vet_grader                    MM-Vet's grader message (plugins/benchmarks/mm_vet build_grader_message with
//                                    the official few-shot prompt; the retry form too): the last table row's
//                                    question, ground truth and prediction; reply the score rounded to one
//                                    decimal, "0.0".."1.0"
//   annotate_rubric_with_reference   the annotate stage's rubric with a "[Reference answer]\n{reference}\n\n"
//                                    block before "[Response]" (rubric_with_reference.txt, compiled in): its
//                                    {question}, {reference} and {response}; reply the five lines
//                                    "Helpfulness: N" ... "Verbosity: N"
// Any other prompt gets a reply with ok = false and an error naming these formats.
//
// The grading rule ("answer-tokens-v2") grades the ANSWER-BEARING tokens: the words the reference adds to the
// question. Texts are normalised (ASCII lowercase; every ASCII punctuation character deleted except a '+'/'-' sign
// directly before a digit and not after a letter or digit, and a '.' between two digits; whitespace runs split
// tokens). Every format passes the judged question (MT-Bench multi-turn: the second question). Then:
//   1. equal normalised token lists of reference and response: full marks (also when both are empty);
//   2. answer-bearing tokens of a text = its tokens minus the question's, as multisets (each question token
//      removes one occurrence); when the reference has some, the score is SQuAD's F1 between the reference's and
//      the response's answer-bearing tokens: overlap c, F1 = 2c / (response + reference answer-bearing tokens),
//      0 when c = 0 (so 0 when the response has none);
//   3. when the reference has none (it only reorders or repeats the question's words: sorting, reversing word
//      order), order decides: 1 when the reference's whole normalised token sequence occurs contiguously in the
//      response's, else 0 (an empty reference gets 0 against a non-empty response).
// Every rounding below is half-up and computed exactly from the counts (no floating-point ties):
//   MT-Bench rating     1 + round(9 score)                        (1..10)
//   MM-Vet score        round(10 score) / 10                      (0.0..1.0)
//   HelpSteer (0-4)     Helpfulness = Correctness = round(4 score)
//                       Coherence = 0 for an empty response, else 4 - 2 (a token repeated 3+ times in a row)
//                                   - 1 (the reference ends a sentence with . ! ? and the response does not)
//                       Complexity = 1, fixed: a reference comparison cannot measure the expertise a response
//                                    shows, and the world's tasks need none; a constant leaves pairs built from
//                                    the other attributes unchanged
//                       Verbosity from r = response tokens / reference tokens (all tokens, not only the
//                                    answer-bearing ones): 0 (r < 0.4), 1 (r < 0.7), 2 (0.7 <= r <= 1.3, within
//                                    30%), 3 (r <= 2), 4 (r > 2); with an empty reference 2 for an empty response,
//                                    else 4
// MM-Vet ground truths with "<OR>" grade against the best alternative; "<AND>" markers are dropped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/api/plugin_api.h"

namespace mmr::reference_match {

inline constexpr const char* kVersion = "2.0.0";
inline constexpr const char* kRule = "answer-tokens-v2";

// ---- the grading rule ----

std::string normalise(std::string_view text);
std::vector<std::string> tokens(std::string_view text);  // the normalised text split on whitespace
// The tokens of `text` minus the tokens of `question`, as multisets (each question token removes one occurrence);
// the rest in their order.
std::vector<std::string> answer_tokens(std::string_view question, std::string_view text);

// The grade of a response as exact counts.
struct AnswerScore {
  enum class Basis {
    kExact,         // equal normalised token lists: 1
    kAnswerTokens,  // F1 of the answer-bearing tokens
    kOrder,         // the reference has no answer-bearing token: 1 when its token sequence is in the response's
  };
  Basis basis = Basis::kExact;
  int64_t common = 0;            // kAnswerTokens: multiset overlap of the answer-bearing tokens
  int64_t response_tokens = 0;   // kAnswerTokens: the response's answer-bearing tokens
  int64_t reference_tokens = 0;  // kAnswerTokens: the reference's answer-bearing tokens (> 0)
  bool contiguous = false;       // kOrder: the reference's token sequence occurs in the response's
  std::pair<int64_t, int64_t> fraction() const;  // the score as numerator / denominator (> 0)
  double value() const;                          // 0..1
  int64_t scaled(int64_t scale) const;           // round(scale * value()), half up, exact
};
AnswerScore answer_score(std::string_view question, std::string_view reference, std::string_view response);
// True when a grades strictly higher than b.
bool better(const AnswerScore& a, const AnswerScore& b);

int mt_bench_rating(std::string_view question, std::string_view reference, std::string_view response);  // 1..10
// Tenths, 0..10: the best "<OR>" alternative of the ground truth, "<AND>" markers dropped.
int mm_vet_tenths(std::string_view question, std::string_view ground_truth, std::string_view prediction);

struct HelpSteerScores {
  int helpfulness = 0, correctness = 0, coherence = 0, complexity = 1, verbosity = 0;
};
HelpSteerScores helpsteer_scores(std::string_view question, std::string_view reference, std::string_view response);
int coherence(std::string_view reference, std::string_view response);
int verbosity(int64_t response_tokens, int64_t reference_tokens);

// ---- the prompt formats ----

enum class Format { kMtBenchSingleMath, kMtBenchSingleMathMultiTurn, kMmVetGrader, kAnnotateRubricWithReference };
const char* format_name(Format format);  // "mt_bench_single_math", ...

struct Recognised {
  Format format;
  std::string question;   // the judged question: its words are not answer-bearing
  std::string reference;  // the text graded against
  std::string response;   // the text graded
};
// nullopt when the request is in none of the formats.
std::optional<Recognised> recognise(const JudgeRequest& request);
// The reply for a request: the grade in its format's reply format, or ok = false naming the known formats.
JudgeReply grade(const JudgeRequest& request);

// The texts recognised, quoted from their sources (the tests compare them with the official files).
extern const char* const kMtBenchSingleMathSystem;           // single-math-v1's system_prompt
extern const char* const kMtBenchSingleMathTemplate;         // single-math-v1's prompt_template
extern const char* const kMtBenchMultiTurnMathSystem;        // single-math-v1-multi-turn's system_prompt
extern const char* const kMtBenchMultiTurnMathTemplate;      // single-math-v1-multi-turn's prompt_template
extern const char* const kRubricWithReference;               // rubric_with_reference.txt as built in

// A template with "{name}" fields (name = [A-Za-z0-9_]+; every other brace is literal text) matched against a
// whole text: literal parts must appear exactly; a field seen before must repeat its first value; otherwise the
// shortest value that lets the rest match is taken (backtracking). nullopt when no assignment matches.
std::optional<std::map<std::string, std::string>> match_template(std::string_view tmpl, std::string_view text);

}  // namespace mmr::reference_match
