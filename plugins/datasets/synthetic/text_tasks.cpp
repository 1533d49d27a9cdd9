#include "plugins/datasets/synthetic/text_tasks.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/names.h"

namespace mmr::synthetic {

namespace {
const EnumNames<TextTaskType>& text_task_types() {
  static const EnumNames<TextTaskType> kNames({"add", "subtract", "multiply", "reverse", "uppercase", "count_letter",
                                               "sort_numbers", "sort_words", "word_problem"},
                                              "text task type", "types");
  return kNames;
}
}  // namespace

const std::vector<TextTaskType>& all_text_task_types() { return text_task_types().values(); }
const std::string& text_task_type_name(TextTaskType type) { return text_task_types().name(type); }
TextTaskType text_task_type_from_name(const std::string& name, const std::string& key) {
  return text_task_types().from_name(name, key);
}

const std::vector<std::string>& task_words() {
  static const std::vector<std::string> kWords = {
      "apple",  "banana", "planet", "garden", "window", "silver", "rocket", "bridge", "candle", "forest",
      "guitar", "island", "jacket", "kitten", "ladder", "marble", "napkin", "orange", "pencil", "rabbit",
      "saddle", "tomato", "violin", "wallet", "yellow", "zebra",  "anchor", "butter", "copper", "dragon",
      "engine", "falcon", "ginger", "hammer", "lemon",  "magnet", "needle", "pepper", "puzzle", "river",
      "spider", "tunnel", "velvet", "winter"};
  return kWords;
}

namespace {

struct Person {
  const char* name;
  const char* pronoun;
};
const std::vector<Person>& people() {
  static const std::vector<Person> kPeople = {{"Tom", "he"},   {"Anna", "she"}, {"Ravi", "he"},  {"Mei", "she"},
                                              {"Lucas", "he"}, {"Sara", "she"}, {"Omar", "he"},  {"Lena", "she"}};
  return kPeople;
}

// A nonzero offset of a few units of the answer's last or second-to-last digit: a plausible wrong number.
int64_t wrong_offset(Rng& rng, int64_t value) {
  const int64_t unit = (value >= 100 && rng.bernoulli(0.5)) ? 10 : 1;
  const int64_t magnitude = rng.uniform_int(1, 9) * unit;
  return rng.bernoulli(0.5) || value - magnitude < 0 ? magnitude : -magnitude;
}

// Rounded to two significant digits ("about"); equal to `value` only for small round numbers.
int64_t approximately(int64_t value) {
  int64_t scale = 1;
  while (std::llabs(value) / scale >= 100) scale *= 10;
  if (scale == 1) return value;
  const int64_t half = scale / 2;
  return value >= 0 ? (value + half) / scale * scale : -((-value + half) / scale * scale);
}

std::string approximate_answer(int64_t value) {
  const int64_t about = approximately(value);
  if (about != value) return fmt::format("The answer is about {}.", about);
  return fmt::format("The answer is somewhere between {} and {}.", value - 10, value + 10);
}

std::string join(const std::vector<std::string>& items) { return fmt::format("{}", fmt::join(items, ", ")); }
std::string join(const std::vector<int64_t>& items) { return fmt::format("{}", fmt::join(items, ", ")); }

// Swaps one adjacent pair of unequal elements (at a random place); the result differs from the input.
template <class T>
std::vector<T> with_adjacent_swap(std::vector<T> items, Rng& rng) {
  std::vector<size_t> places;
  for (size_t i = 0; i + 1 < items.size(); ++i) {
    if (items[i] != items[i + 1]) places.push_back(i);
  }
  MMR_CHECK(!places.empty(), "nothing to swap");
  const size_t at = rng.pick(places);
  std::swap(items[at], items[at + 1]);
  return items;
}

// `s` with one adjacent pair of unequal letters swapped, never equal to `avoid`.
std::string swapped_string(const std::string& s, const std::string& avoid, Rng& rng) {
  std::vector<std::string> options;
  for (size_t i = 0; i + 1 < s.size(); ++i) {
    if (s[i] == s[i + 1]) continue;
    std::string t = s;
    std::swap(t[i], t[i + 1]);
    if (t != avoid) options.push_back(t);
  }
  MMR_CHECK(!options.empty(), "no partial reversal of '" << s << "'");
  return rng.pick(options);
}

std::vector<std::string> distinct_words(Rng& rng, size_t n) {
  std::vector<std::string> words = task_words();
  rng.shuffle(words);
  words.resize(n);
  return words;
}

TextTask make_arithmetic(TextTaskType type, Rng& rng) {
  int64_t a = 0, b = 0, result = 0;
  char op = '+';
  if (type == TextTaskType::kAdd) {
    a = rng.uniform_int(10, 9999);
    b = rng.uniform_int(10, 9999);
    result = a + b;
  } else if (type == TextTaskType::kSubtract) {
    a = rng.uniform_int(100, 9999);
    b = rng.uniform_int(10, a);
    result = a - b;
    op = '-';
  } else {
    a = rng.uniform_int(12, 99);
    b = rng.uniform_int(12, 999);
    result = a * b;
    op = '*';
  }
  TextTask task;
  task.question = fmt::format("What is {} {} {}?", a, op, b);
  task.answer = fmt::format("{} {} {} = {}.", a, op, b, result);
  task.short_answer = std::to_string(result);
  task.partial = approximate_answer(result);
  task.wrong = fmt::format("{} {} {} = {}.", a, op, b, result + wrong_offset(rng, result));
  return task;
}

TextTask make_reverse(Rng& rng) {
  const std::string word = rng.pick(task_words());
  const std::string reversed(word.rbegin(), word.rend());
  TextTask task;
  task.question = fmt::format("Reverse the string \"{}\".", word);
  task.answer = fmt::format("The reversed string is \"{}\".", reversed);
  task.short_answer = reversed;
  task.partial = fmt::format("The reversed string is \"{}\".", swapped_string(reversed, /*avoid=*/word, rng));
  task.wrong = fmt::format("The reversed string is \"{}\".", word);  // words are not palindromes
  return task;
}

TextTask make_uppercase(Rng& rng) {
  const std::vector<std::string> words = distinct_words(rng, static_cast<size_t>(rng.uniform_int(2, 3)));
  const std::string phrase = fmt::format("{}", fmt::join(words, " "));
  std::string upper = phrase, first_only = phrase, title = phrase;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  const size_t first_end = phrase.find(' ');
  for (size_t i = 0; i < first_end; ++i) first_only[i] = static_cast<char>(std::toupper(first_only[i]));
  for (size_t i = 0; i < title.size(); ++i) {
    if (i == 0 || title[i - 1] == ' ') title[i] = static_cast<char>(std::toupper(title[i]));
  }
  TextTask task;
  task.question = fmt::format("Convert \"{}\" to uppercase.", phrase);
  task.answer = fmt::format("In uppercase: \"{}\".", upper);
  task.short_answer = upper;
  task.partial = fmt::format("In uppercase: \"{}\".", first_only);
  task.wrong = fmt::format("In uppercase: \"{}\".", title);
  return task;
}

std::string letter_count_sentence(const std::string& letter, const std::string& word, int64_t n) {
  return fmt::format("The letter \"{}\" appears {} {} in \"{}\".", letter, n, n == 1 ? "time" : "times", word);
}

TextTask make_count_letter(Rng& rng) {
  const std::string word = rng.pick(task_words());
  const char letter = rng.bernoulli(0.75) ? word[rng.uniform_below(word.size())]
                                          : static_cast<char>('a' + rng.uniform_below(26));
  const std::string l(1, letter);
  const int64_t n = std::count(word.begin(), word.end(), letter);
  const int64_t other = (n > 0 && rng.bernoulli(0.5)) ? n - 1 : n + 1;
  int64_t wrong = n + rng.uniform_int(1, 2);
  if (n >= 2 && rng.bernoulli(0.5)) wrong = n - 1;
  TextTask task;
  task.question = fmt::format("How many times does the letter \"{}\" appear in \"{}\"?", l, word);
  task.answer = letter_count_sentence(l, word, n);
  task.short_answer = std::to_string(n);
  task.partial = fmt::format("The letter \"{}\" appears {} or {} times in \"{}\".", l, std::min(n, other),
                             std::max(n, other), word);
  task.wrong = letter_count_sentence(l, word, wrong);
  return task;
}

TextTask make_sort_numbers(Rng& rng) {
  const size_t n = static_cast<size_t>(rng.uniform_int(4, 7));
  std::vector<int64_t> numbers;
  while (numbers.size() < n) {
    const int64_t x = rng.uniform_int(1, 999);
    if (std::find(numbers.begin(), numbers.end(), x) == numbers.end()) numbers.push_back(x);
  }
  const bool ascending = rng.bernoulli(0.5);
  std::vector<int64_t> sorted = numbers;
  std::sort(sorted.begin(), sorted.end());
  if (!ascending) std::reverse(sorted.begin(), sorted.end());
  const char* order = ascending ? "ascending" : "descending";
  // Wrong: one number altered to a value not in the list (a hallucinated number).
  std::vector<int64_t> altered = sorted;
  const size_t at = rng.uniform_below(altered.size());
  int64_t replacement = altered[at];
  while (std::find(numbers.begin(), numbers.end(), replacement) != numbers.end()) {
    replacement = altered[at] + wrong_offset(rng, altered[at]);
  }
  altered[at] = replacement;
  TextTask task;
  task.question = fmt::format("Sort these numbers in {} order: {}.", order, join(numbers));
  task.answer = fmt::format("In {} order: {}.", order, join(sorted));
  task.short_answer = join(sorted);
  task.partial = fmt::format("In {} order: {}.", order, join(with_adjacent_swap(sorted, rng)));
  task.wrong = fmt::format("In {} order: {}.", order, join(altered));
  return task;
}

TextTask make_sort_words(Rng& rng) {
  const size_t n = static_cast<size_t>(rng.uniform_int(3, 6));
  const std::vector<std::string> pool = distinct_words(rng, n + 1);
  const std::vector<std::string> words(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<std::string> sorted = words;
  std::sort(sorted.begin(), sorted.end());
  // Wrong: one word replaced by a word that was not in the list, still presented as sorted.
  std::vector<std::string> altered = sorted;
  altered[rng.uniform_below(altered.size())] = pool[n];
  std::sort(altered.begin(), altered.end());
  TextTask task;
  task.question = fmt::format("Sort these words alphabetically: {}.", join(words));
  task.answer = fmt::format("Alphabetically: {}.", join(sorted));
  task.short_answer = join(sorted);
  task.partial = fmt::format("Alphabetically: {}.", join(with_adjacent_swap(sorted, rng)));
  task.wrong = fmt::format("Alphabetically: {}.", join(altered));
  return task;
}

// Word problems: three templates, each with its numbers in the question in the order a, b, c, d. The partial
// answer gets the first step right and the last one off; the wrong one starts from a wrong first step.

// a + b*c - d apples.
TextTask apples_problem(const Person& p, Rng& rng) {
  const std::string he = p.pronoun;
  const std::string He = he == "he" ? "He" : "She";
  const int64_t a = rng.uniform_int(2, 30), b = rng.uniform_int(2, 9), c = rng.uniform_int(2, 12);
  const int64_t first = b * c;
  const int64_t d = rng.uniform_int(1, a + first - 1);
  const int64_t result = a + first - d;
  TextTask task;
  task.question = fmt::format(
      "{} has {} apples. {} buys {} bags with {} apples each and gives away {} apples. "
      "How many apples does {} have now?", p.name, a, He, b, c, d, p.name);
  auto steps = [&](int64_t step1, int64_t total, int64_t final_value) {
    return fmt::format("{} buys {} * {} = {} apples, so {} has {} + {} = {} apples. After giving away {}, {} has "
                       "{} - {} = {} apples. The answer is {}.", p.name, b, c, step1, he, a, step1, total, d, he,
                       total, d, final_value, final_value);
  };
  task.answer = steps(first, a + first, result);
  const int64_t off = wrong_offset(rng, result);
  task.partial = steps(first, a + first, result + off);
  const int64_t bad_first = first + std::llabs(wrong_offset(rng, first));  // keeps the made-up total >= 0
  task.wrong = steps(bad_first, a + bad_first, a + bad_first - d);
  task.short_answer = std::to_string(result);
  return task;
}

// Change: c - a*b dollars.
TextTask change_problem(const Person& p, Rng& rng) {
  const int64_t a = rng.uniform_int(2, 9), b = rng.uniform_int(2, 12);
  const int64_t first = a * b;
  const int64_t c = first + rng.uniform_int(1, 50);
  const int64_t result = c - first;
  TextTask task;
  task.question = fmt::format(
      "A shop sells pencils for {} dollars each. {} buys {} pencils and pays with {} dollars. "
      "How much change does {} get?", a, p.name, b, c, p.name);
  auto steps = [&](int64_t cost, int64_t change) {
    return fmt::format("The pencils cost {} * {} = {} dollars, so the change is {} - {} = {} dollars. The answer "
                       "is {}.", b, a, cost, c, cost, change, change);
  };
  task.answer = steps(first, result);
  task.partial = steps(first, result + wrong_offset(rng, result));
  const int64_t bad_cost = first + rng.uniform_int(1, c - first);  // a wrong cost the payment still covers
  task.wrong = steps(bad_cost, c - bad_cost);
  task.short_answer = std::to_string(result);
  return task;
}

// Distance: a*b + c km.
TextTask distance_problem(Rng& rng) {
  const int64_t a = rng.uniform_int(20, 120), b = rng.uniform_int(2, 6), c = rng.uniform_int(5, 90);
  const int64_t first = a * b;
  const int64_t result = first + c;
  TextTask task;
  task.question = fmt::format(
      "A train travels {} km per hour for {} hours and then {} km more. How far does it travel in total?", a, b, c);
  auto steps = [&](int64_t part, int64_t total) {
    return fmt::format("In {} hours it travels {} * {} = {} km, and {} + {} = {} km in total. The answer is {}.", b,
                       a, b, part, part, c, total, total);
  };
  task.answer = steps(first, result);
  task.partial = steps(first, result + wrong_offset(rng, result));
  const int64_t bad_part = first + wrong_offset(rng, first);
  task.wrong = steps(bad_part, bad_part + c);
  task.short_answer = std::to_string(result);
  return task;
}

TextTask make_word_problem(Rng& rng) {
  const Person& p = rng.pick(people());  // drawn first for every template (the draws' order is the format)
  switch (rng.uniform_int(0, 2)) {
    case 0: return apples_problem(p, rng);
    case 1: return change_problem(p, rng);
    default: return distance_problem(rng);
  }
}

}  // namespace

TextTask make_text_task(TextTaskType type, Rng& rng) {
  TextTask task;
  switch (type) {
    case TextTaskType::kAdd:
    case TextTaskType::kSubtract:
    case TextTaskType::kMultiply: task = make_arithmetic(type, rng); break;
    case TextTaskType::kReverse: task = make_reverse(rng); break;
    case TextTaskType::kUppercase: task = make_uppercase(rng); break;
    case TextTaskType::kCountLetter: task = make_count_letter(rng); break;
    case TextTaskType::kSortNumbers: task = make_sort_numbers(rng); break;
    case TextTaskType::kSortWords: task = make_sort_words(rng); break;
    case TextTaskType::kWordProblem: task = make_word_problem(rng); break;
  }
  task.type = type;
  return task;
}

nlohmann::ordered_json to_llava_row(const TextTask& task) {
  nlohmann::ordered_json human = {{"from", "human"}, {"value", task.question}};
  nlohmann::ordered_json gpt = {{"from", "gpt"}, {"value", task.answer}};
  nlohmann::ordered_json row;
  row["id"] = task.id;
  row["conversations"] = nlohmann::ordered_json::array({human, gpt});
  return row;
}

nlohmann::ordered_json to_eval_row(const TextTask& task) {
  nlohmann::ordered_json row;
  row["question_id"] = task.id;
  row["text"] = task.question;
  row["category"] = text_task_type_name(task.type);
  row["answer"] = task.answer;
  row["short_answer"] = task.short_answer;
  return row;
}

}  // namespace mmr::synthetic
