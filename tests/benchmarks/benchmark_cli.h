// What the benchmark end-to-end suites share: a fresh folder and results database per test, the real runner with
// the build's plugins (and any extra plugin folder), `runner score ... --format json` as a metric map, the final
// metrics and the artifacts stages recorded, and JSON-lines logs read back.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "process.h"

namespace mmr::test {

class BenchmarkCli : public ::testing::Test {
 protected:
  // `prefix` names the temporary folders; `extra_plugins` are folders given as further --plugin-path.
  explicit BenchmarkCli(std::string prefix, std::vector<std::string> extra_plugins = {})
      : prefix_(std::move(prefix)), extra_plugins_(std::move(extra_plugins)) {}

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           (prefix_ + "_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_ = (dir_ / "results" / "r.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ProcessResult runner(const std::vector<std::string>& rest) {
    std::vector<std::string> argv = {(std::filesystem::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string(),
                                     "--results", db_, "--plugin-path",
                                     (std::filesystem::path(MMR_TEST_BINARY_DIR) / "plugins").string()};
    for (const auto& p : extra_plugins_) argv.insert(argv.end(), {"--plugin-path", p});
    argv.insert(argv.end(), rest.begin(), rest.end());
    return run(argv);
  }

  // `runner score <args> --format json` → metric name → value; fails the test on a non-zero exit (its stderr in `err`).
  std::map<std::string, double> score(std::vector<std::string> args, std::string* err = nullptr) {
    args.insert(args.begin(), "score");
    args.insert(args.end(), {"--format", "json"});
    const ProcessResult r = runner(args);
    EXPECT_EQ(r.status, 0) << r.err;
    if (err) *err = r.err;
    std::map<std::string, double> out;
    if (r.status != 0) return out;
    for (const auto& row : nlohmann::json::parse(r.out))
      out[row.at("metric").get<std::string>()] = row.at("value").get<double>();
    return out;
  }

  // stage -> metric -> value (final metrics of the newest attempt).
  std::map<std::string, std::map<std::string, double>> all_stage_metrics() {
    const ProcessResult q = runner({"query", "SELECT stage, name, value FROM final_metrics", "--format", "json"});
    EXPECT_EQ(q.status, 0) << q.err;
    std::map<std::string, std::map<std::string, double>> out;
    for (const auto& row : nlohmann::json::parse(q.out)) out[row["stage"]][row["name"]] = row["value"].get<double>();
    return out;
  }

  // artifact name -> path, over every stage.
  std::map<std::string, std::string> artifacts() {
    const ProcessResult q = runner({"query", "SELECT name, path FROM artifacts ORDER BY 1", "--format", "json"});
    EXPECT_EQ(q.status, 0) << q.err;
    std::map<std::string, std::string> out;
    for (const auto& a : nlohmann::json::parse(q.out)) out[a.at("name").get<std::string>()] = a.at("path").get<std::string>();
    return out;
  }

  // One JSON value per line (a stub plugin's log); none when the file does not exist.
  static std::vector<nlohmann::json> json_lines(const std::string& path) {
    std::vector<nlohmann::json> rows;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) rows.push_back(nlohmann::json::parse(line));
    return rows;
  }

  std::string write(const std::string& name, const std::string& text) {
    const std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  std::filesystem::path dir_;
  std::string db_;

 private:
  std::string prefix_;
  std::vector<std::string> extra_plugins_;
};

// The process failed with exit code 2 (a usage error) and stderr mentions every piece.
inline void expect_usage_error(const ProcessResult& r, std::initializer_list<std::string> pieces) {
  EXPECT_EQ(r.status, 2) << r.err;
  for (const auto& p : pieces) EXPECT_NE(r.err.find(p), std::string::npos) << "missing '" << p << "' in: " << r.err;
}

}  // namespace mmr::test
