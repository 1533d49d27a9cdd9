// Small ASCII string helpers with Python's meaning, for code that reproduces an official Python script's text
// handling (benchmark scorers, reply parsers). Header-only and locale-free: <cctype> and <locale> functions
// depend on the process locale, Python's str methods on ASCII input do not.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace mmr {

// Python's str.isspace() for ASCII: space, \t \n \v \f \r and the separators \x1c-\x1f.
inline bool is_python_space(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == ' ' || (u >= '\t' && u <= '\r') || (u >= 0x1c && u <= 0x1f);
}

// Python's str.strip() with no argument (ASCII whitespace).
inline std::string_view python_strip(std::string_view s) {
  while (!s.empty() && is_python_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_python_space(s.back())) s.remove_suffix(1);
  return s;
}

// Python's str.split(sep) for a one-character separator: every piece, empty ones included ("a,,b" -> a, "", b).
inline std::vector<std::string_view> python_split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (size_t start = 0;;) {
    const size_t hit = s.find(sep, start);
    out.push_back(s.substr(start, hit == std::string_view::npos ? std::string_view::npos : hit - start));
    if (hit == std::string_view::npos) return out;
    start = hit + 1;
  }
}

inline char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

// True when `text` equals `lower` ignoring ASCII case; `lower` must be lower case already ("inf", "nan").
inline bool iequals(std::string_view text, std::string_view lower) {
  if (text.size() != lower.size()) return false;
  for (size_t i = 0; i < text.size(); ++i)
    if (ascii_lower(text[i]) != lower[i]) return false;
  return true;
}

// Levenshtein distance (insertions, deletions and substitutions of one byte): how near a mistyped name is to a
// known one, for "did you mean" hints.
inline size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

}  // namespace mmr
