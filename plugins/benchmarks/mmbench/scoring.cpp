// MMBench scoring: see scoring.h for the rules reproduced and where we are stricter.
#include "plugins/benchmarks/mmbench/scoring.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "core/api/error.h"
#include "core/lib/util/base64.h"
#include "core/lib/util/strings.h"

namespace mmr::mmbench {

namespace {

std::string at(const std::string& path, int line) { return path + ":" + std::to_string(line) + ": "; }

bool is_letter_name(std::string_view name) { return name.size() == 1 && name[0] >= 'A' && name[0] <= 'Z'; }

// The cell of `column` in `row`, or nullopt when the column is absent or the cell is missing (pandas NA).
std::optional<std::string> cell(const Table& t, size_t row, int column) {
  if (column < 0) return std::nullopt;
  const std::string& c = t.rows[row][static_cast<size_t>(column)];
  if (is_pandas_na(c)) return std::nullopt;
  return c;
}

// The evaluator reads every cell through str(): a missing one is "nan".
std::string str_cell(const Table& t, size_t row, int column) { return cell(t, row, column).value_or("nan"); }

}  // namespace

RuleVersion parse_rule_version(std::string_view name) {
  if (name == "2023-11") return RuleVersion::k2023_11;
  if (name == "2024-01") return RuleVersion::k2024_01;
  throw ConfigError(fmt::format("unknown MMBench rule version '{}'; expected 2023-11 or 2024-01", name));
}

char no_match_letter(RuleVersion v) { return v == RuleVersion::k2023_11 ? 'E' : 'Z'; }

// ---- TSV ----

int Table::column(std::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    const std::string& h = header[i];
    const bool same = is_letter_name(name) ? h == name : ascii_lower(python_strip(h)) == ascii_lower(name);
    if (same) return static_cast<int>(i);
  }
  return -1;
}

bool is_pandas_na(std::string_view c) {
  // pandas.read_csv's default na_values as of pandas 1.x, which the 2023-24 evaluators ran on. pandas 2.0 added
  // "None" (pandas-dev/pandas#52493); a bare None cell stays the text "None" here.
  static constexpr std::array<std::string_view, 18> kNa = {
      "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
      "<NA>", "N/A", "NA", "NULL", "NaN", "n/a", "nan", "null"};
  return std::find(kNa.begin(), kNa.end(), c) != kNa.end();
}

Table read_tsv(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open " + what + " '" + path + "' for reading: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();

  Table t;
  t.path = path;
  // Split into records of cells; a cell that starts with '"' is quoted ("" inside is one quote, tabs and newlines
  // are kept), as the csv reader pandas uses reads it.
  std::vector<std::vector<std::string>> records;
  std::vector<int> starts;
  size_t i = 0;
  int line = 1;
  while (i < text.size()) {
    std::vector<std::string> record;
    const int start_line = line;
    bool end_of_record = false;
    while (!end_of_record) {
      std::string value;
      if (i < text.size() && text[i] == '"') {
        const int quote_line = line;
        ++i;
        for (;;) {
          if (i >= text.size())
            throw DataError(at(path, quote_line) + what + ": a quoted cell is not closed before the end of the file");
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              value += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          value += text[i++];
        }
      }
      while (i < text.size() && text[i] != '\t' && text[i] != '\n') value += text[i++];
      if (!value.empty() && value.back() == '\r' && (i >= text.size() || text[i] == '\n')) value.pop_back();
      record.push_back(std::move(value));
      if (i >= text.size() || text[i] == '\n') {
        end_of_record = true;
        if (i < text.size()) ++line;
      }
      ++i;
    }
    const bool blank = record.size() == 1 && record[0].empty();
    if (!blank) {
      records.push_back(std::move(record));
      starts.push_back(start_line);
    }
  }
  if (records.empty()) throw DataError(path + ": " + what + " is empty (expected a header line)");
  t.header = std::move(records[0]);
  std::set<std::string> seen;
  for (const auto& h : t.header)
    if (!seen.insert(h).second) throw DataError(at(path, starts[0]) + what + ": column '" + h + "' appears twice");
  for (size_t r = 1; r < records.size(); ++r) {
    auto& record = records[r];
    if (record.size() > t.header.size())
      throw DataError(fmt::format("{}{}: {} cells, but the header has {} columns", at(path, starts[r]), what,
                                  record.size(), t.header.size()));
    record.resize(t.header.size());  // pandas fills short rows with NaN
    t.rows.push_back(std::move(record));
    t.lines.push_back(starts[r]);
  }
  return t;
}

