#include "png_probe.h"

#include <stb/stb_image.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/lib/util/atomic_file.h"

namespace synth_test {

namespace fs = std::filesystem;

namespace {

// The palette as published in scene.h's contract (RGB per name), restated here on purpose.
const std::map<std::array<int, 3>, std::string>& colour_table() {
  static const std::map<std::array<int, 3>, std::string> kTable = {
      {{220, 30, 30}, "red"},     {{30, 160, 50}, "green"},  {{30, 70, 220}, "blue"},
      {{235, 200, 20}, "yellow"}, {{130, 50, 170}, "purple"}, {{240, 130, 20}, "orange"},
      {{240, 110, 190}, "pink"},  {{120, 75, 30}, "brown"},  {{20, 20, 20}, "black"},
      {{128, 128, 128}, "grey"}};
  return kTable;
}

// Shape from geometry alone: fill ratio of the bbox and how much of its top and bottom rows are covered.
//   square: fills its box; triangle (apex up): full bottom row, tiny top; circle: ~pi/4 of its box;
//   cross: top and bottom rows one third covered; star: what is left (~0.4 fill, point on top).
std::string classify(const std::vector<std::vector<bool>>& mask, long pixels) {
  const int h = static_cast<int>(mask.size()), w = static_cast<int>(mask[0].size());
  const double fill = static_cast<double>(pixels) / (static_cast<double>(w) * h);
  auto row_frac = [&](int y) {
    int n = 0;
    for (int x = 0; x < w; ++x) n += mask[y][x];
    return static_cast<double>(n) / w;
  };
  const double top = row_frac(0), bottom = row_frac(h - 1);
  if (fill >= 0.97) return "square";
  if (bottom >= 0.8 && top <= 0.3) return "triangle";
  if (fill >= 0.68) return "circle";
  if (top >= 0.2 && bottom >= 0.2) return "cross";
  if (top < 0.2 && fill > 0.3 && fill < 0.5) return "star";
  // Unrecognised: say what was measured, so a failing comparison shows why.
  std::ostringstream os;
  os << "unknown(" << w << "x" << h << " fill " << fill << " top " << top << " bottom " << bottom << ")";
  return os.str();
}

}  // namespace

std::string bucket(int x0, int y0, int x1, int y1, int width, int height) {
  const double cx = (x0 + x1 + 1) / 2.0, cy = (y0 + y1 + 1) / 2.0;
  const char* col = cx < width / 3.0 ? "left" : (cx >= 2.0 * width / 3.0 ? "right" : "centre");
  const char* row = cy < height / 3.0 ? "top" : (cy >= 2.0 * height / 3.0 ? "bottom" : "middle");
  if (std::string(row) == "middle" && std::string(col) == "centre") return "centre";
  return std::string(row) + " " + col;
}

namespace {

// An RGB image decoded by stb_image, freed with it.
class Pixels {
 public:
  explicit Pixels(const fs::path& png) {
    const std::string bytes = mmr::read_file(png);
    int channels = 0;
    data_ = stbi_load_from_memory(reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()), &w, &h, &channels, 3);
    if (!data_) throw std::runtime_error("stb_image cannot decode " + png.string());
  }
  ~Pixels() { stbi_image_free(data_); }
  Pixels(const Pixels&) = delete;
  Pixels& operator=(const Pixels&) = delete;
  std::array<int, 3> rgb(int x, int y) const {
    const unsigned char* p = data_ + (static_cast<size_t>(y) * w + x) * 3;
    return {p[0], p[1], p[2]};
  }
  int w = 0, h = 0;

