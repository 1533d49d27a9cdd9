// LLaVA-Bench scoring: the behaviour of LLaVA's summarize_gpt_review.py and eval_gpt_review_bench.py,
// re-written in C++ (no code copied). See scoring.h.
#include "plugins/benchmarks/llava_bench/scoring.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "core/api/error.h"
#include "core/lib/util/python_float.h"
#include "core/lib/util/strings.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::llava_bench {

using namespace benchmarks::jsonl;

std::vector<Review> read_reviews(const std::string& path) {
  std::vector<Review> reviews;
  for (const JsonLine& row : read_jsonl(path, "LLaVA-Bench review file")) {
    Review r;
    r.line = row.line;
    if (auto q = row.value.find("question_id"); q != row.value.end() && q->is_number_integer()) {
      r.question_id = q->get<int64_t>();
      r.has_question_id = true;
    }
    r.has_category = row.value.contains("category");
    if (r.has_category) r.category = string_field(row, "category", path);
    // With a category the script reads "tuple"; without one, "tuple" if present, else "score".
    const char* key = (r.has_category || row.value.contains("tuple")) ? "tuple" : "score";
    const Json& t = require(row, key, path);
    if (!t.is_array() || t.size() != 2 || !t[0].is_number() || !t[1].is_number()) {
      throw mmr::DataError(at(path, row.line) + "expected \"" + key + "\" to be [reference_score, model_score], found " +
                           t.dump());
    }
    r.tuple = {t[0].get<double>(), t[1].get<double>()};
    reviews.push_back(std::move(r));
  }
  return reviews;
}

double python_round(double x, int ndigits) {
  if (!std::isfinite(x)) return x;
  // glibc's printf rounds the exact binary value correctly (ties to even), as Python's float.__round__ does.
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", ndigits, x);
  return std::strtod(buf, nullptr);
}

ReviewSummary summarize(const std::vector<Review>& reviews, const std::string& config, const std::set<int64_t>& ignore) {
  std::map<std::string, std::vector<const Review*>> by_key;  // sorted as Python's sorted(scores.items())
  for (const Review& r : reviews) {
    if (!ignore.empty() && r.has_question_id && ignore.count(r.question_id)) continue;
    if (r.has_category) by_key[r.category].push_back(&r);
    by_key["all"].push_back(&r);
  }
  ReviewSummary s;
  s.config = config;
  for (const auto& [key, list] : by_key) {
    CategoryScore c;
    c.name = key;
    c.n = static_cast<int64_t>(list.size());
    double sum_ref = 0, sum_model = 0;  // numpy's column mean: row-by-row sums, then / n
    for (const Review* r : list) {
      sum_ref += r->tuple[0];
      sum_model += r->tuple[1];
      if (r->tuple[0] == -1 && r->tuple[1] == -1) ++c.n_failed;
    }
    c.reference_mean = python_round(sum_ref / static_cast<double>(c.n), 3);
    c.model_mean = python_round(sum_model / static_cast<double>(c.n), 3);
    if (c.reference_mean == 0) {
      throw mmr::DataError("LLaVA-Bench reviews '" + config + "': category '" + key +
                           "' has a reference mean of 0; the relative score is undefined");
    }
    c.relative = python_round(c.model_mean / c.reference_mean * 100, 1);
    c.reference_score = python_round(c.reference_mean * 10, 1);
    c.model_score = python_round(c.model_mean * 10, 1);
    s.categories.push_back(c);
  }
  return s;
}

std::string config_name(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
  for (std::string_view drop : {std::string_view("gpt4_text_"), std::string_view(".jsonl")}) {
    for (size_t p; (p = name.find(drop)) != std::string::npos;) name.erase(p, drop.size());
  }
  return name;
}

ReviewSummary summarize_file(const std::string& path, const std::set<int64_t>& ignore) {
  return summarize(read_reviews(path), config_name(path), ignore);
}

mmr::MetricList to_metrics(const ReviewSummary& summary) {
  mmr::MetricList out;
  for (const CategoryScore& c : summary.categories) {
    out.push_back({c.name, c.relative});
    out.push_back({c.name + "/reference", c.reference_mean});
    out.push_back({c.name + "/model", c.model_mean});
    out.push_back({c.name + "/reference_score", c.reference_score});
    out.push_back({c.name + "/model_score", c.model_score});
    out.push_back({c.name + "/n", static_cast<double>(c.n)});
    out.push_back({c.name + "/n_failed", static_cast<double>(c.n_failed)});
  }
  return out;
}

