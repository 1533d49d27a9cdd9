// `runner EXP.yaml --jobs N` end to end: real worker processes of the real runner on one SQLite store, with the
// counter test plugin (its marker file gets one line per real run of a stage: "stage trial-identity"). Every trial
// runs exactly once, the shared upstream stage once for all workers, a SIGKILLed worker loses only its trial in
// flight, which a rerun finishes, and --force reruns everything once.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <thread>

#include "app/jobs.h"
#include "runner_fixture.h"

namespace fs = std::filesystem;
using namespace mmr;
using mmr::test::Process;
using mmr::test::ProcessResult;

namespace {

// Ten trials; `train` is the same in all of them (one stage key), `eval` differs per trial.
std::string spec(const std::string& marker, int eval_sleep_ms) {
  return R"(name: jobs
grid: {eval.steps: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}
stages:
  - {name: train, algorithm: counter, steps: 4, sleep_ms: 100, marker: )" + marker + R"(}
  - {name: eval, algorithm: counter, sleep_ms: )" + std::to_string(eval_sleep_ms) + R"(, marker: )" + marker +
         R"(, input: "${artifact:train/curve}"}
)";
}

class Jobs : public mmr::test::RunnerTest {
 protected:
  std::string one(const std::string& sql) const {
    const auto r = query(sql);
    return r.rows.empty() ? "<none>" : r.rows[0][0].text;
  }
  // Lines of the marker per stage name ("train", "eval"), and per "eval <identity>".
  std::map<std::string, int> runs() const {
    std::map<std::string, int> n;
    std::ifstream in(marker_);
    for (std::string stage, identity; in >> stage >> identity;) {
      ++n[stage];
      if (stage == "eval") ++n["eval " + identity];
    }
    return n;
  }
  bool wait_for(const std::string& sql, const std::string& want) const {
    for (int i = 0; i < 300; ++i, std::this_thread::sleep_for(std::chrono::milliseconds(100))) {
      try {
        if (fs::exists(db_) && one(sql) == want) return true;
      } catch (const std::exception&) {  // the schema is being created
      }
    }
    return false;
  }
  std::string marker_;  // set by each test: dir_ exists only after SetUp
};

}  // namespace

TEST(JobsDevices, WorkersShareThePoolOut) {
  using mmr::jobs::devices_of_worker;
  const std::vector<std::string> pool = {"0", "1", "2", "3"};
  EXPECT_EQ(devices_of_worker(pool, 2, 0), (std::vector<std::string>{"0", "2"}));
  EXPECT_EQ(devices_of_worker(pool, 2, 1), (std::vector<std::string>{"1", "3"}));
  EXPECT_EQ(devices_of_worker(pool, 4, 3), (std::vector<std::string>{"3"}));
  EXPECT_EQ(devices_of_worker({"0", "1"}, 3, 2), (std::vector<std::string>{"0"}));  // fewer devices: shared
  EXPECT_TRUE(devices_of_worker({}, 3, 1).empty());
  EXPECT_EQ(mmr::jobs::parse_devices("0,1,7"), (std::vector<std::string>{"0", "1", "7"}));
  EXPECT_THROW(mmr::jobs::parse_devices("0,,1"), std::invalid_argument);
}

