// POPE scoring, torch-free: reproduces LLaVA's llava/eval/eval_pope.py (haotian-liu/LLaVA @ 4241f08).
//
// What the official script does, and what we do the same way:
//   * questions: LLaVA's question JSONL (llava_pope_test.jsonl); only `question_id` and `category` are read.
//   * answers:   LLaVA's answer JSONL (model_vqa_loader format); only `question_id` and `text` are read.
//   * labels:    one POPE file per split, `coco_pope_<split>.json` (JSONL despite the name); only `label` is read.
//     The split name is the file name between "coco_pope_" and ".json".
//   * The answers of one split are the answers whose question has that category, in answer-file order, and they
//     are paired with the label lines BY POSITION (the i-th answer with the i-th label line).
//   * Yes/no rule (parse_yes_no): keep the text before the first '.', drop every ',', split on single spaces;
//     if any word is exactly "No", "not" or "no" the answer is "no", otherwise "yes".
//   * A label "no" is negative, anything else positive. precision = TP/(TP+FP), recall = TP/(TP+FN),
//     F1 = 2·P·R/(P+R), accuracy = (TP+TN)/N, yes-ratio = (#answers parsed "yes") / (#answers of the split).
//
// Where we are stricter than eval_pope.py (it would silently mis-score, or crash with a bare KeyError):
//   * The number of answers of a split must equal the number of label lines (the official zip() truncates).
//     A missing answer is reported with its question_id.
//   * With `check_alignment` (default on), the i-th answer's question must show the same image as the i-th label
//     line, and its text must start with the label's text: the positional pairing is then provably right.
//   * Duplicate question_ids in the question file or the answer file, answers for unknown questions, labels other
//     than "yes"/"no", missing keys and malformed JSON lines are DataErrors naming file:line.
//   * Blank lines are skipped (json.loads would raise on them).
//   * A degenerate split with TP+FP = 0 (or P+R = 0) gives precision (or F1) 0 instead of ZeroDivisionError.
//
// Units: SplitMetrics keeps the fractions eval_pope.py prints; the MetricList reports ratios as percentages
// (×100, unrounded), as the papers quote them ("F1 85.9"). Counts are plain counts.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/api/metrics.h"

namespace mmr::pope {

// A question_id as written in the file: an integer or a string. `key` is its JSON text (42 or "42"), so the
// integer 42 and the string "42" stay different, as they are different dict keys in Python.
struct QuestionId {
  std::string key;
  bool operator==(const QuestionId& o) const { return key == o.key; }
  bool operator<(const QuestionId& o) const { return key < o.key; }
};

struct Question {
  QuestionId question_id;
  std::string image;     // "" when the file has no image field
  std::string text;      // "" when the file has no text field
  std::string category;  // the split: "adversarial", "popular", "random"
  int line = 0;          // 1-based line in the question file
};

struct Answer {
  QuestionId question_id;
  std::string text;
  int line = 0;
};

struct Label {
  std::string image;
  std::string text;
  bool is_yes = false;
  int line = 0;
};

struct LabelFile {
  std::string split;  // "adversarial"
  std::string path;   // ".../coco_pope_adversarial.json"
};

struct SplitMetrics {
  int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  double accuracy = 0, precision = 0, recall = 0, f1 = 0, yes_ratio = 0;  // fractions, as eval_pope.py prints
};

struct SplitResult {
  std::string split;
  int64_t n_answers = 0;
  SplitMetrics metrics;
};

struct ScoreInputs {
  std::string answers_path;
  std::string questions_path;
  std::vector<LabelFile> label_files;  // scored and reported in this order
  bool check_alignment = true;         // see the header comment
};

struct ScoreResult {
  std::vector<SplitResult> splits;
  double mean_f1 = 0;        // fraction: mean of the splits' F1
  double mean_accuracy = 0;  // fraction
  int64_t n_unscored_answers = 0;  // answers whose category has no label file (the official script ignores them)
};

// Readers. Each throws mmr::IoError if the file cannot be opened and mmr::DataError naming file:line otherwise.
std::vector<Question> read_questions(const std::string& path);
std::vector<Answer> read_answers(const std::string& path);
std::vector<Label> read_labels(const std::string& path);

// The split of a label file name "coco_pope_<split>.json" (eval_pope.py's file[10:-5]); throws DataError otherwise.
std::string split_from_label_filename(std::string_view filename);
// All coco_pope_*.json files in `dir`, sorted by name (eval_pope.py takes os.listdir order, which is arbitrary).
std::vector<LabelFile> find_label_files(const std::string& dir);

// The official yes/no rule: true = "yes".
bool parse_yes_no(std::string_view answer_text);

// eval_pope.py's arithmetic on parsed predictions and labels of one split (equal lengths required).
SplitMetrics compute_metrics(const std::vector<bool>& predicted_yes, const std::vector<bool>& label_yes);

ScoreResult score(const ScoreInputs& inputs);

// Names: "<split>/f1", "<split>/accuracy", "<split>/precision", "<split>/recall", "<split>/yes_ratio" (percent),
// "<split>/tp", "<split>/fp", "<split>/tn", "<split>/fn", "<split>/n"; then "mean/f1", "mean/accuracy" (percent).
mmr::MetricList to_metrics(const ScoreResult& result);
mmr::MetricList score_files(const ScoreInputs& inputs);

// One line of LLaVA's answer file (llava/eval/model_vqa_loader.py), which eval_pope.py and other tools read.
struct AnswerRecord {
  QuestionId question_id;  // use question_id_from_int for integer ids
  std::string prompt;
  std::string text;
  std::string answer_id;
  std::string model_id;
};
QuestionId question_id_from_int(int64_t id);
// The answer file's text: {"question_id", "prompt", "text", "answer_id", "model_id", "metadata": {}} per line,
// ASCII-escaped as Python's json.dumps does.
std::string answers_jsonl(const std::vector<AnswerRecord>& answers);

}  // namespace mmr::pope
