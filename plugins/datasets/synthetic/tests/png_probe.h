// Test helpers, independent of the generator's code: decode a PNG with stb_image, split it into connected
// components, and recognise each component's colour (from the palette's published RGB values), shape (from
// its geometry), bounding box and position bucket. Also: temp folders, a small generated world shared by the
// tests, and JSON/JSONL readers (whole files: mmr::read_file of core/lib/util/atomic_file.h).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/world.h"

namespace synth_test {

struct Seen {
  std::string shape;   // circle, square, triangle, star, cross, or "unknown(<measurements>)"
  std::string colour;  // palette name or "unknown"
  int x0, y0, x1, y1;  // inclusive
  std::string position;  // "top left", ..., "centre"
  long pixels;
};

struct Decoded {
  int width = 0, height = 0;
  std::vector<Seen> objects;  // in scan order of their first pixel
};

Decoded decode_scene(const std::filesystem::path& png, const std::array<int, 3>& background);

// The position rule written out once more: thirds of the image, by the centre of the pixel extent.
std::string bucket(int x0, int y0, int x1, int y1, int width, int height);

// A fresh, empty folder under the system temp folder; removed when the test program exits.
std::filesystem::path fresh_temp_dir(const std::string& tag);

// The small world all the file-level tests read (generated once per test program).
const mmr::synthetic::WorldConfig& small_world_config();
const std::filesystem::path& small_world();

std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path);
nlohmann::json read_json(const std::filesystem::path& path);

}  // namespace synth_test
