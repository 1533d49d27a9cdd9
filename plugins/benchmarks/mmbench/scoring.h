// MMBench scoring, torch-free: the official MMBench rules as the MMBench team's evaluator in VLMEvalKit applied
// them in 2023–24 (open-compass/VLMEvalKit @ 9ac258c1 `vlmeval/eval/llm_fastroll_1107.py`, 2023-11, and @ 646ee5e4
// `vlmeval/evaluate/multiple_choice.py` + `vlmeval/utils/matching_util.py`, 2024-01), as described in
// shared/benchmarks/PROVENANCE.md ("Official MMBench scoring"). No program code was copied.
//
// Files:
//   * the dev/test TSV (`mmbench_dev_20230712.tsv`, legacy format): a header line, then one row per pass of a
//     question: index, question, hint, A, B, C, D, answer, category (L3 ability), l2-category, source, comment,
//     image (base64), split. Pass k of question i has index i + k·1,000,000 and its options rotated.
//   * a predictions file: the same columns (any subset, any order) plus `prediction`, as LLaVA's
//     convert_mmbench_for_submission.py writes them (index, question, A–D, prediction, answer, split), saved as
//     TSV. Columns it lacks (category, l2-category, options, question, answer) come from the data TSV when given.
//   Cells are read as pandas.read_csv(sep='\t') reads them: a cell that starts with '"' is a quoted field ("" is a
//   quote; it may hold tabs and newlines); a cell in pandas 1.x's default NA set ("", "nan", "NaN", "NA", "N/A",
//   "null", ...; pandas 2.0 added "None", which we keep as text) is missing: a missing option is no option, a
//   missing prediction is the string "nan" (the evaluator's str(x)).
//
// The rules (RuleVersion picks the 2023-11 or the 2024-01 evaluator; they differ only where noted):
//   1. Groups: row r belongs to question r.index mod 1,000,000; the question's main row (index < 1,000,000) gives
//      its category and l2-category. Each row's ground truth is its own `answer`. Rows are taken in index order.
//   2. Rule extraction (can_infer) of a prediction against the row's options (every letter column A–Z whose cell
//      is not missing, as the evaluator's build_choices):
//      (0) if the prediction contains "Failed to obtain answer via API": unresolved; if it contains one of the four
//          known refusal sentences: the "no match" letter (E in 2023-11, Z in 2024-01);
//      (a) letter: each of . ( ) [ ] , : ; ! * # { } becomes a space, split on whitespace; if exactly one of the
//          checked letters (2023-11: always A–E; 2024-01: the row's letters) is a whole token, that letter.
//          2024-01 only: if none is but the token "Z" occurs, Z;
//      (b) text: otherwise, lowercased, if exactly one option's full text is a substring of the prediction, its
//          letter;
//      otherwise unresolved.
//   3. Group verdict: extract every pass by rules; a pass whose letter differs from its answer makes the question
//      wrong; if every pass is extracted and right, it is right; otherwise the unresolved passes go to the
//      choice-extractor judge in index order (the first wrong one decides), and the judge's reply is read with
//      the same rules (2). A question counts only if every pass is right (circular evaluation).
//   4. Accuracy: overall = right questions / questions; per l2-category and per category the same over that
//      ability's questions. Reported ×100 (unrounded). L2 names are abbreviated as the evaluator does (CP, FP-S,
//      FP-C, LR, RR, AR).
//
// Where we differ from the evaluator, on purpose and reported:
//   * A question whose verdict needs a pass that stays unresolved (no judge, or a judge reply the rules cannot
//     read) counts as wrong and is counted (`unresolved_questions`; `unresolved_rows`: its passes left unresolved).
//     The evaluator retries the judge 3 times with the same prompt at temperature 0, then picks a random letter
//     (random.seed(2680)); we ask once (the judge cache would return the same reply to the same request) and never
//     guess.
//   * Lowercasing in the text rule and whitespace in the letter rule are ASCII only (Python's str.lower and
//     str.split also handle non-ASCII letters and spaces).
//   * The Chinese choice-extractor prompt is not in shared/benchmarks; questions with CJK text get the English
//     prompt (counted as `judge/cjk_prompts`).
//   * Duplicate indexes, a group without its main row, a row without an answer, and malformed TSV lines are
//     DataErrors naming file:line.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/metrics.h"

