// POPE scoring: the behaviour of LLaVA's eval_pope.py, re-written in C++ (no code copied). See scoring.h.
#include "plugins/benchmarks/pope/scoring.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::pope {
namespace {

using namespace benchmarks::jsonl;

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
  FirstLines seen(path, "question_id");
  return read_rows(path, "POPE question file", [&](const JsonLine& row) {
    Question q;
    q.question_id = id_field(row, path);
    q.category = string_field(row, "category", path);
    q.image = optional_string(row, "image", path);
    q.text = optional_string(row, "text", path);
    q.line = row.line;
    seen.add(q.question_id.key, row.line);
    return q;
  });
}

std::vector<Answer> read_answers(const std::string& path) {
  FirstLines seen(path, "answer for question_id");
  return read_rows(path, "POPE answer file", [&](const JsonLine& row) {
    Answer a{id_field(row, path), string_field(row, "text", path), row.line};
    seen.add(a.question_id.key, row.line);
    return a;
  });
}

std::vector<Label> read_labels(const std::string& path) {
  return read_rows(path, "POPE label file", [&](const JsonLine& row) {
    const std::string label = string_field(row, "label", path);
    if (label != "yes" && label != "no")
      throw mmr::DataError(at(path, row.line) + "expected \"label\" to be \"yes\" or \"no\", found \"" + label + "\"");
    return Label{optional_string(row, "image", path), optional_string(row, "text", path), label == "yes", row.line};
  });
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
  // Python's str.split(' '): every single space splits, so "No\n" and "" are words too.
  for (std::string_view word : python_split(kept, ' '))
    if (word == "No" || word == "not" || word == "no") return false;
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

namespace {

// The questions and answers of one scoring run, indexed the ways eval_pope.py looks them up.
struct Indexed {
  std::vector<Question> questions;
  std::vector<Answer> answers;
  std::map<QuestionId, const Question*> question_by_id;
  std::map<std::string, std::vector<const Answer*>> answers_by_split;  // in answer-file order
  std::set<QuestionId> answered;
};

// Every answer must belong to a known question (eval_pope.py raises KeyError otherwise).
void index(const ScoreInputs& inputs, Indexed& ix) {
  ix.questions = read_questions(inputs.questions_path);
  ix.answers = read_answers(inputs.answers_path);
  for (const Question& q : ix.questions) ix.question_by_id[q.question_id] = &q;
  for (const Answer& a : ix.answers) {
    auto it = ix.question_by_id.find(a.question_id);
    if (it == ix.question_by_id.end()) {
      throw mmr::DataError(at(inputs.answers_path, a.line) + "answer for question_id " + a.question_id.key +
                           ", which is not in the question file " + inputs.questions_path);
    }
    ix.answers_by_split[it->second->category].push_back(&a);
    ix.answered.insert(a.question_id);
  }
}

// eval_pope.py's zip() truncates to the shorter list; we require equal counts and name the first gap.
void check_counts(const ScoreInputs& inputs, const Indexed& ix, const LabelFile& file, size_t n_answers,
                  size_t n_labels) {
  if (n_answers == n_labels) return;
  std::string detail;
  for (const Question& q : ix.questions) {
    if (q.category == file.split && !ix.answered.count(q.question_id)) {
      detail = "; first unanswered question_id " + q.question_id.key + " (" + inputs.questions_path + ":" +
               std::to_string(q.line) + ")";
      break;
    }
  }
  throw mmr::DataError(inputs.answers_path + ": split '" + file.split + "' has " + std::to_string(n_answers) +
                       " answers but " + file.path + " has " + std::to_string(n_labels) + " labels" + detail +
                       " (eval_pope.py pairs answers and labels by position, so the counts must agree)");
}

// The positional pairing is right only when the i-th answer's question shows the i-th label's image and text.
void check_aligned(const ScoreInputs& inputs, const Indexed& ix, const LabelFile& file, size_t i, const Answer& a,
                   const Label& l) {
  const Question& q = *ix.question_by_id.at(a.question_id);
  const bool same_image = l.image.empty() || q.image == l.image;
  const bool same_text = l.text.empty() || q.text.compare(0, l.text.size(), l.text) == 0;
  if (same_image && same_text) return;
  throw mmr::DataError(at(inputs.answers_path, a.line) + "answer #" + std::to_string(i + 1) + " of split '" +
                       file.split + "' (question_id " + a.question_id.key + ": '" + q.image + "', \"" + q.text +
                       "\") does not match label line " + file.path + ":" + std::to_string(l.line) + " ('" +
                       l.image + "', \"" + l.text + "\"); eval_pope.py pairs them by position, so the answers " +
                       "must be in question-file order");
}

SplitResult score_split(const ScoreInputs& inputs, Indexed& ix, const LabelFile& file) {
  const std::vector<Label> labels = read_labels(file.path);
  const std::vector<const Answer*>& split_answers = ix.answers_by_split[file.split];
  check_counts(inputs, ix, file, split_answers.size(), labels.size());
  std::vector<bool> predicted_yes, label_yes;
  for (size_t i = 0; i < labels.size(); ++i) {
    if (inputs.check_alignment) check_aligned(inputs, ix, file, i, *split_answers[i], labels[i]);
    predicted_yes.push_back(parse_yes_no(split_answers[i]->text));
    label_yes.push_back(labels[i].is_yes);
  }
  return {file.split, static_cast<int64_t>(labels.size()), compute_metrics(predicted_yes, label_yes)};
}

}  // namespace

ScoreResult score(const ScoreInputs& inputs) {
  if (inputs.label_files.empty()) throw mmr::DataError("POPE scoring needs at least one label file");
  Indexed ix;
  index(inputs, ix);
  ScoreResult result;
  std::set<std::string> scored_splits;
  for (const LabelFile& file : inputs.label_files) {
    if (!scored_splits.insert(file.split).second)
      throw mmr::DataError("POPE split '" + file.split + "' is given twice (second file: " + file.path + ")");
    result.splits.push_back(score_split(inputs, ix, file));
  }
  for (const auto& [split, list] : ix.answers_by_split)
    if (!scored_splits.count(split)) result.n_unscored_answers += static_cast<int64_t>(list.size());
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

std::string answers_jsonl(const std::vector<AnswerRecord>& answers) {
  std::string text;
  for (const AnswerRecord& a : answers)
    text += llava_answer_line(Json::parse(a.question_id.key), a.prompt, a.text, a.answer_id, a.model_id);
  return text;
}

}  // namespace mmr::pope
