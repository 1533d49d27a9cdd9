// MM-Vet scoring: the behaviour of mm-vet_evaluator.py's export_result and grading loop, re-written in C++
// (no code copied). See scoring.h.
#include "plugins/benchmarks/mm_vet/scoring.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/numpy_sum.h"
#include "core/lib/util/python_float.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::mm_vet {
namespace {

using namespace benchmarks::jsonl;

// A grade file or the metadata: one JSON object keyed by sample id.
Json read_json_object(const std::string& path, const std::string& what) {
  Json doc = read_json_file(path, what);
  if (!doc.is_object()) {
    throw mmr::DataError(path + ": expected a JSON object {\"v1_0\": ...} in " + what + ", found " +
                         std::string(doc.type_name()));
  }
  return doc;
}

std::string at_key(const std::string& path, const std::string& key) { return path + ": key \"" + key + "\": "; }


Json strings_to_json(const std::vector<std::string>& v) {
  Json out = Json::array();
  for (const auto& s : v) out.push_back(s);
  return out;
}

}  // namespace

std::vector<SampleGrade> read_grade_file(const std::string& path) {
  const Json doc = read_json_object(path, "MM-Vet grade file");
  std::vector<SampleGrade> grades;
  for (const auto& [id, entry] : doc.items()) {
    if (!entry.is_object()) {
      throw mmr::DataError(at_key(path, id) + "expected {\"model\": [...], \"content\": [...], \"score\": [...]}, found " +
                           std::string(entry.type_name()));
    }
    SampleGrade g;
    g.id = id;
    auto scores = entry.find("score");
    if (scores == entry.end() || !scores->is_array()) {
      throw mmr::DataError(at_key(path, id) + "expected a \"score\" list (one score per run)");
    }
    for (const Json& s : *scores) {
      if (!s.is_number()) throw mmr::DataError(at_key(path, id) + "expected numeric scores, found " + s.dump());
      g.score.push_back(s.get<double>());
    }
    for (const char* key : {"model", "content"}) {
      auto it = entry.find(key);
      if (it == entry.end()) continue;  // not needed for scoring
      if (!it->is_array()) throw mmr::DataError(at_key(path, id) + "expected \"" + key + "\" to be a list");
      auto& out = std::string(key) == "model" ? g.model : g.content;
      for (const Json& s : *it) out.push_back(s.is_string() ? s.get<std::string>() : s.dump());
    }
    grades.push_back(std::move(g));
  }
  return grades;
}

