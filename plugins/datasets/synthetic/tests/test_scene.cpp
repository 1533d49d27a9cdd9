// Scenes: the pixels written to PNG carry exactly the ground truth, as an independent decoder sees it.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include "plugins/datasets/synthetic/scene.h"
#include "plugins/datasets/synthetic/world.h"
#include "core/lib/util/atomic_file.h"
#include "png_probe.h"

namespace fs = std::filesystem;
using namespace mmr::synthetic;

TEST(SyntheticScene, PositionBucketsAreThirdsOfTheImageByBoxCentre) {
  // 300 px: left if centre < 100, right if centre >= 200.
  EXPECT_EQ(position_phrase(position_of({0, 0, 9, 9}, 300, 300)), "top left");
  EXPECT_EQ(position_phrase(position_of({140, 140, 159, 159}, 300, 300)), "centre");
  EXPECT_EQ(position_phrase(position_of({280, 280, 299, 299}, 300, 300)), "bottom right");
  // Box [90, 108] has continuous centre (90 + 108 + 1) / 2 = 99.5 -> left; [91, 109] -> 100.5 -> centre.
  EXPECT_EQ(position_phrase(position_of({90, 0, 108, 9}, 300, 300)), "top left");
  EXPECT_EQ(position_phrase(position_of({91, 0, 109, 9}, 300, 300)), "top centre");
  // Exactly on the 2/3 line counts as right/bottom: [190, 209] has centre 200.
  EXPECT_EQ(position_phrase(position_of({190, 190, 209, 209}, 300, 300)), "bottom right");
  EXPECT_EQ(position_phrase(position_of({190, 140, 209, 159}, 300, 300)), "middle right");
}

TEST(SyntheticScene, RenderedPixelsShowExactlyTheGroundTruth) {
  WorldConfig config;
  config.seed = 99;
  config.max_objects = 7;
  const fs::path dir = synth_test::fresh_temp_dir("scene_pixels");
  std::map<std::string, int> shapes_seen;
  for (int i = 0; i < 60; ++i) {
    const ImageTruth truth = make_image_truth(config, "train", i);
    const fs::path png = dir / truth.image;
    mmr::write_file_atomic(png, encode_png(render(truth)));
    const synth_test::Decoded seen = synth_test::decode_scene(png, {255, 255, 255});
    ASSERT_EQ(seen.width, 336);
    ASSERT_EQ(seen.objects.size(), truth.objects.size()) << truth.image;
    for (const SceneObject& o : truth.objects) {
      const auto match = std::find_if(seen.objects.begin(), seen.objects.end(), [&](const synth_test::Seen& s) {
        return s.x0 == o.bbox.x0 && s.y0 == o.bbox.y0 && s.x1 == o.bbox.x1 && s.y1 == o.bbox.y1;
      });
      ASSERT_NE(match, seen.objects.end()) << truth.image << ": no component with the bbox of a "
                                           << palette()[o.colour].name << " " << shape_name(o.shape);
      EXPECT_EQ(match->colour, palette()[o.colour].name) << truth.image;
      EXPECT_EQ(match->shape, shape_name(o.shape)) << truth.image << " at " << o.bbox.x0 << "," << o.bbox.y0
                                                   << " size " << o.bbox.width() << "x" << o.bbox.height();
      EXPECT_EQ(match->position, position_phrase(o.position)) << truth.image;
      ++shapes_seen[match->shape];
    }
  }
  for (const char* shape : {"circle", "square", "triangle", "star", "cross"}) EXPECT_GT(shapes_seen[shape], 0) << shape;
}

TEST(SyntheticScene, SmallImagesStillDecodeToTheirShapes) {
  WorldConfig config;
  config.seed = 5;
  config.image_size = 168;  // smallest shapes allowed: round(0.12 * 168) = 20 px
  const fs::path dir = synth_test::fresh_temp_dir("scene_small");
  for (int i = 0; i < 80; ++i) {
    const ImageTruth truth = make_image_truth(config, "eval", i);
    const fs::path png = dir / truth.image;
    mmr::write_file_atomic(png, encode_png(render(truth)));
    const synth_test::Decoded seen = synth_test::decode_scene(png, {255, 255, 255});
    ASSERT_EQ(seen.objects.size(), truth.objects.size());
    std::multiset<std::string> expected, actual;
    for (const SceneObject& o : truth.objects) expected.insert(palette()[o.colour].name + " " + shape_name(o.shape));
    for (const auto& s : seen.objects) actual.insert(s.colour + " " + s.shape);
    EXPECT_EQ(actual, expected) << truth.image;
  }
}

TEST(SyntheticScene, CategoryModelIsZipfLikeWithOneCompanionCycle) {
  const CategoryModel model = make_category_model(30, 123);
  std::vector<uint64_t> weights = model.popularity;
  std::sort(weights.rbegin(), weights.rend());
  // 1 + floor(90 / (rank + 3)): 31, 23, 19, 16, 13, ... , 1 + floor(90 / 32) = 3.
  EXPECT_EQ(weights.front(), 31u);
  EXPECT_EQ(weights[1], 23u);
  EXPECT_EQ(weights[2], 19u);
  EXPECT_EQ(weights.back(), 3u);
  std::set<int> visited;
  int c = 0;
  for (int i = 0; i < 30; ++i) {
    visited.insert(c);
    c = model.companion[c];
  }
  EXPECT_EQ(c, 0);
  EXPECT_EQ(visited.size(), 30u);
}

TEST(SyntheticScene, PngIsRgbOfTheConfiguredSize) {
  const fs::path png = synth_test::small_world() / "images" / "train_000000.png";
  const std::string bytes = mmr::read_file(png);
  ASSERT_GE(bytes.size(), 24u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  const synth_test::Decoded d = synth_test::decode_scene(png, {255, 255, 255});
  EXPECT_EQ(d.width, synth_test::small_world_config().image_size);
  EXPECT_EQ(d.height, synth_test::small_world_config().image_size);
}
