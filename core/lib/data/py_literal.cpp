#include "core/lib/data/py_literal.h"

#include <cctype>
#include <cstdint>
#include <string>

#include "core/lib/util/json_safe.h"

namespace mmr::data {
namespace {

using nlohmann::json;

void append_utf8(std::string& out, uint32_t cp, size_t at) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) throw PyLiteralError(at, "escape gives an invalid code point");
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  json parse_all() {
    json v = value();
    skip_space();
    if (i_ != s_.size()) fail("expected the end of the literal, found '" + std::string(1, s_[i_]) + "'");
    return v;
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const { throw PyLiteralError(i_, msg); }
  void skip_space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool peek_is(char c) {
    skip_space();
    return i_ < s_.size() && s_[i_] == c;
  }
  std::string found() const { return i_ < s_.size() ? "'" + std::string(1, s_[i_]) + "'" : "the end of the text"; }

  json value() {
    skip_space();
    if (i_ >= s_.size()) fail("expected a value, found the end of the text");
    const char c = s_[i_];
    if (c == '{') return dict();
    if (c == '[') return sequence('[', ']');
    if (c == '(') return sequence('(', ')');
    if (c == '\'' || c == '"') return strings(false);
    if ((c == 'r' || c == 'R' || c == 'u' || c == 'U') && i_ + 1 < s_.size() && (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"')) {
      return strings(false);
    }
    if (c == '-' || c == '+' || c == '.' || std::isdigit(static_cast<unsigned char>(c))) return number();
    if (word("True")) return true;
    if (word("False")) return false;
    if (word("None")) return nullptr;
    fail("expected a dict, list, tuple, string, number, True, False or None, found " + found());
  }

  bool word(const char* w) {
    const size_t n = std::char_traits<char>::length(w);
    if (s_.compare(i_, n, w) != 0) return false;
    if (i_ + n < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_ + n])) || s_[i_ + n] == '_')) return false;
    i_ += n;
    return true;
  }

  // Python's own parser gives up on deep nesting (RecursionError); ours past the JSON limit, before the stack does.
  struct Nested {
    explicit Nested(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxJsonDepth) p_.fail("nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    ~Nested() { --p_.depth_; }
    Parser& p_;
  };

  json dict() {
    const Nested nested(*this);
    ++i_;  // '{'
    json out = json::object();
    while (true) {
      if (peek_is('}')) {
        ++i_;
        return out;
      }
      skip_space();
      if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"' && !std::isalpha(static_cast<unsigned char>(s_[i_]))))
        fail("expected a string key or '}', found " + found());
      json key = value();
      if (!key.is_string()) fail("dict keys must be strings here");
      if (!peek_is(':')) fail("expected ':' after a dict key, found " + found());
      ++i_;
      out[key.get<std::string>()] = value();
      if (peek_is(',')) {
        ++i_;
        continue;
      }
      if (peek_is('}')) continue;
      fail("expected ',' or '}' in a dict, found " + found());
    }
  }

  json sequence(char open, char close) {
    const Nested nested(*this);
    ++i_;
    json out = json::array();
    while (true) {
      if (peek_is(close)) {
        ++i_;
        return out;
      }
      out.push_back(value());
      if (peek_is(',')) {
        ++i_;
        continue;
      }
      if (peek_is(close)) continue;
      fail(std::string("expected ',' or '") + close + "' in a " + (open == '[' ? "list" : "tuple") + ", found " + found());
    }
  }

  json number() {
    const size_t start = i_;
    if (s_[i_] == '-' || s_[i_] == '+') ++i_;
    bool is_float = false;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (std::isdigit(static_cast<unsigned char>(c)) || c == '_') {
        ++i_;
      } else if (c == '.' || c == 'e' || c == 'E') {
        is_float = true;
        ++i_;
        if ((c == 'e' || c == 'E') && i_ < s_.size() && (s_[i_] == '-' || s_[i_] == '+')) ++i_;
      } else {
        break;
      }
    }
    std::string text;
    for (size_t k = start; k < i_; ++k)
      if (s_[k] != '_') text += s_[k];
    try {
      size_t used = 0;
      if (is_float) {
        const double d = std::stod(text, &used);
        if (used == text.size()) return d;
      } else {
        const long long v = std::stoll(text, &used);
        if (used == text.size()) return v;
      }
    } catch (const std::exception&) {
    }
    i_ = start;
    fail("'" + text + "' is not a number");
  }

  // One or more adjacent string literals ('a' "b" -> "ab"), as Python concatenates them.
  json strings(bool) {
    std::string out;
    do {
      one_string(out);
      skip_space();
    } while (i_ < s_.size() && (s_[i_] == '\'' || s_[i_] == '"' ||
                                ((s_[i_] == 'r' || s_[i_] == 'R' || s_[i_] == 'u' || s_[i_] == 'U') && i_ + 1 < s_.size() &&
                                 (s_[i_ + 1] == '\'' || s_[i_ + 1] == '"'))));
    return out;
  }

  void one_string(std::string& out) {
    bool raw = false;
    if (s_[i_] == 'r' || s_[i_] == 'R') {
      raw = true;
      ++i_;
    } else if (s_[i_] == 'u' || s_[i_] == 'U') {
      ++i_;
    }
    const size_t open_at = i_;
    const char q = s_[i_];
    const bool triple = s_.compare(i_, 3, std::string(3, q)) == 0;
    i_ += triple ? 3 : 1;
    while (true) {
      if (i_ >= s_.size()) {
        i_ = open_at;
        fail(std::string("string opened here with ") + q + " is not closed");
      }
      const char c = s_[i_];
      if (triple ? s_.compare(i_, 3, std::string(3, q)) == 0 : c == q) {
        i_ += triple ? 3 : 1;
        return;
      }
      if (c == '\n' && !triple) fail("newline inside a single-quoted string");
      if (c != '\\') {
        out += c;
        ++i_;
        continue;
      }
      if (i_ + 1 >= s_.size()) fail("backslash at the end of the text");
      if (raw) {  // raw strings keep the backslash; it only stops a quote from closing the string
        out += c;
        out += s_[i_ + 1];
        i_ += 2;
        continue;
      }
      escape(out);
    }
  }

  // The escape sequence at i_ (a backslash and what follows), as Python reads it in a non-raw string.
  void escape(std::string& out) {
    const size_t esc_at = i_;
    const char e = s_[i_ + 1];
    i_ += 2;
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case 'x': append_utf8(out, hex(2, esc_at), esc_at); break;
      case 'u': append_utf8(out, hex(4, esc_at), esc_at); break;
      case 'U': append_utf8(out, hex(8, esc_at), esc_at); break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '7'; ++k) v = v * 8 + (s_[i_++] - '0');
          append_utf8(out, v, esc_at);
        } else {  // Python keeps unknown escapes as written
          out += '\\';
          out += e;
        }
    }
  }

  uint32_t hex(int digits, size_t esc_at) {
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k, ++i_) {
      if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_])))
        throw PyLiteralError(esc_at, "escape needs " + std::to_string(digits) + " hex digits");
      const char c = s_[i_];
      v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (std::tolower(c) - 'a' + 10));
    }
    return v;
  }

  const std::string& s_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace

json parse_py_literal(const std::string& text) { return Parser(text).parse_all(); }

}  // namespace mmr::data
