// Shared helpers of the dataset tests: a temp folder per test, small files, and loading through the pipeline.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/lib/data/pipeline.h"

namespace mmr::data::test {

namespace fs = std::filesystem;

inline const fs::path kFixture = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
inline const fs::path kImages = kFixture / "images";

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_data_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name() + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }

  // Loads `file` with the options given as YAML (a flow map without braces, e.g. "on_bad_row: skip").
  LoadResult load(RowKind kind, const std::string& file, const std::string& yaml_options = "", uint64_t seed = 1) {
    YAML::Node node = YAML::Load("{" + yaml_options + "}");
    node["file"] = file;
    PipelineOptions opt = PipelineOptions::from(Options(node, "test.yaml"));
    DataContext ctx;
    ctx.seed = seed;
    return load_dataset(opt, kind, ctx);
  }

  // The DataError message of a load that must fail.
  std::string load_error(RowKind kind, const std::string& file, const std::string& yaml_options = "") {
    try {
      load(kind, file, yaml_options);
    } catch (const DataError& e) {
      return e.what();
    }
    ADD_FAILURE() << "expected a DataError";
    return "";
  }

  fs::path dir_;
};

}  // namespace mmr::data::test
