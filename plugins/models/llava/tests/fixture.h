// Helpers the tests share that read the HF reference fixture (tests/data/tiny-llava, or the directory in
// LLAVA_REFERENCE_DIR: any fixture of the same layout). MMR_TEST_DEVICE=cuda runs on the GPU with tolerances x10.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "core/lib/safetensors/safetensors.h"
#include "llava.h"

namespace llava_fixture {

namespace fs = std::filesystem;
namespace st = mmr::safetensors;
using mmr::llava::LlavaModel;
using mmr::llava::LlavaOptions;
using json = nlohmann::json;


inline fs::path fixture() {
  const char* env = std::getenv("LLAVA_REFERENCE_DIR");
  return env && *env ? fs::path(env) : fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
}

inline std::string device() {
  const char* env = std::getenv("MMR_TEST_DEVICE");
  return env && *env ? env : "cpu";
}

inline double scale() { return device() == "cpu" ? 1.0 : 10.0; }  // GPU float32: tolerances x10

inline std::vector<json> read_jsonl(const fs::path& p) {
  std::ifstream in(p);
  EXPECT_TRUE(in.good()) << p;
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

inline torch::Tensor expected(const st::SafetensorsFile& f, const std::string& name) {
  const auto& info = f.info(name);
  std::vector<float> v = f.to_float32(name);
  return torch::from_blob(v.data(), info.shape, torch::kFloat32).clone();
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kFloat32) - b.to(torch::kCPU, torch::kFloat32)).abs().max().item<double>();
}

inline LlavaOptions base_options(const std::string& dtype = "float32") {
  LlavaOptions o;
  o.path = (fixture() / "model").string();
  o.device = device();
  o.dtype = dtype;
  return o;
}

// A fixture row ("messages": [[role, text], ...] or LLaVA's from/value form) as a ChatSample.
inline mmr::ChatSample sample_of(const json& row) {
  mmr::ChatSample s;
  for (const auto& m : row["messages"]) {
    const std::string role = m[0].get<std::string>() == "USER" ? "human" : "gpt";
    s.turns.push_back({role, m[1].get<std::string>()});
  }
  if (row.contains("image") && row["image"].is_string())
    s.images.push_back((fixture() / "images" / row["image"].get<std::string>()).string());
  return s;
}

inline mmr::ChatSample pair_sample(const json& row, const char* side) {
  mmr::ChatSample s;
  s.turns.push_back({"human", row["question"]["value"].get<std::string>()});
  s.turns.push_back({"gpt", row[side]["value"].get<std::string>()});
  if (row.contains("image") && row["image"].is_string())
    s.images.push_back((fixture() / "images" / row["image"].get<std::string>()).string());
  return s;
}

}  // namespace llava_fixture
