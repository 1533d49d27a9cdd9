// MT-Bench scoring, torch-free: reproduces FastChat's fastchat/llm_judge/show_result.py (single-answer grading),
// and the pure pieces of fastchat/llm_judge/gen_judgment.py and common.py (lm-sys/FastChat) a judge step needs.
//
// Judgment file (model_judgment/<judge>_single.jsonl), one line per (question, model, turn):
// {"question_id", "model", "judge": [judge_model, prompt_name], "user_prompt", "judgment", "score", "turn",
// "tstamp"}. show_result.py reads "model", "score" and "turn" (pandas.read_json(lines=True)).
//
// Arithmetic reproduced exactly (display_result_single): rows with score == -1 are dropped; per model the mean
// score of turn 1, of turn 2, and of all remaining rows ("Average": a mean over rows, not of the two turn means).
// pandas' groupby mean adds with Kahan compensation, and so do we. Every row counts, duplicates included, as in
// pandas; we count duplicates (same model, question, turn) so they are reported.
// Per category (not in show_result.py; as FastChat's MT-Bench radar plot computes it): the mean over both turns of
// a category's non-failed rows, given the question file.
//
// Stricter: malformed lines, missing or mistyped "model"/"score"/"turn"/"question_id", a turn other than 1 or 2,
// and (with a question file) judgments for unknown questions are DataErrors naming file:line; blank lines skipped.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/metrics.h"

namespace mmr::mt_bench {

struct Judgment {
  int line = 0;
  int64_t question_id = 0;
  std::string model;
  double score = -1;  // -1: the judge's reply could not be parsed
  int turn = 1;       // 1 or 2
  std::string judge_model;   // judge[0], "" when absent
  std::string judge_prompt;  // judge[1], e.g. "single-v1", "" when absent
};

struct Question {
  int line = 0;
  int64_t question_id = 0;
  std::string category;
  std::vector<std::string> turns;
};

// One model answer (FastChat gen_model_answer format); `turns` are choices[0].turns.
struct ModelAnswer {
  int line = 0;
  int64_t question_id = 0;
  std::string model_id;
  std::vector<std::string> turns;
};

// Readers throw mmr::IoError / mmr::DataError (file:line). Questions and answers must have unique question_ids.
std::vector<Judgment> read_judgments(const std::string& path);
std::vector<Question> read_questions(const std::string& path);
std::vector<ModelAnswer> read_model_answers(const std::string& path);

struct MeanScore {
  double mean = 0;
  int64_t n = 0;  // rows averaged (score != -1)
};

struct ModelScores {
  std::string model;
  std::optional<MeanScore> turn_1, turn_2, overall;  // absent when the model has no valid row of that kind
  int64_t n_judgments = 0;  // all rows of the model, failed ones included
  int64_t n_failed = 0;     // rows with score -1 (excluded)
  int64_t n_duplicates = 0; // rows repeating an earlier (question_id, turn) of the model (kept, as pandas does)
  std::map<std::string, MeanScore> categories;  // with a question file
};

struct ScoreOptions {
  std::vector<std::string> model_list;  // show_result.py's --model-list; empty = every model
};

// Models sorted by overall mean, best first (as show_result.py prints the "Average" table), ties by name.
// `questions` may be null.
std::vector<ModelScores> score(const std::vector<Judgment>& judgments, const std::vector<Question>* questions,
                               const ScoreOptions& options = {});

// Names per model M: "M/turn_1", "M/turn_2", "M/overall", "M/<category>" (with questions), "M/n_judgments",
// "M/n_failed", "M/n_duplicates".
mmr::MetricList to_metrics(const std::vector<ModelScores>& scores);
// question_path may be empty.
mmr::MetricList score_files(const std::string& judgment_path, const std::string& question_path = "",
                            const ScoreOptions& options = {});

// pandas' mean: Kahan-compensated sum / n.
double kahan_mean(const std::vector<double>& values);

// ---- judging (gen_judgment.py / common.py) ----

struct JudgePrompt {
  std::string name;             // "single-v1"
  std::string type;             // "single" or "pairwise"
  std::string system_prompt;
  std::string prompt_template;  // Python str.format template
  std::string category;         // "general" or "math"
  std::string output_format;    // "[[rating]]"
};
std::map<std::string, JudgePrompt> read_judge_prompts(const std::string& path);  // judge_prompts.jsonl

// Categories judged against the reference answer (NEED_REF_CATS): math, reasoning, coding.
bool needs_reference(std::string_view category);
// The single-answer prompt gen_judgment.py uses: single-v1 / single-math-v1, plus "-multi-turn" for turn 2.
std::string judge_prompt_name(std::string_view category, bool multi_turn);
// Generation temperature per category (common.py's temperature_config); throws DataError for unknown ones.
double temperature_for_category(std::string_view category);

// Python's str.format with keyword fields only: "{name}" is replaced, "{{" and "}}" are literal braces. A field
// that is not given, a conversion/format spec, or a lone brace is a DataError (Python raises too).
std::string format_template(std::string_view tmpl, const std::map<std::string, std::string>& fields);

struct JudgeRequest {
  std::string prompt_name;    // e.g. "single-math-v1-multi-turn"
  std::string system_prompt;  // sent as the system message
  std::string user_prompt;    // sent as the user message
  int turn = 1;               // the turn this judgment scores (2 for multi-turn prompts)
};
// run_judge_single's prompt: for turn 1 {question}, {answer} (+ {ref_answer_1}); for turn 2 (multi-turn)
// {question_1}, {question_2}, {answer_1}, {answer_2} (+ {ref_answer_1}, {ref_answer_2}). `reference` (the
// gpt-4 reference answer) is required exactly when needs_reference(question.category).
JudgeRequest build_judge_request(const std::map<std::string, JudgePrompt>& prompts, const Question& question,
                                 const ModelAnswer& answer, const ModelAnswer* reference, int turn);
// The judge's settings in common.py for gpt-4: temperature 0, max_tokens 2048.
inline constexpr double kJudgeTemperature = 0.0;
inline constexpr int kJudgeMaxTokens = 2048;

// The first "[[x]]" in the judgment, else the first "[x]", x = \d+\.?\d* (ASCII digits); -1 when neither is found.
// Python's ast.literal_eval then reads x; where it would raise (an integer with a leading zero, "08") we return -1.
double parse_rating(std::string_view judgment);

// One judgment line in FastChat's format (json.dumps layout is not byte-identical; the fields and values are).
// Integral scores are written as integers, as ast.literal_eval gives them for "[[8]]".
std::string judgment_line(int64_t question_id, std::string_view model, std::string_view judge_model,
                          const JudgeRequest& request, std::string_view judgment, double score, double tstamp);

// FastChat's model answer line: {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}],
// "tstamp"}, ASCII-escaped.
struct AnswerRecord {
  int64_t question_id = 0;
  std::string answer_id;
  std::string model_id;
  std::vector<std::string> turns;
  double tstamp = 0;
};
std::string model_answers_jsonl(const std::vector<AnswerRecord>& answers);  // the answer file's text

}  // namespace mmr::mt_bench
