// The annotate stage's rubrics, prompts and reply parsers (both request forms). Candidate rows: rows.cpp.
#include "plugins/algorithms/annotate/annotate.h"

#include <fmt/format.h>

#include <cctype>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/strings.h"

namespace mmr::annotate {

namespace {

bool has(std::string_view text, std::string_view placeholder) {
  return text.find(placeholder) != std::string_view::npos;
}

// `text` with every {name} of `values` replaced by its value, in one pass (inserted texts are not scanned again,
// so braces in a question or a response stay as they are).
std::string fill(std::string_view text, const std::map<std::string, std::string_view>& values) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    bool replaced = false;
    for (const auto& [name, value] : values) {
      const std::string placeholder = "{" + name + "}";
      if (text.compare(i, placeholder.size(), placeholder) == 0) {
        out += value;
        i += placeholder.size();
        replaced = true;
        break;
      }
    }
    if (!replaced) out += text[i++];
  }
  return out;
}

}  // namespace

void check_rubric(std::string_view rubric, const std::string& rubric_name) {
  check_rubric(rubric, rubric_name, RequestForm::PerCandidate);
}

void check_rubric(std::string_view rubric, const std::string& rubric_name, RequestForm form) {
  const bool per_prompt = form == RequestForm::PerPrompt;
  const char* needed = per_prompt ? "{candidates}" : "{response}";
  const char* form_name = per_prompt ? "request: per_prompt" : "request: per_candidate";
  // A per-candidate rubric given to the per-prompt form is the likely mistake: say so before what is missing.
  if (per_prompt && has(rubric, "{response}"))
    throw ConfigError(fmt::format("rubric '{}': {{response}} is the per-candidate placeholder; with request: "
                                  "per_prompt the rubric shows all candidates through {{candidates}} (or set "
                                  "request: per_candidate for a rubric that rates one response)", rubric_name));
  for (const char* field : {"{question}", needed})
    if (!has(rubric, field))
      throw ConfigError(fmt::format("rubric '{}': no {} placeholder (a rubric for {} must contain {{question}} and {})",
                                    rubric_name, field, form_name, needed));
}

bool wants_reference(std::string_view rubric) { return has(rubric, "{reference}"); }

std::string build_prompt(std::string_view rubric, std::string_view question, std::string_view response,
                         std::string_view reference) {
  return fill(rubric, {{"question", question}, {"response", response}, {"reference", reference}});
}

std::string build_all_candidates_prompt(std::string_view rubric, std::string_view question,
                                        const std::vector<std::string>& responses, std::string_view reference) {
  std::string block;
  for (size_t k = 1; k <= responses.size(); ++k)
    block += fmt::format("{}[Candidate {}]\n{}\n[End of Candidate {}]", k > 1 ? "\n\n" : "", k, responses[k - 1], k);
  const std::string count = std::to_string(responses.size());
  return fill(rubric, {{"question", question}, {"candidates", block}, {"num_candidates", count},
                       {"reference", reference}});
}

std::string retry_note(int attempt) {
  return fmt::format("\n\n(Attempt {}: an earlier reply to this request could not be read. Follow the reply format "
                     "above exactly.)", attempt + 1);
}

std::optional<Scores> parse_scores(std::string_view reply) {
  const std::string text = ascii_lower(reply);
  Scores scores;
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

// A line without surrounding whitespace and markdown marks ("**[Scores]**", "- Candidate 1: ...", "```").
std::string_view bare(std::string_view line) {
  auto mark = [](char c) { return is_python_space(c) || c == '*' || c == '#' || c == '`' || c == '-'; };
  while (!line.empty() && mark(line.front())) line.remove_prefix(1);
  while (!line.empty() && mark(line.back())) line.remove_suffix(1);
  return line;
}

// "Helpfulness:3" (spaces allowed around ':'): the attribute and its score, nullopt for anything else.
std::optional<std::pair<std::string, int>> attribute_score(std::string_view item) {
  const auto parts = python_split(item, ':');
  if (parts.size() != 2) return std::nullopt;
  const std::string_view name = python_strip(parts[0]), digit = python_strip(parts[1]);
  if (digit.size() != 1 || digit[0] < '0' || digit[0] > '4') return std::nullopt;
  for (const char* a : kAttributes)
    if (iequals(name, ascii_lower(a))) return std::make_pair(std::string(a), digit[0] - '0');
  return std::nullopt;
}

// "Candidate k: Helpfulness:3,Correctness:4,Coherence:4,Complexity:2,Verbosity:2" -> (k, scores).
std::optional<std::pair<size_t, Scores>> candidate_line(std::string_view line) {
  const std::string_view prefix = "candidate";
  if (line.size() <= prefix.size() || !iequals(line.substr(0, prefix.size()), prefix)) return std::nullopt;
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  const std::string_view number = python_strip(line.substr(prefix.size(), colon - prefix.size()));
  if (number.empty() || number.size() > 3) return std::nullopt;
  for (char c : number)
    if (c < '0' || c > '9') return std::nullopt;
  const auto items = python_split(line.substr(colon + 1), ',');
  if (items.size() != kAttributes.size()) return std::nullopt;
  Scores scores;
  for (std::string_view item : items) {
    const auto one = attribute_score(item);
    if (!one || !scores.emplace(one->first, one->second).second) return std::nullopt;
  }
  return std::make_pair(static_cast<size_t>(std::stoi(std::string(number))), scores);
}

}  // namespace

std::optional<std::vector<Scores>> parse_all_candidates_scores(std::string_view reply, size_t n) {
  const auto lines = python_split(reply, '\n');
  size_t marker = lines.size();
  for (size_t i = 0; i < lines.size(); ++i)
    if (iequals(bare(lines[i]), "[scores]")) marker = i;  // the last one: the reasoning may quote the format
  if (marker == lines.size()) return std::nullopt;
  std::vector<std::optional<Scores>> found(n);
  for (size_t i = marker + 1; i < lines.size(); ++i) {
    if (bare(lines[i]).empty()) continue;
    const auto line = candidate_line(bare(lines[i]));
    if (!line || line->first < 1 || line->first > n || found[line->first - 1]) return std::nullopt;
    found[line->first - 1] = line->second;
  }
  std::vector<Scores> out;
  for (const auto& scores : found) {
    if (!scores) return std::nullopt;
    out.push_back(*scores);
  }
  return out;
}

}  // namespace mmr::annotate
