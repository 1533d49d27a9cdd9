// "A new algorithm is a new folder": an algorithm plugin built outside the source tree, against the plugin SDK
// alone (the public headers of core/api/ and mmrunnerConfig.cmake in <build>/sdk), loaded by the real runner with
// --plugin-path, trains the tiny fixture model: the loss goes down and a PEFT adapter is written.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/store.h"
#include "process.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const fs::path kBuild = MMR_TEST_BINARY_DIR;
const fs::path kFixture = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";

// The main build's CMAKE_PREFIX_PATH ('|' for ';', see CMakeLists.txt): the plugin finds its dependencies there too.
std::string prefix_path() {
  std::string p = MMR_PREFIX_PATH;
  std::replace(p.begin(), p.end(), '|', ';');
  return p;
}

class OutOfTree : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("mmr_oot_" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  // Configures and builds the plugin folder copied to dir_/src; returns the folder to give --plugin-path.
  fs::path build_plugin() {
    fs::copy(MMR_OOT_PLUGIN_SOURCE, dir_ / "src", fs::copy_options::recursive);
    const auto configure = mmr::test::run(
        {MMR_CMAKE_COMMAND, "-S", (dir_ / "src").string(), "-B", (dir_ / "build").string(), "-G", MMR_CMAKE_GENERATOR,
         std::string("-DCMAKE_CXX_COMPILER=") + MMR_CXX_COMPILER, "-DCMAKE_BUILD_TYPE=Release",
         "-Dmmrunner_DIR=" + (kBuild / "sdk").string(), std::string("-DTorch_DIR=") + MMR_TORCH_DIR,
         "-DCMAKE_PREFIX_PATH=" + prefix_path()});
    EXPECT_EQ(configure.status, 0) << configure.out << configure.err;
    const auto build = mmr::test::run({MMR_CMAKE_COMMAND, "--build", (dir_ / "build").string()});
    EXPECT_EQ(build.status, 0) << build.out << build.err;
    return dir_ / "build" / "plugins";
  }
  fs::path dir_;
};

// The SDK holds the plugin ABI's headers and nothing of the host (registry, runner, store) or its libraries.
TEST(PluginSdk, HoldsOnlyThePublicHeaders) {
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(kBuild / "sdk" / "include"))
    if (e.is_regular_file()) names.push_back(fs::relative(e.path(), kBuild / "sdk" / "include").string());
  std::sort(names.begin(), names.end());
  const std::vector<std::string> want = {"core/api/chat_api.h",    "core/api/dataset_api.h", "core/api/error.h",
                                         "core/api/metrics.h",     "core/api/model_api.h",   "core/api/options.h",
                                         "core/api/plugin_api.h"};
  EXPECT_EQ(names, want);
}

TEST_F(OutOfTree, AlgorithmPluginBuiltAgainstTheSdkTrainsThroughRunner) {
  const fs::path plugins = build_plugin();
  ASSERT_TRUE(fs::exists(plugins / "algorithms" / "libmy_sft.so"));

  json rows = json::array();
  for (int i = 0; i < 4; ++i)
    rows.push_back({{"id", "r" + std::to_string(i)},
                    {"conversations", {{{"from", "human"}, {"value", "Say the numbers up to " + std::to_string(i + 3) + "."}},
                                       {{"from", "gpt"}, {"value", "One two three four five."}}}}});
  std::ofstream(dir_ / "rows.json") << rows.dump();
  std::ofstream(dir_ / "exp.yaml")
      << "name: oot\nstages:\n"
         "  - name: train\n    algorithm: my_sft\n"
         "    model: {plugin: llava, path: " << (kFixture / "model").string() << ", lora_r: 8, lora_alpha: 16, seed: 3}\n"
         "    data: {plugin: llava_json, file: " << (dir_ / "rows.json").string() << "}\n"
         "    steps: 6\n    lr: 0.05\n";
  const std::string db = (dir_ / "r.db").string();
  const auto listed = mmr::test::run({(kBuild / "bin" / "runner").string(), "--plugin-path", plugins.string(),
                                      "plugins", "--kind", "algorithm"});
  ASSERT_EQ(listed.status, 0) << listed.err;
  EXPECT_NE(listed.out.find("my_sft"), std::string::npos) << listed.out;

  const auto ran = mmr::test::run({(kBuild / "bin" / "runner").string(), "--results", db, "--plugin-path",
                                   plugins.string(), (dir_ / "exp.yaml").string()});
  ASSERT_EQ(ran.status, 0) << ran.out << ran.err;

  mmr::Store store(db, mmr::Store::Mode::ReadOnly);
  const auto loss = store.query("SELECT step, value FROM metrics WHERE name = 'train/loss' ORDER BY step");
  ASSERT_EQ(loss.rows.size(), 6u);
  EXPECT_LT(std::stod(loss.rows.back()[1].text), std::stod(loss.rows.front()[1].text) * 0.9)
      << "6 SGD steps should lower the LM loss of 4 rows";
  bool adapter = false;
  for (const auto& e : fs::recursive_directory_iterator(dir_))
    if (e.path().filename() == "adapter_model.safetensors") adapter = true;
  EXPECT_TRUE(adapter) << "no PEFT adapter written under " << dir_;
}

}  // namespace