std::vector<Sample> read_metadata(const std::string& path) {
  const Json doc = read_json_object(path, "MM-Vet metadata (mm-vet.json)");
  std::vector<Sample> samples;
  for (const auto& item : doc.items()) {
    // Named references, not a structured binding: C++17 lambdas cannot capture those (clang refuses; fuzz/).
    const std::string& id = item.key();
    const Json& entry = item.value();
    Sample s;
    s.id = id;
    auto str = [&](const char* key) -> std::string {
      auto it = entry.find(key);
      if (it == entry.end() || !it->is_string()) {
        throw mmr::DataError(at_key(path, id) + "expected a string \"" + key + "\"");
      }
      return it->get<std::string>();
    };
    if (!entry.is_object()) throw mmr::DataError(at_key(path, id) + "expected an object");
    s.question = str("question");
    s.answer = str("answer");
    auto caps = entry.find("capability");
    if (caps == entry.end() || !caps->is_array() || caps->empty()) {
      throw mmr::DataError(at_key(path, id) + "expected a non-empty \"capability\" list");
    }
    for (const Json& c : *caps) {
      if (!c.is_string()) throw mmr::DataError(at_key(path, id) + "expected capability names, found " + c.dump());
      if (std::find(s.capability.begin(), s.capability.end(), c.get<std::string>()) == s.capability.end()) {
        s.capability.push_back(c.get<std::string>());  // the evaluator takes set(capability)
      }
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

double numpy_round(double x, int decimals) {
  MMR_CHECK(decimals >= 0, "decimals " << decimals);
  const double f = std::pow(10.0, decimals);
  return std::nearbyint(x * f) / f;
}


double numpy_mean(const std::vector<double>& values) {
  return numpy_sum(values) / static_cast<double>(values.size());
}

double numpy_std(const std::vector<double>& values) {
  const double mean = numpy_mean(values);
  std::vector<double> sq;
  sq.reserve(values.size());
  for (double v : values) sq.push_back((v - mean) * (v - mean));
  return std::sqrt(numpy_sum(sq) / static_cast<double>(values.size()));
}

namespace {

// The run count: given, or the (common) number of scores per sample.
int run_count(const std::vector<SampleGrade>& grades, int given) {
  int num_run = given;
  if (num_run <= 0) {
    num_run = static_cast<int>(grades.front().score.size());
    for (const SampleGrade& g : grades) {
      if (static_cast<int>(g.score.size()) != num_run) {
        throw mmr::DataError("MM-Vet grade file: sample \"" + g.id + "\" has " + std::to_string(g.score.size()) +
                             " scores but \"" + grades.front().id + "\" has " + std::to_string(num_run) +
                             "; give the number of runs to score (the evaluator's --num_run)");
      }
    }
  }
  if (num_run <= 0) throw mmr::DataError("MM-Vet grade file: sample \"" + grades.front().id + "\" has no scores");
  for (const SampleGrade& g : grades) {
    if (static_cast<int>(g.score.size()) < num_run) {
      throw mmr::DataError("MM-Vet grade file: sample \"" + g.id + "\" has " + std::to_string(g.score.size()) +
                           " scores, fewer than the " + std::to_string(num_run) + " runs to score");
    }
  }
  return num_run;
}

// What load_metadata in the evaluator counts: every capability and every capability set, in first-occurrence
// order (see the header on why not Python's set order).
struct Columns {
  std::map<std::string, const Sample*> sample_by_id;
  std::vector<std::string> cap_names;
  std::map<std::string, int64_t> cap_count;
  std::vector<std::set<std::string>> set_list;
  std::vector<std::string> set_names;  // the capabilities joined with '_'
  std::vector<int64_t> set_count;

  // The index in set_list of a sample's capability set; set_list.size() for a new set.
  size_t set_of(const Sample& s) const {
    const std::set<std::string> caps(s.capability.begin(), s.capability.end());
    return static_cast<size_t>(std::find(set_list.begin(), set_list.end(), caps) - set_list.begin());
  }
  void add(const Sample& s) {
    sample_by_id[s.id] = &s;
    for (const std::string& c : s.capability)
      if (cap_count[c]++ == 0) cap_names.push_back(c);
    const size_t k = set_of(s);
    if (k < set_list.size()) {
      ++set_count[k];
      return;
    }
    set_list.emplace_back(s.capability.begin(), s.capability.end());
    std::string name;
    for (const std::string& c : s.capability) name += (name.empty() ? "" : "_") + c;
    set_names.push_back(name);
    set_count.push_back(1);
  }
};

// Every graded sample is in the metadata and every sample of the metadata is graded.
void check_coverage(const std::vector<SampleGrade>& grades, const std::vector<Sample>& metadata, const Columns& c) {
  std::set<std::string> graded;
  for (const SampleGrade& g : grades) {
    if (!c.sample_by_id.count(g.id))
      throw mmr::DataError("MM-Vet grade file: sample \"" + g.id + "\" is not in the metadata (mm-vet.json)");
    graded.insert(g.id);
  }
  for (const Sample& s : metadata)
    if (!graded.count(s.id)) throw mmr::DataError("MM-Vet grade file: no grade for sample \"" + s.id + "\" of the metadata");
}

// Per-run Python float sums, in grade-file order (the evaluator's cap_socres / cap_socres2 loops).
struct Sums {
  std::map<std::string, std::vector<double>> cap, set;
  std::vector<double> total;
};
Sums sum_runs(const std::vector<SampleGrade>& grades, const Columns* columns, int num_run) {
  const size_t runs = static_cast<size_t>(num_run);
  Sums sums;
  sums.total.assign(runs, 0.0);
  if (columns) {
    for (const std::string& c : columns->cap_names) sums.cap[c].assign(runs, 0.0);
    for (const std::string& n : columns->set_names) sums.set[n].assign(runs, 0.0);
  }
  for (const SampleGrade& g : grades) {
    for (size_t i = 0; i < runs; ++i) {
      const double s = g.score[i];
      sums.total[i] += s;
      if (!columns) continue;
      const Sample& sample = *columns->sample_by_id.at(g.id);
      for (const std::string& c : sample.capability) sums.cap[c][i] += s;
      sums.set[columns->set_names[columns->set_of(sample)]][i] += s;
    }
  }
  return sums;
}

ColumnScore column(const std::string& name, int64_t count, const std::vector<double>& sums, int decimal_places) {
  ColumnScore col;
  col.name = name;
  col.count = count;
  for (double s : sums) col.run_values.push_back(s / static_cast<double>(count) * 100);
  col.value = numpy_round(numpy_mean(col.run_values), decimal_places);
  return col;
}

// Columns by count, most common first; ties by first occurrence (Counter.most_common is stable; see header).
void add_columns(const Columns& c, Sums& sums, int dp, ScoreResult& result) {
  std::vector<std::string> cap_order = c.cap_names;
  std::stable_sort(cap_order.begin(), cap_order.end(),
                   [&](const std::string& a, const std::string& b) { return c.cap_count.at(a) > c.cap_count.at(b); });
  for (const std::string& name : cap_order) result.capabilities.push_back(column(name, c.cap_count.at(name), sums.cap[name], dp));
  std::vector<size_t> set_order(c.set_names.size());
  for (size_t k = 0; k < set_order.size(); ++k) set_order[k] = k;
  std::stable_sort(set_order.begin(), set_order.end(), [&](size_t a, size_t b) { return c.set_count[a] > c.set_count[b]; });
  for (size_t k : set_order)
    result.integrations.push_back(column(c.set_names[k], c.set_count[k], sums.set[c.set_names[k]], dp));
}

}  // namespace

ScoreResult score(const std::vector<SampleGrade>& grades, const std::vector<Sample>* metadata,
                  const ScoreOptions& options) {
  if (grades.empty()) throw mmr::DataError("MM-Vet grade file has no graded samples");
  ScoreResult result;
  result.num_run = run_count(grades, options.num_run);
  Columns columns;
  if (metadata) {
    for (const Sample& s : *metadata) columns.add(s);
    check_coverage(grades, *metadata, columns);
  }
  result.n_samples = metadata ? static_cast<int64_t>(metadata->size()) : static_cast<int64_t>(grades.size());
  Sums sums = sum_runs(grades, metadata ? &columns : nullptr, result.num_run);
  const int dp = options.decimal_places;
  add_columns(columns, sums, dp, result);  // nothing without metadata
  result.total = column("total", result.n_samples, sums.total, dp);
  result.std = numpy_round(numpy_std(result.total.run_values), dp);
  for (double v : result.total.run_values) result.runs.push_back(numpy_round(v, dp));
  return result;
}

mmr::MetricList to_metrics(const ScoreResult& result) {
  mmr::MetricList out;
  for (const ColumnScore& c : result.capabilities) out.push_back({c.name, c.value});
  out.push_back({"total", result.total.value});
  out.push_back({"std", result.std});
  for (size_t i = 0; i < result.runs.size(); ++i) out.push_back({"run_" + std::to_string(i + 1) + "/total", result.runs[i]});
  for (const ColumnScore& c : result.integrations) out.push_back({"integration/" + c.name, c.value});
  return out;
}

mmr::MetricList score_files(const std::string& grade_path, const std::string& metadata_path,
                            const ScoreOptions& options) {
  const std::vector<SampleGrade> grades = read_grade_file(grade_path);
  std::vector<Sample> metadata;
  if (!metadata_path.empty()) metadata = read_metadata(metadata_path);
  try {
    return to_metrics(score(grades, metadata_path.empty() ? nullptr : &metadata, options));
  } catch (const mmr::DataError& e) {
    throw mmr::DataError(grade_path + ": " + e.what());  // score() names the sample; add the file
  }
}

std::string read_grader_prompt(const std::string& path) { return read_text_file(path, "MM-Vet grader prompt"); }

std::string pad_ground_truth(std::string_view answer) {
  // Python: answer.replace("<AND>", " <AND> ").replace("<OR>", " <OR> ").
  auto replace_all = [](std::string s, std::string_view from, std::string_view to) {
    std::string out;
    size_t pos = 0;
    for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
      out.append(s, pos, hit - pos).append(to);
    }
    return out.append(s, pos, std::string::npos);
  };
  return replace_all(replace_all(std::string(answer), "<AND>", " <AND> "), "<OR>", " <OR> ");
}

std::string build_grader_message(std::string_view prompt, std::string_view question, std::string_view ground_truth,
                                 std::string_view prediction, bool retry) {
  std::string m(prompt);
  m += "\n";
  m.append(question).append(" | ").append(pad_ground_truth(ground_truth)).append(" | ").append(prediction).append(" | ");
  if (retry) m += "\nPredict the correctness of the answer (digit): ";
  return m;
}

std::optional<double> parse_grader_reply(std::string_view reply) {
  // float(content.split(" ")[0].strip())
  const std::optional<double> v = python_float(python_strip(reply.substr(0, reply.find(' '))));
  if (!v || std::isnan(*v) || *v > 1.0 || *v < 0.0) return std::nullopt;
  return v;
}

double grader_temperature(int attempt) { return attempt <= 0 ? 0.0 : 0.5 * (attempt - 1); }

GradeOutcome grade_sample(std::string_view prompt, std::string_view question, std::string_view ground_truth,
                          std::string_view prediction,
                          const std::function<std::string(const std::string& message, double temperature)>& ask) {
  GradeOutcome out;
  std::string reply = ask(build_grader_message(prompt, question, ground_truth, prediction, false), grader_temperature(0));
  out.attempts = 1;
  for (int parsed = 1;; ++parsed) {
    if (std::optional<double> s = parse_grader_reply(reply)) {
      out.score = *s;
      out.content = std::string(python_strip(std::string_view(reply).substr(0, reply.find(' '))));
      return out;
    }
    if (parsed == kGraderMaxParsedReplies) {
      out.score = 0.0;
      out.content = reply;
      out.failed = true;
      return out;
    }
    reply = ask(build_grader_message(prompt, question, ground_truth, prediction, true), grader_temperature(out.attempts));
    ++out.attempts;
  }
}

std::string result_key(int64_t question_id) { return "v1_" + std::to_string(question_id); }

std::string results_json(const std::vector<std::pair<std::string, std::string>>& results) {
  Json doc = Json::object();
  for (const auto& [key, text] : results) {
    if (doc.contains(key)) throw mmr::DataError("MM-Vet results: duplicate key \"" + key + "\"");
    doc[key] = text;
  }
  return doc.dump(2, ' ', /*ensure_ascii=*/true);
}

std::string grade_file_json(const std::vector<SampleGrade>& grades) {
  Json doc = Json::object();
  for (const SampleGrade& g : grades) {
    Json entry;
    entry["model"] = strings_to_json(g.model);
    entry["content"] = strings_to_json(g.content);
    entry["score"] = g.score;
    doc[g.id] = entry;
  }
  return doc.dump(4, ' ', /*ensure_ascii=*/true);
}

}  // namespace mmr::mm_vet