mmr::MetricList score_file(const std::string& review_path, const std::set<int64_t>& ignore) {
  return to_metrics(summarize_file(review_path, ignore));
}

// ---- review prompts ----

std::map<std::string, Rule> read_rules(const std::string& path) {
  const Json doc = read_json_file(path, "LLaVA rule file");
  if (!doc.is_object()) throw mmr::DataError(path + ": expected an object {category: {role, prompt}}");
  std::map<std::string, Rule> rules;
  for (const auto& [key, v] : doc.items()) {
    if (!v.is_object() || !v.contains("role") || !v.contains("prompt") || !v["role"].is_string() ||
        !v["prompt"].is_string()) {
      throw mmr::DataError(path + ": key \"" + key + "\": expected {\"role\": string, \"prompt\": string}");
    }
    rules[key] = Rule{v["role"].get<std::string>(), v["prompt"].get<std::string>()};
  }
  return rules;
}

std::vector<Question> read_questions(const std::string& path) {
  return read_rows(path, "LLaVA-Bench question file", [&](const JsonLine& row) {
    return Question{row.line, int_field(row, "question_id", path), string_field(row, "image", path),
                    string_field(row, "text", path), string_field(row, "category", path)};
  });
}

std::vector<Answer> read_answers(const std::string& path) {
  return read_rows(path, "LLaVA-Bench answer file", [&](const JsonLine& row) {
    const int64_t question_id = int_field(row, "question_id", path);
    const std::string text = string_field(row, "text", path);
    const auto id = row.value.find("answer_id");  // any JSON value; its text when it is not a string
    const std::string answer_id = id == row.value.end() ? "" : id->is_string() ? id->get<std::string>() : id->dump();
    return Answer{row.line, question_id, answer_id, text};
  });
}

std::string join_caption(const std::string& caption_json_text, bool join_string_characters) {
  const Json caption = Json::parse(caption_json_text);
  std::string out;
  if (caption.is_array()) {
    for (size_t i = 0; i < caption.size(); ++i) {
      if (!caption[i].is_string()) throw mmr::DataError("caption list items must be strings, found " + caption[i].dump());
      if (i) out += '\n';
      out += caption[i].get<std::string>();
    }
    return out;
  }
  if (!caption.is_string()) throw mmr::DataError("caption must be a string or a list, found " + caption.dump());
  // '\n'.join(a_string): one code point per line. UTF-8 lead bytes start a code point; continuation bytes
  // (10xxxxxx) stay with it.
  const std::string s = caption.get<std::string>();
  if (!join_string_characters) return s;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (i > 0 && (c & 0xC0) != 0x80) out += '\n';
    out += s[i];
  }
  return out;
}

std::map<std::string, std::string> read_context(const std::string& path, bool join_string_characters) {
  std::map<std::string, std::string> out;
  for (const JsonLine& row : read_jsonl(path, "LLaVA-Bench context file")) {
    const std::string image = string_field(row, "image", path);
    const Json& caption = require(row, "caption", path);
    try {
      out[image] = join_caption(caption.dump(), join_string_characters);  // later lines win, as the script's dict comprehension
    } catch (const mmr::DataError& e) {
      throw mmr::DataError(at(path, row.line) + e.what());
    }
  }
  return out;
}

std::string build_review_prompt(const Rule& rule, std::string_view context, std::string_view question,
                                std::string_view answer1, std::string_view answer2) {
  std::string c;
  c.append("[Context]\n").append(context).append("\n\n");
  c.append("[Question]\n").append(question).append("\n\n");
  c.append("[").append(rule.role).append(" 1]\n").append(answer1).append("\n\n[End of ").append(rule.role).append(" 1]\n\n");
  c.append("[").append(rule.role).append(" 2]\n").append(answer2).append("\n\n[End of ").append(rule.role).append(" 2]\n\n");
  c.append("[System]\n").append(rule.prompt).append("\n\n");
  return c;
}

