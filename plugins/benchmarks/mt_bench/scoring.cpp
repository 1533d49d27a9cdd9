// MT-Bench scoring: the behaviour of FastChat's show_result.py (single mode), gen_judgment.py and common.py,
// re-written in C++ (no code copied). See scoring.h.
#include "plugins/benchmarks/mt_bench/scoring.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "core/api/error.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::mt_bench {
namespace {

using namespace benchmarks::jsonl;

std::vector<std::string> string_list(const Json& v, const std::string& where) {
  if (!v.is_array()) throw mmr::DataError(where + "expected a list of strings, found " + v.dump());
  std::vector<std::string> out;
  for (const Json& s : v) {
    if (!s.is_string()) throw mmr::DataError(where + "expected a list of strings, found an item " + s.dump());
    out.push_back(s.get<std::string>());
  }
  return out;
}

// Matches "[" "[" digits ("." digits*)? "]" "]" (or the single-bracket form) at `pos`; returns the number text.
std::optional<std::string_view> rating_at(std::string_view s, size_t pos, int brackets) {
  size_t i = pos;
  for (int b = 0; b < brackets; ++b, ++i) {
    if (i >= s.size() || s[i] != '[') return std::nullopt;
  }
  const size_t start = i;
  auto digit = [&](size_t k) { return k < s.size() && s[k] >= '0' && s[k] <= '9'; };
  if (!digit(i)) return std::nullopt;
  while (digit(i)) ++i;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (digit(i)) ++i;
  }
  const size_t end = i;
  for (int b = 0; b < brackets; ++b, ++i) {
    if (i >= s.size() || s[i] != ']') return std::nullopt;
  }
  return s.substr(start, end - start);
}

std::optional<std::string_view> search_rating(std::string_view s, int brackets) {
  for (size_t pos = 0; pos < s.size(); ++pos) {
    if (auto r = rating_at(s, pos, brackets)) return r;
  }
  return std::nullopt;
}

// The turns of an answer's first choice (choices[0].turns).
std::vector<std::string> first_choice_turns(const JsonLine& row, const std::string& path) {
  const Json& choices = require(row, "choices", path);
  if (!choices.is_array() || choices.empty() || !choices[0].is_object() || !choices[0].contains("turns"))
    throw mmr::DataError(at(path, row.line) + "expected \"choices\": [{\"index\": 0, \"turns\": [...]}, ...]");
  return string_list(choices[0]["turns"], at(path, row.line) + "\"choices\"[0][\"turns\"]: ");
}

Judgment judgment_of(const JsonLine& row, const std::string& path) {
  Judgment j;
  j.line = row.line;
  j.question_id = int_field(row, "question_id", path);
  j.model = string_field(row, "model", path);
  const Json& score = require(row, "score", path);
  if (!score.is_number()) throw mmr::DataError(at(path, row.line) + "expected \"score\" to be a number, found " + score.dump());
  j.score = score.get<double>();
  const int64_t turn = int_field(row, "turn", path);
  if (turn != 1 && turn != 2)
    throw mmr::DataError(at(path, row.line) + "expected \"turn\" to be 1 or 2, found " + std::to_string(turn));
  j.turn = static_cast<int>(turn);
  if (auto judge = row.value.find("judge"); judge != row.value.end() && judge->is_array() && judge->size() == 2 &&
                                            (*judge)[0].is_string() && (*judge)[1].is_string()) {
    j.judge_model = (*judge)[0].get<std::string>();
    j.judge_prompt = (*judge)[1].get<std::string>();
  }
  return j;
}

}  // namespace

std::vector<Judgment> read_judgments(const std::string& path) {
  return read_rows(path, "MT-Bench judgment file", [&](const JsonLine& row) { return judgment_of(row, path); });
}

std::vector<Question> read_questions(const std::string& path) {
  FirstLines seen(path, "question_id");
  return read_rows(path, "MT-Bench question file", [&](const JsonLine& row) {
    Question q{row.line, int_field(row, "question_id", path), string_field(row, "category", path),
               string_list(require(row, "turns", path), at(path, row.line) + "\"turns\": ")};
    seen.add(std::to_string(q.question_id), row.line);
    return q;
  });
}

