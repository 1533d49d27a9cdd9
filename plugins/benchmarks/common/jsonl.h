// JSON reading and writing shared by the benchmark scoring libraries: JSONL files (one JSON object per line,
// blank lines skipped), whole-file JSON documents, and LLaVA's answer line. Every read error names file:line.
// Header-only and without statics (this folder is not a plugin). A scoring library imports it whole with
// `using namespace mmr::benchmarks::jsonl;`.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace mmr::benchmarks::jsonl {

using Json = nlohmann::ordered_json;

struct JsonLine {
  int line = 0;
  Json value;
};

// "path:line: ", the start of every error about a line.
inline std::string at(const std::string& path, int line) { return path + ":" + std::to_string(line) + ": "; }

inline bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
}

inline std::vector<JsonLine> read_jsonl(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw mmr::IoError("cannot open " + what + " '" + path + "' for reading: " + std::strerror(errno));
  std::vector<JsonLine> rows;
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    if (is_blank(text)) continue;
    JsonLine row{line, {}};
    try {
      row.value = mmr::parse_json_limited<Json>(text);  // nested too deep: the error below, not a crash later
    } catch (const std::exception& e) {  // Json::exception or mmr::JsonTooDeep
      throw mmr::DataError(at(path, line) + "malformed JSON line in " + what + ": " + e.what());
    }
    if (!row.value.is_object())
      throw mmr::DataError(at(path, line) + "expected a JSON object in " + what + ", found " + row.value.type_name());
    rows.push_back(std::move(row));
  }
  return rows;
}

// A whole file; the error names `what` ("MM-Vet grader prompt") as well as the path.
inline std::string read_text_file(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw mmr::IoError("cannot open " + what + " '" + path + "' for reading: " + std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A whole-file JSON document (rule.json, mm-vet.json, a grade file); a syntax error names its line.
inline Json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = read_text_file(path, what);
  try {
    return mmr::parse_json_limited<Json>(text);
  } catch (const mmr::JsonTooDeep& e) {
    throw mmr::DataError(path + ": malformed JSON in " + what + ": " + e.what());
  } catch (const Json::parse_error& e) {
    // No position for a number past a double's range ("1e999", found by fuzz/): parse_json_limited gives byte 0.
    if (e.byte == 0) throw mmr::DataError(path + ": malformed JSON in " + what + ": " + e.what());
    // nlohmann reports the byte offset; a line number is what the user needs.
    const size_t offset = std::min(e.byte, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(offset), '\n');
    throw mmr::DataError(at(path, static_cast<int>(line)) + "malformed JSON in " + what + ": " + e.what());
  }
}

// Every row of a JSONL file, read with `parse(row)`, in file order.
template <typename Parse>
auto read_rows(const std::string& path, const std::string& what, Parse parse) {
  std::vector<decltype(parse(std::declval<const JsonLine&>()))> out;
  for (const JsonLine& row : read_jsonl(path, what)) out.push_back(parse(row));
  return out;
}

inline const Json& require(const JsonLine& row, const char* key, const std::string& path) {
  auto it = row.value.find(key);
  if (it == row.value.end()) throw mmr::DataError(at(path, row.line) + "missing key \"" + key + "\"");
  return *it;
}

inline std::string string_field(const JsonLine& row, const char* key, const std::string& path) {
  const Json& v = require(row, key, path);
  if (!v.is_string()) throw mmr::DataError(at(path, row.line) + "expected \"" + key + "\" to be a string, found " + v.dump());
  return v.get<std::string>();
}

inline int64_t int_field(const JsonLine& row, const char* key, const std::string& path) {
  const Json& v = require(row, key, path);
  if (!v.is_number_integer())
    throw mmr::DataError(at(path, row.line) + "expected \"" + key + "\" to be an integer, found " + v.dump());
  return v.get<int64_t>();
}

// The line each id was first seen on; a repeated id is a DataError naming both lines. The official scripts
// load these files into dicts, where a repeat silently replaces the first: more likely a mistake than meant.
class FirstLines {
 public:
  // `what`: "question_id", "answer for question_id", ...
  FirstLines(std::string path, std::string what) : path_(std::move(path)), what_(std::move(what)) {}
  void add(const std::string& id, int line) {
    auto [it, inserted] = first_.emplace(id, line);
    if (!inserted)
      throw mmr::DataError(at(path_, line) + "duplicate " + what_ + " " + id + " (first on line " +
                           std::to_string(it->second) + ")");
  }

 private:
  std::string path_, what_;
  std::map<std::string, int> first_;
};

// One line of LLaVA's answer file (llava/eval/model_vqa.py, model_vqa_loader.py): {"question_id", "prompt",
// "text", "answer_id", "model_id", "metadata": {}}, ASCII-escaped as Python's json.dumps does.
inline std::string llava_answer_line(const Json& question_id, const std::string& prompt, const std::string& text,
                                     const std::string& answer_id, const std::string& model_id) {
  Json row;
  row["question_id"] = question_id;
  row["prompt"] = prompt;
  row["text"] = text;
  row["answer_id"] = answer_id;
  row["model_id"] = model_id;
  row["metadata"] = Json::object();
  return row.dump(-1, ' ', /*ensure_ascii=*/true) + "\n";
}

}  // namespace mmr::benchmarks::jsonl