std::vector<Row> read_rows(const std::string& path, bool need_prediction) {
  return read_rows(read_tsv(path, need_prediction ? "MMBench predictions" : "MMBench TSV"), need_prediction);
}

std::vector<Row> read_rows(const Table& t, bool need_prediction) {
  const std::string what = need_prediction ? "MMBench predictions" : "MMBench TSV";
  const std::string& path = t.path;
  const int c_index = t.column("index"), c_prediction = t.column("prediction");
  if (c_index < 0) throw DataError(at(path, 1) + what + ": no 'index' column");
  if (need_prediction && c_prediction < 0)
    throw DataError(at(path, 1) + what + ": no 'prediction' column (the model's answer per row)");
  const int c_question = t.column("question"), c_hint = t.column("hint"), c_answer = t.column("answer"),
            c_category = t.column("category"), c_l2 = t.column("l2-category"), c_image = t.column("image");
  std::vector<Row> rows;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    Row row;
    row.line = t.lines[r];
    const std::string index = std::string(python_strip(t.rows[r][static_cast<size_t>(c_index)]));
    try {
      size_t used = 0;
      row.index = std::stoll(index, &used);
      if (used != index.size() || row.index < 0) throw std::invalid_argument("index");
    } catch (const std::exception&) {
      throw DataError(at(path, row.line) + what + ": index '" + index + "' is not a non-negative integer");
    }
    row.question = c_question < 0 ? "" : str_cell(t, r, c_question);
    row.hint = cell(t, r, c_hint).value_or("");
    for (char letter = 'A'; letter <= 'Z'; ++letter)
      if (auto text = cell(t, r, t.column(std::string(1, letter)))) row.options.push_back({letter, *text});
    row.answer = cell(t, r, c_answer).value_or("");
    row.category = cell(t, r, c_category).value_or("");
    row.l2_category = cell(t, r, c_l2).value_or("");
    row.has_prediction = c_prediction >= 0;
    if (row.has_prediction) row.prediction = str_cell(t, r, c_prediction);
    row.image = cell(t, r, c_image).value_or("");
    rows.push_back(std::move(row));
  }
  return rows;
}

std::vector<Row> merge(std::vector<Row> predictions, const std::string& predictions_path, const std::vector<Row>& data,
                       const std::string& data_path) {
  std::map<int64_t, const Row*> by_index;
  for (const Row& d : data)
    if (!by_index.emplace(d.index, &d).second)
      throw DataError(fmt::format("{}index {} appears twice in the MMBench TSV", at(data_path, d.line), d.index));
  for (Row& p : predictions) {
    auto found = by_index.find(p.index);
    if (found == by_index.end())
      throw DataError(fmt::format("{}index {} is not in the MMBench TSV '{}'", at(predictions_path, p.line), p.index,
                                  data_path));
    const Row& d = *found->second;
    if (p.question.empty()) p.question = d.question;
    if (p.hint.empty()) p.hint = d.hint;
    if (p.options.empty()) p.options = d.options;
    if (p.category.empty()) p.category = d.category;
    if (p.l2_category.empty()) p.l2_category = d.l2_category;
    if (p.answer.empty()) p.answer = d.answer;
    else if (!d.answer.empty() && p.answer != d.answer)
      throw DataError(fmt::format("{}index {}: answer '{}', but the MMBench TSV '{}' says '{}' (line {})",
                                  at(predictions_path, p.line), p.index, p.answer, data_path, d.answer, d.line));
  }
  return predictions;
}

// ---- rules ----

