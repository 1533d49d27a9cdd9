// Base64 through libcrypto. See base64.h.
#include "core/lib/util/base64.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

namespace mmr {
namespace {

// EVP_EncodeBlock and EVP_DecodeBlock take int lengths: longer inputs go in chunks of whole groups.
constexpr size_t kEncodeChunk = size_t{3} << 24;   // bytes, a multiple of 3
constexpr size_t kDecodeChunk = size_t{4} << 24;   // characters, a multiple of 4

bool in_alphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// Decodes whole groups: alphabet characters, a multiple of 4 of them, at most two '=' at the end.
std::string decode_groups(const std::string& groups) {
  std::string out(groups.size() / 4 * 3, '\0');
  size_t written = 0;
  for (size_t pos = 0; pos < groups.size(); pos += kDecodeChunk) {
    const size_t n = std::min(kDecodeChunk, groups.size() - pos);
    const int got = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(&out[written]),
                                    reinterpret_cast<const unsigned char*>(groups.data() + pos), static_cast<int>(n));
    MMR_CHECK(got == static_cast<int>(n / 4 * 3), "EVP_DecodeBlock refused " << n << " characters of checked base64");
    written += static_cast<size_t>(got);
  }
  // EVP_DecodeBlock decodes '=' as zero bits and counts the bytes they make: those are padding, not data.
  const size_t padding = groups.empty() ? 0 : groups.size() - 1 - groups.find_last_not_of('=');
  out.resize(written - padding);
  return out;
}

std::string read_strict(std::string_view text) {
  std::string groups;
  groups.reserve(text.size() + 3);
  int padding = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    if (!in_alphabet(c)) throw Base64Error(fmt::format("base64: invalid character '{}' at offset {}", c, i));
    if (padding > 0) throw Base64Error(fmt::format("base64: data after '=' padding at offset {}", i));
    groups += c;
  }
  if (groups.size() % 4 == 1) throw Base64Error("base64: truncated input (a final group of one character)");
  if (padding > 2) throw Base64Error("base64: more than two '=' padding characters");
  groups.append((4 - groups.size() % 4) % 4, '=');   // the padding the last group needs, given or not
  return groups;
}

// CPython's binascii.a2b_base64 (strict_mode off), which base64.b64decode calls.
std::string read_like_python(std::string_view text) {
  // b64decode of a str encodes it as ASCII first, so any other character fails, wherever it is.
  if (std::any_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; }))
    throw Base64Error("string argument should contain only ASCII characters");
  std::string groups;
  groups.reserve(text.size());
  int group_pos = 0, pads = 0;
  for (const char c : text) {
    if (c == '=') {
      // A '=' counts once two characters of the group are read (and until the next one); the padding that
      // completes the group ends the data.
      if (group_pos >= 2 && group_pos + ++pads >= 4) {
        groups.append(4 - group_pos, '=');
        return groups;
      }
      continue;
    }
    if (!in_alphabet(c)) continue;
    pads = 0;
    groups += c;
    group_pos = (group_pos + 1) % 4;
  }
  if (group_pos == 1) {
    throw Base64Error(fmt::format("Invalid base64-encoded string: number of data characters ({}) cannot be 1 more "
                                  "than a multiple of 4",
                                  groups.size()));
  }
  if (group_pos != 0) throw Base64Error("Incorrect padding");
  return groups;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');   // + the NUL EVP_EncodeBlock writes
  size_t written = 0;
  for (size_t pos = 0; pos < bytes.size(); pos += kEncodeChunk) {
    const size_t n = std::min(kEncodeChunk, bytes.size() - pos);
    written += static_cast<size_t>(EVP_EncodeBlock(reinterpret_cast<unsigned char*>(&out[written]),
                                                   reinterpret_cast<const unsigned char*>(bytes.data() + pos),
                                                   static_cast<int>(n)));
  }
  out.resize(written);
  return out;
}

std::string base64_decode(std::string_view text, Base64Rules rules) {
  return decode_groups(rules == Base64Rules::kStrict ? read_strict(text) : read_like_python(text));
}

std::string image_mime_type(std::string_view path) {
  const size_t dot = path.rfind('.');
  std::string ext = dot == std::string_view::npos ? "" : std::string(path.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "gif") return "image/gif";
  if (ext == "bmp") return "image/bmp";
  if (ext == "webp") return "image/webp";
  return "";
}

}  // namespace mmr
