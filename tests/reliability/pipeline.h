// What the reliability suites share: a small real experiment pipeline on the tiny fixture model (CPU) —
// data -> reference log-probs -> DPO with a checkpoint every step -> LLaVA-Bench (generation with the trained
// adapter, then the real openai_compatible judge against a loopback ChatServer) — run through the runner binary,
// and what a run leaves that must not depend on how often it was interrupted (its Outcome).
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "core/lib/util/sha256.h"
#include "core/store.h"
#include "process.h"
#include "test_dir.h"
#include "tests/benchmarks/chat_server.h"

namespace mmr::test {

namespace pipeline {

inline const std::string kRunner = (std::filesystem::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
inline const std::filesystem::path kFixture = std::filesystem::path(MMR_TEST_DATA_DIR) / "tiny-llava";
inline const std::filesystem::path kBench = std::filesystem::path(MMR_TEST_DATA_DIR) / "benchmarks" / "llava_bench";

// Text-only pairs whose chosen and rejected replies differ in style (an image is 576 positions to the tiny model:
// the campaign's many runs stay short; the benchmark shows the model its image).
inline std::string preference_rows(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    nlohmann::json row = {{"id", "p" + std::to_string(i)},
                          {"chosen", {{"from", "gpt"}, {"value", "The answer is " + std::to_string(i) + "."}}},
                          {"rejected", {{"from", "gpt"}, {"value", "zzz qqq " + std::to_string(i)}}}};
    row["question"] = {{"from", "human"}, {"value", "What is item " + std::to_string(i) + "?"}};
    out += row.dump() + "\n";
  }
  return out;
}

// A deterministic reviewer: two scores that depend on the prompt, as eval_gpt_review_bench.py's parser reads them.
inline std::string review(const nlohmann::json& body) {
  const size_t n = ChatServer::last_message(body).size();
  return std::to_string(6 + n % 4) + " " + std::to_string(3 + n % 5) + "\nAssistant 2 is brief.";
}

// What must not depend on interruptions: every metric of the trial's latest attempt (final values and the step
// series, timings left out; the judge's cache counters differ by design), each artifact's hash, the adapter's bytes.
struct Outcome {
  std::string status;
  std::map<std::string, std::string> metrics;    // "stage/name@step" -> value with 17 significant digits
  std::map<std::string, std::string> artifacts;  // "stage/name" -> sha256
  std::string adapter;                           // sha256 of adapter_model.safetensors
};

// The newest trial's (the experiment file may have changed between runs: a fault test's new judge).
inline Outcome outcome_of(const std::filesystem::path& db) {
  Outcome o;
  Store s(db, Store::Mode::ReadOnly);
  const std::string newest = " AND t.id = (SELECT max(id) FROM trials)";
  o.status = s.query("SELECT status FROM trials t WHERE 1" + newest).rows.at(0).at(0).text;
  const auto metrics = s.query(
      "SELECT m.stage || '/' || m.name || '@' || coalesce(m.step, -1), printf('%!.17g', m.value) FROM metrics m JOIN "
      "trials t ON t.id = m.trial_id AND m.attempt = t.attempt WHERE m.name NOT LIKE '%per_s' AND m.name NOT IN "
      "('judge/sent', 'judge/cache_hits')" + newest);
  for (const auto& row : metrics.rows) o.metrics[row[0].text] = row[1].text;
  const auto artifacts = s.query("SELECT a.stage || '/' || a.name, a.sha256, a.path FROM artifacts a JOIN trials t ON "
                                 "t.id = a.trial_id AND a.attempt = t.attempt WHERE 1" + newest);
  for (const auto& row : artifacts.rows) {
    o.artifacts[row[0].text] = row[1].text;
    if (row[0].text == "train/adapter") o.adapter = sha256_file(std::filesystem::path(row[2].text) / "adapter_model.safetensors");
  }
  return o;
}

inline void expect_same(const Outcome& got, const Outcome& want) {
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.metrics.size(), want.metrics.size());
  for (const auto& [name, value] : want.metrics) {
    const auto it = got.metrics.find(name);
    if (it == got.metrics.end()) ADD_FAILURE() << "metric " << name << " is missing";
    else EXPECT_EQ(it->second, value) << "metric " << name;
  }
  for (const auto& [name, _] : got.metrics)
    if (!want.metrics.count(name)) ADD_FAILURE() << "metric " << name << " is new";
  EXPECT_EQ(got.artifacts, want.artifacts);
  EXPECT_EQ(got.adapter, want.adapter);
  EXPECT_FALSE(want.adapter.empty());
}

// Files a crash may leave half-written: temporaries of atomic writes, a checkpoint step or adapter folder still
// under its .tmp name, the reference log-probs' partial file.
inline std::vector<std::string> leftovers(const std::filesystem::path& root) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec); it != std::filesystem::recursive_directory_iterator();
       ++it) {
    const std::string name = it->path().filename().string();
    if ((name.size() > 4 && name.substr(name.size() - 4) == ".tmp") || name.find(".tmp.") != std::string::npos ||
        name.find(".partial.") != std::string::npos)
      out.push_back(std::filesystem::relative(it->path(), root).string());
  }
  return out;
}

}  // namespace pipeline

