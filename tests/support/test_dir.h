// The per-test folder the runner-driven fixtures share (RunnerTest, PipelineTest).
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace mmr::test {

// A new, empty folder for the running test: <tmp>/mmr_<suite>_<pid>_<test> (the pid keeps parallel ctest runs of one
// test binary apart).
inline std::filesystem::path fresh_test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("mmr_" + std::string(info->test_suite_name()) + "_" + std::to_string(getpid()) + "_" + info->name());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace mmr::test