std::vector<ModelAnswer> read_model_answers(const std::string& path) {
  FirstLines seen(path, "answer for question_id");  // FastChat's load_model_answers would keep the last one
  return read_rows(path, "MT-Bench model answer file", [&](const JsonLine& row) {
    ModelAnswer a{row.line, int_field(row, "question_id", path),
                  row.value.contains("model_id") ? string_field(row, "model_id", path) : "",
                  first_choice_turns(row, path)};
    seen.add(std::to_string(a.question_id), row.line);
    return a;
  });
}

double kahan_mean(const std::vector<double>& values) {
  double sum = 0, compensation = 0;
  for (double v : values) {
    const double y = v - compensation;
    const double t = sum + y;
    compensation = t - sum - y;
    sum = t;
  }
  return sum / static_cast<double>(values.size());
}

namespace {

// One model's rows as display_result_single groups them: scores per turn, overall and (with questions) per
// category, failed rows left out.
struct ModelRows {
  std::vector<double> turn[2], all;
  std::map<std::string, std::vector<double>> category;
  std::set<std::pair<int64_t, int>> seen;  // (question_id, turn), to count duplicates
  ModelScores out;

  void add(const Judgment& j, const std::string* category_name) {
    out.model = j.model;
    ++out.n_judgments;
    if (!seen.insert({j.question_id, j.turn}).second) ++out.n_duplicates;
    if (j.score == -1) {
      ++out.n_failed;
      return;
    }
    turn[j.turn - 1].push_back(j.score);
    all.push_back(j.score);
    if (category_name) category[*category_name].push_back(j.score);
  }

  ModelScores finish() {
    auto mean = [](const std::vector<double>& v) -> std::optional<MeanScore> {
      if (v.empty()) return std::nullopt;
      return MeanScore{kahan_mean(v), static_cast<int64_t>(v.size())};
    };
    out.turn_1 = mean(turn[0]);
    out.turn_2 = mean(turn[1]);
    out.overall = mean(all);
    for (const auto& [cat, v] : category) out.categories[cat] = *mean(v);
    return std::move(out);
  }
};

// The category of a judged question; a judgment for a question not in the question file is a DataError.
const std::string& category_of(const std::map<int64_t, std::string>& categories, const Judgment& j) {
  auto it = categories.find(j.question_id);
  if (it == categories.end()) {
    throw mmr::DataError("MT-Bench judgment line " + std::to_string(j.line) + " (model '" + j.model +
                         "'): question_id " + std::to_string(j.question_id) + " is not in the question file");
  }
  return it->second;
}

}  // namespace

std::vector<ModelScores> score(const std::vector<Judgment>& judgments, const std::vector<Question>* questions,
                               const ScoreOptions& options) {
  std::map<int64_t, std::string> categories;
  if (questions)
    for (const Question& q : *questions) categories[q.question_id] = q.category;
  const std::set<std::string> wanted(options.model_list.begin(), options.model_list.end());
  std::map<std::string, ModelRows> by_model;
  for (const Judgment& j : judgments) {
    if (!wanted.empty() && !wanted.count(j.model)) continue;
    by_model[j.model].add(j, questions ? &category_of(categories, j) : nullptr);
  }
  std::vector<ModelScores> out;
  for (auto& [model, rows] : by_model) out.push_back(rows.finish());
  std::stable_sort(out.begin(), out.end(), [](const ModelScores& a, const ModelScores& b) {
    const double sa = a.overall ? a.overall->mean : -HUGE_VAL, sb = b.overall ? b.overall->mean : -HUGE_VAL;
    return sa > sb;
  });
  return out;
}

mmr::MetricList to_metrics(const std::vector<ModelScores>& scores) {
  mmr::MetricList out;
  for (const ModelScores& m : scores) {
    const std::string p = m.model + "/";
    if (m.turn_1) out.push_back({p + "turn_1", m.turn_1->mean});
    if (m.turn_2) out.push_back({p + "turn_2", m.turn_2->mean});
    if (m.overall) out.push_back({p + "overall", m.overall->mean});
    for (const auto& [cat, s] : m.categories) out.push_back({p + cat, s.mean});
    out.push_back({p + "n_judgments", static_cast<double>(m.n_judgments)});
    out.push_back({p + "n_failed", static_cast<double>(m.n_failed)});
    out.push_back({p + "n_duplicates", static_cast<double>(m.n_duplicates)});
  }
  return out;
}

