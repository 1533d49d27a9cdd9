// LLaVA-Bench (in-the-wild) scoring, torch-free: reproduces LLaVA's llava/eval/summarize_gpt_review.py, and the
// pure pieces of llava/eval/eval_gpt_review_bench.py (haotian-liu/LLaVA @ 181a2f8) that a judge step needs.
//
// Review file (JSONL, one line per question): {"id", "question_id", "answer1_id", "answer2_id", "category",
// "content", "tuple": [reference_score, model_score]}. summarize_gpt_review.py reads "question_id" (only for
// --ignore), "category", and "tuple" (or "score" when a line has neither "category" nor "tuple").
//
// Arithmetic reproduced exactly: per key (each category, and "all" = every line), the column means of the tuples
// (numpy mean over rows), each rounded with Python's round(x, 3); then the relative score
// round(model_mean / reference_mean * 100, 1), again Python's round (correctly rounded, ties to even on the exact
// binary value). Keys are reported in Python's sorted order ("all" < "llava_bench_complex" < ...).
// Failed reviews keep the tuple [-1, -1] that parse_score wrote and are averaged in, as the official script does;
// we count them (n_failed) so they are not silent.
//
// Stricter: malformed JSON lines, a missing or non-numeric tuple, a tuple of other than 2 numbers, and a zero
// reference mean are DataErrors naming file:line; blank lines are skipped.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/metrics.h"

