// Reads the records of a row file one at a time: a JSON array (streamed with nlohmann's SAX interface, so only
// the element being read is in memory, never the whole document) or JSONL (one value per line, blank lines
// ignored). Which one is decided by the first non-blank character: '[' means a JSON array.
//
// Row numbers are 1-based: the element index in a JSON array, the line number in a JSONL file. A line of JSONL
// that is not valid JSON is a bad row (the callback gets it as a RecordError and may go on); a syntax error inside
// a JSON array ends the file (there is no way to find the next element), and throws DataError with the row and line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace mmr::data {

struct Record {
  int64_t row = 0;     // 1-based element index (JSON array) or line number (JSONL)
  int64_t line = 0;    // 1-based line where the record starts
  nlohmann::json value;
  std::optional<std::string> parse_error;  // JSONL only: the line did not parse; `value` is null
};

enum class RecordFormat { JsonArray, Jsonl };

// Calls `fn` for every record in order; returns the format that was read. `fn` returns false to stop early.
// Throws IoError (cannot open) or DataError (broken JSON array: file, row, line and the parser's message).
RecordFormat for_each_record(const std::filesystem::path& path, const std::function<bool(Record&)>& fn);

}  // namespace mmr::data
