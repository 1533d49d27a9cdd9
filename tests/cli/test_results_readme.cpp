// results/README.md's examples, run as written: every `runner ...` command of its ```sh blocks goes through
// /bin/sh, in a folder whose results/results.db (the default --results) holds a small real experiment named like
// the main job (ablation): a DPO stage training the tiny LLaVA fixture on preference pairs, a share of them
// flipped, over two noise levels and two seeds, and one point whose data file is missing, so a trial fails. Each
// command must succeed and print at least one row, so a query naming a metric that does not exist fails the test.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "process.h"

namespace fs = std::filesystem;
using mmr::test::ProcessResult;

namespace {

const fs::path kFixture = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
const fs::path kBin = fs::path(MMR_TEST_BINARY_DIR) / "bin";

// Pairs whose chosen and rejected replies differ in style, half of them with an image of the fixture.
std::string preference_rows(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    nlohmann::json row = {{"id", "p" + std::to_string(i)},
                          {"chosen", {{"from", "gpt"}, {"value", "The answer is " + std::to_string(i % 5) + "."}}},
                          {"rejected", {{"from", "gpt"}, {"value", "zzz qqq " + std::to_string(i % 3)}}}};
    if (i % 2 == 0) {
      row["image"] = (kFixture / "images" / "wide.png").string();
      row["question"] = {{"from", "human"}, {"value", "<image>\nWhat is in picture " + std::to_string(i) + "?"}};
    } else {
      row["question"] = {{"from", "human"}, {"value", "Tell me about item " + std::to_string(i) + "."}};
    }
    out += row.dump() + "\n";
  }
  return out;
}

std::string experiment(const fs::path& dir) {
  return "name: ablation\n"
         "defaults: {noise: 0.0, pairs: " + (dir / "pairs.jsonl").string() + "}\n"
         "grid: {noise: [0.0, 0.5]}\n"
         "include: [{pairs: " + (dir / "broken.jsonl").string() + "}]   # fails: for the failures example\n"
         "seeds: [1, 2]\n"
         "stages:\n"
         "  - name: train\n"
         "    algorithm: dpo\n"
         "    data: {plugin: preference, file: \"${pairs}\", transforms: [{flip_fraction: \"${noise}\"}]}\n"
         "    model: {plugin: llava, path: " + (kFixture / "model").string() + ", lora_r: 4, lora_alpha: 8}\n"
         "    batch_size: 4\n    grad_accum: 1\n    epochs: 1\n    lr: 1.0e-3\n    warmup_ratio: 0\n";
}

// The commands of the ```sh blocks: a line starting with `runner ` and the lines after it until its quotes close.
std::vector<std::string> readme_commands(const fs::path& readme) {
  std::ifstream in(readme);
  std::vector<std::string> out;
  bool in_block = false;
  std::string command;
  char quote = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("```", 0) == 0) {
      in_block = line == "```sh";
      continue;
    }
    if (!in_block || (command.empty() && line.rfind("runner ", 0) != 0)) continue;
    command += (command.empty() ? "" : "\n") + line;
    for (char c : line)
      if ((c == '\'' || c == '"') && (quote == 0 || quote == c)) quote = quote ? 0 : c;
    if (quote == 0) {
      out.push_back(command);
      command.clear();
    }
  }
  EXPECT_TRUE(command.empty()) << "unclosed quote in: " << command;
  return out;
}

// The rows a command printed in the format it asked for (table, csv or json).
size_t rows_printed(const std::string& command, const std::string& out) {
  if (command.find("--format json") != std::string::npos) return nlohmann::json::parse(out).size();
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  if (command.find("--format csv") != std::string::npos) return lines.empty() ? 0 : lines.size() - 1;
  size_t rows = 0;  // a table: the lines under the first rule (a folded table's blocks hold the same rows)
  for (size_t i = 2; i < lines.size() && !lines[i].empty() && lines[i] != "(no rows)"; ++i) ++rows;
  return rows;
}

}  // namespace

TEST(ResultsReadme, EveryExampleRunsAndPrintsRows) {
  const fs::path dir = fs::temp_directory_path() / ("mmr_results_readme_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "pairs.jsonl") << preference_rows(8);
  std::ofstream(dir / "broken.jsonl") << "{not a row\n";  // exists (plan checks that), but the stage fails on it
  std::ofstream(dir / "ablation.yaml") << experiment(dir);
  // As a user runs them: `runner` on the PATH, in a folder where results/results.db is the default database.
  const std::map<std::string, std::string> env = {{"PATH", kBin.string() + ":" + std::getenv("PATH")}};
  auto shell = [&](const std::string& command) {
    return mmr::test::run({"/bin/sh", "-c", "cd \"$0\" && " + command, dir.string()}, env);
  };
  const ProcessResult run = shell("runner ablation.yaml");
  ASSERT_EQ(run.status, 1) << "expected one failed point:\n" << run.err;  // the broken data file, both seeds
  ASSERT_TRUE(fs::exists(dir / "results" / "results.db"));

  const std::vector<std::string> commands = readme_commands(fs::path(MMR_SOURCE_DIR) / "results" / "README.md");
  ASSERT_GE(commands.size(), 8u);
  for (const std::string& command : commands) {
    const ProcessResult r = shell(command);
    EXPECT_EQ(r.status, 0) << command << "\n" << r.err;
    EXPECT_GE(rows_printed(command, r.out), 1u) << "no rows from:\n" << command << "\n" << r.out << r.err;
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(dir);
}
