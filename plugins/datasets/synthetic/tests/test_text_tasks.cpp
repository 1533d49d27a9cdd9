// Text tasks: every short answer is recomputed from the question text alone.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <regex>
#include <sstream>

#include "plugins/datasets/synthetic/text_tasks.h"
#include "png_probe.h"

using namespace mmr::synthetic;

namespace {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    out.push_back(item);
  }
  return out;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out;
}

std::vector<long long> integers_in(const std::string& text) {
  std::vector<long long> out;
  static const std::regex re(R"(\d+)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
    out.push_back(std::stoll(it->str()));
  }
  return out;
}

// (category, short answer) from the question text.
std::pair<std::string, std::string> solve(const std::string& q) {
  std::smatch m;
  if (std::regex_match(q, m, std::regex(R"re(What is (\d+) ([-+*]) (\d+)\?)re"))) {
    const long long a = std::stoll(m[1]), b = std::stoll(m[3]);
    const char op = m[2].str()[0];
    const long long r = op == '+' ? a + b : (op == '-' ? a - b : a * b);
    return {op == '+' ? "add" : (op == '-' ? "subtract" : "multiply"), std::to_string(r)};
  }
  if (std::regex_match(q, m, std::regex(R"re(Reverse the string "(\w+)"\.)re"))) {
    std::string s = m[1];
    std::reverse(s.begin(), s.end());
    return {"reverse", s};
  }
  if (std::regex_match(q, m, std::regex(R"re(Convert "([a-z ]+)" to uppercase\.)re"))) {
    std::string s = m[1];
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return {"uppercase", s};
  }
  if (std::regex_match(q, m, std::regex(R"re(How many times does the letter "(\w)" appear in "(\w+)"\?)re"))) {
    const std::string word = m[2];
    return {"count_letter", std::to_string(std::count(word.begin(), word.end(), m[1].str()[0]))};
  }
  if (std::regex_match(q, m, std::regex(R"re(Sort these numbers in (ascending|descending) order: ([\d, ]+)\.)re"))) {
    std::vector<long long> v;
    for (const auto& s : split_list(m[2])) v.push_back(std::stoll(s));
    std::sort(v.begin(), v.end());
    if (m[1] == "descending") std::reverse(v.begin(), v.end());
    std::vector<std::string> s;
    for (long long x : v) s.push_back(std::to_string(x));
    return {"sort_numbers", join(s)};
  }
  if (std::regex_match(q, m, std::regex(R"re(Sort these words alphabetically: ([a-z, ]+)\.)re"))) {
    std::vector<std::string> v = split_list(m[1]);
    std::sort(v.begin(), v.end());
    return {"sort_words", join(v)};
  }
  const std::vector<long long> n = integers_in(q);
  if (q.find("apples") != std::string::npos && n.size() == 4) {
    return {"word_problem", std::to_string(n[0] + n[1] * n[2] - n[3])};
  }
  if (q.find("pencils") != std::string::npos && n.size() == 3) {
    return {"word_problem", std::to_string(n[2] - n[0] * n[1])};
  }
  if (q.find("train travels") != std::string::npos && n.size() == 3) {
    return {"word_problem", std::to_string(n[0] * n[1] + n[2])};
  }
  return {"unparsed", ""};
}

}  // namespace

TEST(SyntheticText, EveryTypeIsAnsweredCorrectly) {
  for (TextTaskType type : all_text_task_types()) {
    for (uint64_t seed = 0; seed < 300; ++seed) {
      Rng rng(seed);
      const TextTask task = make_text_task(type, rng);
      const auto [category, expected] = solve(task.question);
      ASSERT_EQ(category, text_task_type_name(type)) << task.question;
      ASSERT_EQ(task.short_answer, expected) << task.question;
      EXPECT_NE(task.answer.find(expected), std::string::npos) << task.answer;
      EXPECT_NE(task.partial, task.answer) << task.question;
      EXPECT_NE(task.wrong, task.answer) << task.question;
      EXPECT_NE(task.wrong, task.partial) << task.question;
      if (category == "word_problem") {
        EXPECT_GE(std::stoll(expected), 0) << task.question;
        EXPECT_EQ(task.answer.substr(task.answer.size() - expected.size() - 1), expected + ".") << task.answer;
      }
    }
  }
}

TEST(SyntheticText, WrongAnswersStateAWrongResult) {
  // The final number of a wrong arithmetic / word-problem answer differs from the truth.
  for (TextTaskType type : {TextTaskType::kAdd, TextTaskType::kSubtract, TextTaskType::kMultiply,
                            TextTaskType::kWordProblem}) {
    for (uint64_t seed = 0; seed < 200; ++seed) {
      Rng rng(seed);
      const TextTask task = make_text_task(type, rng);
      const auto numbers = integers_in(task.wrong);
      ASSERT_FALSE(numbers.empty());
      EXPECT_NE(std::to_string(numbers.back()), task.short_answer) << task.wrong;
    }
  }
}

TEST(SyntheticText, WorldFilesHoldCorrectTasks) {
  const auto& world = synth_test::small_world();
  const nlohmann::json train = synth_test::read_json(world / "text_train.json");
  ASSERT_EQ(train.size(), 120u);
  std::map<std::string, int> categories;
  for (const auto& row : train) {
    EXPECT_FALSE(row.contains("image"));
    const std::string q = row.at("conversations")[0].at("value");
    EXPECT_EQ(q.find("<image>"), std::string::npos);
    const auto [category, expected] = solve(q);
    ++categories[category];
    EXPECT_NE(row.at("conversations")[1].at("value").get<std::string>().find(expected), std::string::npos)
        << row.dump();
  }
  EXPECT_EQ(categories.count("unparsed"), 0u);
  EXPECT_GE(categories.size(), 8u) << "most task types drawn in 120 tasks";
  const auto eval = synth_test::read_jsonl(world / "text_eval.jsonl");
  ASSERT_EQ(eval.size(), 30u);
  for (const auto& row : eval) {
    const auto [category, expected] = solve(row.at("text"));
    EXPECT_EQ(category, row.at("category"));
    EXPECT_EQ(expected, row.at("short_answer"));
  }
}
