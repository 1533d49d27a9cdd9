#include "plugins/datasets/synthetic/atomic_file.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"

namespace mmr::synthetic {

namespace fs = std::filesystem;

fs::path temp_path_for(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + ".tmp");
}

void write_file_atomic(const fs::path& path, std::string_view bytes) {
  std::error_code ec;
  if (!path.parent_path().empty()) {
    fs::create_directories(path.parent_path(), ec);
    if (ec) {
      throw IoError(fmt::format("{}: cannot create folder '{}': {}", path.string(), path.parent_path().string(),
                                ec.message()));
    }
  }
  const fs::path tmp = temp_path_for(path);
  {
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) {
      throw IoError(fmt::format("{}: cannot open for writing (mode wb): {}", tmp.string(), std::strerror(errno)));
    }
    const size_t written = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
    const int write_errno = errno;
    const bool flushed = std::fflush(f) == 0;
    const bool closed = std::fclose(f) == 0;
    if (written != bytes.size() || !flushed || !closed) {
      fs::remove(tmp, ec);
      throw IoError(fmt::format("{}: write failed after {} of {} bytes: {} (is the disk full?)", tmp.string(),
                                written, bytes.size(), std::strerror(write_errno)));
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    throw IoError(fmt::format("{}: cannot rename '{}' over it: {}", path.string(), tmp.string(), ec.message()));
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open for reading: {}", path.string(), std::strerror(errno)));
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) throw IoError(fmt::format("{}: read failed: {}", path.string(), std::strerror(errno)));
  return os.str();
}

}  // namespace mmr::synthetic
