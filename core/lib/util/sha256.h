// SHA-256 for trial identities and artifact checksums, computed by OpenSSL's libcrypto (EVP), which the runner
// links anyway through cpp-httplib. Tests pin known digests and a known trial identity.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace mmr {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // finalises; call once

 private:
  evp_md_ctx_st* ctx_;
};

std::string sha256_hex(std::string_view data);
// Streams the file; throws IoError naming the path when it cannot be read.
std::string sha256_file(const std::filesystem::path& path);

}  // namespace mmr