namespace {

// Row i pairs a question with the reference answer and the model answer of the same question_id.
void check_paired(size_t i, const Question& q, const Answer& a1, const Answer& a2) {
  if (a1.question_id != q.question_id || a2.question_id != q.question_id) {
    throw mmr::DataError("LLaVA-Bench review: row " + std::to_string(i + 1) + " pairs question_id " +
                         std::to_string(q.question_id) + " (question line " + std::to_string(q.line) +
                         ") with answers for " + std::to_string(a1.question_id) + " (reference line " +
                         std::to_string(a1.line) + ") and " + std::to_string(a2.question_id) + " (model line " +
                         std::to_string(a2.line) + ")");
  }
}

// A map entry that must exist; `what` names it in the error.
template <typename Map>
const typename Map::mapped_type& find_or_throw(const Map& map, const std::string& key, const std::string& what) {
  auto it = map.find(key);
  if (it == map.end()) throw mmr::DataError("LLaVA-Bench review: " + what);
  return it->second;
}

}  // namespace

std::vector<ReviewRequest> build_review_requests(const std::vector<Question>& questions,
                                                 const std::map<std::string, std::string>& context,
                                                 const std::vector<Answer>& answers1,
                                                 const std::vector<Answer>& answers2,
                                                 const std::map<std::string, Rule>& rules) {
  if (answers1.size() != questions.size() || answers2.size() != questions.size()) {
    throw mmr::DataError("LLaVA-Bench review: " + std::to_string(questions.size()) + " questions but " +
                         std::to_string(answers1.size()) + " reference answers and " + std::to_string(answers2.size()) +
                         " model answers (the script pairs them by position, so the counts must agree)");
  }
  std::vector<ReviewRequest> out;
  for (size_t i = 0; i < questions.size(); ++i) {
    const Question& q = questions[i];
    const Answer& a1 = answers1[i];
    const Answer& a2 = answers2[i];
    const std::string line = std::to_string(q.line);
    const std::string category = "llava_bench_" + q.category;
    check_paired(i, q, a1, a2);
    const std::string& caption =
        find_or_throw(context, q.image, "no context for image '" + q.image + "' (question line " + line + ")");
    const Rule& rule = find_or_throw(rules, category, "category '" + category + "' (question line " + line +
                                                          ") is not in the rule file");
    if (a2.answer_id.empty()) {
      throw mmr::DataError("LLaVA-Bench review: model answer line " + std::to_string(a2.line) +
                           " has no answer_id (eval_gpt_review_bench.py requires it)");
    }
    ReviewRequest r;
    r.id = static_cast<int64_t>(i + 1);
    r.question_id = q.question_id;
    r.answer1_id_is_int = a1.answer_id.empty();
    r.answer1_id = r.answer1_id_is_int ? std::to_string(a1.question_id) : a1.answer_id;
    r.answer2_id = a2.answer_id;
    r.category = category;
    r.content = build_review_prompt(rule, caption, q.text, a1.text, a2.text);
    out.push_back(std::move(r));
  }
  return out;
}

std::array<double, 2> parse_score(std::string_view review) {
  std::string first(review.substr(0, review.find('\n')));
  std::replace(first.begin(), first.end(), ',', ' ');
  const std::vector<std::string_view> parts = python_split(first, ' ');
  if (parts.size() != 2) return {-1, -1};
  const std::optional<double> a = python_float(parts[0]), b = python_float(parts[1]);
  if (!a || !b) return {-1, -1};
  return {*a, *b};
}

std::string review_line(const ReviewRequest& request, std::string_view review_text, const std::array<double, 2>& tuple) {
  Json row;
  row["id"] = request.id;
  row["question_id"] = request.question_id;
  if (request.answer1_id_is_int) {
    row["answer1_id"] = std::stoll(request.answer1_id);
  } else {
    row["answer1_id"] = request.answer1_id;
  }
  row["answer2_id"] = request.answer2_id;
  row["category"] = request.category;
  row["content"] = std::string(review_text);
  row["tuple"] = {tuple[0], tuple[1]};
  return row.dump(-1, ' ', /*ensure_ascii=*/true);
}

std::string answers_jsonl(const std::vector<AnswerRecord>& answers) {
  std::string text;
  for (const AnswerRecord& a : answers) text += llava_answer_line(a.question_id, a.prompt, a.text, a.answer_id, a.model_id);
  return text;
}

}  // namespace mmr::llava_bench
