#include "plugins/algorithms/annotate/annotate.h"

#include <fmt/format.h>

#include <optional>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/api/error.h"
#include "core/lib/util/strings.h"

namespace mmr::annotate {

using Json = nlohmann::ordered_json;

void check_rubric(std::string_view rubric, const std::string& rubric_name) {
  for (const char* field : {"{question}", "{response}"})
    if (rubric.find(field) == std::string_view::npos)
      throw ConfigError(fmt::format("rubric '{}': no {} placeholder (the rubric text must contain both {{question}} "
                                    "and {{response}})", rubric_name, field));
}

bool wants_reference(std::string_view rubric) { return rubric.find("{reference}") != std::string_view::npos; }

std::string build_prompt(std::string_view rubric, std::string_view question, std::string_view response,
                         std::string_view reference) {
  std::string out;
  for (size_t i = 0; i < rubric.size();) {
    if (rubric.compare(i, 10, "{question}") == 0) {
      out += question;
      i += 10;
    } else if (rubric.compare(i, 10, "{response}") == 0) {
      out += response;
      i += 10;
    } else if (rubric.compare(i, 11, "{reference}") == 0) {
      out += reference;
      i += 11;
    } else {
      out += rubric[i++];
    }
  }
  return out;
}

std::optional<std::map<std::string, int>> parse_scores(std::string_view reply) {
  const std::string text = ascii_lower(reply);
  std::map<std::string, int> scores;
  for (const char* attribute : kAttributes) {
    const std::string name = ascii_lower(attribute);
    bool found = false;
    for (size_t at = text.find(name); at != std::string::npos && !found; at = text.find(name, at + 1)) {
      // The name must start a line (after optional markdown/list marks), then ':' and one digit 0-4.
      size_t b = at;
      while (b > 0 && (text[b - 1] == '*' || text[b - 1] == '-' || text[b - 1] == ' ' || text[b - 1] == '#')) --b;
      if (b > 0 && text[b - 1] != '\n') continue;
      size_t i = at + name.size();
      while (i < text.size() && (text[i] == '*' || text[i] == ' ')) ++i;
      if (i >= text.size() || text[i] != ':') continue;
      ++i;
      while (i < text.size() && (text[i] == ' ' || text[i] == '*')) ++i;
      if (i >= text.size() || text[i] < '0' || text[i] > '4') return std::nullopt;
      const bool more_digits = i + 1 < text.size() && (std::isdigit(static_cast<unsigned char>(text[i + 1])) ||
                                                       (text[i + 1] == '.' && i + 2 < text.size() &&
                                                        std::isdigit(static_cast<unsigned char>(text[i + 2]))));
      if (more_digits) return std::nullopt;
      scores[attribute] = text[i] - '0';
      found = true;
    }
    if (!found) return std::nullopt;
  }
  return scores;
}

namespace {
std::string text_of(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object())
    for (const char* key : {"value", "content"})
      if (auto it = v.find(key); it != v.end() && it->is_string()) return it->get<std::string>();
  return "";
}
}  // namespace

namespace {

// The candidates' texts: each a string, or an object with "response" (or "text", "answer").
std::vector<std::string> responses_of(const Json& row, const std::string& where) {
  auto c = row.find("candidates");
  if (c == row.end() || !c->is_array() || c->empty())
    throw DataError(where + "\"candidates\": expected a non-empty list of responses");
  std::vector<std::string> responses;
  for (size_t k = 0; k < c->size(); ++k) {
    const Json& cand = (*c)[k];
    // An empty text is a reply too (a sampled model may end at once): it is graded, not refused.
    std::optional<std::string> response;
    if (cand.is_string()) response = cand.get<std::string>();
    for (const char* key : {"response", "text", "answer"})
      if (cand.is_object() && !response)
        if (auto it = cand.find(key); it != cand.end() && it->is_string()) response = it->get<std::string>();
    if (!response)
      throw DataError(fmt::format("{}candidates[{}]: expected a string or an object with \"response\", found {}",
                                  where, k, cand.dump()));
    responses.push_back(std::move(*response));
  }
  return responses;
}

// One row of the candidates file; `where` is "path:line: ".
CandidateRow candidate_row(const std::string& text, int line, const std::string& where) {
  CandidateRow r;
  r.line = line;
  try {
    r.row = Json::parse(text);
  } catch (const Json::exception& e) {
    throw DataError(where + "malformed JSON line: " + e.what());
  }
  if (!r.row.is_object()) throw DataError(where + "expected a JSON object");
  auto q = r.row.find("question");
  if (q == r.row.end()) throw DataError(where + "missing \"question\" (a string or a turn)");
  r.question = text_of(*q);
  if (r.question.empty()) throw DataError(where + "\"question\": expected a non-empty string or turn, found " + q->dump());
  if (auto im = r.row.find("image"); im != r.row.end() && !im->is_null()) {
    if (!im->is_string()) throw DataError(where + "\"image\": expected a file name, found " + im->dump());
    r.image = im->get<std::string>();
  }
  if (auto ref = r.row.find("reference"); ref != r.row.end() && !ref->is_null()) {
    if (!ref->is_string()) throw DataError(where + "\"reference\": expected a string, found " + ref->dump());
    r.reference = ref->get<std::string>();
  }
  r.responses = responses_of(r.row, where);
  return r;
}

}  // namespace

std::vector<CandidateRow> read_candidate_rows(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("cannot open the candidates file '{}': {}", path, std::strerror(errno)));
  std::vector<CandidateRow> rows;
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    if (text.find_first_not_of(" \t\r") == std::string::npos) continue;
    rows.push_back(candidate_row(text, line, fmt::format("{}:{}: ", path, line)));
  }
  return rows;
}

}  // namespace mmr::annotate
