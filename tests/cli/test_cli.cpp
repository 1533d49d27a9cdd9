// The runner end to end: the real binary, a real SQLite file, the test plugins; runs, reruns, failures, stage
// reuse, signals (SIGINT, SIGTERM, a second SIGINT, SIGKILL), and the results/query/plan/plugins/score commands.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/lib/util/sha256.h"
#include "core/store.h"
#include "process.h"

namespace fs = std::filesystem;
using namespace mmr;
using mmr::test::Process;
using mmr::test::ProcessResult;

namespace {

const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();
const std::string kGood = (fs::path(MMR_TEST_BINARY_DIR) / "tests" / "test_plugins" / "good").string();

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("mmr_cli_" + std::to_string(getpid()) + "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    db_ = (dir_ / "results" / "r.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  std::vector<std::string> args(std::vector<std::string> rest) {
    std::vector<std::string> a = {kRunner, "--results", db_, "--plugin-path", kGood};
    a.insert(a.end(), rest.begin(), rest.end());
    return a;
  }
  ProcessResult runner(std::vector<std::string> rest) { return mmr::test::run(args(std::move(rest))); }
  std::string one(const std::string& sql) {
    Store s(db_, Store::Mode::ReadOnly);
    const auto r = s.query(sql);
    return r.rows.empty() ? "<none>" : r.rows[0][0].text;
  }
  int lines(const std::string& path) {
    std::ifstream in(path);
    int n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  }
  // Waits until `sql` returns `want` (the trial has started, say), up to 20 s.
  bool wait_for(const std::string& sql, const std::string& want) {
    for (int i = 0; i < 200; ++i) {
      if (fs::exists(db_)) {
        try {
          if (one(sql) == want) return true;
        } catch (const std::exception&) {
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  fs::path dir_;
  std::string db_;
};

std::string grid_spec(const std::string& marker) {
  return R"(name: e2e
vars: {marker: )" + marker + R"(}
defaults: {train: {steps: 4, decay: 0.5}}
grid:
  train.start: [1.0, 2.0]
seeds: [1, 2]
stages:
  - name: train
    algorithm: counter
    steps: ${train.steps}
    start: ${train.start}
    decay: ${train.decay}
    marker: ${marker}
  - {name: eval, benchmark: line_bench, file: "${artifact:train/curve}"}
)";
}

}  // namespace

TEST_F(Cli, RunsEveryTrialAndRecordsMetricsArtifactsAndLogs) {
  const std::string marker = (dir_ / "marker.txt").string();
  const ProcessResult r = runner({write("exp.yaml", grid_spec(marker))});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished'"), "4");
  EXPECT_EQ(lines(marker), 4);
  // loss_k = start * 0.5^k for k = 0..3, so the final loss is start / 8.
  EXPECT_EQ(one("SELECT group_concat(value) FROM (SELECT f.value FROM final_metrics f JOIN trials t ON t.id = f.trial_id "
                "WHERE f.name = 'final_loss' ORDER BY t.ordinal)"),
            "0.125,0.125,0.25,0.25");
  EXPECT_EQ(one("SELECT count(*) FROM metrics WHERE stage = 'train' AND name = 'loss' AND step IS NOT NULL"), "16");
  EXPECT_EQ(one("SELECT group_concat(value) FROM final_metrics WHERE stage = 'eval' AND name = 'lines'"), "4.0,4.0,4.0,4.0");
  EXPECT_EQ(one("SELECT group_concat(value) FROM final_metrics WHERE name = 'seed'"), "1.0,2.0,1.0,2.0");
  // The artifact row carries the file's real checksum and size.
  const std::string path = one("SELECT path FROM artifacts WHERE stage = 'train' LIMIT 1");
  EXPECT_EQ(one("SELECT sha256 FROM artifacts WHERE stage = 'train' LIMIT 1"), sha256_file(path));
  EXPECT_EQ(one("SELECT bytes FROM artifacts WHERE stage = 'train' LIMIT 1"), std::to_string(fs::file_size(path)));
  // One log file per trial beside its artifacts.
  const fs::path trial_dir = fs::path(path).parent_path().parent_path();
  std::ifstream log(trial_dir / "trial.log");
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_NE(ss.str().find("stage 'eval' finished"), std::string::npos) << ss.str();
  EXPECT_EQ(one("SELECT count(DISTINCT git_commit) FROM trials"), "1");
  EXPECT_NE(one("SELECT host FROM trials LIMIT 1"), "");
}

TEST_F(Cli, RerunSkipsFinishedTrialsAndForceRunsThemAgain) {
  const std::string marker = (dir_ / "marker.txt").string();
  const std::string spec = write("exp.yaml", grid_spec(marker));
  ASSERT_EQ(runner({spec}).status, 0);
  const ProcessResult again = runner({spec});
  EXPECT_EQ(again.status, 0);
  EXPECT_NE(again.err.find("4 trial(s), 0 to run, 4 already finished"), std::string::npos) << again.err;
  EXPECT_EQ(lines(marker), 4);
  EXPECT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(lines(marker), 8);
  EXPECT_EQ(one("SELECT group_concat(DISTINCT attempt) FROM trials"), "2");
  EXPECT_EQ(one("SELECT count(*) FROM final_metrics WHERE name = 'final_loss'"), "4");  // no duplicates
}

TEST_F(Cli, FailedTrialIsRecordedWithThePluginErrorAndRunsAgainNextTime) {
  const std::string marker = (dir_ / "marker.txt").string();
  const std::string spec = write("exp.yaml", R"(name: fails
grid: {fail_at: [-1, 2]}
stages:
  - {name: train, algorithm: counter, fail_at: "${fail_at}", marker: )" + marker + "}\n");
  const ProcessResult r = runner({spec});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(one("SELECT status FROM trials WHERE label = 'fail_at=-1'"), "finished");
  EXPECT_EQ(one("SELECT status FROM trials WHERE label = 'fail_at=2'"), "failed");
  const std::string error = one("SELECT error FROM trials WHERE label = 'fail_at=2'");
  EXPECT_NE(error.find("algorithm plugin 'counter' ("), std::string::npos) << error;
  EXPECT_NE(error.find("failed: planned failure at step 2"), std::string::npos) << error;
  // The steps before the failure were committed with the failed status.
  EXPECT_EQ(one("SELECT count(*) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.label = 'fail_at=2'"), "2");
  EXPECT_EQ(runner({spec}).status, 1);
  EXPECT_EQ(lines(marker), 3);  // the finished trial was skipped, the failed one ran again
  EXPECT_EQ(one("SELECT attempt FROM trials WHERE label = 'fail_at=2'"), "2");
}

TEST_F(Cli, RerunReusesAFinishedStageWhoseArtifactsAreIntact) {
  const std::string marker = (dir_ / "marker.txt").string();
  const std::string extra = (dir_ / "extra.txt").string();
  const std::string spec = write("exp.yaml", R"(name: reuse
stages:
  - {name: train, algorithm: counter, marker: )" + marker + R"(}
  - {name: eval, algorithm: counter, input: )" + extra + R"(, min_input_lines: 1, steps: 1}
)");
  std::ofstream(extra).flush();  // it exists (runner checks that before running), but eval fails while it is empty
  EXPECT_EQ(runner({spec}).status, 1);
  EXPECT_EQ(lines(marker), 1);
  std::ofstream(extra) << "one\ntwo\nthree\n";
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(lines(marker), 1);  // train was not run again
  EXPECT_NE(r.err.find("stage 'train': finished in an earlier attempt, artifacts intact; reused"), std::string::npos);
  EXPECT_EQ(one("SELECT value FROM final_metrics WHERE stage = 'eval' AND name = 'input_lines'"), "3.0");
  EXPECT_EQ(one("SELECT value FROM final_metrics WHERE stage = 'train' AND name = 'final_loss'"), "0.0625");
  // A changed artifact is not trusted: train runs again.
  EXPECT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(lines(marker), 2);
}

TEST_F(Cli, IdenticalUpstreamStagesRunOncePerGridAndAreRecordedAsReused) {
  const std::string marker = (dir_ / "marker.txt").string();
  const std::string spec = write("exp.yaml", R"(name: shared
grid: {eval.steps: [1, 2, 3]}
seeds: [1, 2]
stages:
  - {name: train, algorithm: counter, marker: )" + marker + R"(}
  - {name: eval, algorithm: counter, input: "${artifact:train/curve}"}
)");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(lines(marker), 2);  // once per seed: same plugin, options, seed and inputs in the three grid points
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished'"), "6");
  EXPECT_EQ(one("SELECT count(*) FROM stages WHERE name = 'train' AND reused_from IS NOT NULL"), "4");
  EXPECT_EQ(one("SELECT count(DISTINCT stage_key) FROM stages WHERE name = 'train'"), "2");
  // A reused stage's metrics and artifacts are the trial's own results, and its later stages read them.
  EXPECT_EQ(one("SELECT count(*) FROM final_metrics WHERE stage = 'train' AND name = 'final_loss'"), "6");
  EXPECT_EQ(one("SELECT count(DISTINCT path) FROM artifacts WHERE stage = 'train'"), "2");
  EXPECT_EQ(one("SELECT min(value) FROM final_metrics WHERE stage = 'eval' AND name = 'input_lines'"),
            one("SELECT max(value) FROM final_metrics WHERE stage = 'eval' AND name = 'input_lines'"));
  EXPECT_NE(r.err.find("(same plugin, options, seed and inputs); reused"), std::string::npos) << r.err;
  // A changed artifact is not trusted: a new grid point runs train again instead of reusing it.
  for (const auto& p : {one("SELECT path FROM artifacts WHERE stage = 'train' ORDER BY trial_id LIMIT 1")})
    std::ofstream(p) << "changed\n";
  ASSERT_EQ(runner({spec, "-o", "grid.eval.steps=[4]", "-o", "seeds=[1]"}).status, 0);
  EXPECT_EQ(lines(marker), 3);
  // --force runs every trial again, and identical stages once within the forced run (once per seed).
  ASSERT_EQ(runner({spec, "--force"}).status, 0);
  EXPECT_EQ(lines(marker), 5);
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished' AND attempt = 2"), "6");
}

TEST_F(Cli, SigintMarksTheTrialInterruptedAndARerunFinishesIt) {
  const std::string spec = write("exp.yaml", R"(name: sig
stages:
  - {name: train, algorithm: counter, steps: 12, sleep_ms: 150}
)");
  Process p(args({spec}));
  ASSERT_TRUE(wait_for("SELECT status FROM trials", "running"));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  p.signal(SIGINT);
  const ProcessResult r = p.wait();
  EXPECT_EQ(r.status, 130) << r.err;
  EXPECT_EQ(one("SELECT status FROM trials"), "interrupted");
  EXPECT_EQ(one("SELECT status FROM stages"), "interrupted");
  EXPECT_NE(one("SELECT count(*) FROM metrics"), "0");  // what was measured before the stop is kept
  const ProcessResult again = runner({spec});
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(one("SELECT status || ' ' || attempt FROM trials"), "finished 2");
}

TEST_F(Cli, SigtermStopsLikeSigint) {
  const std::string spec = write("exp.yaml", "name: term\nstages:\n  - {name: t, algorithm: counter, steps: 40, sleep_ms: 100}\n");
  Process p(args({spec}));
  ASSERT_TRUE(wait_for("SELECT status FROM trials", "running"));
  p.signal(SIGTERM);
  EXPECT_EQ(p.wait().status, 130);
  EXPECT_EQ(one("SELECT status FROM trials"), "interrupted");
}

TEST_F(Cli, SecondSignalAbortsAtOnceAndStillRecordsTheInterruption) {
  const std::string spec = write("exp.yaml", "name: abort\nstages:\n  - {name: t, algorithm: counter, steps: 3, sleep_ms: 20000}\n");
  Process p(args({spec}));
  ASSERT_TRUE(wait_for("SELECT status FROM trials", "running"));
  p.signal(SIGINT);
  // The second signal only once the runner has taken the first: two SIGINTs pending at once are one signal (they
  // are not queued), which a loaded machine that does not schedule the runner's watcher in between would make.
  bool first_taken = false;
  for (int i = 0; i < 200 && !first_taken; ++i) {
    first_taken = p.err_so_far().find("SIGINT received: stopping") != std::string::npos;
    if (!first_taken) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(first_taken) << p.err_so_far();
  const auto t0 = std::chrono::steady_clock::now();
  p.signal(SIGINT);
  EXPECT_EQ(p.wait().status, 130);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));  // not the step's 20 s
  EXPECT_EQ(one("SELECT status || ': ' || error FROM trials"), "interrupted: aborted by a second signal");
}

TEST_F(Cli, TrialOfAKilledProcessIsRecoveredAndRunAgain) {
  const std::string spec = write("exp.yaml", "name: kill\nstages:\n  - {name: t, algorithm: counter, steps: 30, sleep_ms: 100}\n");
  {
    Process p(args({spec}));
    ASSERT_TRUE(wait_for("SELECT status FROM trials", "running"));
    p.signal(SIGKILL);
    EXPECT_EQ(p.wait().status, 128 + SIGKILL);
  }
  EXPECT_EQ(one("SELECT status FROM trials"), "running");  // nobody could record anything
  const std::string spec2 = write("exp2.yaml", "name: kill\nstages:\n  - {name: t, algorithm: counter, steps: 2}\n");
  const ProcessResult r2 = runner({spec2});
  EXPECT_EQ(r2.status, 0) << r2.err;
  EXPECT_NE(r2.err.find("left 'running' by a process that is gone; marked interrupted"), std::string::npos) << r2.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'running'"), "0");
}

TEST_F(Cli, ResultsInTableCsvAndJson) {
  ASSERT_EQ(runner({write("exp.yaml", grid_spec((dir_ / "m").string()))}).status, 0);
  const ProcessResult csv = runner({"results", "--format", "csv"});
  ASSERT_EQ(csv.status, 0) << csv.err;
  std::istringstream in(csv.out);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header, "experiment,#,trial,label,status,attempt,eval/lines,eval/words,train/final_loss,train/loss,train/seed");
  std::string first;
  std::getline(in, first);
  EXPECT_NE(first.find("e2e,0,"), std::string::npos);
  EXPECT_NE(first.find(",train.start=1.0 seed=1,finished,1,4.0,8.0,0.125,0.125,1.0"), std::string::npos) << first;

  const ProcessResult json = runner({"results", "--format", "json", "--experiment", "e2e"});
  ASSERT_EQ(json.status, 0);
  const auto rows = nlohmann::json::parse(json.out);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[3]["label"], "train.start=2.0 seed=2");
  EXPECT_DOUBLE_EQ(rows[3]["train/final_loss"].get<double>(), 0.25);

