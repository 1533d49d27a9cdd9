#include "core/lib/util/python_float.h"

#include <charconv>
#include <cmath>
#include <string>
#include <system_error>

#include "core/lib/util/strings.h"

namespace mmr {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// What float() strips around the number: C's isspace() in the "C" locale, not str.isspace().
std::string_view strip_c_space(std::string_view s) {
  auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Reads a decimal literal from `s` into `digits` (underscores dropped). False where Python would raise.
class LiteralReader {
 public:
  explicit LiteralReader(std::string_view s) : s_(s) {}

  bool read(std::string& digits) {
    int mantissa = take_digits(digits);
    if (at('.')) {
      digits.push_back(s_[i_++]);
      mantissa += take_digits(digits);
    }
    if (mantissa == 0) return false;
    if (at('e') || at('E')) {
      digits.push_back(s_[i_++]);
      if (at('+') || at('-')) digits.push_back(s_[i_++]);
      if (take_digits(digits) == 0) return false;
    }
    return i_ == s_.size();
  }

 private:
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }
  // Digits with single underscores between them; returns how many digits were taken.
  int take_digits(std::string& digits) {
    int n = 0;
    while (i_ < s_.size()) {
      if (is_digit(s_[i_])) {
        digits.push_back(s_[i_++]);
        ++n;
      } else if (s_[i_] == '_' && n > 0 && i_ + 1 < s_.size() && is_digit(s_[i_ + 1])) {
        ++i_;
      } else {
        break;
      }
    }
    return n;
  }

  std::string_view s_;
  size_t i_ = 0;
};

}  // namespace

std::optional<double> python_float(std::string_view text) {
  std::string_view s = strip_c_space(text);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (iequals(s, "inf") || iequals(s, "infinity")) return negative ? -HUGE_VAL : HUGE_VAL;
  if (iequals(s, "nan")) return std::nan("");
  std::string digits;
  if (!LiteralReader(s).read(digits)) return std::nullopt;
  double value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (ec == std::errc::result_out_of_range) {
    // from_chars leaves `value` untouched on overflow/underflow; Python gives inf or 0.
    const size_t e = digits.find_first_of("eE");
    value = (e == std::string::npos || digits[e + 1] != '-') ? HUGE_VAL : 0.0;
  } else if (ec != std::errc() || end != digits.data() + digits.size()) {
    return std::nullopt;
  }
  return negative ? -value : value;
}

}  // namespace mmr