mmr::MetricList score_files(const std::string& judgment_path, const std::string& question_path,
                            const ScoreOptions& options) {
  const std::vector<Judgment> judgments = read_judgments(judgment_path);
  std::vector<Question> questions;
  if (!question_path.empty()) questions = read_questions(question_path);
  try {
    return to_metrics(score(judgments, question_path.empty() ? nullptr : &questions, options));
  } catch (const mmr::DataError& e) {
    throw mmr::DataError(judgment_path + ": " + e.what());
  }
}

// ---- judging ----

std::map<std::string, JudgePrompt> read_judge_prompts(const std::string& path) {
  std::map<std::string, JudgePrompt> out;
  for (const JsonLine& row : read_jsonl(path, "judge prompt file")) {
    JudgePrompt p;
    p.name = string_field(row, "name", path);
    p.type = string_field(row, "type", path);
    p.system_prompt = string_field(row, "system_prompt", path);
    p.prompt_template = string_field(row, "prompt_template", path);
    p.category = row.value.contains("category") ? string_field(row, "category", path) : "";
    p.output_format = string_field(row, "output_format", path);
    out[p.name] = std::move(p);  // later lines win, as load_judge_prompts' dict
  }
  return out;
}

bool needs_reference(std::string_view category) {
  return category == "math" || category == "reasoning" || category == "coding";
}

std::string judge_prompt_name(std::string_view category, bool multi_turn) {
  std::string name = needs_reference(category) ? "single-math-v1" : "single-v1";
  if (multi_turn) name += "-multi-turn";
  return name;
}

double temperature_for_category(std::string_view category) {
  static const std::map<std::string, double, std::less<>> kTemperature = {
      {"writing", 0.7}, {"roleplay", 0.7}, {"extraction", 0.0}, {"math", 0.0},
      {"coding", 0.0},  {"reasoning", 0.0}, {"stem", 0.1},      {"humanities", 0.1}};
  auto it = kTemperature.find(category);
  if (it == kTemperature.end()) {
    throw mmr::DataError("MT-Bench: no generation temperature for category '" + std::string(category) +
                         "' (known: writing, roleplay, extraction, math, coding, reasoning, stem, humanities)");
  }
  return it->second;
}

std::string format_template(std::string_view tmpl, const std::map<std::string, std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '{' && i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      const size_t close = tmpl.find('}', i);
      if (close == std::string_view::npos) {
        throw mmr::DataError("judge prompt template: single '{' at offset " + std::to_string(i));
      }
      const std::string name(tmpl.substr(i + 1, close - i - 1));
      if (name.empty() || name.find_first_of("!:.[{") != std::string::npos) {
        throw mmr::DataError("judge prompt template: unsupported field '{" + name + "}' (only {name} fields)");
      }
      auto it = fields.find(name);
      if (it == fields.end()) throw mmr::DataError("judge prompt template: no value for field '{" + name + "}'");
      out += it->second;
      i = close;
    } else if (c == '}') {
      throw mmr::DataError("judge prompt template: single '}' at offset " + std::to_string(i));
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

// The answer is to this question and both have the turns the judged turn needs.
void check_turns(const Question& question, const ModelAnswer& answer, int turn) {
  const std::string qid = std::to_string(question.question_id);
  const size_t need = turn == 2 ? 2 : 1;
  if (question.turns.size() < need || answer.turns.size() < need) {
    throw mmr::DataError("MT-Bench question " + qid + ": turn " + std::to_string(turn) + " needs " + std::to_string(need) +
                         " question and answer turns; the question has " + std::to_string(question.turns.size()) +
                         ", the answer (line " + std::to_string(answer.line) + ") " + std::to_string(answer.turns.size()));
  }
  if (answer.question_id != question.question_id) {
    throw mmr::DataError("MT-Bench: answer line " + std::to_string(answer.line) + " is for question " +
                         std::to_string(answer.question_id) + ", not " + qid);
  }
}

// The template fields run_judge_single fills: the question and answer of the turn (both turns for turn 2), and
// both reference turns where the category needs them (a turn-1 template simply does not use the second).
std::map<std::string, std::string> template_fields(const Question& question, const ModelAnswer& answer,
                                                   const ModelAnswer* reference, int turn) {
  std::map<std::string, std::string> fields;
  if (needs_reference(question.category)) {
    if (!reference || reference->turns.size() < 2 || reference->question_id != question.question_id) {
      throw mmr::DataError("MT-Bench question " + std::to_string(question.question_id) + " (" + question.category +
                           ") needs the reference answer with 2 turns (reference_answer/gpt-4.jsonl)");
    }
    fields["ref_answer_1"] = reference->turns[0];
    fields["ref_answer_2"] = reference->turns[1];
  }
  if (turn == 2) {
    fields["question_1"] = question.turns[0];
    fields["question_2"] = question.turns[1];
    fields["answer_1"] = answer.turns[0];
    fields["answer_2"] = answer.turns[1];
  } else {
    fields["question"] = question.turns[0];
    fields["answer"] = answer.turns[0];
  }
  return fields;
}

}  // namespace

