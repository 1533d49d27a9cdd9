// The llava model's cache of preprocessed images (image_cache.h): the values preprocess_file gives, each file
// decoded once while it stays cached and unchanged, read again once edited, errors as preprocess_file's.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/api/error.h"
#include "image_cache.h"

namespace fs = std::filesystem;
using mmr::llava::ImageCache;

namespace {

fs::path images() { return fs::path(MMR_TEST_DATA_DIR) / "tiny-llava" / "images"; }

// A scratch copy of a fixture image (its cache key is its own path).
struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("image-cache-" + std::to_string(::getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() { fs::remove_all(dir); }
  std::string copy(const std::string& name, const std::string& as) const {
    fs::copy_file(images() / name, dir / as, fs::copy_options::overwrite_existing);
    return (dir / as).string();
  }
};

}  // namespace

TEST(ImageCache, GivesPreprocessFilesValuesAndDecodesEachFileOnce) {
  const mmr::image::PreprocessConfig config;
  ImageCache cache(8);
  const std::vector<std::string> paths = {(images() / "wide.png").string(), (images() / "tall.jpg").string(),
                                          (images() / "wide.png").string()};
  const auto first = cache.get(paths, config);
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(*first[0], mmr::image::preprocess_file(paths[0], config));
  EXPECT_EQ(*first[1], mmr::image::preprocess_file(paths[1], config));
  EXPECT_EQ(first[0], first[2]) << "one path twice in a batch: decoded once";
  const auto again = cache.get({paths[1], paths[0]}, config);
  EXPECT_EQ(again[0], first[1]) << "cached: the same values, not decoded again";
  EXPECT_EQ(again[1], first[0]);
  mmr::image::PreprocessConfig crop = config;
  crop.aspect_mode = mmr::image::AspectMode::kCenterCrop;
  const auto cropped = cache.get({paths[0]}, crop);
  EXPECT_NE(cropped[0], first[0]) << "another preprocessing: other values";
  EXPECT_EQ(*cropped[0], mmr::image::preprocess_file(paths[0], crop));
}

TEST(ImageCache, ReadsAnEditedFileAgainAndEvictsTheLeastRecentlyUsed) {
  const mmr::image::PreprocessConfig config;
  const Scratch scratch;
  const std::string path = scratch.copy("wide.png", "picture.png");
  ImageCache cache(2);
  const auto before = cache.get({path}, config)[0];
  scratch.copy("gray.png", "picture.png");  // another size: another key, whatever the clock's resolution
  const auto after = cache.get({path}, config)[0];
  EXPECT_NE(*after, *before);
  EXPECT_EQ(*after, mmr::image::preprocess_file((images() / "gray.png").string(), config));
  const std::string a = scratch.copy("tall.jpg", "a.jpg"), b = scratch.copy("small.png", "b.png");
  const auto va = cache.get({a}, config)[0];
  cache.get({b}, config);  // the cache now holds b and a; `path` was evicted
  EXPECT_EQ(cache.get({a}, config)[0], va) << "still cached";
  EXPECT_NE(cache.get({path}, config)[0], after) << "evicted: decoded again";
  ImageCache none(0);  // MMR_IMAGE_CACHE=0
  const auto once = none.get({a, a}, config);
  EXPECT_EQ(once[0], once[1]) << "within a batch, still decoded once";
  EXPECT_NE(none.get({a}, config)[0], once[0]) << "nothing kept";
}

TEST(ImageCache, AFileThatCannotBeDecodedIsADataErrorNamingIt) {
  const mmr::image::PreprocessConfig config;
  const Scratch scratch;
  const std::string bad = (scratch.dir / "broken.png").string();
  std::ofstream(bad) << "not an image";
  ImageCache cache(4);
  try {
    cache.get({(images() / "wide.png").string(), bad, (scratch.dir / "missing.png").string()}, config);
    FAIL() << "no error";
  } catch (const mmr::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("broken.png"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cache.get({(images() / "wide.png").string()}, config).size(), 1u) << "the cache still works";
}
