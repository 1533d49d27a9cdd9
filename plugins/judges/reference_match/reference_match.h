// The `reference_match` judge, torch-free: grades a response against the REFERENCE ANSWER CARRIED IN THE PROMPT,
// deterministically. A stand-in for GPT-4 where the ground truth is known (the synthetic world's benchmarks): it
// reads the judge prompts the benchmark plugins build, takes the reference and the response out of them, and
// answers in the format each benchmark's official parser reads. It judges nothing else: quality beyond the
// overlap with the reference (style, reasoning shown, safety) is invisible to it.
//
// Prompt formats recognised (exact text, as the code that builds each prompt writes it):
//   mt_bench_single_math             FastChat "single-math-v1" (plugins/benchmarks/mt_bench build_judge_request,
//                                    judge_prompts.jsonl): reference = {ref_answer_1}, response = {answer};
//                                    reply "Rating: [[N]]", N = 1 + round(9 F1)
//   mt_bench_single_math_multi_turn  FastChat "single-math-v1-multi-turn": reference = {ref_answer_2}, response =
//                                    {answer_2} (the judged second turn); reply "Rating: [[N]]"
//   mm_vet_grader                    MM-Vet's grader message (plugins/benchmarks/mm_vet build_grader_message with
//                                    the official few-shot prompt; the retry form too): the last table row's
//                                    ground truth and prediction; reply F1 rounded to one decimal, "0.0".."1.0"
//   annotate_rubric_with_reference   the annotate stage's rubric with a "[Reference answer]\n{reference}\n\n"
//                                    block before "[Response]" (rubric_with_reference.txt, compiled in); reply
//                                    the five lines "Helpfulness: N" ... "Verbosity: N"
// Any other prompt gets a reply with ok = false and an error naming these formats.
//
// The grading rule ("token-f1-v1"): both texts are normalised (ASCII lowercase; every ASCII punctuation
// character deleted except a '+'/'-' sign directly before a digit and not after a letter or digit, and a '.'
// between two digits; whitespace runs split tokens), then SQuAD's token-level F1 (multiset overlap c, F1 = 2c /
// (response tokens + reference tokens)). Equal normalised token lists give full marks (also when both are
// empty); an empty side against a non-empty one gives F1 0. Every rounding below is half-up and computed exactly
// from the token counts (no floating-point ties):
//   MT-Bench rating     1 + round(9 F1)                           (1..10)
//   MM-Vet score        round(10 F1) / 10                         (0.0..1.0)
//   HelpSteer (0-4)     Helpfulness = Correctness = round(4 F1)
//                       Coherence = 0 for an empty response, else 4 - 2 (a token repeated 3+ times in a row)
//                                   - 1 (the reference ends a sentence with . ! ? and the response does not)
//                       Complexity = 1, fixed: a reference comparison cannot measure the expertise a response
//                                    shows, and the world's tasks need none; a constant leaves pairs built from
//                                    the other attributes unchanged
//                       Verbosity from r = response tokens / reference tokens: 0 (r < 0.4), 1 (r < 0.7),
//                                    2 (0.7 <= r <= 1.3, within 30%), 3 (r <= 2), 4 (r > 2); with an empty
//                                    reference 2 for an empty response, else 4
// MM-Vet ground truths with "<OR>" grade against the best alternative; "<AND>" markers are dropped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/plugin_api.h"

namespace mmr::reference_match {

inline constexpr const char* kVersion = "1.0.0";
inline constexpr const char* kRule = "token-f1-v1";

// ---- the grading rule ----

std::string normalise(std::string_view text);
std::vector<std::string> tokens(std::string_view text);  // the normalised text split on whitespace

// SQuAD's token F1 as exact counts.
struct TokenF1 {
  int64_t common = 0;            // multiset overlap
  int64_t response_tokens = 0;
  int64_t reference_tokens = 0;
  bool exact = false;            // equal normalised token lists
  double value() const;          // 1 when exact, else 2c / (response + reference), 0 when c = 0
  int64_t scaled(int64_t scale) const;  // round(scale * value()), half up, exact
};
TokenF1 token_f1(std::string_view reference, std::string_view response);
// True when a grades strictly higher than b.
bool better(const TokenF1& a, const TokenF1& b);

int mt_bench_rating(std::string_view reference, std::string_view response);  // 1..10
// Tenths, 0..10: the best "<OR>" alternative of the ground truth, "<AND>" markers dropped.
int mm_vet_tenths(std::string_view ground_truth, std::string_view prediction);

struct HelpSteerScores {
  int helpfulness = 0, correctness = 0, coherence = 0, complexity = 1, verbosity = 0;
};
HelpSteerScores helpsteer_scores(std::string_view reference, std::string_view response);
int coherence(std::string_view reference, std::string_view response);
int verbosity(int64_t response_tokens, int64_t reference_tokens);

// ---- the prompt formats ----

enum class Format { kMtBenchSingleMath, kMtBenchSingleMathMultiTurn, kMmVetGrader, kAnnotateRubricWithReference };
const char* format_name(Format format);  // "mt_bench_single_math", ...

struct Recognised {
  Format format;
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