  const ProcessResult table = runner({"results"});
  EXPECT_NE(table.out.find("train/final_loss"), std::string::npos);
  EXPECT_NE(table.out.find("finished"), std::string::npos);

  const ProcessResult unknown = runner({"results", "--experiment", "nope"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.err.find("no experiment 'nope'"), std::string::npos);
  EXPECT_NE(unknown.err.find("experiments: e2e"), std::string::npos);
}

TEST_F(Cli, ResultsAndPlanTakeAnyExperimentNameQuotesIncluded) {
  const std::string spec =
      write("exp.yaml", "name: \"it's\"\nstages:\n  - {name: t, algorithm: counter, steps: 2}\n");
  ASSERT_EQ(runner({spec}).status, 0);
  const ProcessResult csv = runner({"results", "--experiment", "it's", "--format", "csv"});
  ASSERT_EQ(csv.status, 0) << csv.err;
  EXPECT_EQ(csv.out.substr(0, csv.out.find('\n')), "experiment,#,trial,label,status,attempt,t/final_loss,t/loss,t/seed");
  EXPECT_NE(csv.out.find("\nit's,0,"), std::string::npos) << csv.out;
  EXPECT_NE(csv.out.find(",-,finished,1,0.5,0.5,42.0\n"), std::string::npos) << csv.out;
  const ProcessResult plan = runner({"plan", spec});
  ASSERT_EQ(plan.status, 0) << plan.err;
  EXPECT_NE(plan.out.find("0 to run, 1 finished"), std::string::npos) << plan.out;
  const ProcessResult injected = runner({"results", "--experiment", "x' OR '1'='1"});
  EXPECT_EQ(injected.status, 2);
  EXPECT_NE(injected.err.find("no experiment 'x' OR '1'='1'"), std::string::npos) << injected.err;
  EXPECT_NE(injected.err.find("experiments: it's"), std::string::npos) << injected.err;
}

TEST_F(Cli, QueryIsReadOnly) {
  ASSERT_EQ(runner({write("exp.yaml", grid_spec((dir_ / "m").string()))}).status, 0);
  const ProcessResult q = runner({"query", "SELECT count(*) AS n FROM trials", "--format", "csv"});
  EXPECT_EQ(q.status, 0);
  EXPECT_EQ(q.out, "n\n4\n");
  const ProcessResult w = runner({"query", "DELETE FROM trials"});
  EXPECT_NE(w.status, 0);
  EXPECT_NE(w.err.find("readonly"), std::string::npos) << w.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials"), "4");
  // Found by probing: VACUUM INTO wrote a copy of the database anywhere through the read-only query command.
  const fs::path copy = dir_ / "copy.db";
  const ProcessResult vacuum = runner({"query", "VACUUM INTO '" + copy.string() + "'"});
  EXPECT_NE(vacuum.status, 0);
  EXPECT_NE(vacuum.err.find("readonly"), std::string::npos) << vacuum.err;
  EXPECT_FALSE(fs::exists(copy));
  // Found by probing: text that is not UTF-8 (a stored error quoting a binary file) made --format json throw.
  const ProcessResult bytes = runner({"query", "SELECT CAST(X'FF61' AS TEXT) AS t", "--format", "json"});
  EXPECT_EQ(bytes.status, 0) << bytes.err;
  EXPECT_NE(bytes.out.find("\"t\": \"\xEF\xBF\xBD" "a\""), std::string::npos) << bytes.out;
}

TEST_F(Cli, PlanPrintsTrialsAndRunsNothing) {
  const std::string spec = write("exp.yaml", grid_spec((dir_ / "m").string()));
  const ProcessResult plan = runner({"plan", spec});
  ASSERT_EQ(plan.status, 0) << plan.err;
  EXPECT_NE(plan.out.find("experiment 'e2e'"), std::string::npos);
  EXPECT_NE(plan.out.find("4 trial(s)"), std::string::npos);
  EXPECT_NE(plan.out.find("train.start=2.0 seed=1"), std::string::npos);
  EXPECT_NE(plan.out.find("train (algorithm counter) -> eval (benchmark line_bench)"), std::string::npos) << plan.out;
  EXPECT_FALSE(fs::exists(db_));
  EXPECT_FALSE(fs::exists(dir_ / "m"));
}

TEST_F(Cli, ConfigErrorsExitTwoWithFileLineColumn) {
  const std::string bad_yaml = write("bad.yaml", "name: x\nstages:\n  - {name: t, algorithm: counter\n");
  const ProcessResult r = runner({bad_yaml});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find(bad_yaml + ":4:1: YAML syntax error"), std::string::npos) << r.err;