namespace mmr::llava_bench {

struct Review {
  int line = 0;
  int64_t question_id = 0;
  bool has_question_id = false;    // integer question_id present (needed only for `ignore`)
  std::string category;            // "" when the line has no "category"
  bool has_category = false;
  std::array<double, 2> tuple{};   // [reference score, model score]
};

// Throws mmr::IoError / mmr::DataError (file:line).
std::vector<Review> read_reviews(const std::string& path);

struct CategoryScore {
  std::string name;            // "all", "llava_bench_complex", "llava_bench_conv", "llava_bench_detail"
  int64_t n = 0;               // reviews averaged
  int64_t n_failed = 0;        // of which tuple == [-1, -1] (parse_score failed)
  double reference_mean = 0;   // round(mean of tuple[0], 3)
  double model_mean = 0;       // round(mean of tuple[1], 3)
  double relative = 0;         // round(model_mean / reference_mean * 100, 1)
  double reference_score = 0;  // round(reference_mean * 10, 1): LLaVA's later summarize_gpt_review.py prints it too
  double model_score = 0;      // round(model_mean * 10, 1)
};

struct ReviewSummary {
  std::string config;                    // the name summarize_gpt_review.py prints for the file
  std::vector<CategoryScore> categories; // sorted by name; "all" first
};

// `ignore`: question_ids to skip (the script's -i/--ignore).
ReviewSummary summarize(const std::vector<Review>& reviews, const std::string& config,
                        const std::set<int64_t>& ignore = {});
ReviewSummary summarize_file(const std::string& path, const std::set<int64_t>& ignore = {});
// basename with "gpt4_text_" and ".jsonl" removed, as the script prints it.
std::string config_name(const std::string& path);

// Names per key K: "K" (relative score, as printed), "K/reference", "K/model" (the rounded means),
// "K/reference_score", "K/model_score" (the means x10, rounded to 1 place, as LLaVA's later version of the script
// also prints), "K/n", "K/n_failed". K = "all" is the overall score (72.8 for LLaVA-1.5-13B's eval1 reviews).
mmr::MetricList to_metrics(const ReviewSummary& summary);
mmr::MetricList score_file(const std::string& review_path, const std::set<int64_t>& ignore = {});

// Python's round(x, ndigits) on a float: correctly rounded decimal, ties to even on the exact binary value.
double python_round(double x, int ndigits);

// ---- review prompts (the judge step) ----

// eval_gpt_review_bench.py's request settings.
inline constexpr std::string_view kReviewerSystemPrompt =
    "You are a helpful and precise assistant for checking the quality of the answer.";
inline constexpr double kReviewerTemperature = 0.2;
inline constexpr int kReviewerMaxTokens = 1024;
inline constexpr std::string_view kReviewerModel = "gpt-4-0314";

struct Rule {
  std::string role;    // "Assistant"
  std::string prompt;  // the [System] text
};
// rule.json: {"llava_bench_conv": {"role": ..., "prompt": ...}, ...}.
std::map<std::string, Rule> read_rules(const std::string& path);

struct Question {
  int line = 0;
  int64_t question_id = 0;
  std::string image;
  std::string text;
  std::string category;  // "conv", "detail", "complex"
};
struct Answer {
  int line = 0;
  int64_t question_id = 0;
  std::string answer_id;  // "" when absent
  std::string text;
};
std::vector<Question> read_questions(const std::string& path);
std::vector<Answer> read_answers(const std::string& path);
// context.jsonl: image -> the "[Context]" text, built as eval_gpt_review_bench.py builds it:
// '\n'.join(context["caption"]). The in-the-wild captions are strings, so Python joins their CHARACTERS
// (code points) with newlines ("ab" -> "a\nb"); we reproduce that by default. Several later forks use a string
// caption as it is (`join_string_characters = false`). A list caption joins its items either way.
std::map<std::string, std::string> read_context(const std::string& path, bool join_string_characters = true);
// `caption_json_text`: the caption as JSON text (a string or a list of strings).
std::string join_caption(const std::string& caption_json_text, bool join_string_characters = true);

// The user message: "[Context]\n{context}\n\n[Question]\n{question}\n\n[{role} 1]\n{answer1}\n\n[End of {role} 1]"
// "\n\n[{role} 2]\n{answer2}\n\n[End of {role} 2]\n\n[System]\n{prompt}\n\n".
std::string build_review_prompt(const Rule& rule, std::string_view context, std::string_view question,
                                std::string_view answer1, std::string_view answer2);

struct ReviewRequest {
  int64_t id = 0;           // 1-based, as the script's 'id'
  int64_t question_id = 0;
  std::string answer1_id;   // answer1's answer_id, else its question_id (then answer1_id_is_int)
  bool answer1_id_is_int = false;
  std::string answer2_id;   // answer2's answer_id (required: the script's default expression reads it too)
  std::string category;     // "llava_bench_" + question category (the rule key)
  std::string content;      // the user message
};
// Pairs questions, answers1 (the GPT-4 reference) and answers2 (the model) by position, as the script's zip does.
// Stricter: the three lists must have the same length and the same question_id on each row; every image needs a
// context and every category a rule.
std::vector<ReviewRequest> build_review_requests(const std::vector<Question>& questions,
                                                 const std::map<std::string, std::string>& context,
                                                 const std::vector<Answer>& answers1,
                                                 const std::vector<Answer>& answers2,
                                                 const std::map<std::string, Rule>& rules);

// LLaVA's parse_score: first line, ',' -> ' ', split on single spaces; exactly two Python floats, else [-1, -1].
std::array<double, 2> parse_score(std::string_view review);

// One review line as the script writes it: {"id", "question_id", "answer1_id", "answer2_id", "category",
// "content", "tuple"}, ASCII-escaped.
std::string review_line(const ReviewRequest& request, std::string_view review_text, const std::array<double, 2>& tuple);

// One line of LLaVA's answer file (llava/eval/model_vqa.py): {"question_id", "prompt", "text", "answer_id",
// "model_id", "metadata": {}}; ASCII-escaped.
struct AnswerRecord {
  int64_t question_id = 0;
  std::string prompt;
  std::string text;
  std::string answer_id;
  std::string model_id;
};
std::string answers_jsonl(const std::vector<AnswerRecord>& answers);  // the answer file's text

}  // namespace mmr::llava_bench
