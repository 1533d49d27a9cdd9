// SHA-256 (FIPS 180-4), for trial identities and artifact checksums. Small and dependency-free on purpose:
// Debian's OpenSSL is not otherwise needed by the host.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace mmr {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // finalises; call once

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view data);
// Streams the file; throws IoError naming the path when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace mmr
