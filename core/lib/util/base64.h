// Base64 (RFC 4648, standard alphabet, '=' padding) through OpenSSL's libcrypto (EVP_EncodeBlock /
// EVP_DecodeBlock), and the MIME type of an image file by its extension. Torch-free (serve, judges, benchmarks).
//
// Decoding first reads the text by the caller's rules (which characters are skipped, what padding may be left out),
// giving whole 4-character groups that libcrypto then decodes.
#pragma once

#include <string>
#include <string_view>

#include "core/api/error.h"

namespace mmr {

std::string base64_encode(std::string_view bytes);

// How base64 text is read before decoding. Neither checks that the unused bits of a last group are zero.
enum class Base64Rules {
  // Strict about characters, lenient about padding (what `runner serve` has always accepted in data: URLs):
  // space, tab, CR and LF are skipped; any other character outside the alphabet is an error naming its offset, as
  // is a character after '='; the padding may be left out, but a last group of one character is an error, and so
  // are more than two '='.
  kStrict,
  // Python's base64.b64decode(s) without validate=True (what MMBench's own code decodes its TSV images with):
  // characters outside the alphabet are skipped, decoding stops at the '=' that completes a group (anything after
  // is ignored), the characters read must then form whole groups ("Incorrect padding" otherwise), and the text
  // must be ASCII.
  kPython,
};

// Thrown for text the rules refuse; the message says what was wrong (callers add where the text came from).
class Base64Error : public DataError {
 public:
  using DataError::DataError;
};

std::string base64_decode(std::string_view text, Base64Rules rules);

// "image/png", "image/jpeg", ... from the file name; "" for an extension that is not an image type we send.
std::string image_mime_type(std::string_view path);

}  // namespace mmr
