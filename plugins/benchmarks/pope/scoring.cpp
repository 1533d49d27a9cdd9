// POPE scoring: the behaviour of LLaVA's eval_pope.py, re-written in C++ (no code copied). See scoring.h.
#include "plugins/benchmarks/pope/scoring.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/api/error.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::pope {
namespace {

using Json = nlohmann::ordered_json;
// JSONL helpers shared with the other benchmarks (plugins/benchmarks/common/jsonl.h).
using benchmarks::JsonLine;
using benchmarks::at;
using benchmarks::is_blank;
using benchmarks::read_jsonl;
using benchmarks::require;
using benchmarks::string_field;

// One JSON object per non-blank line; errors name file:line.
std::string optional_string(const JsonLine& row, const char* key, const std::string& path) {
  if (!row.value.contains(key)) return "";
  return string_field(row, key, path);
}

QuestionId id_field(const JsonLine& row, const std::string& path) {
  const Json& v = require(row, "question_id", path);
  if (!v.is_number_integer() && !v.is_string()) {
    throw mmr::DataError(at(path, row.line) + "expected \"question_id\" to be an integer or a string, found " +
                         v.dump());
  }
  return QuestionId{v.dump()};
}

double ratio(int64_t num, int64_t den) { return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den); }

}  // namespace

std::vector<Question> read_questions(const std::string& path) {
  std::vector<Question> questions;
  std::map<QuestionId, int> seen;
  for (const JsonLine& row : read_jsonl(path, "POPE question file")) {
    Question q;
    q.question_id = id_field(row, path);
    q.category = string_field(row, "category", path);
    q.image = optional_string(row, "image", path);
    q.text = optional_string(row, "text", path);
    q.line = row.line;
    auto [it, inserted] = seen.emplace(q.question_id, row.line);
    if (!inserted) {
      throw mmr::DataError(at(path, row.line) + "duplicate question_id " + q.question_id.key + " (first on line " +
                           std::to_string(it->second) + ")");
    }
    questions.push_back(std::move(q));
  }
  return questions;
}

std::vector<Answer> read_answers(const std::string& path) {
  std::vector<Answer> answers;
  std::map<QuestionId, int> seen;
  for (const JsonLine& row : read_jsonl(path, "POPE answer file")) {
    Answer a;
    a.question_id = id_field(row, path);
    a.text = string_field(row, "text", path);
    a.line = row.line;
    auto [it, inserted] = seen.emplace(a.question_id, row.line);
    if (!inserted) {
      throw mmr::DataError(at(path, row.line) + "duplicate answer for question_id " + a.question_id.key +
                           " (first on line " + std::to_string(it->second) + ")");
    }
    answers.push_back(std::move(a));
  }
  return answers;
}

std::vector<Label> read_labels(const std::string& path) {
  std::vector<Label> labels;
  for (const JsonLine& row : read_jsonl(path, "POPE label file")) {
    Label l;
    const std::string label = string_field(row, "label", path);
    if (label != "yes" && label != "no") {
      throw mmr::DataError(at(path, row.line) + "expected \"label\" to be \"yes\" or \"no\", found \"" + label + "\"");
    }
    l.is_yes = label == "yes";
    l.image = optional_string(row, "image", path);
    l.text = optional_string(row, "text", path);
    l.line = row.line;
    labels.push_back(std::move(l));
  }
  return labels;
}

std::string split_from_label_filename(std::string_view filename) {
  constexpr std::string_view kPrefix = "coco_pope_", kSuffix = ".json";
  if (filename.size() <= kPrefix.size() + kSuffix.size() || filename.substr(0, kPrefix.size()) != kPrefix ||
      filename.substr(filename.size() - kSuffix.size()) != kSuffix) {
    throw mmr::DataError("POPE label file name '" + std::string(filename) +
                         "': expected coco_pope_<split>.json (eval_pope.py takes the split from the name)");
  }
  return std::string(filename.substr(kPrefix.size(), filename.size() - kPrefix.size() - kSuffix.size()));
}

