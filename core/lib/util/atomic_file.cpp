#include "core/lib/util/atomic_file.h"

#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/api/error.h"

namespace mmr {

namespace fs = std::filesystem;

fs::path temp_path_for(const fs::path& path) {
  // The process id in the name: two processes writing one file at once (the ranks of a data-parallel stage
  // caching the same reference log-probs) each rename their own whole temporary; the last rename wins.
  return path.parent_path() / ("." + path.filename().string() + "." + std::to_string(getpid()) + ".tmp");
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

AtomicFile::AtomicFile(fs::path path) : path_(std::move(path)), tmp_(temp_path_for(path_)) {
  std::error_code ec;
  if (!path_.parent_path().empty()) fs::create_directories(path_.parent_path(), ec);
  out_.open(tmp_, std::ios::binary | std::ios::trunc);
  if (!out_) throw IoError(fmt::format("{}: cannot open for writing: {}", tmp_.string(), std::strerror(errno)));
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.close();
  std::error_code ignored;
  fs::remove(tmp_, ignored);
}

void AtomicFile::commit() {
  out_.flush();
  const bool ok = static_cast<bool>(out_);
  out_.close();
  std::error_code ec;
  if (!ok || out_.fail()) {
    fs::remove(tmp_, ec);
    throw IoError(fmt::format("{}: write failed (is the disk full?)", tmp_.string()));
  }
  fs::rename(tmp_, path_, ec);
  if (ec) {
    fs::remove(tmp_, ec);
    throw IoError(fmt::format("{}: cannot rename '{}' over it: {}", path_.string(), tmp_.string(), ec.message()));
  }
  committed_ = true;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(fmt::format("{}: cannot open for reading: {}", path.string(), std::strerror(errno)));
  std::ostringstream os;
  os << in.rdbuf();
  if (in.bad()) throw IoError(fmt::format("{}: read failed: {}", path.string(), std::strerror(errno)));
  return os.str();
}

}  // namespace mmr
