// Text-only instruction tasks with exact answers (no image), for the MT-Bench side of the world.
//
//   add / subtract / multiply   "What is 347 + 1289?"                          -> "347 + 1289 = 1636."
//   reverse                     "Reverse the string \"planet\"."                -> "The reversed string is \"tenalp\"."
//   uppercase                   "Convert \"red apple\" to uppercase."           -> "In uppercase: \"RED APPLE\"."
//   count_letter                "How many times does the letter \"a\" appear in \"banana\"?"
//   sort_numbers / sort_words   "Sort these numbers in ascending order: 42, 7, 19, 88."
//   word_problem                two-step problems from three templates, answered with the steps shown
// Every task also carries a partly correct response and a wrong one (wrong numbers or strings, stated with
// confidence), which candidates.h turns into graded candidates.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/rng.h"

namespace mmr::synthetic {

enum class TextTaskType {
  kAdd, kSubtract, kMultiply, kReverse, kUppercase, kCountLetter, kSortNumbers, kSortWords, kWordProblem
};

const std::vector<TextTaskType>& all_text_task_types();
// "add", "subtract", "multiply", "reverse", "uppercase", "count_letter", "sort_numbers", "sort_words",
// "word_problem"
const std::string& text_task_type_name(TextTaskType type);
TextTaskType text_task_type_from_name(const std::string& name, const std::string& key);

struct TextTask {
  std::string id;
  TextTaskType type = TextTaskType::kAdd;
  std::string question;
  std::string answer;        // the correct response
  std::string short_answer;  // "1636", "tenalp", "7, 19, 42, 88"
  std::string partial;       // partly correct: approximate, hedged, or one step/element off
  std::string wrong;         // confidently wrong: wrong numbers, wrong string
};

TextTask make_text_task(TextTaskType type, Rng& rng);

// LLaVA conversation row without an image: {"id", "conversations": [human question, gpt answer]}.
nlohmann::ordered_json to_llava_row(const TextTask& task);
// {"question_id", "text", "category", "answer", "short_answer"}.
nlohmann::ordered_json to_eval_row(const TextTask& task);

// The words reverse / uppercase / count_letter / sort_words draw from (no palindromes).
const std::vector<std::string>& task_words();

}  // namespace mmr::synthetic
