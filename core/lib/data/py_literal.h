// A parser for the Python-literal text that the seed's preference files hold where JSON was meant: the result of
// str(dict) written into a JSON string, e.g. "{'from': 'gpt', 'value': \"it's a cat\"}".
//
// Accepts what repr() of dicts, lists, tuples, str, int, float, bool and None produces: single- and
// double-quoted strings (also triple-quoted, r/u prefixes, adjacent literals concatenated), the escapes
// \\ \' \" \n \r \t \a \b \f \v \0-\777 (octal) \xhh \uhhhh \Uhhhhhhhh and backslash-newline, True/False/None,
// trailing commas. Tuples become JSON arrays. Not a Python evaluator: no expressions, names or calls.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>

namespace mmr::data {

// Thrown with the character offset (0-based) and what was expected/found.
class PyLiteralError : public std::runtime_error {
 public:
  PyLiteralError(size_t offset, const std::string& message)
      : std::runtime_error("at character " + std::to_string(offset) + ": " + message), offset_(offset) {}
  size_t offset() const { return offset_; }

 private:
  size_t offset_;
};

nlohmann::json parse_py_literal(const std::string& text);

}  // namespace mmr::data