  const std::string unknown = write("unknown.yaml", "name: x\nstages:\n  - {name: t, algorithm: dpoo}\n");
  const ProcessResult u = runner({unknown});
  EXPECT_EQ(u.status, 2);
  // The list also holds the build's own algorithm plugins (annotate, ...): check the test plugins are named in it.
  const std::string listed = unknown + ":3:5: stage 't': unknown algorithm 'dpoo'; loaded algorithms: ";
  const size_t at = u.err.find(listed);
  ASSERT_NE(at, std::string::npos) << u.err;
  const std::string names = u.err.substr(at + listed.size(), u.err.find('\n', at) - at - listed.size());
  EXPECT_NE((", " + names + ",").find(", counter,"), std::string::npos) << u.err;
  EXPECT_NE((", " + names + ",").find(", throws_ctor,"), std::string::npos) << u.err;

  const std::string option = write("option.yaml", "name: x\nstages:\n  - {name: t, algorithm: counter, setps: 3}\n");
  const ProcessResult o = runner({option});
  EXPECT_EQ(o.status, 2);
  EXPECT_NE(o.err.find(option + ":3:42: stage 't' (algorithm 'counter'): unknown option 'setps'"), std::string::npos)
      << o.err;
  EXPECT_FALSE(fs::exists(db_));  // nothing was recorded for a spec that cannot run

  const ProcessResult missing = runner({(dir_ / "missing.yaml").string()});
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.err.find("cannot open experiment file"), std::string::npos);

  const ProcessResult usage = runner({"frobnicate"});
  EXPECT_EQ(usage.status, 2);
  EXPECT_NE(usage.err.find("unknown command 'frobnicate'"), std::string::npos);
}

TEST_F(Cli, PluginsListsOptionsWithTypesDefaultsAndHelp) {
  const ProcessResult r = runner({"plugins", "--kind", "algorithm"});
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("algorithm counter 1.0.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("decay                  float   0.5            loss factor per step"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("benchmark line_bench"), std::string::npos);
}

TEST_F(Cli, ScoreRunsABenchmarkOnAnExistingFile) {
  const std::string file = write("answers.txt", "yes no\nyes\n");
  const ProcessResult r = runner({"score", "line_bench", "file=" + file, "--format", "csv"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "metric,value\nlines,2\nwords,3\n");
  const ProcessResult bad = runner({"score", "line_bench", "file=" + (dir_ / "nope").string()});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.err.find("benchmark plugin 'line_bench'"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("cannot open"), std::string::npos) << bad.err;
}
