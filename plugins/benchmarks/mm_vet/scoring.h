// MM-Vet scoring, torch-free: reproduces the scoring half of MM-Vet's mm-vet_evaluator.py
// (yuweihao/MM-Vet @ c7ff270; the notebook mm-vet_evaluator.ipynb does the same), and the pure pieces of its
// GPT-4 grading half that a judge step needs (prompt, reply parsing, retry schedule).
//
// Files:
//   * grade file, "<model>_<gpt_model>-grade-<N>runs.json": {"v1_0": {"model": [...], "content": [...],
//     "score": [s_run1, s_run2, ...]}, ...}, written by json.dump(indent=4). Only "score" is read for scoring.
//   * metadata, mm-vet.json from the release zip: {"v1_0": {"imagename", "question", "answer",
//     "capability": ["rec", "ocr", ...]}, ...}. Optional: without it only the total can be computed.
//   * results file (model output): {"v1_0": "answer text", ...}, as LLaVA's convert_mmvet_for_eval.py writes.
//
// Arithmetic reproduced exactly (export_result in the evaluator):
//   * per run i, in grade-file key order, Python float sums: cap[c][i] += score for each capability c of the
//     sample, total[i] += score, and the same for the sample's capability set ("integration");
//   * per column: values[i] = sum[i] / count * 100 (count = samples with that capability; for "total" the number
//     of samples in the metadata, or without metadata the number of graded samples);
//   * reported value = numpy round(mean(values), 1), i.e. rint(x*10)/10 with round-half-even, with numpy's
//     pairwise summation for the mean; std = numpy round(np.std(total values), 1) (population std, ddof=0);
//     runs = numpy round of each run's total.
// Not reproducible, so fixed by us and documented: Python orders capabilities inside a set by string hash
// (randomised per process), so the official integration column names ("ocr_spat" vs "spat_ocr") and the order of
// tied columns vary between runs of the evaluator. We join a set's names in the order of its first occurrence
// in the metadata and break ties by first occurrence. Values are unaffected.
//
// Stricter than the evaluator: a sample missing from the grade file, a grade for an id not in the metadata, a
// sample with fewer scores than the number of runs, scores that are not numbers, or samples with different run
// counts (when the run count is taken from the file) are DataErrors naming the file and the id. The evaluator's
// JSON is one document, so errors name the key rather than a line.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/lib/util/numpy_sum.h"

#include "core/api/metrics.h"

