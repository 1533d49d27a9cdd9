#include "plugins/datasets/synthetic/scene.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <stb/stb_image_write.h>

#include <algorithm>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/names.h"

namespace mmr::synthetic {

namespace {
const EnumNames<Shape>& shapes() {
  static const EnumNames<Shape> kNames({"circle", "square", "triangle", "star", "cross"}, "shape", "shapes");
  return kNames;
}
}  // namespace

const std::vector<Shape>& all_shapes() { return shapes().values(); }
const std::string& shape_name(Shape shape) { return shapes().name(shape); }
Shape shape_from_name(const std::string& name, const std::string& key) { return shapes().from_name(name, key); }

const std::vector<Colour>& palette() {
  static const std::vector<Colour> kPalette = {
      {"red", {220, 30, 30}},     {"green", {30, 160, 50}},  {"blue", {30, 70, 220}},
      {"yellow", {235, 200, 20}}, {"purple", {130, 50, 170}}, {"orange", {240, 130, 20}},
      {"pink", {240, 110, 190}},  {"brown", {120, 75, 30}},  {"black", {20, 20, 20}},
      {"grey", {128, 128, 128}}};
  return kPalette;
}

int colour_index(const std::string& name, const std::string& key) {
  std::vector<std::string> known;
  for (size_t i = 0; i < palette().size(); ++i) {
    if (palette()[i].name == name) return static_cast<int>(i);
    known.push_back(palette()[i].name);
  }
  throw ConfigError(fmt::format("{}: unknown colour '{}'; known colours: {}", key, name, fmt::join(known, ", ")));
}

Position position_of(const Box& b, int width, int height) {
  // 3 * cx < W  <=>  3 * (x0 + x1 + 1) < 2W, all in integers.
  const int cx3 = 3 * (b.x0 + b.x1 + 1);
  const int cy3 = 3 * (b.y0 + b.y1 + 1);
  Position p;
  p.h = cx3 < 2 * width ? HPos::kLeft : (cx3 >= 4 * width ? HPos::kRight : HPos::kCentre);
  p.v = cy3 < 2 * height ? VPos::kTop : (cy3 >= 4 * height ? VPos::kBottom : VPos::kMiddle);
  return p;
}

std::string position_phrase(Position p) {
  static const char* kRows[] = {"top", "middle", "bottom"};
  static const char* kCols[] = {"left", "centre", "right"};
  if (p.v == VPos::kMiddle && p.h == HPos::kCentre) return "centre";
  return fmt::format("{} {}", kRows[static_cast<int>(p.v)], kCols[static_cast<int>(p.h)]);
}

const std::vector<Position>& all_positions() {
  static const std::vector<Position> kAll = [] {
    std::vector<Position> all;
    for (VPos v : {VPos::kTop, VPos::kMiddle, VPos::kBottom}) {
      for (HPos h : {HPos::kLeft, HPos::kCentre, HPos::kRight}) all.push_back({v, h});
    }
    return all;
  }();
  return kAll;
}

nlohmann::ordered_json to_json(const ImageTruth& truth) {
  nlohmann::ordered_json objects = nlohmann::ordered_json::array();
  for (const SceneObject& o : truth.objects) {
    objects.push_back({{"shape", shape_name(o.shape)},
                       {"colour", palette()[o.colour].name},
                       {"bbox", {o.bbox.x0, o.bbox.y0, o.bbox.x1, o.bbox.y1}},
                       {"position", position_phrase(o.position)}});
  }
  return {{"image", truth.image},
          {"split", truth.split},
          {"width", truth.width},
          {"height", truth.height},
          {"background", {truth.background[0], truth.background[1], truth.background[2]}},
          {"objects", std::move(objects)}};
}

int Vocabulary::category_of(Shape shape, int colour) const {
  const auto s = std::find(shapes.begin(), shapes.end(), shape);
  const auto c = std::find(colours.begin(), colours.end(), colour);
  if (s == shapes.end() || c == colours.end()) return -1;
  return static_cast<int>((s - shapes.begin()) * colours.size() + (c - colours.begin()));
}

std::string Vocabulary::name_of(int category) const {
  return palette()[colour_of(category)].name + " " + shape_name(shape_of(category));
}

CategoryModel make_category_model(int num_categories, uint64_t seed) {
  MMR_CHECK(num_categories > 0, "no object categories");
  Rng rng(seed);
  const auto n = static_cast<size_t>(num_categories);
  std::vector<int> by_rank(n);
  for (size_t i = 0; i < n; ++i) by_rank[i] = static_cast<int>(i);
  rng.shuffle(by_rank);
  CategoryModel model;
  model.popularity.assign(n, 0);
  for (size_t rank = 0; rank < n; ++rank) model.popularity[by_rank[rank]] = 1 + (3 * n) / (rank + 3);

  std::vector<int> cycle = by_rank;
  rng.shuffle(cycle);
  model.companion.assign(n, 0);
  for (size_t i = 0; i < n; ++i) model.companion[cycle[i]] = cycle[(i + 1) % n];
  return model;
}

namespace {

// Unit vectors of a point-up five-pointed star's ten vertices, angle -90° + 36°·i (y grows downwards), as
// literals rather than sin/cos calls so that no libm difference can move a pixel.
constexpr double kStarUnit[10][2] = {
    {0.0, -1.0},
    {0.58778525229247314, -0.80901699437494745},
    {0.95105651629515353, -0.30901699437494740},
    {0.95105651629515353, 0.30901699437494740},
    {0.58778525229247314, 0.80901699437494745},
    {0.0, 1.0},
    {-0.58778525229247314, 0.80901699437494745},
    {-0.95105651629515353, 0.30901699437494740},
    {-0.95105651629515353, -0.30901699437494740},
    {-0.58778525229247314, -0.80901699437494745}};
constexpr double kStarInnerRatio = 0.5;  // inner radius / outer radius; fatter than a regular star, easier to see

// Edge function: > 0 when (px, py) is left of a->b.
double edge(double ax, double ay, double bx, double by, double px, double py) {
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

bool cells_conflict(const Box& a, const Box& b, int gap) {
  return !(a.x1 + gap < b.x0 || b.x1 + gap < a.x0 || a.y1 + gap < b.y0 || b.y1 + gap < a.y0);
}

Box painted_extent(Shape shape, const Box& cell) {
  Box out{cell.x1, cell.y1, cell.x0, cell.y0};
  for (int y = cell.y0; y <= cell.y1; ++y) {
    for (int x = cell.x0; x <= cell.x1; ++x) {
      if (!shape_covers(shape, cell, x, y)) continue;
      out.x0 = std::min(out.x0, x);
      out.y0 = std::min(out.y0, y);
      out.x1 = std::max(out.x1, x);
      out.y1 = std::max(out.y1, y);
    }
  }
  MMR_CHECK(out.x0 <= out.x1 && out.y0 <= out.y1, "shape " << shape_name(shape) << " painted nothing");
  return out;
}

}  // namespace

bool shape_covers(Shape shape, const Box& cell, int px, int py) {
  const double s = cell.width();
  const double x = px + 0.5, y = py + 0.5;  // pixel centre
  const double left = cell.x0, top = cell.y0;
  switch (shape) {
    case Shape::kSquare:
      return px >= cell.x0 && px <= cell.x1 && py >= cell.y0 && py <= cell.y1;
    case Shape::kCircle: {
      const double cx = left + s / 2, cy = top + s / 2, r = s / 2;
      return (x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r;
    }
    case Shape::kTriangle: {
      // Apex at the top centre, base along the bottom edge; clockwise on screen, so inside means all edges >= 0.
      const double ax = left + s / 2, ay = top, bx = left + s, by = top + s, cx = left, cy = top + s;
      return edge(ax, ay, bx, by, x, y) >= 0 && edge(bx, by, cx, cy, x, y) >= 0 && edge(cx, cy, ax, ay, x, y) >= 0;
    }
    case Shape::kStar: {
      // Outer radius s/2, centred horizontally, top point touching the top of the cell. Even-odd crossing test.
      const double r_out = s / 2, cx = left + s / 2, cy = top + r_out;
      bool inside = false;
      for (int i = 0, j = 9; i < 10; j = i++) {
        const double ri = (i % 2 == 0) ? r_out : r_out * kStarInnerRatio;
        const double rj = (j % 2 == 0) ? r_out : r_out * kStarInnerRatio;
        const double xi = cx + ri * kStarUnit[i][0], yi = cy + ri * kStarUnit[i][1];
        const double xj = cx + rj * kStarUnit[j][0], yj = cy + rj * kStarUnit[j][1];
        if ((yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) inside = !inside;
      }
      return inside;
    }
    case Shape::kCross: {
      // A plus sign whose arms are a third of the cell wide.
      const int side = cell.width();
      const int arm = std::max(1, side / 3);
      const int lo = (side - arm) / 2;
      const int dx = px - cell.x0, dy = py - cell.y0;
      if (dx < 0 || dy < 0 || dx >= side || dy >= side) return false;
      return (dx >= lo && dx < lo + arm) || (dy >= lo && dy < lo + arm);
    }
  }
  return false;
}

SceneSample sample_scene(const SceneSpec& spec, const Vocabulary& vocab, const CategoryModel& model, Rng& rng) {
  SceneSample out;
  ImageTruth& truth = out.truth;
  truth.width = spec.width;
  truth.height = spec.height;
  truth.background = spec.background;

  const int n = static_cast<int>(rng.uniform_int(spec.min_objects, spec.max_objects));
  std::vector<int> categories;
  for (int k = 0; k < n; ++k) {
    int category;
    if (!categories.empty() && rng.bernoulli(spec.cooccur_prob)) {
      category = model.companion[rng.pick(categories)];
    } else {
      category = static_cast<int>(rng.weighted_index(model.popularity));
    }
    const int side = static_cast<int>(rng.uniform_int(spec.size_min_px, spec.size_max_px));
    bool placed = false;
    for (int attempt = 0; attempt < spec.placement_attempts && !placed; ++attempt) {
      Box cell;
      cell.x0 = static_cast<int>(rng.uniform_int(spec.margin_px, spec.width - spec.margin_px - side));
      cell.y0 = static_cast<int>(rng.uniform_int(spec.margin_px, spec.height - spec.margin_px - side));
      cell.x1 = cell.x0 + side - 1;
      cell.y1 = cell.y0 + side - 1;
      const bool free = std::none_of(truth.objects.begin(), truth.objects.end(),
                                     [&](const SceneObject& o) { return cells_conflict(o.cell, cell, spec.gap_px); });
      if (!free) continue;
      SceneObject obj;
      obj.shape = vocab.shape_of(category);
      obj.colour = vocab.colour_of(category);
      obj.cell = cell;
      obj.bbox = painted_extent(obj.shape, cell);
      obj.position = position_of(obj.bbox, spec.width, spec.height);
      truth.objects.push_back(obj);
      categories.push_back(category);
      placed = true;
    }
    if (!placed) ++out.dropped;
  }
  return out;
}

RgbImage render(const ImageTruth& truth) {
  RgbImage img;
  img.width = truth.width;
  img.height = truth.height;
  img.pixels.resize(static_cast<size_t>(truth.width) * truth.height * 3);
  for (size_t i = 0; i < img.pixels.size(); i += 3) {
    img.pixels[i] = truth.background[0];
    img.pixels[i + 1] = truth.background[1];
    img.pixels[i + 2] = truth.background[2];
  }
  for (const SceneObject& o : truth.objects) {
    const auto& rgb = palette()[o.colour].rgb;
    for (int y = o.cell.y0; y <= o.cell.y1; ++y) {
      for (int x = o.cell.x0; x <= o.cell.x1; ++x) {
        if (!shape_covers(o.shape, o.cell, x, y)) continue;
        const size_t at = (static_cast<size_t>(y) * truth.width + x) * 3;
        img.pixels[at] = rgb[0];
        img.pixels[at + 1] = rgb[1];
        img.pixels[at + 2] = rgb[2];
      }
    }
  }
  return img;
}

namespace {
void append_bytes(void* context, void* data, int size) {
  static_cast<std::string*>(context)->append(static_cast<const char*>(data), static_cast<size_t>(size));
}
}  // namespace

std::string encode_png(const RgbImage& image) {
  std::string bytes;
  const int ok = stbi_write_png_to_func(append_bytes, &bytes, image.width, image.height, /*comp=*/3,
                                        image.pixels.data(), /*stride_in_bytes=*/image.width * 3);
  if (!ok) {
    throw IoError(fmt::format("stbi_write_png_to_func failed to encode a {}x{} RGB image", image.width,
                              image.height));
  }
  return bytes;
}

std::string article_for(const std::string& word) {
  if (!word.empty() && std::string("aeiou").find(word[0]) != std::string::npos) return "an";
  return "a";
}

}  // namespace mmr::synthetic
