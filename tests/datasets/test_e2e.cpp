// End to end: a `dataset: preference` stage with a grid over flip_fraction run by the real runner binary, then the
// recorded metrics and the rows.jsonl artifact checked against the input; on_bad_row: fail recorded as a failed
// trial naming file:row and reason; scored_candidates + build_pairs as a stage; and the provider interface an
// algorithm uses, through a plugin loaded by the registry.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/api/dataset_api.h"
#include "core/registry.h"
#include "core/store.h"
#include "process.h"

namespace fs = std::filesystem;
using namespace mmr;
using nlohmann::json;

namespace {

const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const fs::path kPlugins = fs::path(MMR_TEST_PLUGIN_DIR) / "datasets";
const fs::path kFixture = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";

class DatasetE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mmr_data_e2e_" + std::to_string(getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "results" / "r.db").string();
    // Eight good pairs (the fixture's four, twice, with new ids), one without `chosen`, one with a missing image.
    std::ifstream in(kFixture / "expected" / "preference_logps.jsonl");
    std::ofstream out(dir_ / "prefs.jsonl");
    std::string line;
    std::vector<json> rows;
    while (std::getline(in, line)) rows.push_back(json::parse(line));
    for (int copy = 0; copy < 2; ++copy)
      for (auto row : rows) {
        row["id"] = "pair_" + std::to_string(inputs_.size());
        inputs_[row["id"].get<std::string>()] = row;
        out << row.dump() << "\n";
        if (inputs_.size() == 3) out << R"({"id": "no_chosen", "question": "q", "rejected": "r"})" << "\n";
      }
    json missing = rows[0];
    missing["id"] = "missing_image";
    missing["image"] = "not_there.png";
    out << missing.dump() << "\n";
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  test::ProcessResult runner(std::vector<std::string> rest) {
    std::vector<std::string> a = {kRunner, "--results", db_, "--plugin-path", kPlugins.string()};
    a.insert(a.end(), rest.begin(), rest.end());
    return test::run(a);
  }
  std::vector<std::vector<std::string>> query(const std::string& sql) {
    Store s(db_, Store::Mode::ReadOnly);
    std::vector<std::vector<std::string>> out;
    for (const auto& row : s.query(sql).rows) {
      out.emplace_back();
      for (const auto& cell : row) out.back().push_back(cell.text);
    }
    return out;
  }
  std::string metric(const std::string& label, const std::string& name) {
    const auto r = query("SELECT f.value FROM final_metrics f JOIN trials t ON t.id = f.trial_id WHERE t.label = '" +
                         label + "' AND f.stage = 'data' AND f.name = '" + name + "'");
    return r.empty() ? "<none>" : r[0][0];
  }
  std::vector<json> artifact_rows(const std::string& label, const std::string& name) {
    const auto r = query("SELECT a.path FROM artifacts a JOIN trials t ON t.id = a.trial_id WHERE t.label = '" + label +
                         "' AND a.stage = 'data' AND a.name = '" + name + "'");
    std::vector<json> rows;
    if (r.empty()) return rows;
    std::ifstream in(r[0][0]);
    for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
    return rows;
  }

  fs::path dir_;
  std::string db_;
  std::map<std::string, json> inputs_;
};

std::string spec(const fs::path& dir, const std::string& on_bad_row) {
  return R"(name: data_noising
grid:
  flip: [0.0, 0.25, 0.5]
stages:
  - name: data
    dataset: preference
    file: )" + (dir / "prefs.jsonl").string() + R"(
    image_folder: )" + (kFixture / "images").string() + R"(
    on_bad_row: )" + on_bad_row + R"(
    transforms:
      - flip_fraction: ${flip}
)";
}

}  // namespace

