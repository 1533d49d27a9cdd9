// The whole world: determinism by seed, the manifest, atomic output, config errors.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "core/api/error.h"
#include "core/lib/util/sha256.h"
#include "plugins/datasets/synthetic/world.h"
#include "core/lib/util/atomic_file.h"
#include "png_probe.h"

namespace fs = std::filesystem;
using namespace mmr::synthetic;

namespace {

WorldConfig tiny(uint64_t seed) {
  return WorldConfig::from_json({{"seed", seed}, {"image_size", 168}, {"num_train_images", 12}, {"num_eval_images", 6},
                                 {"num_text_tasks", 20}, {"num_eval_text_tasks", 5}});
}

// Relative path -> bytes, for every regular file under dir.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).generic_string()] = mmr::read_file(e.path());
  }
  return out;
}

std::string config_error(const std::string& json) {
  try {
    WorldConfig::from_json(nlohmann::json::parse(json));
  } catch (const mmr::ConfigError& e) {
    return e.what();
  }
  return "<no error>";
}

}  // namespace

TEST(SyntheticWorld, SameSeedGivesByteIdenticalFiles) {
  const fs::path a = synth_test::fresh_temp_dir("same_a"), b = synth_test::fresh_temp_dir("same_b");
  generate_world(tiny(7), a);
  generate_world(tiny(7), b);
  const auto files_a = snapshot(a), files_b = snapshot(b);
  EXPECT_EQ(files_a.size(), 18u + 10u + 8u + 1u);  // 18 images + 10 data files + 8 bench files + manifest
  ASSERT_EQ(files_a.size(), files_b.size());
  for (const auto& [path, bytes] : files_a) EXPECT_TRUE(files_b.at(path) == bytes) << path;
}

TEST(SyntheticWorld, DifferentSeedGivesDifferentFiles) {
  const fs::path a = synth_test::fresh_temp_dir("seed_a"), b = synth_test::fresh_temp_dir("seed_b");
  generate_world(tiny(7), a);
  generate_world(tiny(8), b);
  const auto files_a = snapshot(a), files_b = snapshot(b);
  int images_differ = 0;
  for (const auto& [path, bytes] : files_a) {
    if (path.rfind("images/", 0) == 0) images_differ += files_b.at(path) != bytes;
  }
  EXPECT_GE(images_differ, 17);
  for (const char* f : {"ground_truth.jsonl", "vqa_train.json", "text_train.json", "scored_candidates.jsonl",
                        "pairs.jsonl", "pope_random.jsonl", "manifest.json"}) {
    EXPECT_NE(files_a.at(f), files_b.at(f)) << f;
  }
}

TEST(SyntheticWorld, ChangingOneCountLeavesTheOtherItemsAlone) {
  const fs::path a = synth_test::fresh_temp_dir("count_a"), b = synth_test::fresh_temp_dir("count_b");
  WorldConfig more = tiny(7);
  more.num_text_tasks = 40;
  more.num_train_images = 15;
  generate_world(tiny(7), a);
  generate_world(more, b);
  const auto files_a = snapshot(a), files_b = snapshot(b);
  for (const auto& [path, bytes] : files_a) {
    if (path.rfind("images/", 0) == 0) {
      EXPECT_TRUE(files_b.at(path) == bytes) << path;
    }
  }
  // Random POPE negatives depend only on each held-out image's own draw (popular/adversarial use world counts).
  EXPECT_EQ(files_a.at("pope_random.jsonl"), files_b.at("pope_random.jsonl"));
  const auto text_a = synth_test::read_json(a / "text_train.json");
  const auto text_b = synth_test::read_json(b / "text_train.json");
  for (size_t i = 0; i < text_a.size(); ++i) EXPECT_EQ(text_a[i], text_b[i]);
  EXPECT_EQ(files_a.at("text_eval.jsonl"), files_b.at("text_eval.jsonl"));
}