namespace mmr::mm_vet {

struct SampleGrade {
  std::string id;                    // "v1_0"
  std::vector<std::string> model;    // the grader model per run, e.g. "gpt-4-0613"
  std::vector<std::string> content;  // the parsed first token of the grader's reply per run
  std::vector<double> score;         // per run, in [0, 1]
};

struct Sample {
  std::string id;
  std::string question;
  std::string answer;                    // ground truth, may contain <AND> / <OR>
  std::vector<std::string> capability;  // "rec", "ocr", "know", "gen", "spat", "math"
};

// Throw mmr::IoError if the file cannot be read, mmr::DataError naming the file and the key otherwise.
std::vector<SampleGrade> read_grade_file(const std::string& path);  // in file order
std::vector<Sample> read_metadata(const std::string& path);         // mm-vet.json, in file order

struct ScoreOptions {
  int num_run = 0;         // 0: every sample must have the same number of scores, and that is the run count
  int decimal_places = 1;  // the evaluator's --decimal_places
};

struct ColumnScore {
  std::string name;               // "rec", "ocr_spat", "total"
  int64_t count = 0;              // the divisor: samples with this capability (set)
  std::vector<double> run_values; // sum / count * 100 per run, unrounded
  double value = 0;               // numpy round(mean(run_values), decimal_places), as the CSV shows
};

struct ScoreResult {
  int num_run = 0;
  int64_t n_samples = 0;
  std::vector<ColumnScore> capabilities;  // most common first; empty without metadata
  std::vector<ColumnScore> integrations;  // capability sets, most common first; empty without metadata
  ColumnScore total;
  double std = 0;                         // numpy round(np.std(total.run_values), decimal_places)
  std::vector<double> runs;               // numpy round(total.run_values[i], decimal_places)
};

// `metadata` may be null: then only the total is computed, over the graded samples.
ScoreResult score(const std::vector<SampleGrade>& grades, const std::vector<Sample>* metadata,
                  const ScoreOptions& options = {});

// Names: "<cap>" per capability, "total", "std", "run_<i>/total" (i from 1; the CSV's "runs" list),
// "integration/<cap_set>" per capability set (with metadata). All in percent, rounded as the evaluator rounds.
mmr::MetricList to_metrics(const ScoreResult& result);
// metadata_path may be empty.
mmr::MetricList score_files(const std::string& grade_path, const std::string& metadata_path,
                            const ScoreOptions& options = {});

// numpy's round(x, decimals) for decimals >= 0: rint(x * 10^decimals) / 10^decimals, ties to even.
double numpy_round(double x, int decimals);
// numpy's float64 sum (core/lib/util/numpy_sum.h) and mean = sum / n.
using ::mmr::numpy_sum;  // core/lib/util/numpy_sum.h
double numpy_mean(const std::vector<double>& values);
double numpy_std(const std::vector<double>& values);  // ddof = 0

// ---- grading (the judge step) ----

// grader_prompt.txt as stored (the evaluator's `prompt` literal, ending with a newline).
std::string read_grader_prompt(const std::string& path);
// " <AND> " and " <OR> " padding of the ground truth, as the evaluator does before building the message.
std::string pad_ground_truth(std::string_view answer);
// prompt + "\n" + " | ".join([question, padded ground truth, prediction, ""]); with `retry` the evaluator's
// "\nPredict the correctness of the answer (digit): " is appended.
std::string build_grader_message(std::string_view prompt, std::string_view question, std::string_view ground_truth,
                                 std::string_view prediction, bool retry = false);
// The evaluator's reading of a reply: the text before the first ' ', stripped of whitespace, must be a Python
// float in [0, 1]. Returns nullopt where the evaluator would retry. Stricter: "nan" is rejected (Python's range
// check lets it through).
std::optional<double> parse_grader_reply(std::string_view reply);

// The evaluator's request settings and retry schedule: max_tokens 3; attempt 0 uses the plain message at
// temperature 0; after a reply that does not parse, attempt k >= 1 uses the retry message at temperature
// 0.5 * (k - 1). A sample gets score 0 after 5 replies that do not parse. (The evaluator sends a 6th request whose
// reply it never reads; we do not send it.)
constexpr int kGraderMaxTokens = 3;
constexpr int kGraderMaxParsedReplies = 5;
double grader_temperature(int attempt);

struct GradeOutcome {
  double score = 0;
  std::string content;  // what the evaluator stores: the parsed token, or the last raw reply on failure
  int attempts = 0;     // requests sent
  bool failed = false;  // true when the score is the 0 given after 5 unparsable replies
};
// Runs the evaluator's loop with `ask(message, temperature)` returning the grader's reply text.
GradeOutcome grade_sample(std::string_view prompt, std::string_view question, std::string_view ground_truth,
                          std::string_view prediction,
                          const std::function<std::string(const std::string& message, double temperature)>& ask);

// ---- writers ----

// "v1_<question_id>", the key LLaVA's convert_mmvet_for_eval.py gives question_id N of llava-mm-vet.jsonl.
std::string result_key(int64_t question_id);
// The results file's text: {"v1_0": "text", ...} in json.dump(indent=2) layout, ASCII-escaped. A repeated key is a
// DataError.
std::string results_json(const std::vector<std::pair<std::string, std::string>>& results);
// The grade file's text in the evaluator's layout (indent=4), e.g. to resume grading with the official script.
std::string grade_file_json(const std::vector<SampleGrade>& grades);

}  // namespace mmr::mm_vet
