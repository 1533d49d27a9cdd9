// `runner status` end to end: polled from the test while a real run goes on (its running stage's step comes from
// the progress file the stage's progress bar rewrites), after the run ends, after the run is killed (stale), and
// on bad input; and the ProgressFile hook of core/log.h on its own.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <chrono>
#include <thread>

#include "core/lib/util/atomic_file.h"
#include "core/log.h"
#include "runner_fixture.h"

namespace fs = std::filesystem;
using namespace mmr;
using mmr::test::Process;
using mmr::test::ProcessResult;
using nlohmann::json;

namespace {

// A quick trial first (so the run has a finished trial to time), then one of 40 steps of 150 ms.
constexpr const char* kSlowSpec = R"(name: slow
grid: {t.steps: [2, 40]}
stages:
  - {name: t, algorithm: counter, sleep_ms: 150}
)";

class Status : public mmr::test::RunnerTest {
 protected:
  // `runner status slow` as JSON; null when it fails, which only a poll before the run has recorded the
  // experiment (`polling`) may see.
  json status_json(bool polling = false) {
    const ProcessResult r = runner({"status", "slow", "--format", "json"});
    if (!polling) {
      EXPECT_EQ(r.status, 0) << r.err;
    }
    return r.status == 0 ? json::parse(r.out).at(0) : json();
  }
  // Polls `runner status` (up to 30 s) until the running trial of 40 steps has reported a step; returns that
  // status, or null.
  json wait_for_running_step() {
    for (int i = 0; i < 150; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (!fs::exists(db_)) continue;
      const json s = status_json(/*polling=*/true);
      if (!s.is_object() || s["running"].empty()) continue;
      const json& p = s["running"][0]["progress"];
      if (p.is_object() && p["total"] == 40 && p["done"].get<int>() >= 1) return s;
    }
    return nullptr;
  }
};

}  // namespace

TEST_F(Status, ShowsTheRunningStageWithItsStepAndEtaThenTheFinishedCounts) {
  Process run(args({write("slow.yaml", kSlowSpec)}));
  const json s = wait_for_running_step();
  ASSERT_TRUE(s.is_object()) << "runner status never showed the running stage with a step";
  const json& r = s["running"][0];
  EXPECT_EQ(r["label"], "t.steps=40");
  EXPECT_EQ(r["state"], "live");
  EXPECT_EQ(r["stage"], "t");
  EXPECT_EQ(r["progress"]["label"], "counter");
  EXPECT_TRUE(r["progress"]["eta_s"].is_number()) << r.dump();
  EXPECT_GT(r["progress"]["rate"].get<double>(), 0);
  EXPECT_EQ(s["counts"]["finished"], 1);
  EXPECT_EQ(s["counts"]["running"], 1);
  EXPECT_TRUE(s["eta_s"].is_number()) << s.dump();  // the quick trial finished this run: a mean to go by
  // The text form says the same.
  const ProcessResult text = runner({"status"});
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("experiment 'slow': 2 trial(s): 1 finished"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("[t.steps=40] pid"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("stage t: counter "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("/40 ("), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("ETA"), std::string::npos) << text.out;

  const ProcessResult done = run.wait();
  ASSERT_EQ(done.status, 0) << done.err;
  const json after = status_json();
  EXPECT_EQ(after["counts"]["finished"], 2);
  EXPECT_TRUE(after["running"].empty());
  // The stage's end removed its progress file.
  const std::string trial_dir = query("SELECT artifact_dir FROM trials WHERE label = 't.steps=40'").rows.at(0).at(0).text;
  EXPECT_FALSE(fs::exists(fs::path(trial_dir) / "progress.json"));
}

TEST_F(Status, ReportsTheTrialOfAKilledRunAsStale) {
  Process run(args({write("slow.yaml", kSlowSpec)}));
  ASSERT_TRUE(wait_for_running_step().is_object());
  run.signal(SIGKILL);
  EXPECT_EQ(run.wait().status, 128 + SIGKILL);
  const json s = status_json();
  ASSERT_EQ(s["running"].size(), 1u) << s.dump();
  EXPECT_EQ(s["running"][0]["state"], "stale");
  EXPECT_TRUE(s["eta_s"].is_null());
  const ProcessResult text = runner({"status", write("again.yaml", kSlowSpec)});  // an experiment file works too
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("STALE: process"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("last reported stage t: counter"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("no live run"), std::string::npos) << text.out;
}

TEST_F(Status, BadInputIsAClearErrorWithExitStatusTwo) {
  ProcessResult r = runner({"status"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  { Store create(db_); }  // an empty store
  r = runner({"status"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("holds no experiment yet"), std::string::npos) << r.err;
  ASSERT_EQ(runner({write("quick.yaml", "name: quick\nstages:\n  - {name: t, algorithm: counter}\n")}).status, 0);
  r = runner({"status", "nope"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no experiment 'nope'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("expected one of: quick"), std::string::npos) << r.err;
  r = runner({"status", "quick", "--format", "csv"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("expected table or json"), std::string::npos) << r.err;
}

TEST(ProgressFile, BarsWriteTheirStateWhileItLivesAndTheFileGoesWithIt) {
  const fs::path file = fs::temp_directory_path() / ("mmr_progress_" + std::to_string(getpid()) + ".json");
  auto log = make_logger("progress-file-test");
  Progress before("made before", 10, log);  // not tied to a file made after it
  {
    const ProgressFile scope(file, "train");
    json j = json::parse(read_file(file));
    EXPECT_EQ(j["stage"], "train");
    EXPECT_EQ(j["total"], 0);  // no bar yet
    Progress bar("steps", 4, log);
    bar.advance();  // within a second of the start: not written yet
    EXPECT_EQ(json::parse(read_file(file))["done"], 0);
    before.advance(5);
    bar.advance(2);
    bar.finish();  // the end is always written
    j = json::parse(read_file(file));
    EXPECT_EQ(j["label"], "steps");
    EXPECT_EQ(j["done"], 3);
    EXPECT_EQ(j["total"], 4);
    EXPECT_EQ(j["pid"], getpid());
    EXPECT_TRUE(j["eta_s"].is_number());
    EXPECT_FALSE(j["updated_at"].get<std::string>().empty());
  }
  EXPECT_FALSE(fs::exists(file));
  Progress after("made after", 3, log);
  after.finish();
  EXPECT_FALSE(fs::exists(file));
}
