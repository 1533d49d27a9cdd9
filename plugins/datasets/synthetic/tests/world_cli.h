// What the end-to-end tests of the world's bench/ files share (here and in plugins/judges/reference_match/tests):
// the runner fixture of tests/benchmarks with the stub plugins' folder (the torch-free scripted_model), and a
// JSONL reader. Header-only, GoogleTest only.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/benchmarks/benchmark_cli.h"

namespace world_cli {

inline const std::string kStubPlugins =
    (std::filesystem::path(MMR_TEST_BINARY_DIR) / "tests" / "benchmarks" / "stub_plugins").string();

inline std::vector<nlohmann::json> read_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  std::vector<nlohmann::json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(nlohmann::json::parse(line));
  return rows;
}

// The runner with the build's plugins and the stub plugins; stubs_built() is false where tests/benchmarks is not
// part of the build (a test that needs the stub model then skips itself, saying so).
class WorldCli : public mmr::test::BenchmarkCli {
 protected:
  explicit WorldCli(std::string prefix) : BenchmarkCli(std::move(prefix), {kStubPlugins}) {}
  static bool stubs_built() {
    return std::filesystem::exists(std::filesystem::path(kStubPlugins) / "libscripted_model.so");
  }
  static std::string no_stubs() { return "the stub model of tests/benchmarks is not built (" + kStubPlugins + ")"; }
};

}  // namespace world_cli