 private:
  unsigned char* data_ = nullptr;
};

// The pixels of the component that holds (x, y): flood fill over that exact colour, 8-connected (a star's thin
// tips may touch the body only diagonally). Marks them with `id` in `label`.
std::vector<std::pair<int, int>> component(const Pixels& img, int x, int y, int id, std::vector<int>& label) {
  const std::array<int, 3> colour = img.rgb(x, y);
  std::vector<std::pair<int, int>> stack = {{x, y}}, members;
  label[static_cast<size_t>(y) * img.w + x] = id;
  while (!stack.empty()) {
    auto [px, py] = stack.back();
    stack.pop_back();
    members.push_back({px, py});
    const int dx[] = {1, -1, 0, 0, 1, 1, -1, -1}, dy[] = {0, 0, 1, -1, 1, -1, 1, -1};
    for (int k = 0; k < 8; ++k) {
      const int nx = px + dx[k], ny = py + dy[k];
      if (nx < 0 || ny < 0 || nx >= img.w || ny >= img.h) continue;
      int& l = label[static_cast<size_t>(ny) * img.w + nx];
      if (l >= 0 || img.rgb(nx, ny) != colour) continue;
      l = id;
      stack.push_back({nx, ny});
    }
  }
  return members;
}

// What a component looks like: its box, colour, shape and position bucket.
Seen describe(const std::vector<std::pair<int, int>>& members, const std::array<int, 3>& colour, int w, int h) {
  Seen s{"unknown", "unknown", w, h, -1, -1, "", static_cast<long>(members.size())};
  for (auto [px, py] : members) {
    s.x0 = std::min(s.x0, px);
    s.y0 = std::min(s.y0, py);
    s.x1 = std::max(s.x1, px);
    s.y1 = std::max(s.y1, py);
  }
  std::vector<std::vector<bool>> mask(s.y1 - s.y0 + 1, std::vector<bool>(s.x1 - s.x0 + 1, false));
  for (auto [px, py] : members) mask[py - s.y0][px - s.x0] = true;
  const auto c = colour_table().find(colour);
  if (c != colour_table().end()) s.colour = c->second;
  s.shape = classify(mask, s.pixels);
  s.position = bucket(s.x0, s.y0, s.x1, s.y1, w, h);
  return s;
}

}  // namespace

Decoded decode_scene(const fs::path& png, const std::array<int, 3>& background) {
  const Pixels img(png);
  Decoded out;
  out.width = img.w;
  out.height = img.h;
  std::vector<int> label(static_cast<size_t>(img.w) * img.h, -1);
  for (int y = 0; y < img.h; ++y) {
    for (int x = 0; x < img.w; ++x) {
      if (label[static_cast<size_t>(y) * img.w + x] >= 0 || img.rgb(x, y) == background) continue;
      const int id = static_cast<int>(out.objects.size());
      out.objects.push_back(describe(component(img, x, y, id, label), img.rgb(x, y), img.w, img.h));
    }
  }
  return out;
}

namespace {
struct TempRoot {
  fs::path root;
  TempRoot() {
    root = fs::temp_directory_path() / ("mmr_synthetic_test_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root);
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
};
TempRoot& temp_root() {
  static TempRoot root;
  return root;
}
}  // namespace

fs::path fresh_temp_dir(const std::string& tag) {
  static std::atomic<int> counter{0};
  const fs::path dir = temp_root().root / (tag + "_" + std::to_string(counter++));
  fs::create_directories(dir);
  return dir;
}

const mmr::synthetic::WorldConfig& small_world_config() {
  static const auto config = mmr::synthetic::WorldConfig::from_json(
      {{"seed", 20240607}, {"image_size", 224}, {"num_train_images", 40}, {"num_eval_images", 40},
       {"max_objects", 6}, {"num_text_tasks", 120}, {"num_eval_text_tasks", 30}});
  return config;
}

const fs::path& small_world() {
  static const fs::path dir = [] {
    fs::path d = fresh_temp_dir("small_world");
    mmr::synthetic::generate_world(small_world_config(), d);
    return d;
  }();
  return dir;
}

std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::istringstream in(mmr::read_file(path));
  std::vector<nlohmann::json> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  }
  return rows;
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(mmr::read_file(path)); }

}  // namespace synth_test
