// Preprocessed images (the model's input values) by file, for the batches of one model. An evaluation asks several
// questions about each image (POPE six, in consecutive batches), a chat sends its image again with every turn, and
// decoding and resizing one image takes 3 ms of host time on a GPU machine while the GPU waits (a 13B prefill of
// one image is ~35 ms). A file is known by its path, size and modification time, so an edited file is read again,
// and its values by the preprocessing's mode and size too.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/lib/image/image.h"

namespace mmr::llava {

// 32 images, or none with MMR_IMAGE_CACHE=0.
size_t image_cache_capacity();

class ImageCache {
 public:
  using Values = std::shared_ptr<const std::vector<float>>;  // (3, crop height, crop width), as preprocess() gives

  explicit ImageCache(size_t capacity) : capacity_(capacity) {}

  // The values of each path, in order: those cached at once, the others decoded in parallel (a thread per image, up
  // to the cores). A file that cannot be read or decoded throws mmr::DataError, as image::preprocess_file does.
  std::vector<Values> get(const std::vector<std::string>& paths, const image::PreprocessConfig& config);

 private:
  struct Entry {
    std::string key;  // path, size, modification time, aspect mode, crop size
    Values values;
  };
  size_t capacity_;
  std::mutex mutex_;
  std::list<Entry> entries_;  // most recently used first
};

}  // namespace mmr::llava
