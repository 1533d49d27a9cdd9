#include "core/lib/data/records.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace mmr::data {
namespace {

using nlohmann::json;

// An input iterator over a stream buffer that counts lines, so that rows of a JSON array can be reported with the
// line they start on. nlohmann's iterator input adapter reads one character at a time through it.
class LineCountingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = char;

  LineCountingIterator() = default;
  LineCountingIterator(std::streambuf* buf, int64_t* line) : buf_(buf), line_(line) {}
  char operator*() const { return static_cast<char>(buf_->sgetc()); }
  LineCountingIterator& operator++() {
    if (buf_->sbumpc() == '\n') ++*line_;
    return *this;
  }
  bool operator==(const LineCountingIterator& other) const { return at_end() == other.at_end(); }
  bool operator!=(const LineCountingIterator& other) const { return !(*this == other); }

 private:
  bool at_end() const { return !buf_ || buf_->sgetc() == std::char_traits<char>::eof(); }
  std::streambuf* buf_ = nullptr;
  int64_t* line_ = nullptr;
};

// SAX handler that builds one top-level array element at a time and hands it to the callback.
class ArraySax {
 public:
  ArraySax(const std::function<bool(Record&)>& fn, const int64_t* line) : fn_(fn), line_(line) {}

  bool null() { return value(json(nullptr)); }
  bool boolean(bool v) { return value(json(v)); }
  bool number_integer(json::number_integer_t v) { return value(json(v)); }
  bool number_unsigned(json::number_unsigned_t v) { return value(json(v)); }
  bool number_float(json::number_float_t v, const std::string&) { return value(json(v)); }
  bool string(std::string& v) { return value(json(std::move(v))); }
  bool binary(json::binary_t& v) { return value(json(v)); }
  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) { return open(json::object()); }
  bool end_object() { return close(); }
  bool start_array(std::size_t) {
    if (!in_array_ && !done_) {
      if (seen_top_) return top_level_error("a second top-level value");
      seen_top_ = in_array_ = true;
      return true;
    }
    return open(json::array());
  }
  bool end_array() {
    if (stack_.empty()) {  // the top-level array closes
      in_array_ = false;
      done_ = true;
      return true;
    }
    return close();
  }
  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& ex) {
    error_ = "invalid JSON at byte " + std::to_string(position) + " near '" + last_token + "': " + ex.what();
    return false;
  }

  const std::string& error() const { return error_; }
  bool stopped() const { return stopped_; }
  int64_t rows() const { return rows_; }

 private:
  bool top_level_error(const std::string& found) {
    error_ = "expected a JSON array of rows (or JSONL, one row per line), found " + found;
    return false;
  }
  bool value(json&& v) {
    if (!in_array_) return top_level_error(done_ ? "more data after the array" : "a single " + std::string(v.type_name()));
    if (stack_.empty()) {
      element_ = std::move(v);
      start_line_ = *line_;
      return emit();
    }
    json& top = *stack_.back();
    if (top.is_array()) top.push_back(std::move(v));
    else top[key_] = std::move(v);
    return true;
  }
  bool open(json&& container) {
    if (!in_array_) return top_level_error(done_ ? "more data after the array" : "a single object");
    if (stack_.size() >= static_cast<size_t>(kMaxJsonDepth)) {  // as parse_json_limited refuses a JSONL row
      error_ = std::string("the row is ") + JsonTooDeep(kMaxJsonDepth).what();
      return false;
    }
    if (stack_.empty()) {
      element_ = std::move(container);
      start_line_ = *line_;
      stack_.push_back(&element_);
      return true;
    }
    // Pointers into a parent stay valid: a parent only grows after the child on the stack is closed.
    json& top = *stack_.back();
    json* child;
    if (top.is_array()) {
      top.push_back(std::move(container));
      child = &top.back();
    } else {
      child = &(top[key_] = std::move(container));
    }
    stack_.push_back(child);
    return true;
  }
  bool close() {
    stack_.pop_back();
    return stack_.empty() ? emit() : true;
  }
  bool emit() {
    Record r;
    r.row = ++rows_;
    r.line = start_line_;
    r.value = std::move(element_);
    element_ = json();
    if (!fn_(r)) {
      stopped_ = true;
      return false;
    }
    return true;
  }

  const std::function<bool(Record&)>& fn_;
  const int64_t* line_;
  std::vector<json*> stack_;
  json element_;
  std::string key_;
  std::string error_;
  bool seen_top_ = false, in_array_ = false, done_ = false, stopped_ = false;
  int64_t rows_ = 0, start_line_ = 0;
};

// A JSONL line may be this long (and nest kMaxJsonDepth deep); a longer or deeper one is a bad row (with the
// reason), not a read of gigabytes into one string or a tree past any real row's depth.
constexpr size_t kMaxLineBytes = size_t{64} << 20;

// std::getline with a limit: a line past `max` bytes is skipped to its end and `too_long` set. False at the end.
bool read_line(std::istream& in, std::string& line, size_t max, bool& too_long) {
  line.clear();
  too_long = false;
  std::streambuf* buf = in.rdbuf();
  int c = buf->sbumpc();
  if (c == std::char_traits<char>::eof()) return false;
  for (; c != std::char_traits<char>::eof() && c != '\n'; c = buf->sbumpc()) {
    if (line.size() < max) line += static_cast<char>(c);
    else too_long = true;
  }
  if (too_long) line.clear();
  return true;
}

bool is_blank(const std::string& s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
  return true;
}

}  // namespace

RecordFormat for_each_record(const std::filesystem::path& path, const std::function<bool(Record&)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open data file '" + path.string() + "' for reading: " + std::strerror(errno));

  // Look at the first non-blank character without consuming anything else.
  int64_t line = 1;
  int c;
  while ((c = in.rdbuf()->sgetc()) != std::char_traits<char>::eof() && (c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
    if (c == '\n') ++line;
    in.rdbuf()->sbumpc();
  }
  if (c == '[') {
    ArraySax sax(fn, &line);
    LineCountingIterator first(in.rdbuf(), &line), last;
    const bool ok = json::sax_parse(first, last, &sax);
    if (!ok && !sax.stopped())
      throw DataError(path.string() + ": row " + std::to_string(sax.rows() + 1) + " (line " + std::to_string(line) +
                      "): " + sax.error());
    return RecordFormat::JsonArray;
  }

  // JSONL: the lines skipped above were blank; go on counting from there.
  std::string text;
  bool too_long = false;
  for (int64_t n = line; read_line(in, text, kMaxLineBytes, too_long); ++n) {
    Record r;
    r.row = r.line = n;
    if (too_long) {
      r.parse_error = fmt::format("the line is longer than {} MiB", kMaxLineBytes >> 20);
      if (!fn(r)) break;
      continue;
    }
    if (is_blank(text)) continue;
    try {
      r.value = parse_json_limited(text);
    } catch (const JsonTooDeep& e) {
      r.value = json();
      r.parse_error = std::string("the row is ") + e.what();
    } catch (const json::parse_error& e) {
      r.parse_error = std::string("invalid JSON: ") + e.what() +
                      (n == line && text.find('{') == 0 && text.find('}') == std::string::npos
                           ? " (a file holding one pretty-printed object is neither a JSON array nor JSONL)"
                           : "");
    }
    if (!fn(r)) break;
  }
  if (in.bad()) throw IoError("error reading data file '" + path.string() + "': " + std::strerror(errno));
  return RecordFormat::Jsonl;
}

}  // namespace mmr::data
