// Whole-file writes that never leave half a file behind: the bytes go to a hidden temporary beside the target
// (".<name>.tmp"), are flushed and closed, then renamed over the target. rename() within one directory is atomic
// on POSIX, so a reader (or a rerun after a crash) sees either the old file, the new file, or no file.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mmr::synthetic {

// Writes `bytes` to `path` atomically; creates the parent folder. Throws mmr::IoError naming the path, the
// operation and the OS reason; the temporary is removed on failure.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The temporary name write_file_atomic uses for `path` (exposed so tests can check none is left behind).
std::filesystem::path temp_path_for(const std::filesystem::path& path);

// Reads a whole file; throws mmr::IoError naming the path and the OS reason.
std::string read_file(const std::filesystem::path& path);

}  // namespace mmr::synthetic
