// JSON from and to the outside without crashes. parse_json_limited: nlohmann::json::parse with a limit on nesting,
// for every JSON that comes from outside (requests, judge replies, checkpoint configs and headers, data rows). The parser keeps its own stack, but dump() — which every error
// message quoting a value calls — and our own walkers recurse: a value nested deeper than any real file (a 200 KB
// "[[[[…" in one request) would overflow the stack later, so it is refused while parsing.
#pragma once

#include <nlohmann/json.hpp>

#include <stdexcept>
#include <string>
#include <utility>

namespace mmr {

constexpr int kMaxJsonDepth = 256;

// What parse_json_limited throws for a value nested past the limit (its what(): "nested deeper than N levels").
struct JsonTooDeep : std::runtime_error {
  explicit JsonTooDeep(int limit) : std::runtime_error("nested deeper than " + std::to_string(limit) + " levels") {}
};

// J::parse(args...) refusing nesting past max_depth; parse errors stay nlohmann's parse_error. That includes a
// number too large for a double ("1e999"), for which nlohmann throws out_of_range (406) instead: callers catch
// parse_error only, so it would escape them (a 500 from serve, a crash reading a row; found by fuzz/). J: nlohmann::json,
// or nlohmann::ordered_json where the file's key order matters (the benchmarks' files).
template <typename J = nlohmann::json, typename... Input>
J parse_json_limited(Input&&... input) {
  const typename J::parser_callback_t limit = [](int depth, typename J::parse_event_t, J&) {
    if (depth > kMaxJsonDepth) throw JsonTooDeep(kMaxJsonDepth);
    return true;
  };
  try {
    return J::parse(std::forward<Input>(input)..., limit);
  } catch (const typename J::out_of_range& e) {
    const std::string what = e.what();  // "[json.exception.out_of_range.406] number overflow parsing '1e999'"
    throw J::parse_error::create(101, 0, what.substr(what.find("] ") + 2), nullptr);
  }
}

// j.dump(indent) that writes invalid UTF-8 in strings (a byte-level token, a stored error quoting a binary file) as
// U+FFFD instead of throwing.
inline std::string dump_text(const nlohmann::json& j, int indent = -1) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace mmr
