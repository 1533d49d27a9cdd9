// The pure half of the `annotate` stage (torch-free, no I/O besides reading the candidates file): the rubric
// prompt, reading candidate rows, and parsing the judge's five scores.
//
// Candidate rows (JSONL): {"id", "image", "question", "candidates": [{"response": "..."} | "...", ...], ...}: the
// scored-candidates format of plugins/datasets/README.md without the scores. `question` may be a string or a turn
// ({"from"/"role", "value"/"content"}); a candidate's text is `response` (or `text`, `answer`). Other fields are
// kept and written back out.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mmr::annotate {

// HelpSteer's five attributes, 0-4 each, in the order the rubric asks for them.
inline const std::array<const char*, 5> kAttributes = {"Helpfulness", "Correctness", "Coherence", "Complexity",
                                                        "Verbosity"};

// rubric.txt as built into the plugin.
extern const char* const kDefaultRubric;

// A rubric must contain {question} and {response}; ConfigError naming `rubric_name` otherwise.
void check_rubric(std::string_view rubric, const std::string& rubric_name);
// The rubric with {question}, {response} and (when the rubric has it) {reference} replaced (texts inserted as
// they are, braces included). {reference} is the row's `reference` answer, for reference-guided grading as
// MT-Bench's math prompts do it.
std::string build_prompt(std::string_view rubric, std::string_view question, std::string_view response,
                         std::string_view reference = {});
bool wants_reference(std::string_view rubric);

// "Helpfulness: 3" ... per attribute (case-insensitive, the first line naming the attribute, optional markdown
// '*' around the name); nullopt unless all five are present as a single digit 0-4.
std::optional<std::map<std::string, int>> parse_scores(std::string_view reply);

struct CandidateRow {
  int line = 0;
  nlohmann::ordered_json row;          // as read
  std::string question;
  std::string image;                   // the row's "image" as written ("" when it has none)
  std::string reference;               // the row's "reference" answer ("" when it has none)
  std::vector<std::string> responses;  // in order
};
// Throws IoError / DataError naming file:line and the field.
std::vector<CandidateRow> read_candidate_rows(const std::string& path);

}  // namespace mmr::annotate