std::optional<char> can_infer_option(std::string_view answer, const OptionList& options, RuleVersion v) {
  if (answer.find("Failed to obtain answer via API") != std::string_view::npos) return std::nullopt;
  static constexpr std::array<std::string_view, 4> kRefusals = {
      "Sorry, I can't help with images of people yet.", "I can't process this file.",
      "I'm sorry, but without the image provided", "Cannot determine the answer"};
  for (std::string_view refusal : kRefusals)
    if (answer.find(refusal) != std::string_view::npos) return no_match_letter(v);

  std::string mod(answer);
  for (char& c : mod)
    if (std::string_view(".()[],:;!*#{}").find(c) != std::string_view::npos) c = ' ';
  std::set<std::string> tokens;
  for (size_t i = 0; i < mod.size();) {
    while (i < mod.size() && is_python_space(mod[i])) ++i;
    size_t j = i;
    while (j < mod.size() && !is_python_space(mod[j])) ++j;
    if (j > i) tokens.insert(mod.substr(i, j - i));
    i = j;
  }
  std::string letters;
  if (v == RuleVersion::k2023_11) letters = "ABCDE";  // llm_fastroll_1107.py checks A–E whatever the row has
  else
    for (const Option& o : options) letters += o.letter;
  std::optional<char> found;
  int count = 0;
  for (char letter : letters)
    if (tokens.count(std::string(1, letter))) {
      ++count;
      if (!found) found = letter;
    }
  if (count == 1) return found;
  if (v == RuleVersion::k2024_01 && count == 0 && tokens.count("Z")) return 'Z';
  return std::nullopt;
}

std::optional<char> can_infer_text(std::string_view answer, const OptionList& options) {
  const std::string lowered = ascii_lower(answer);
  std::optional<char> found;
  int count = 0;
  for (const Option& o : options)
    if (lowered.find(ascii_lower(o.text)) != std::string::npos) {
      ++count;
      found = o.letter;
    }
  return count == 1 ? found : std::nullopt;
}

std::optional<char> can_infer(std::string_view answer, const OptionList& options, RuleVersion v) {
  if (auto letter = can_infer_option(answer, options, v)) return letter;
  return can_infer_text(answer, options);
}

std::string option_string(const OptionList& options) {
  std::string s = "There are several options: \n";
  for (const Option& o : options) s += fmt::format("{}. {}\n", o.letter, o.text);
  return s;
}

std::string extractor_prompt(std::string_view prompt_template, std::string_view question, const OptionList& options,
                             std::string_view prediction) {
  size_t slots = 0;
  for (size_t p = prompt_template.find("{}"); p != std::string_view::npos; p = prompt_template.find("{}", p + 2))
    ++slots;
  if (slots != 3)
    throw DataError(fmt::format("choice-extractor prompt: expected 3 '{{}}' slots (question, options, prediction), "
                                "found {}", slots));
  const std::array<std::string, 3> values = {std::string(question), option_string(options), std::string(prediction)};
  std::string out;
  size_t slot = 0;
  for (size_t i = 0; i < prompt_template.size(); ++i) {
    const char c = prompt_template[i];
    if (c == '{' && i + 1 < prompt_template.size() && prompt_template[i + 1] == '}') {
      out += values[slot++];
      ++i;
    } else if (c == '{' || c == '}') {
      throw DataError("choice-extractor prompt: a '" + std::string(1, c) +
                      "' that is not part of a '{}' slot (the template is filled with Python's str.format)");
    } else {
      out += c;
    }
  }
  return out;
}

bool has_cjk(std::string_view text) {
  // U+4E00..U+9FA5 in UTF-8: E4 B8 80 .. E9 BE A5.
  for (size_t i = 0; i + 2 < text.size(); ++i) {
    const auto b0 = static_cast<unsigned char>(text[i]), b1 = static_cast<unsigned char>(text[i + 1]),
               b2 = static_cast<unsigned char>(text[i + 2]);
    if ((b0 & 0xF0) != 0xE0 || (b1 & 0xC0) != 0x80 || (b2 & 0xC0) != 0x80) continue;
    const unsigned cp = ((b0 & 0x0Fu) << 12) | ((b1 & 0x3Fu) << 6) | (b2 & 0x3Fu);
    if (cp >= 0x4E00 && cp <= 0x9FA5) return true;
  }
  return false;
}

// ---- scoring ----

std::string l2_abbreviation(const std::string& l2) {
  static const std::map<std::string, std::string> kAbbr = {
      {"coarse_perception", "CP"},
      {"finegrained_perception (instance-level)", "FP-S"},
      {"finegrained_perception (cross-instance)", "FP-C"},
      {"logic_reasoning", "LR"},
      {"relation_reasoning", "RR"},
      {"attribute_reasoning", "AR"}};
  auto it = kAbbr.find(l2);
  return it == kAbbr.end() ? l2 : it->second;
}