namespace mmr::mmbench {

constexpr int64_t kPassStride = 1000000;  // pass k of question i has index i + k * kPassStride

enum class RuleVersion { k2023_11, k2024_01 };
// "2023-11" or "2024-01"; anything else is a ConfigError.
RuleVersion parse_rule_version(std::string_view name);
// The letter the rules give "no option matches" (E in 2023-11, Z in 2024-01).
char no_match_letter(RuleVersion v);

// ---- TSV ----

struct Table {
  std::string path;
  std::vector<std::string> header;             // as in the file
  // Column of `name`: letters (A, B, ...) exactly, other names ignoring ASCII case (the evaluator lowercases them).
  std::vector<std::vector<std::string>> rows;  // raw cells, one per header column
  std::vector<int> lines;                      // 1-based line where each row starts
  int column(std::string_view name) const;     // -1 when absent
};
// Throws IoError if the file cannot be read, DataError naming file:line for a malformed row.
Table read_tsv(const std::string& path, const std::string& what);
// pandas 1.x read_csv's default NA strings ("", "nan", "NaN", "NA", "N/A", "null", "<NA>", "#N/A", ...).
bool is_pandas_na(std::string_view cell);

struct Option {
  char letter;
  std::string text;
};
using OptionList = std::vector<Option>;

struct Row {
  int64_t index = 0;
  std::string question, hint;          // hint "" when missing
  OptionList options;                   // every non-missing A..Z cell, in letter order
  std::string answer;                  // "A".."D"
  std::string category, l2_category;   // "" when unknown
  std::string prediction;              // "nan" when the cell is missing (the evaluator's str(NaN))
  bool has_prediction = false;         // the file has a prediction column
  std::string image;                   // base64 (data TSV only)
  int line = 0;
};

// Rows of a data TSV or a predictions TSV, in file order. `need_prediction`: the file must have `prediction`.
std::vector<Row> read_rows(const std::string& path, bool need_prediction);
std::vector<Row> read_rows(const Table& table, bool need_prediction);  // the same, of a table already read
// The predictions, with every column they lack (question, options, answer, category, l2-category) taken from the
// data rows of the same index. A prediction whose index the data lacks, or whose answer differs from the data's,
// is a DataError.
std::vector<Row> merge(std::vector<Row> predictions, const std::string& predictions_path, const std::vector<Row>& data,
                       const std::string& data_path);

// ---- rules ----

// The letter the rules extract from `answer` for a row with these options, or nullopt (unresolved).
std::optional<char> can_infer_option(std::string_view answer, const OptionList& options, RuleVersion v);
std::optional<char> can_infer_text(std::string_view answer, const OptionList& options);
std::optional<char> can_infer(std::string_view answer, const OptionList& options, RuleVersion v);

// "There are several options: \n" + "A. text\n" per option.
std::string option_string(const OptionList& options);
// The choice-extractor prompt (choice_extractor_prompt_en*.txt) with its three "{}" slots filled in order with the
// question, the option string and the prediction. A template without exactly three slots is a DataError.
std::string extractor_prompt(std::string_view prompt_template, std::string_view question,
                             const OptionList& options, std::string_view prediction);
// Whether the text has a CJK ideograph (U+4E00–U+9FA5, the evaluator's cn_string).
bool has_cjk(std::string_view text);

// ---- scoring ----

// Sends prompts to the choice-extractor judge, one reply per prompt.
using AskJudge = std::function<std::vector<std::string>(const std::vector<std::string>& prompts)>;

struct Verdict {
  int64_t question = 0;      // index of the main row
  bool hit = false;
  std::string how;           // "rule", "judge", "unresolved"
};

struct Accuracy {
  std::string name;          // "overall", "CP", "coarse_perception"/"image_style", ...
  int64_t right = 0, total = 0;
  double percent() const { return total ? 100.0 * static_cast<double>(right) / static_cast<double>(total) : 0.0; }
};

struct ScoreResult {
  std::vector<Verdict> verdicts;       // one per question, in index order
  Accuracy overall;
  std::vector<Accuracy> l2;            // sorted by l2-category name (the evaluator's order), abbreviated
  std::vector<Accuracy> categories;    // sorted by name
  int64_t n_rows = 0;
  int64_t rule_resolved_rows = 0;      // rows the rules resolved
  int64_t judge_requests = 0;          // prompts sent to the judge
  int64_t judge_resolved_rows = 0;     // judge replies the rules could read
  int64_t judge_unparseable = 0;       // judge replies the rules could not read
  int64_t cjk_prompts = 0;
  int64_t unresolved_rows = 0;         // rows a verdict needed that stayed unresolved (counted wrong)
  int64_t unresolved_questions = 0;    // questions wrong only because a pass stayed unresolved
};

struct ScoreOptions {
  RuleVersion rules = RuleVersion::k2024_01;
  std::string prompt_template;         // needed when `ask` is set
  AskJudge ask;                        // empty: no judge
};

ScoreResult score(const std::vector<Row>& rows, const std::string& path, const ScoreOptions& options);

// "overall", "l2/<abbr>", "category/<name>" (percent), then the counts: n_questions, n_rows, n_correct,
// rule_resolved_rows, unresolved_rows, unresolved_questions, and with a judge judge/extracted, judge/cjk_prompts.
mmr::MetricList to_metrics(const ScoreResult& result, bool with_judge);

// The evaluator's abbreviation of an l2-category (CP, FP-S, FP-C, LR, RR, AR); other names unchanged.
std::string l2_abbreviation(const std::string& l2_category);

// ---- evaluation ----

// LLaVA-1.5's model_vqa_mmbench.py --single-pred-prompt text (without "<image>\n"): hint + "\n" when present,
// question, "\n<L>. option" per option (A, B, ... stopping at the first missing one or one whose text is "nan" or
// "none" in any case, as the script does), then
// "\nAnswer with the option's letter from the given choices directly.".
std::string llava_prompt(const Row& row);
// The same without the final instruction: the `prompt` its answer lines record.
std::string llava_question_text(const Row& row);
// The submission TSV: the data columns minus hint, category, source, image, comment, l2-category, with
// `prediction` inserted at column 6 (convert_mmbench_for_submission.py's layout), quoted where pandas quotes.
std::string submission_tsv(const Table& data, const std::map<int64_t, std::string>& predictions);
// A TSV image cell decoded as MMBench's Python code decodes it (base64.b64decode: characters outside the alphabet
// are skipped, the padding must be right; core/lib/util/base64.h); a malformed one is a DataError naming `where`.
std::string base64_decode(std::string_view text, const std::string& where);

}  // namespace mmr::mmbench