TEST_F(Jobs, EveryTrialRunsOnceAndTheSharedStageOnceAcrossWorkers) {
  marker_ = (dir_ / "marker.txt").string();
  const std::string file = write("exp.yaml", spec(marker_, 60));
  const ProcessResult r = runner({file, "--jobs", "8"});  // eight workers at once on one store
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished' AND attempt = 1"), "10");
  auto n = runs();
  EXPECT_EQ(n["train"], 1);   // one worker ran it under the lease; the others waited and reused it
  EXPECT_EQ(n["eval"], 10);   // no trial ran twice
  EXPECT_GT(std::stoi(one("SELECT count(DISTINCT pid) FROM trials")), 1) << "the trials ran in one process";
  EXPECT_EQ(one("SELECT count(*) FROM stage_leases"), "0");  // every lease released
  EXPECT_NE(r.err.find("[job 2/8]"), std::string::npos) << r.err;
  // A rerun has nothing to do; --force reruns every trial once, and the shared stage once.
  ASSERT_EQ(runner({file, "--jobs", "4"}).status, 0);
  EXPECT_EQ(runs()["eval"], 10);
  const ProcessResult forced = runner({file, "--jobs", "3", "--force"});
  ASSERT_EQ(forced.status, 0) << forced.err;
  n = runs();
  EXPECT_EQ(n["train"], 2);
  EXPECT_EQ(n["eval"], 20);
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished' AND attempt = 2"), "10");
}

TEST_F(Jobs, AKilledWorkersTrialIsTakenOverByTheOthersAndNothingRunsTwice) {
  marker_ = (dir_ / "marker.txt").string();
  const std::string file = write("exp.yaml", spec(marker_, 150));
  Process p(args({file, "--jobs", "3"}));
  ASSERT_TRUE(wait_for("SELECT count(*) > 0 FROM stages WHERE name = 'eval'", "1"));  // train done, evals under way
  ASSERT_TRUE(wait_for("SELECT count(*) >= 2 FROM trials WHERE status = 'running'", "1"));
  const std::string victim = one("SELECT pid FROM trials WHERE status = 'running' ORDER BY id LIMIT 1");
  ASSERT_EQ(kill(std::stoi(victim), SIGKILL), 0);
  const ProcessResult r = p.wait();
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("was killed by signal 9"), std::string::npos) << r.err;
  // The workers still running took over the victim's trial in flight (if it had one when the signal came; on a
  // loaded machine it may have been between trials), reusing its finished stages: every trial finished.
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished'"), "10");
  const auto taken = query("SELECT identity FROM trials WHERE attempt = 2");
  ASSERT_LE(taken.rows.size(), 1u);
  const std::string killed_trial = taken.rows.empty() ? "" : taken.rows[0][0].text;
  if (!killed_trial.empty()) {
    EXPECT_NE(r.err.find("taking it over"), std::string::npos) << r.err;
  }
  EXPECT_EQ(one("SELECT count(*) FROM stage_leases"), "0");
  // A rerun has nothing left to do.
  const ProcessResult again = runner({file, "--jobs", "3"});
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(one("SELECT max(attempt) FROM trials"), killed_trial.empty() ? "1" : "2");
  auto n = runs();
  EXPECT_EQ(n["train"], 1);  // the take-over reused it
  // The killed trial's eval ran at most twice (it may have been killed before reaching it); no other trial's
  // more than once.
  const int killed_evals = killed_trial.empty() ? 1 : n["eval " + killed_trial];
  EXPECT_TRUE(killed_evals == 1 || killed_evals == 2) << killed_evals;
  EXPECT_EQ(n["eval"], 9 + killed_evals);
  for (const auto& [key, count] : n) {
    if (key.rfind("eval ", 0) == 0 && key != "eval " + killed_trial) {
      EXPECT_EQ(count, 1) << key;
    }
  }
}

TEST_F(Jobs, BadJobsAndDevicesAreUsageErrors) {
  marker_ = (dir_ / "marker.txt").string();
  const std::string file = write("exp.yaml", spec(marker_, 0));
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--jobs", "0"}, "--jobs '0': expected a number of worker processes"},
      {{"--jobs", "x"}, "--jobs 'x'"},
      {{"--jobs", "2", "--devices", "0,"}, "--devices '0,': expected a list"},
      {{"--devices", "0,1"}, "give --jobs N too"}};
  for (const auto& [flags, message] : cases) {
    std::vector<std::string> a = {file};
    a.insert(a.end(), flags.begin(), flags.end());
    const ProcessResult r = runner(a);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(marker_));  // nothing ran
}