namespace {

struct Group {
  const Row* main = nullptr;
  std::vector<const Row*> passes;            // index order
  std::vector<std::optional<char>> letters;  // per pass
  size_t next = 0;                           // next pass to send to the judge
  bool decided = false, hit = false;
  std::string how;
};

bool right(const Row& row, char letter) { return row.answer == std::string(1, letter); }

// Moves `next` to the first unresolved pass; decides the group when none is left (every pass right).
void advance(Group& g, const std::string& how) {
  while (g.next < g.passes.size() && g.letters[g.next]) ++g.next;
  if (g.next == g.passes.size()) {
    g.decided = true;
    g.hit = true;
    g.how = how;
  }
}

}  // namespace

ScoreResult score(const std::vector<Row>& rows, const std::string& path, const ScoreOptions& options) {
  ScoreResult result;
  result.n_rows = static_cast<int64_t>(rows.size());
  std::map<int64_t, const Row*> by_index;
  for (const Row& row : rows) {
    if (!by_index.emplace(row.index, &row).second)
      throw DataError(fmt::format("{}index {} appears twice", at(path, row.line), row.index));
    if (row.answer.empty())
      throw DataError(fmt::format("{}index {} has no answer (give the MMBench TSV as 'data' when the predictions "
                                  "file lacks the answer column)", at(path, row.line), row.index));
    if (row.options.empty())
      throw DataError(fmt::format("{}index {} has no options A, B, ... (give the MMBench TSV as 'data' when the "
                                  "predictions file lacks them)", at(path, row.line), row.index));
  }
  std::map<int64_t, Group> groups;
  for (const auto& [index, row] : by_index) {  // index order, as the evaluator sorts by index
    Group& g = groups[index % kPassStride];
    if (index < kPassStride) g.main = row;
    g.passes.push_back(row);
  }
  for (auto& [id, g] : groups) {
    if (!g.main)
      throw DataError(fmt::format("{}index {} is a rotated pass of question {}, which has no row",
                                  at(path, g.passes.front()->line), g.passes.front()->index, id));
    for (const Row* pass : g.passes) {
      g.letters.push_back(can_infer(pass->prediction, pass->options, options.rules));
      result.rule_resolved_rows += g.letters.back().has_value();
    }
    for (size_t k = 0; k < g.passes.size() && !g.decided; ++k)
      if (g.letters[k] && !right(*g.passes[k], *g.letters[k])) {
        g.decided = true;
        g.how = "rule";
      }
    if (!g.decided) advance(g, "rule");
  }

  // The judge, in rounds: each undecided question sends its next unresolved pass, as the evaluator's loop does
  // (it stops at the first wrong pass, so later passes of a wrong question are never sent).
  if (options.ask) {
    for (;;) {
      std::vector<Group*> asking;
      std::vector<std::string> prompts;
      for (auto& [id, g] : groups) {
        if (g.decided) continue;
        const Row& pass = *g.passes[g.next];
        result.cjk_prompts += has_cjk(pass.question);
        asking.push_back(&g);
        prompts.push_back(extractor_prompt(options.prompt_template, pass.question, pass.options, pass.prediction));
      }
      if (prompts.empty()) break;
      const std::vector<std::string> replies = options.ask(prompts);
      if (replies.size() != prompts.size())
        throw InternalError(
            fmt::format("the judge returned {} replies for {} prompts", replies.size(), prompts.size()));
      result.judge_requests += static_cast<int64_t>(prompts.size());
      for (size_t k = 0; k < asking.size(); ++k) {
        Group& g = *asking[k];
        const Row& pass = *g.passes[g.next];
        const std::optional<char> letter = can_infer(replies[k], pass.options, options.rules);
        if (!letter) {  // the pass stays unresolved and ends its question (counted below)
          ++result.judge_unparseable;
          g.decided = true;
          g.how = "unresolved";
          continue;
        }
        ++result.judge_resolved_rows;
        g.letters[g.next] = letter;
        if (!right(pass, *letter)) {
          g.decided = true;
          g.how = "judge";
        } else {
          advance(g, "judge");
        }
      }
    }
  }
  for (auto& [id, g] : groups) {
    if (!g.decided || g.how == "unresolved") {
      g.decided = true;
      g.how = "unresolved";
      ++result.unresolved_questions;
      for (const auto& letter : g.letters) result.unresolved_rows += !letter.has_value();
    }
  }

  std::map<std::string, Accuracy> l2, categories;
  result.overall.name = "overall";
  for (const auto& [id, g] : groups) {
    result.verdicts.push_back({id, g.hit, g.how});
    const int right_one = g.hit ? 1 : 0;
    result.overall.right += right_one;
    ++result.overall.total;
    if (!g.main->l2_category.empty()) {
      Accuracy& a = l2[g.main->l2_category];
      a.right += right_one;
      ++a.total;
    }
    if (!g.main->category.empty()) {
      Accuracy& a = categories[g.main->category];
      a.right += right_one;
      ++a.total;
    }
  }
  for (auto& [name, a] : l2) {
    a.name = l2_abbreviation(name);
    result.l2.push_back(a);
  }
  for (auto& [name, a] : categories) {
    a.name = name;
    result.categories.push_back(a);
  }
  return result;
}

