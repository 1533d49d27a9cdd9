#include "core/lib/util/atomic_file.h"

#include <signal.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

#include "core/api/error.h"
#include "core/lib/util/kill_point.h"

namespace mmr {

namespace fs = std::filesystem;

fs::path temp_path_for(const fs::path& path) {
  // The process id in the name: two processes writing one file at once (the ranks of a data-parallel stage
  // caching the same reference log-probs) each rename their own whole temporary; the last rename wins.
  return path.parent_path() / ("." + path.filename().string() + "." + std::to_string(getpid()) + ".tmp");
}

namespace {

bool all_digits(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos; }

// The writer's pid in a temporary's name: ".<name>.<pid>.tmp" (temp_path_for) or ".<name>.tmp.<pid>.<n>" (the
// safetensors writer); 0 for any other name.
pid_t temporary_writer(const std::string& name) {
  if (name.size() < 6 || name[0] != '.') return 0;
  std::vector<std::string> parts;
  for (size_t start = 0, dot; start <= name.size(); start = dot + 1) {
    dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    parts.push_back(name.substr(start, dot - start));
  }
  const size_t n = parts.size();
  if (n >= 4 && parts[n - 1] == "tmp" && all_digits(parts[n - 2])) return static_cast<pid_t>(std::stol(parts[n - 2]));
  if (n >= 5 && parts[n - 3] == "tmp" && all_digits(parts[n - 2]) && all_digits(parts[n - 1]))
    return static_cast<pid_t>(std::stol(parts[n - 2]));
  return 0;
}

}  // namespace

int remove_stale_temporaries(const fs::path& dir) {
  int removed = 0;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    const pid_t pid = temporary_writer(it->path().filename().string());
    if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to tell
    std::error_code ignored;
    removed += fs::remove(it->path(), ignored) ? 1 : 0;
  }
  return removed;
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
  kill_point("write_file_atomic.before_rename", path.filename().native());  // the whole temporary written, the target not yet replaced
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
  kill_point("atomic_file.before_rename", path_.filename().native());
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
