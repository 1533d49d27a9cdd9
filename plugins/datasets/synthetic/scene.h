// Scenes of the synthetic world: coloured flat shapes on a plain background, with exact ground truth.
//
// What a scene is: up to a handful of axis-aligned shapes (circle, square, triangle apex-up, five-pointed star
// point-up, plus-shaped cross), each filled with one palette colour, none touching another (every shape lives in a
// square cell, and cells keep a gap of `gap_px`). No anti-aliasing, so every non-background pixel has exactly one
// palette colour and the connected components of the image are exactly the objects.
// Ground truth per object: shape, colour name, bbox = the inclusive pixel extent of what was painted, and a
// position bucket from the bbox centre (see position_of). What it deliberately is not: occlusion, rotation,
// texture, or anything a real photo has; it is a world a tiny model can learn from in minutes.
//
// Object categories are (colour, shape) pairs, e.g. "red circle". Their frequencies are skewed on purpose so that
// POPE's "popular" and "adversarial" negatives differ from random ones (see CategoryModel).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/rng.h"

namespace mmr::synthetic {

enum class Shape { kCircle, kSquare, kTriangle, kStar, kCross };

struct Colour {
  std::string name;
  std::array<uint8_t, 3> rgb;
};

// Every shape, in enum order, and its name ("circle", "square", "triangle", "star", "cross").
const std::vector<Shape>& all_shapes();
const std::string& shape_name(Shape shape);
// Throws mmr::ConfigError naming `key` and the known names.
Shape shape_from_name(const std::string& name, const std::string& key);

// The built-in palette: red, green, blue, yellow, purple, orange, pink, brown, black, grey. Colours are far
// apart so a model (and the tests' pixel decoder) can tell them apart exactly.
const std::vector<Colour>& palette();
// Index into palette(); throws mmr::ConfigError naming `key` and the known names.
int colour_index(const std::string& name, const std::string& key);

// Inclusive pixel extents.
struct Box {
  int x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  int width() const { return x1 - x0 + 1; }
  int height() const { return y1 - y0 + 1; }
};

enum class HPos { kLeft, kCentre, kRight };
enum class VPos { kTop, kMiddle, kBottom };
struct Position {
  VPos v = VPos::kMiddle;
  HPos h = HPos::kCentre;
  bool operator==(const Position& o) const { return v == o.v && h == o.h; }
  bool operator!=(const Position& o) const { return !(*this == o); }
};

// Bucket of a bbox in a width x height image, by the continuous centre of its pixel extent,
// cx = (x0 + x1 + 1) / 2: left if cx < W/3, right if cx >= 2W/3, else centre; rows alike (top/middle/bottom).
Position position_of(const Box& bbox, int width, int height);
// "top left", "top centre", "top right", "middle left", "centre", "middle right", "bottom left", ...
std::string position_phrase(Position p);
// All nine buckets, row-major from top left.
const std::vector<Position>& all_positions();

struct SceneObject {
  Shape shape = Shape::kCircle;
  int colour = 0;  // index into palette()
  Box bbox;        // painted pixels' extent
  Position position;
  Box cell;        // the square the shape was drawn into (bbox lies inside it)
};

struct ImageTruth {
  std::string image;  // file name relative to the images folder, e.g. "train_000003.png"
  std::string split;  // "train" or "eval"
  int width = 0, height = 0;
  std::array<uint8_t, 3> background{255, 255, 255};
  std::vector<SceneObject> objects;
};

nlohmann::ordered_json to_json(const ImageTruth& truth);

// The world's object categories: every (shape, colour) of the configured lists. Category index
// c = shape_slot * colours.size() + colour_slot.
struct Vocabulary {
  std::vector<Shape> shapes;
  std::vector<int> colours;  // palette indices

  int num_categories() const { return static_cast<int>(shapes.size() * colours.size()); }
  int category_of(Shape shape, int colour) const;  // -1 when not in the vocabulary
  Shape shape_of(int category) const { return shapes[category / colours.size()]; }
  int colour_of(int category) const { return colours[category % colours.size()]; }
  std::string name_of(int category) const;  // "red circle"
};

// How categories are drawn. popularity: a seeded permutation ranks the categories, and rank r gets integer weight
// 1 + floor(3N / (r + 3)) (Zipf-like: for N = 30, 31, 23, 19, ... 3). companion: a seeded cycle through all
// categories; with probability cooccur_prob an object after the first is the companion of an object already in
// the scene, which gives the world real co-occurrence structure for POPE's adversarial split.
struct CategoryModel {
  std::vector<uint64_t> popularity;  // per category
  std::vector<int> companion;        // per category; companion[c] != c when N > 1
};
CategoryModel make_category_model(int num_categories, uint64_t seed);

struct SceneSpec {
  int width = 336, height = 336;
  int min_objects = 1, max_objects = 5;
  int size_min_px = 40, size_max_px = 80;  // side of a shape's square cell
  int gap_px = 6;                          // minimum distance between two cells
  int margin_px = 2;                       // minimum distance from a cell to the image border
  int placement_attempts = 200;            // random positions tried per object before it is dropped
  double cooccur_prob = 0.5;
  std::array<uint8_t, 3> background{255, 255, 255};
};

struct SceneSample {
  ImageTruth truth;
  int dropped = 0;  // objects sampled but not placed (no free spot after placement_attempts); counted, not hidden
};

SceneSample sample_scene(const SceneSpec& spec, const Vocabulary& vocab, const CategoryModel& model, Rng& rng);

// Does the shape drawn into `cell` cover the pixel (px, py)? (Tested at the pixel centre.)
bool shape_covers(Shape shape, const Box& cell, int px, int py);

// Packed RGB, row-major, 3 bytes a pixel.
struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // (H, W, 3)
};

RgbImage render(const ImageTruth& truth);
// PNG bytes of an image (stb_image_write, default compression level); throws mmr::IoError when encoding fails.
std::string encode_png(const RgbImage& image);

// "a" or "an" for a following word.
std::string article_for(const std::string& word);

}  // namespace mmr::synthetic
