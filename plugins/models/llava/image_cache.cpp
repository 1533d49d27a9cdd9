// See image_cache.h.
#include "image_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <map>
#include <thread>

namespace mmr::llava {

namespace {

// The file's identity as far as its content goes; a file that cannot be inspected gets a key no file matches
// again, and preprocess_file then reports what is wrong with it.
std::string file_key(const std::string& path, const image::PreprocessConfig& config) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return {};
  const auto mtime = std::filesystem::last_write_time(path, ec);
  if (ec) return {};
  return fmt::format("{}\n{}\n{}\n{} {}x{}", path, size, mtime.time_since_epoch().count(),
                     static_cast<int>(config.aspect_mode), config.crop_width, config.crop_height);
}

}  // namespace

size_t image_cache_capacity() {
  const char* env = std::getenv("MMR_IMAGE_CACHE");
  return env && std::string(env) == "0" ? 0 : 32;
}

std::vector<ImageCache::Values> ImageCache::get(const std::vector<std::string>& paths,
                                                const image::PreprocessConfig& config) {
  std::vector<Values> out(paths.size());
  std::vector<std::string> keys(paths.size());
  std::map<std::string, std::vector<size_t>> missing;  // path -> the positions that want it
  {
    const std::lock_guard lock(mutex_);
    for (size_t i = 0; i < paths.size(); ++i) {
      keys[i] = file_key(paths[i], config);
      const auto hit = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.key == keys[i]; });
      if (keys[i].empty() || hit == entries_.end()) {
        missing[paths[i]].push_back(i);
        continue;
      }
      entries_.splice(entries_.begin(), entries_, hit);  // most recently used
      out[i] = hit->values;
    }
  }
  // Decoded outside the lock, in waves of one thread per core; every future is waited for before an error of one
  // propagates (a future from std::async joins its thread when destroyed).
  const std::vector<std::pair<std::string, std::vector<size_t>>> todo(missing.begin(), missing.end());
  const size_t wave = std::max(1u, std::thread::hardware_concurrency());
  for (size_t start = 0; start < todo.size(); start += wave) {
    std::vector<std::future<std::vector<float>>> running;
    for (size_t j = start; j < std::min(todo.size(), start + wave); ++j)
      running.push_back(std::async(std::launch::async, [&, j] { return image::preprocess_file(todo[j].first, config); }));
    for (size_t j = 0; j < running.size(); ++j) {
      const auto& [path, positions] = todo[start + j];
      const Values values = std::make_shared<const std::vector<float>>(running[j].get());
      for (size_t i : positions) out[i] = values;
      const std::lock_guard lock(mutex_);
      if (keys[positions[0]].empty()) continue;
      entries_.push_front({keys[positions[0]], values});
      if (entries_.size() > capacity_) entries_.pop_back();
    }
  }
  return out;
}

}  // namespace mmr::llava
