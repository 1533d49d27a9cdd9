// MM-Vet scoring: the behaviour of mm-vet_evaluator.py's export_result and grading loop, re-written in C++
// (no code copied). See scoring.h.
#include "plugins/benchmarks/mm_vet/scoring.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/api/error.h"

namespace mmr::mm_vet {
namespace {

using Json = nlohmann::ordered_json;

std::string read_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw mmr::IoError("cannot open " + what + " '" + path + "' for reading: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json read_json_object(const std::string& path, const std::string& what) {
  const std::string text = read_file(path, what);
  Json doc;
  try {
    doc = Json::parse(text);
  } catch (const Json::parse_error& e) {
    // nlohmann reports the byte offset; turn it into a line number for the user.
    const size_t offset = std::min(e.byte, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
    throw mmr::DataError(path + ":" + std::to_string(line) + ": malformed JSON in " + what + ": " + e.what());
  }
  if (!doc.is_object()) {
    throw mmr::DataError(path + ": expected a JSON object {\"v1_0\": ...} in " + what + ", found " +
                         std::string(doc.type_name()));
  }
  return doc;
}

std::string at_key(const std::string& path, const std::string& key) { return path + ": key \"" + key + "\": "; }

// Python's str.strip() for the whitespace a grader reply can contain.
std::string_view strip(std::string_view s) {
  auto ws = [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); };
  while (!s.empty() && ws(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

// Python's float(str): optional sign, then inf/infinity/nan (any case) or a decimal literal with optional
// fraction and exponent; single underscores are allowed between digits. Surrounding whitespace is stripped.
std::optional<double> python_float(std::string_view text) {
  std::string_view s = strip(text);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (iequals(s, "inf") || iequals(s, "infinity")) return negative ? -HUGE_VAL : HUGE_VAL;
  if (iequals(s, "nan")) return std::nan("");
  std::string digits;  // the literal without underscores
  size_t i = 0;
  auto take_digits = [&]() -> int {  // digits with single underscores between them; -1 on a bad underscore
    int n = 0;
    while (i < s.size()) {
      if (std::isdigit(static_cast<unsigned char>(s[i]))) {
        digits.push_back(s[i++]);
        ++n;
      } else if (s[i] == '_' && n > 0 && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        ++i;
      } else {
        break;
      }
    }
    return n;
  };
  int mantissa = take_digits();
  if (i < s.size() && s[i] == '.') {
    digits.push_back(s[i++]);
    mantissa += take_digits();
  }
  if (mantissa == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    digits.push_back(s[i++]);
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) digits.push_back(s[i++]);
    if (take_digits() == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  double value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves `value` untouched on overflow/underflow; Python gives inf or 0.
    const bool big = digits.find_first_of("eE") == std::string::npos ||
                     digits[digits.find_first_of("eE") + 1] != '-';
    value = big ? HUGE_VAL : 0.0;
  } else if (ec != std::errc() || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

// numpy's pairwise_sum for float64 (numpy/_core/src/umath/loops_utils.h.src).
double pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  constexpr size_t kBlock = 128;
  if (n <= kBlock) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

Json strings_to_json(const std::vector<std::string>& v) {
  Json out = Json::array();
  for (const auto& s : v) out.push_back(s);
  return out;
}

void write_text(const std::string& path, const std::string& what, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw mmr::IoError("cannot open " + what + " '" + path + "' for writing: " + std::strerror(errno));
  out << text;
  if (!out) throw mmr::IoError("writing " + what + " '" + path + "' failed: " + std::strerror(errno));
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
  for (const auto& [id, entry] : doc.items()) {
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

double numpy_sum(const std::vector<double>& values) { return 0.0 + pairwise_sum(values.data(), values.size()); }

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

ScoreResult score(const std::vector<SampleGrade>& grades, const std::vector<Sample>* metadata,
                  const ScoreOptions& options) {
  if (grades.empty()) throw mmr::DataError("MM-Vet grade file has no graded samples");
  ScoreResult result;

  // The run count: given, or the (common) number of scores per sample.
  int num_run = options.num_run;
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
  result.num_run = num_run;

  // Capability and capability-set counts from the metadata (load_metadata in the evaluator).
  std::map<std::string, const Sample*> sample_by_id;
  std::vector<std::string> cap_names;                 // first-occurrence order
  std::map<std::string, int64_t> cap_count;
  std::vector<std::set<std::string>> set_list;        // first-occurrence order
  std::vector<std::string> set_names;
  std::vector<int64_t> set_count;
  if (metadata) {
    for (const Sample& s : *metadata) {
      sample_by_id[s.id] = &s;
      for (const std::string& c : s.capability) {
        if (cap_count[c]++ == 0) cap_names.push_back(c);
      }
      std::set<std::string> caps(s.capability.begin(), s.capability.end());
      auto it = std::find(set_list.begin(), set_list.end(), caps);
      if (it == set_list.end()) {
        set_list.push_back(caps);
        std::string name;
        for (const std::string& c : s.capability) name += (name.empty() ? "" : "_") + c;
        set_names.push_back(name);
        set_count.push_back(1);
      } else {
        ++set_count[static_cast<size_t>(it - set_list.begin())];
      }
    }
    std::set<std::string> graded;
    for (const SampleGrade& g : grades) {
      if (!sample_by_id.count(g.id)) {
        throw mmr::DataError("MM-Vet grade file: sample \"" + g.id + "\" is not in the metadata (mm-vet.json)");
      }
      graded.insert(g.id);
    }
    for (const Sample& s : *metadata) {
      if (!graded.count(s.id)) {
        throw mmr::DataError("MM-Vet grade file: no grade for sample \"" + s.id + "\" of the metadata");
      }
    }
  }
  result.n_samples = metadata ? static_cast<int64_t>(metadata->size()) : static_cast<int64_t>(grades.size());

  // Per-run Python float sums, in grade-file order.
  std::map<std::string, std::vector<double>> cap_sum, set_sum;
  std::vector<double> total_sum(static_cast<size_t>(num_run), 0.0);
  for (const std::string& c : cap_names) cap_sum[c].assign(static_cast<size_t>(num_run), 0.0);
  for (const std::string& n : set_names) set_sum[n].assign(static_cast<size_t>(num_run), 0.0);
  for (const SampleGrade& g : grades) {
    for (int i = 0; i < num_run; ++i) {
      const double s = g.score[static_cast<size_t>(i)];
      total_sum[static_cast<size_t>(i)] += s;
      if (!metadata) continue;
      const Sample& sample = *sample_by_id.at(g.id);
      for (const std::string& c : sample.capability) cap_sum[c][static_cast<size_t>(i)] += s;
      const std::set<std::string> caps(sample.capability.begin(), sample.capability.end());
      const size_t k = static_cast<size_t>(std::find(set_list.begin(), set_list.end(), caps) - set_list.begin());
      set_sum[set_names[k]][static_cast<size_t>(i)] += s;
    }
  }

  const int dp = options.decimal_places;
  auto column = [&](const std::string& name, int64_t count, const std::vector<double>& sums) {
    ColumnScore col;
    col.name = name;
    col.count = count;
    for (double s : sums) col.run_values.push_back(s / static_cast<double>(count) * 100);
    col.value = numpy_round(numpy_mean(col.run_values), dp);
    return col;
  };

  // Columns by count, most common first; ties by first occurrence (Counter.most_common is stable; see header).
  std::vector<std::string> cap_order = cap_names;
  std::stable_sort(cap_order.begin(), cap_order.end(),
                   [&](const std::string& a, const std::string& b) { return cap_count[a] > cap_count[b]; });
  for (const std::string& c : cap_order) result.capabilities.push_back(column(c, cap_count[c], cap_sum[c]));
  std::vector<size_t> set_order(set_names.size());
  for (size_t k = 0; k < set_order.size(); ++k) set_order[k] = k;
  std::stable_sort(set_order.begin(), set_order.end(), [&](size_t a, size_t b) { return set_count[a] > set_count[b]; });
  for (size_t k : set_order) result.integrations.push_back(column(set_names[k], set_count[k], set_sum[set_names[k]]));

  result.total = column("total", result.n_samples, total_sum);
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

std::string read_grader_prompt(const std::string& path) { return read_file(path, "MM-Vet grader prompt"); }

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
  const std::string_view first = reply.substr(0, reply.find(' '));  // content.split(" ")[0]
  std::optional<double> v = python_float(first);                    // .strip() happens inside
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
      out.content = std::string(strip(std::string_view(reply).substr(0, reply.find(' '))));
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

void write_results(const std::string& path, const std::vector<std::pair<std::string, std::string>>& results) {
  Json doc = Json::object();
  for (const auto& [key, text] : results) {
    if (doc.contains(key)) throw mmr::DataError("MM-Vet results for '" + path + "': duplicate key \"" + key + "\"");
    doc[key] = text;
  }
  write_text(path, "MM-Vet results file", doc.dump(2, ' ', /*ensure_ascii=*/true));
}

void write_grade_file(const std::string& path, const std::vector<SampleGrade>& grades) {
  Json doc = Json::object();
  for (const SampleGrade& g : grades) {
    Json entry;
    entry["model"] = strings_to_json(g.model);
    entry["content"] = strings_to_json(g.content);
    entry["score"] = g.score;
    doc[g.id] = entry;
  }
  write_text(path, "MM-Vet grade file", doc.dump(4, ' ', /*ensure_ascii=*/true));
}

}  // namespace mmr::mm_vet