TEST(SyntheticWorld, ManifestListsEveryFileWithSizeAndSha256) {
  const fs::path world = synth_test::small_world();
  const nlohmann::json manifest = synth_test::read_json(world / "manifest.json");
  EXPECT_EQ(manifest.at("generator"), "mmr-synthetic");
  EXPECT_EQ(manifest.at("config"), nlohmann::json::parse(synth_test::small_world_config().to_json().dump()));
  const auto files = snapshot(world);
  const auto& listing = manifest.at("files");
  EXPECT_EQ(listing.size() + 1, files.size()) << "every file but the manifest itself";
  for (const auto& [path, bytes] : files) {
    if (path == "manifest.json") continue;
    ASSERT_TRUE(listing.contains(path)) << path;
    EXPECT_EQ(listing.at(path).at("bytes"), bytes.size()) << path;
    EXPECT_EQ(listing.at(path).at("sha256"), mmr::sha256_hex(bytes)) << path;
  }
  const auto& counts = manifest.at("counts");
  EXPECT_EQ(counts.at("train_images"), 40);
  EXPECT_EQ(counts.at("eval_images"), 40);
  EXPECT_EQ(counts.at("vqa_train"), synth_test::read_json(world / "vqa_train.json").size());
  EXPECT_EQ(counts.at("scored_groups"), synth_test::read_jsonl(world / "scored_candidates.jsonl").size());
  EXPECT_EQ(counts.at("files"), files.size());
}

TEST(SyntheticWorld, NoTemporaryFilesRemain) {
  for (const auto& e : fs::recursive_directory_iterator(synth_test::small_world())) {
    const std::string name = e.path().filename().string();
    EXPECT_FALSE(name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0) << e.path();
  }
}

TEST(SyntheticWorld, RerunIntoTheSameFolderGivesTheSameFiles) {
  const fs::path dir = synth_test::fresh_temp_dir("rerun");
  generate_world(tiny(3), dir);
  const auto first = snapshot(dir);
  generate_world(tiny(3), dir);
  EXPECT_EQ(snapshot(dir), first);
}

TEST(SyntheticWorld, ConfigFromJsonReadsKeysAndRejectsBadOnes) {
  const WorldConfig c = WorldConfig::from_json(nlohmann::json::parse(
      R"({"seed": 9, "image_size": 200, "shapes": ["circle", "star"], "candidate_kind_weights": {"padded": 0},
          "pair_attributes": ["Helpfulness"], "pair_min_gap": 1.5})"));
  EXPECT_EQ(c.seed, 9u);
  EXPECT_EQ(c.image_size, 200);
  EXPECT_EQ(c.shapes, (std::vector<std::string>{"circle", "star"}));
  EXPECT_EQ(c.candidate_kind_weights.padded, 0u);
  EXPECT_EQ(c.candidate_kind_weights.correct, 1u);
  EXPECT_EQ(c.pair_rule.min_gap, 1.5);
  EXPECT_EQ(WorldConfig::from_json(c.to_json()).to_json(), c.to_json());
  // An integer that arrives signed (as the YAML stage options give it) is a valid seed; a negative one is not.
  EXPECT_EQ(WorldConfig::from_json(nlohmann::json{{"seed", int64_t{999}}}).seed, 999u);
  EXPECT_NE(config_error(R"({"seed": -1})").find("'seed': expected a non-negative integer"), std::string::npos);

  EXPECT_NE(config_error(R"({"num_images": 3})").find("unknown key 'num_images'"), std::string::npos);
  EXPECT_NE(config_error(R"({"image_size": "big"})").find("'image_size': expected an integer"), std::string::npos);
  EXPECT_NE(config_error(R"({"seed": -1})").find("'seed'"), std::string::npos);
  EXPECT_NE(config_error(R"({"shapes": ["hexagon"]})").find("unknown shape 'hexagon'"), std::string::npos);
  EXPECT_NE(config_error(R"({"colours": ["red", "red"]})").find("'colours'"), std::string::npos);
  EXPECT_NE(config_error(R"({"background": [220, 30, 30]})").find("'red'"), std::string::npos);
  EXPECT_NE(config_error(R"({"image_size": 160})").find("object_size_min"), std::string::npos);
  EXPECT_NE(config_error(R"({"min_objects": 4, "max_objects": 2})").find("max_objects"), std::string::npos);
  EXPECT_NE(config_error(R"({"pair_attributes": ["Honesty"]})").find("unknown attribute 'Honesty'"),
            std::string::npos);
  EXPECT_NE(config_error(R"({"candidate_kind_weights": {"great": 1}})").find("unknown candidate kind 'great'"),
            std::string::npos);
  EXPECT_NE(config_error(R"({"question_types": ["colour", "shape"]})").find("unknown question type 'shape'"),
            std::string::npos);
}

TEST(SyntheticWorld, UnwritableOutputFolderIsAnIoError) {
  const fs::path dir = synth_test::fresh_temp_dir("unwritable");
  {
    std::ofstream(dir / "occupied") << "a file where the world's folder should go";
  }
  EXPECT_THROW(generate_world(tiny(1), dir / "occupied"), mmr::IoError);
}