std::vector<LabelFile> find_label_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) throw mmr::IoError("cannot list POPE annotation folder '" + dir + "': " + ec.message());
  std::vector<LabelFile> files;
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file()) continue;
    // eval_pope.py asserts that every file in the folder is a label file; we only take those that are.
    if (name.rfind("coco_pope_", 0) != 0 || name.size() < 5 || name.substr(name.size() - 5) != ".json") continue;
    files.push_back({split_from_label_filename(name), entry.path().string()});
  }
  std::sort(files.begin(), files.end(), [](const LabelFile& a, const LabelFile& b) { return a.path < b.path; });
  if (files.empty()) throw mmr::DataError("POPE annotation folder '" + dir + "': no coco_pope_<split>.json files");
  return files;
}

bool parse_yes_no(std::string_view text) {
  // "Only keep the first sentence": everything before the first '.'.
  if (auto dot = text.find('.'); dot != std::string_view::npos) text = text.substr(0, dot);
  std::string kept;
  kept.reserve(text.size());
  for (char c : text) {
    if (c != ',') kept.push_back(c);
  }
  // Python's str.split(' '): split on every single space, empty words included.
  size_t start = 0;
  while (true) {
    const size_t space = kept.find(' ', start);
    const std::string_view word = std::string_view(kept).substr(start, space == std::string::npos ? std::string::npos
                                                                                                   : space - start);
    if (word == "No" || word == "not" || word == "no") return false;
    if (space == std::string::npos) break;
    start = space + 1;
  }
  return true;
}

SplitMetrics compute_metrics(const std::vector<bool>& predicted_yes, const std::vector<bool>& label_yes) {
  MMR_CHECK(predicted_yes.size() == label_yes.size(), "predictions " << predicted_yes.size() << " vs labels "
                                                                     << label_yes.size());
  SplitMetrics m;
  int64_t n_yes = 0;
  for (size_t i = 0; i < predicted_yes.size(); ++i) {
    const bool pred = predicted_yes[i], label = label_yes[i];
    n_yes += pred ? 1 : 0;
    if (pred && label) ++m.tp;
    else if (pred && !label) ++m.fp;
    else if (!pred && !label) ++m.tn;
    else ++m.fn;
  }
  m.yes_ratio = ratio(n_yes, static_cast<int64_t>(predicted_yes.size()));
  m.precision = ratio(m.tp, m.tp + m.fp);
  m.recall = ratio(m.tp, m.tp + m.fn);
  // Same operation order as eval_pope.py: 2*precision*recall / (precision + recall).
  m.f1 = (m.precision + m.recall) == 0 ? 0.0 : 2 * m.precision * m.recall / (m.precision + m.recall);
  m.accuracy = ratio(m.tp + m.tn, m.tp + m.tn + m.fp + m.fn);
  return m;
}

