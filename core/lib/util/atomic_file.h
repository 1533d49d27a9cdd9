// The one way files are written whole in this project (checkpoint state, adapters' configs, caches, answer
// files, generated worlds). Whole-file writes that never leave half a file behind: the bytes go to a hidden temporary beside the target
// (".<name>.<pid>.tmp"), are flushed and closed, then renamed over the target. rename() within one directory is atomic
// on POSIX, so a reader (or a rerun after a crash) sees either the old file, the new file, or no file.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace mmr {

// Writes `bytes` to `path` atomically; creates the parent folder. Throws mmr::IoError naming the path, the
// operation and the OS reason; the temporary is removed on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The temporary name write_file_atomic uses for `path` (exposed so tests can check none is left behind).
std::filesystem::path temp_path_for(const std::filesystem::path& path);

// Removes, under `dir`, the temporaries of atomic writes whose process is gone (".<name>.<pid>.tmp", or the
// safetensors writer's ".<name>.tmp.<pid>.<n>", with no process <pid>): what a killed process leaves. A live process's are kept. Returns how many were removed.
int remove_stale_temporaries(const std::filesystem::path& dir);

// Writes a file through a stream and renames it into place on commit(); the stream is checked before the rename,
// so a full disk is an error, not a truncated file. Without commit() (an exception) the temporary is removed.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  std::ostream& stream() { return out_; }
  void commit();

 private:
  std::filesystem::path path_, tmp_;
  std::ofstream out_;
  bool committed_ = false;
};

// Reads a whole file; throws mmr::IoError naming the path and the OS reason.
std::string read_file(const std::filesystem::path& path);

}  // namespace mmr