TEST_F(DatasetE2e, FlipFractionGridRecordsCountsAndWritesTheRows) {
  const auto r = runner({write("exp.yaml", spec(dir_, "skip"))});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(query("SELECT count(*) FROM trials WHERE status = 'finished'")[0][0], "3");
  std::set<std::string> previous;
  for (const auto& [label, flipped] : std::vector<std::pair<std::string, int>>{{"flip=0.0", 0}, {"flip=0.25", 2}, {"flip=0.5", 4}}) {
    EXPECT_EQ(metric(label, "rows_read"), "10.0") << label;
    EXPECT_EQ(metric(label, "rows_kept"), "8.0") << label;
    EXPECT_EQ(metric(label, "rows_skipped"), "2.0") << label;
    EXPECT_EQ(metric(label, "skipped/missing_field"), "1.0") << label;
    EXPECT_EQ(metric(label, "skipped/missing_image"), "1.0") << label;
    EXPECT_EQ(metric(label, "flipped"), std::to_string(flipped) + ".0") << label;

    const auto rows = artifact_rows(label, "rows");
    ASSERT_EQ(rows.size(), 8u) << label;
    std::set<std::string> flipped_ids;
    for (const auto& row : rows) {
      const json& in = inputs_.at(row["id"].get<std::string>());
      const bool f = row["flipped"].get<bool>();
      if (f) flipped_ids.insert(row["id"].get<std::string>());
      const char* chosen = f ? "rejected" : "chosen";
      const char* win = f ? "ref_rej_logp" : "ref_win_logp";
      const char* rej = f ? "ref_win_logp" : "ref_rej_logp";
      EXPECT_EQ(row["chosen"]["value"], in[chosen]["value"]) << label << " " << row["id"];
      EXPECT_EQ(row["ref_win_logp"], in[win]);
      EXPECT_EQ(row["ref_rej_logp"], in[rej]);
      EXPECT_EQ(row["ref_win_per_token_logp"], in[f ? "ref_rej_per_token_logp" : "ref_win_per_token_logp"]);
      EXPECT_EQ(row["win_input_ids"], in[f ? "rej_input_ids" : "win_input_ids"]);
      EXPECT_EQ(row["prompt"][0]["value"], in["question"]["value"]);
    }
    EXPECT_EQ(flipped_ids.size(), static_cast<size_t>(flipped));
    EXPECT_TRUE(std::includes(flipped_ids.begin(), flipped_ids.end(), previous.begin(), previous.end())) << label;
    previous = flipped_ids;

    const auto bad = artifact_rows(label, "bad_rows");
    ASSERT_EQ(bad.size(), 2u);
    EXPECT_EQ(bad[0]["row"], 4);
    EXPECT_EQ(bad[0]["reason"], "missing_field");
    EXPECT_EQ(bad[1]["row"], 10);
    EXPECT_EQ(bad[1]["reason"], "missing_image");
  }
  // A rerun reproduces the same rows (the flip draw is seeded).
  const auto first = artifact_rows("flip=0.25", "rows");
  ASSERT_EQ(runner({dir_ / "exp.yaml", "--force"}).status, 0);
  EXPECT_EQ(artifact_rows("flip=0.25", "rows"), first);
}

TEST_F(DatasetE2e, FailOnBadRowFailsTheTrialNamingFileRowAndReason) {
  const auto r = runner({write("exp.yaml", spec(dir_, "fail"))});
  EXPECT_EQ(r.status, 1);
  const std::string error = query("SELECT error FROM trials WHERE label = 'flip=0.0'")[0][0];
  EXPECT_NE(error.find("dataset plugin 'preference'"), std::string::npos) << error;
  EXPECT_NE(error.find((dir_ / "prefs.jsonl").string() + ":4: missing_field: missing field 'chosen'"), std::string::npos) << error;
}

TEST_F(DatasetE2e, ScoredCandidatesBuildPairsAsAStage) {
  std::ofstream(dir_ / "scored.jsonl")
      << R"({"id": "g1", "question": "2+2?", "candidates": [{"response": "4", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 1, "Verbosity": 1}}, {"response": "5", "scores": {"Helpfulness": 2, "Correctness": 0, "Coherence": 4, "Complexity": 1, "Verbosity": 1}}]}
{"id": "g2", "question": "3+3?", "candidates": [{"response": "6", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 4, "Complexity": 1, "Verbosity": 1}}, {"response": "six", "scores": {"Helpfulness": 4, "Correctness": 4, "Coherence": 3, "Complexity": 1, "Verbosity": 1}}]}
)";
  const auto r = runner({write("exp.yaml", "name: pairs\nstages:\n  - {name: data, dataset: scored_candidates, file: " +
                                               (dir_ / "scored.jsonl").string() + ", transforms: [build_pairs]}\n")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(query("SELECT value FROM final_metrics WHERE name = 'pairs_built'")[0][0], "1.0");
  EXPECT_EQ(query("SELECT value FROM final_metrics WHERE name = 'groups_skipped/small_spread'")[0][0], "1.0");
  const auto rows = query("SELECT path FROM artifacts WHERE name = 'rows'");
  std::ifstream in(rows[0][0]);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const json pair = json::parse(line);
  EXPECT_EQ(pair["chosen"]["value"], "4");
  EXPECT_EQ(pair["rejected"]["value"], "5");
  EXPECT_FALSE(std::getline(in, line));
}

TEST_F(DatasetE2e, AlgorithmsGetRowsThroughTheProviderInterface) {
  Registry registry;
  registry.scan(kPlugins);
  YAML::Node opts;
  opts["file"] = (dir_ / "prefs.jsonl").string();
  opts["image_folder"] = (kFixture / "images").string();
  opts["on_bad_row"] = "skip";
  std::shared_ptr<Plugin> plugin = registry.create(PluginKind::Dataset, "preference", opts, "test");
  DatasetProvider& provider = dataset_provider(*plugin);
  EXPECT_TRUE(provider.provides(RowKind::Preference));
  std::map<std::string, double> metrics;
  DataContext ctx;
  ctx.seed = 1;
  ctx.metric = [&](const std::string& n, double v) { metrics[n] = v; };
  const std::vector<PreferenceRow> rows = provider.preference_rows(ctx);
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(rows[0].id, "pair_0");
  EXPECT_EQ(*rows[0].ref_win_logp, inputs_.at("pair_0")["ref_win_logp"].get<double>());
  EXPECT_EQ(metrics.at("rows_skipped"), 2);
  try {
    provider.conversation_rows(ctx);
    ADD_FAILURE();
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "this dataset provides preference rows, not conversation rows");
  }
}

