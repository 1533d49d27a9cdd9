// SHA-256 (FIPS 180-4) of a byte string, as 64 lower-case hex digits. Small and dependency-free; the manifest
// records one per file so a consumer can tell two generated worlds apart without reading them.
#pragma once

#include <string>
#include <string_view>

namespace mmr::synthetic {

std::string sha256_hex(std::string_view bytes);

}  // namespace mmr::synthetic