JudgeRequest build_judge_request(const std::map<std::string, JudgePrompt>& prompts, const Question& question,
                                 const ModelAnswer& answer, const ModelAnswer* reference, int turn) {
  if (turn != 1 && turn != 2) throw mmr::DataError("MT-Bench: turn must be 1 or 2, got " + std::to_string(turn));
  const std::string name = judge_prompt_name(question.category, turn == 2);
  auto p = prompts.find(name);
  if (p == prompts.end()) throw mmr::DataError("MT-Bench: judge prompt '" + name + "' is not in the judge prompt file");
  check_turns(question, answer, turn);
  JudgeRequest r;
  r.prompt_name = name;
  r.system_prompt = p->second.system_prompt;
  r.user_prompt = format_template(p->second.prompt_template, template_fields(question, answer, reference, turn));
  r.turn = turn;
  return r;
}

double parse_rating(std::string_view judgment) {
  std::optional<std::string_view> m = search_rating(judgment, 2);
  if (!m) m = search_rating(judgment, 1);
  if (!m) return -1;
  const std::string_view x = *m;
  const bool has_dot = x.find('.') != std::string_view::npos;
  // Python literals: "08" is a SyntaxError for literal_eval ("0", "00" and floats like "08.5" are fine).
  if (!has_dot && x.size() > 1 && x[0] == '0' && x.find_first_not_of('0') != std::string_view::npos) return -1;
  return std::strtod(std::string(x).c_str(), nullptr);
}

std::string judgment_line(int64_t question_id, std::string_view model, std::string_view judge_model,
                          const JudgeRequest& request, std::string_view judgment, double score, double tstamp) {
  Json row;
  row["question_id"] = question_id;
  row["model"] = std::string(model);
  row["judge"] = {std::string(judge_model), request.prompt_name};
  row["user_prompt"] = request.user_prompt;
  row["judgment"] = std::string(judgment);
  if (std::floor(score) == score && std::fabs(score) < 1e15) {
    row["score"] = static_cast<int64_t>(score);
  } else {
    row["score"] = score;
  }
  row["turn"] = request.turn;
  row["tstamp"] = tstamp;
  return row.dump(-1, ' ', /*ensure_ascii=*/true);
}

std::string model_answers_jsonl(const std::vector<AnswerRecord>& answers) {
  std::string text;
  for (const AnswerRecord& a : answers) {
    Json row;
    row["question_id"] = a.question_id;
    row["answer_id"] = a.answer_id;
    row["model_id"] = a.model_id;
    Json choice;
    choice["index"] = 0;
    choice["turns"] = a.turns;
    row["choices"] = Json::array({choice});
    row["tstamp"] = a.tstamp;
    text += row.dump(-1, ' ', /*ensure_ascii=*/true) + "\n";
  }
  return text;
}

}  // namespace mmr::mt_bench