MetricList to_metrics(const ScoreResult& r, bool with_judge) {
  MetricList m = {{"overall", r.overall.percent()}};
  for (const Accuracy& a : r.l2) m.push_back({"l2/" + a.name, a.percent()});
  for (const Accuracy& a : r.categories) m.push_back({"category/" + a.name, a.percent()});
  m.push_back({"n_questions", static_cast<double>(r.overall.total)});
  m.push_back({"n_rows", static_cast<double>(r.n_rows)});
  m.push_back({"n_correct", static_cast<double>(r.overall.right)});
  m.push_back({"rule_resolved_rows", static_cast<double>(r.rule_resolved_rows)});
  m.push_back({"unresolved_rows", static_cast<double>(r.unresolved_rows)});
  m.push_back({"unresolved_questions", static_cast<double>(r.unresolved_questions)});
  if (with_judge) {
    m.push_back({"judge/extracted", static_cast<double>(r.judge_resolved_rows)});
    m.push_back({"judge/cjk_prompts", static_cast<double>(r.cjk_prompts)});
  }
  return m;
}

// ---- evaluation ----

std::string llava_question_text(const Row& row) {
  std::string text;
  if (!row.hint.empty()) text = row.hint + "\n";
  text += row.question;
  char expected = 'A';
  for (const Option& o : row.options) {
    // model_vqa_mmbench.py stops at the first missing option, and also takes "nan"/"none" in any case as missing.
    if (o.letter != expected || iequals(o.text, "nan") || iequals(o.text, "none")) break;
    text += fmt::format("\n{}. {}", o.letter, o.text);
    ++expected;
  }
  return text;
}

std::string llava_prompt(const Row& row) {
  return llava_question_text(row) + "\nAnswer with the option's letter from the given choices directly.";
}

namespace {

// A cell as pandas' to_csv(sep='\t') writes it: quoted when it holds a tab, a quote or a line break.
std::string tsv_cell(const std::string& c) {
  if (c.find_first_of("\t\"\r\n") == std::string::npos) return c;
  std::string out = "\"";
  for (char ch : c) out += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return out + "\"";
}

}  // namespace

std::string submission_tsv(const Table& data, const std::map<int64_t, std::string>& predictions) {
  static const std::set<std::string> kDropped = {"hint", "category", "source", "image", "comment", "l2-category"};
  std::vector<size_t> kept;
  for (size_t i = 0; i < data.header.size(); ++i)
    if (!kDropped.count(ascii_lower(data.header[i]))) kept.push_back(i);
  const int c_index = data.column("index");
  if (c_index < 0) throw DataError(data.path + ": no 'index' column");
  const size_t insert_at = std::min<size_t>(6, kept.size());  // df.insert(6, 'prediction', ...)
  auto write_row = [&](const std::vector<std::string>& cells, const std::string& prediction) {
    std::vector<std::string> out;
    for (size_t k : kept) out.push_back(tsv_cell(cells[k]));
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(insert_at), tsv_cell(prediction));
    return fmt::format("{}\n", fmt::join(out, "\t"));
  };
  std::string out = write_row(data.header, "prediction");
  for (const auto& cells : data.rows) {
    const std::string index = std::string(python_strip(cells[static_cast<size_t>(c_index)]));
    int64_t i = -1;
    try {
      i = std::stoll(index);
    } catch (const std::exception&) {
      continue;
    }
    auto found = predictions.find(i);
    if (found != predictions.end()) out += write_row(cells, found->second);
  }
  return out;
}

std::string base64_decode(std::string_view text, const std::string& where) {
  try {
    return mmr::base64_decode(text, Base64Rules::kPython);
  } catch (const Base64Error& e) {
    throw DataError(where + ": the image is not valid base64 (" + e.what() + ")");
  }
}

}  // namespace mmr::mmbench