// A fresh folder per test with the pipeline's experiment file in it; the results database in <dir>/work.
class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = mmr::test::fresh_test_dir();
    std::filesystem::create_directories(dir_ / "images");
    // The tiny model sees the fixture image under the name LLaVA-Bench's first questions use.
    std::filesystem::copy_file(pipeline::kFixture / "images" / "tall.jpg", dir_ / "images" / "001.jpg");
    std::ofstream(dir_ / "pairs.jsonl") << pipeline::preference_rows(4);
    work_ = dir_ / "work";
    db_ = work_ / "r.db";
  }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }

  // The experiment; `judge_extra`: more options of the judge map.
  std::string write_spec(const ChatServer& server, const std::string& judge_extra = "") {
    const std::string model = "{plugin: llava, path: " + (pipeline::kFixture / "model").string();
    const std::string text =
        "name: kill\nseeds: [3]\nstages:\n"
        "  - {name: data, dataset: preference, file: " + (dir_ / "pairs.jsonl").string() + "}\n"
        "  - {name: ref, algorithm: reference_logps, data: '${artifact:data/rows}', batch_size: 1, model: " + model +
        "}}\n"
        "  - name: train\n    algorithm: dpo\n    data: ${artifact:ref/rows}\n"
        "    model: " + model + ", lora_r: 4, lora_alpha: 8, train_projector: true, seed: 5}\n"
        "    lr: 2.0e-3\n    projector_lr: 2.0e-3\n    batch_size: 2\n    grad_accum: 1\n    max_steps: 3\n"
        "    scheduler: constant\n    warmup_ratio: 0\n    save_every: 1\n"
        "  - {name: bench, benchmark: llava_bench, questions: " + (pipeline::kBench / "questions.jsonl").string() +
        ", context: " + (pipeline::kBench / "context.jsonl").string() + ", reference_answers: " +
        (pipeline::kBench / "answers_gpt4.jsonl").string() + ", rules: " + (pipeline::kBench / "rule.json").string() +
        ", image_folder: " + (dir_ / "images").string() + ", limit: 3, batch_size: 1, max_new_tokens: 3, model: " +
        model + ", adapter: '${artifact:train/adapter}'}, judge: {plugin: openai_compatible, base_url: '" +
        server.base_url() + "', max_retries: 0, timeout_s: 5" + judge_extra + "}}\n";
    spec_ = (dir_ / "exp.yaml").string();
    std::ofstream(spec_) << text;
    return spec_;
  }
  ProcessResult runner(const std::string& kill_at = "", std::vector<std::string> extra = {}) const {
    std::vector<std::string> argv = {pipeline::kRunner, "--results", db_.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(spec_);
    return run(argv, kill_at.empty() ? std::map<std::string, std::string>{}
                                     : std::map<std::string, std::string>{{"MMR_KILL_AT", kill_at}});
  }

  std::filesystem::path dir_, work_, db_;
  std::string spec_;
};

}  // namespace mmr::test
