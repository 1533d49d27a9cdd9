// What the report and status suites share: a fresh folder per test with a results database path in it, the real
// runner binary with the good test plugins, and reading the store the runner wrote.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/store.h"
#include "process.h"
#include "test_dir.h"

namespace mmr::test {

inline const std::string kRunner = (std::filesystem::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
inline const std::string kGoodPlugins =
    (std::filesystem::path(MMR_TEST_BINARY_DIR) / "tests" / "test_plugins" / "good").string();

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_test_dir();
    db_ = (dir_ / "results" / "r.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // The runner's command line with this test's database and the test plugins, then `rest`.
  std::vector<std::string> args(const std::vector<std::string>& rest) const {
    std::vector<std::string> a = {kRunner, "--results", db_, "--plugin-path", kGoodPlugins};
    a.insert(a.end(), rest.begin(), rest.end());
    return a;
  }
  ProcessResult runner(const std::vector<std::string>& rest) const { return run(args(rest)); }
  QueryResult query(const std::string& sql) const { return Store(db_, Store::Mode::ReadOnly).query(sql); }
  // Writes to the store the runner wrote (rows a plugin of the tests does not log, say).
  void exec(const std::string& sql) const { Store(db_).exec(sql); }

  std::filesystem::path dir_;
  std::string db_;
};

}  // namespace mmr::test