TEST_F(DatasetE2e, SyntheticWorldAsAStageAndAsAProvider) {
  if (!fs::exists(kPlugins / "libsynthetic.so")) GTEST_SKIP() << "synthetic plugin not built";
  const std::string config =
      "{image_size: 168, num_train_images: 6, num_eval_images: 2, num_text_tasks: 6, num_eval_text_tasks: 1}";
  const auto r = runner({write("exp.yaml", "name: synth\nseeds: [4]\nstages:\n  - {name: data, dataset: synthetic, config: " +
                                               config + ", transforms: [{fraction: 0.5}]}\n")});
  ASSERT_EQ(r.status, 0) << r.err;
  auto value = [&](const std::string& name) {
    const auto v = query("SELECT value FROM final_metrics WHERE stage = 'data' AND name = '" + name + "'");
    return v.empty() ? -1.0 : std::stod(v[0][0]);
  };
  const double pairs = value("world/pairs/pairs");
  EXPECT_GT(pairs, 0);
  EXPECT_EQ(value("rows_read"), pairs);
  EXPECT_EQ(value("rows_skipped"), 0);
  EXPECT_EQ(value("rows_kept"), std::floor(pairs / 2 + 0.5));  // round half up
  const auto path = query("SELECT path FROM artifacts WHERE name = 'rows'")[0][0];
  std::ifstream in(path);
  int n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const json row = json::parse(line);
    for (const auto& img : row["images"]) EXPECT_TRUE(fs::exists(img.get<std::string>())) << img;
    if (!row["images"].empty()) {
      EXPECT_EQ(row["prompt"][0]["value"].get<std::string>().rfind("<image>\n", 0), 0u);
    }
  }
  EXPECT_EQ(n, value("rows_kept"));

  // As a component: the same config and seed give the same pairs (before the fraction) in a folder of our own.
  Registry registry;
  registry.scan(kPlugins);
  YAML::Node opts = YAML::Load("{config: " + config + ", rows: conversation}");
  opts["dir"] = (dir_ / "world").string();
  auto plugin = registry.create(PluginKind::Dataset, "synthetic", opts, "test");
  DataContext ctx;
  ctx.seed = 4;
  const auto conversations = dataset_provider(*plugin).conversation_rows(ctx);
  EXPECT_GT(conversations.size(), 6u);
  EXPECT_TRUE(fs::exists(dir_ / "world" / "manifest.json"));
}

// Without `dir`, a component's world goes to the user's cache ($XDG_CACHE_HOME/mmrunner/synthetic), never to a
// fixed name under /tmp; a cache folder others may write to is refused, naming it.
TEST_F(DatasetE2e, SyntheticWorldsAreCachedInTheUsersCacheFolderOnly) {
  if (!fs::exists(kPlugins / "libsynthetic.so")) GTEST_SKIP() << "synthetic plugin not built";
  const char* old = std::getenv("XDG_CACHE_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_CACHE_HOME", (dir_ / "cache").c_str(), 1);
  Registry registry;
  registry.scan(kPlugins);
  const YAML::Node opts = YAML::Load("{config: {image_size: 168, num_train_images: 2, num_eval_images: 1, "
                                     "num_text_tasks: 2, num_eval_text_tasks: 1}, rows: conversation}");
  auto plugin = registry.create(PluginKind::Dataset, "synthetic", opts, "test");
  DataContext ctx;
  ctx.seed = 4;
  EXPECT_GT(dataset_provider(*plugin).conversation_rows(ctx).size(), 0u);
  const fs::path cache = dir_ / "cache" / "mmrunner" / "synthetic";
  int worlds = 0;
  for (const auto& entry : fs::directory_iterator(cache)) worlds += fs::exists(entry.path() / "manifest.json");
  EXPECT_EQ(worlds, 1);
  fs::permissions(cache, fs::perms::others_write, fs::perm_options::add);
  try {
    dataset_provider(*plugin).conversation_rows(ctx);
    ADD_FAILURE() << "a world cache others may write to was used";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find(cache.string()), std::string::npos) << e.what();
  }
  if (old) setenv("XDG_CACHE_HOME", saved.c_str(), 1); else unsetenv("XDG_CACHE_HOME");
}
