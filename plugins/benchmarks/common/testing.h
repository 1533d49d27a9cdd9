// What the benchmark scorers' tests (plugins/benchmarks/*/tests/) and the end-to-end `runner score` suite
// (tests/benchmarks/) share: reading and writing small files, looking up a metric, expecting an error, and checking
// a table of reference values. Header-only, GoogleTest only; not part of any plugin.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <initializer_list>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/api/error.h"
#include "core/api/metrics.h"

namespace mmr::benchmarks::testing {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A path in GoogleTest's temporary folder, prefixed with the running test's suite name, so that test programs
// running at the same time (ctest -j) never share a file.
inline std::string temp_path(const std::string& name) {
  const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
  return ::testing::TempDir() + (test ? std::string(test->test_suite_name()) + "_" : "") + name;
}

inline std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = temp_path(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// The value of metric `name`; a test failure (and -1) when there is none.
inline double metric(const MetricList& list, const std::string& name) {
  for (const auto& m : list)
    if (m.name == name) return m.value;
  ADD_FAILURE() << "no metric " << name;
  return -1;
}
inline double metric(const std::map<std::string, double>& values, const std::string& name) {
  auto it = values.find(name);
  if (it != values.end()) return it->second;
  std::string have;
  for (const auto& [k, v] : values) have += " " + k;
  ADD_FAILURE() << "no metric '" << name << "'; have:" << have;
  return -1;
}

// A metric and the value the official script gives for it (a hand-computed reference).
using Expected = std::vector<std::pair<std::string, double>>;

// Every expected metric is there, equal to the reference within 4 ULPs (EXPECT_DOUBLE_EQ).
template <typename Metrics>
void expect_metrics(const Metrics& got, const Expected& expected) {
  for (const auto& [name, value] : expected) EXPECT_DOUBLE_EQ(metric(got, name), value) << name;
}
// Every expected count is there, exactly.
template <typename Metrics>
void expect_counts(const Metrics& got, const Expected& expected) {
  for (const auto& [name, value] : expected) EXPECT_EQ(metric(got, name), value) << name;
}

// The `name` of every item, in order (columns, categories, splits).
template <typename Items>
void expect_names(const Items& items, const std::vector<std::string>& names) {
  std::vector<std::string> got;
  for (const auto& item : items) got.push_back(item.name);
  EXPECT_EQ(got, names);
}

// `fn` throws an `E` whose message contains every piece.
template <typename E, typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> pieces) {
  try {
    fn();
    ADD_FAILURE() << "expected an exception";
  } catch (const E& e) {
    for (const auto& p : pieces) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}
template <typename Fn>
void expect_data_error(Fn fn, std::initializer_list<std::string> pieces) {
  expect_error<DataError>(fn, pieces);
}

}  // namespace mmr::benchmarks::testing