ScoreResult score(const ScoreInputs& inputs) {
  if (inputs.label_files.empty()) throw mmr::DataError("POPE scoring needs at least one label file");
  const std::vector<Question> questions = read_questions(inputs.questions_path);
  const std::vector<Answer> answers = read_answers(inputs.answers_path);

  std::map<QuestionId, const Question*> question_by_id;
  for (const Question& q : questions) question_by_id[q.question_id] = &q;

  // Every answer must belong to a known question (eval_pope.py raises KeyError otherwise).
  std::map<std::string, std::vector<const Answer*>> answers_by_split;
  std::set<QuestionId> answered;
  for (const Answer& a : answers) {
    auto it = question_by_id.find(a.question_id);
    if (it == question_by_id.end()) {
      throw mmr::DataError(at(inputs.answers_path, a.line) + "answer for question_id " + a.question_id.key +
                           ", which is not in the question file " + inputs.questions_path);
    }
    answers_by_split[it->second->category].push_back(&a);
    answered.insert(a.question_id);
  }

  ScoreResult result;
  std::set<std::string> scored_splits;
  for (const LabelFile& file : inputs.label_files) {
    if (!scored_splits.insert(file.split).second) {
      throw mmr::DataError("POPE split '" + file.split + "' is given twice (second file: " + file.path + ")");
    }
    const std::vector<Label> labels = read_labels(file.path);
    const std::vector<const Answer*>& split_answers = answers_by_split[file.split];

    if (split_answers.size() != labels.size()) {
      std::string detail;
      for (const Question& q : questions) {
        if (q.category == file.split && !answered.count(q.question_id)) {
          detail = "; first unanswered question_id " + q.question_id.key + " (" + inputs.questions_path + ":" +
                   std::to_string(q.line) + ")";
          break;
        }
      }
      throw mmr::DataError(inputs.answers_path + ": split '" + file.split + "' has " +
                           std::to_string(split_answers.size()) + " answers but " + file.path + " has " +
                           std::to_string(labels.size()) + " labels" + detail +
                           " (eval_pope.py pairs answers and labels by position, so the counts must agree)");
    }

    std::vector<bool> predicted_yes, label_yes;
    for (size_t i = 0; i < labels.size(); ++i) {
      const Answer& a = *split_answers[i];
      const Label& l = labels[i];
      if (inputs.check_alignment) {
        const Question& q = *question_by_id.at(a.question_id);
        const bool same_image = l.image.empty() || q.image == l.image;
        const bool same_text = l.text.empty() || q.text.compare(0, l.text.size(), l.text) == 0;
        if (!same_image || !same_text) {
          throw mmr::DataError(at(inputs.answers_path, a.line) + "answer #" + std::to_string(i + 1) + " of split '" +
                               file.split + "' (question_id " + a.question_id.key + ": '" + q.image + "', \"" +
                               q.text + "\") does not match label line " + file.path + ":" + std::to_string(l.line) +
                               " ('" + l.image + "', \"" + l.text + "\"); eval_pope.py pairs them by position, so " +
                               "the answers must be in question-file order");
        }
      }
      predicted_yes.push_back(parse_yes_no(a.text));
      label_yes.push_back(l.is_yes);
    }
    result.splits.push_back({file.split, static_cast<int64_t>(labels.size()), compute_metrics(predicted_yes, label_yes)});
  }

  for (const auto& [split, list] : answers_by_split) {
    if (!scored_splits.count(split)) result.n_unscored_answers += static_cast<int64_t>(list.size());
  }
  double sum_f1 = 0, sum_acc = 0;
  for (const SplitResult& s : result.splits) {
    sum_f1 += s.metrics.f1;
    sum_acc += s.metrics.accuracy;
  }
  result.mean_f1 = sum_f1 / static_cast<double>(result.splits.size());
  result.mean_accuracy = sum_acc / static_cast<double>(result.splits.size());
  return result;
}

mmr::MetricList to_metrics(const ScoreResult& result) {
  mmr::MetricList out;
  for (const SplitResult& s : result.splits) {
    const SplitMetrics& m = s.metrics;
    const std::string p = s.split + "/";
    out.push_back({p + "f1", 100 * m.f1});
    out.push_back({p + "accuracy", 100 * m.accuracy});
    out.push_back({p + "precision", 100 * m.precision});
    out.push_back({p + "recall", 100 * m.recall});
    out.push_back({p + "yes_ratio", 100 * m.yes_ratio});
    out.push_back({p + "tp", static_cast<double>(m.tp)});
    out.push_back({p + "fp", static_cast<double>(m.fp)});
    out.push_back({p + "tn", static_cast<double>(m.tn)});
    out.push_back({p + "fn", static_cast<double>(m.fn)});
    out.push_back({p + "n", static_cast<double>(s.n_answers)});
  }
  out.push_back({"mean/f1", 100 * result.mean_f1});
  out.push_back({"mean/accuracy", 100 * result.mean_accuracy});
  return out;
}

mmr::MetricList score_files(const ScoreInputs& inputs) { return to_metrics(score(inputs)); }

QuestionId question_id_from_int(int64_t id) { return QuestionId{std::to_string(id)}; }

void write_answers(const std::string& path, const std::vector<AnswerRecord>& answers) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw mmr::IoError("cannot open POPE answer file '" + path + "' for writing: " + std::strerror(errno));
  for (const AnswerRecord& a : answers) {
    Json row;
    row["question_id"] = Json::parse(a.question_id.key);
    row["prompt"] = a.prompt;
    row["text"] = a.text;
    row["answer_id"] = a.answer_id;
    row["model_id"] = a.model_id;
    row["metadata"] = Json::object();
    out << row.dump(-1, ' ', /*ensure_ascii=*/true) << '\n';
  }
  if (!out) throw mmr::IoError("writing POPE answer file '" + path + "' failed: " + std::strerror(errno));
}

}  // namespace mmr::pope
