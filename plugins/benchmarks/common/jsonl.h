// JSONL reading shared by the benchmark scoring libraries: one JSON object per line, blank lines skipped, every
// error naming file:line. Header-only and without statics (this folder is not a plugin).
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/api/error.h"

namespace mmr::benchmarks {

using Json = nlohmann::ordered_json;

struct JsonLine {
  int line = 0;
  Json value;
};

inline std::string at(const std::string& path, int line) { return path + ":" + std::to_string(line) + ": "; }

inline bool is_blank(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); });
}

inline std::vector<JsonLine> read_jsonl(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw mmr::IoError("cannot open " + what + " '" + path + "' for reading: " + std::strerror(errno));
  std::vector<JsonLine> rows;
  std::string text;
  int line = 0;
  while (std::getline(in, text)) {
    ++line;
    if (is_blank(text)) continue;
    JsonLine row;
    row.line = line;
    try {
      row.value = Json::parse(text);
    } catch (const Json::exception& e) {
      throw mmr::DataError(at(path, line) + "malformed JSON line in " + what + ": " + e.what());
    }
    if (!row.value.is_object()) {
      throw mmr::DataError(at(path, line) + "expected a JSON object in " + what + ", found " +
                           std::string(row.value.type_name()));
    }
    rows.push_back(std::move(row));
  }
  return rows;
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
  if (!v.is_number_integer()) {
    throw mmr::DataError(at(path, row.line) + "expected \"" + key + "\" to be an integer, found " + v.dump());
  }
  return v.get<int64_t>();
}

}  // namespace mmr::benchmarks
