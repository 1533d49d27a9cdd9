// `runner EXP.yaml --executor slurm` against a real Slurm: the suite starts munged, slurmctld and slurmd from
// Debian's packages on this machine (tests/slurm/slurm_cluster.sh: one node, a config it writes, its own ports),
// submits a small grid of the counter test plugin through the executor, cancels one trial's job with scancel
// while its stage runs, and checks that every trial ends finished with nothing lost and nothing run twice that
// had finished, that the results equal a local run's, and that a rerun submits nothing. Skipped, saying why, only
// where Slurm cannot start (not installed, not root).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <chrono>
#include <map>
#include <thread>

#include "runner_fixture.h"

namespace fs = std::filesystem;
using mmr::test::Process;
using mmr::test::ProcessResult;

namespace {

const fs::path kClusterScript = fs::path(MMR_TEST_DATA_DIR).parent_path() / "slurm" / "slurm_cluster.sh";

// The cluster of this test binary: a short folder (its unix sockets have a 107-byte path limit).
const fs::path& cluster_dir() {
  static const fs::path dir = fs::path("/tmp") / ("mmr-slurm-" + std::to_string(getpid()));
  return dir;
}

std::string skip_reason;  // set when the cluster could not start

class Slurm : public mmr::test::RunnerTest {
 public:
  static void SetUpTestSuite() {
    if (!fs::exists("/usr/sbin/slurmctld") || !fs::exists("/usr/sbin/slurmd") || !fs::exists("/usr/sbin/munged")) {
      skip_reason = "Slurm is not installed (tools/setup.sh installs slurmctld, slurmd, slurm-client and munge)";
      return;
    }
    const ProcessResult r = mmr::test::run({"/bin/bash", kClusterScript.string(), "start", cluster_dir().string()});
    if (r.status != 0) {
      skip_reason = "the test's Slurm cluster did not start: " + r.err;
      return;
    }
    setenv("SLURM_CONF", (cluster_dir() / "slurm.conf").c_str(), 1);  // the runner and sbatch/squeue inherit it
  }
  static void TearDownTestSuite() {
    if (fs::exists(cluster_dir())) mmr::test::run({"/bin/bash", kClusterScript.string(), "stop", cluster_dir().string()});
    fs::remove_all(cluster_dir());
  }

 protected:
  void SetUp() override {
    if (!skip_reason.empty()) GTEST_SKIP() << skip_reason;
    RunnerTest::SetUp();
  }
  // Four trials sharing `train`; trial 3's eval takes about 6 s, long enough to be cancelled in the middle.
  std::string spec(const fs::path& marker) const {
    return R"(name: grid
grid: {eval.steps: [1, 2, 3, 60]}
stages:
  - {name: train, algorithm: counter, steps: 4, sleep_ms: 50, marker: )" + marker.string() + R"(}
  - {name: eval, algorithm: counter, sleep_ms: 100, marker: )" + marker.string() + R"(, input: "${artifact:train/curve}"}
)";
  }
  // Lines of the marker per "stage ordinal-free identity".
  static std::map<std::string, int> runs(const fs::path& marker) {
    std::map<std::string, int> n;
    std::ifstream in(marker);
    for (std::string stage, identity; in >> stage >> identity;) ++n[stage + " " + identity];
    return n;
  }
  std::string one(const std::string& sql) const {
    const auto r = query(sql);
    return r.rows.empty() ? "<none>" : r.rows[0][0].text;
  }
};

std::string squeue_field(const std::string& job, const char* format) {
  const ProcessResult r = mmr::test::run({"/usr/bin/squeue", "-h", "-t", "all", "-j", job, "-o", format});
  return r.out.substr(0, r.out.find('\n'));
}

int jobs_known_to_slurm() {
  const ProcessResult r = mmr::test::run({"/usr/bin/squeue", "--me", "-h", "-t", "all", "-o", "%A"});
  return static_cast<int>(std::count(r.out.begin(), r.out.end(), '\n'));
}

}  // namespace

TEST_F(Slurm, GridRunsAsJobsACancelledJobIsRerunAndARerunSubmitsNothing) {
  const fs::path marker = dir_ / "marker.txt";
  const std::string file = write("grid.yaml", spec(marker));
  Process driver(args({file, "--executor", "slurm", "--poll", "1"}));

  // Trial 3's job: its ledger names it; cancel it once its eval stage is under way.
  const fs::path jobs_dir = fs::path(db_).parent_path() / "slurm" / "grid";
  std::string victim, identity3;
  for (int i = 0; i < 1200 && victim.empty(); ++i, std::this_thread::sleep_for(std::chrono::milliseconds(100))) {
    if (!fs::is_directory(jobs_dir)) continue;
    for (const auto& e : fs::directory_iterator(jobs_dir)) {
      if (e.path().filename().string().rfind("3-", 0) != 0 || !fs::exists(e.path() / "job.json")) continue;
      const auto ledger = nlohmann::json::parse(std::ifstream(e.path() / "job.json"));
      identity3 = ledger["identity"];
      if (runs(marker).count("eval " + identity3) && squeue_field(ledger["job_id"], "%T") == "RUNNING")
        victim = ledger["job_id"];
    }
  }
  ASSERT_FALSE(victim.empty()) << "trial 3's job never ran its eval stage";
  ASSERT_EQ(mmr::test::run({"/usr/bin/scancel", victim}).status, 0);

  const ProcessResult r = driver.wait();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("trial 3: slurm job " + victim + " ended (CANCELLED) before the trial did"), std::string::npos)
      << r.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished'"), "4");
  // The cancelled attempt is kept (interrupted), the rerun finished: two attempts for trial 3, one for the others.
  EXPECT_EQ(one("SELECT group_concat(attempt, ',') FROM (SELECT attempt FROM trials ORDER BY ordinal)"), "1,1,1,2");
  EXPECT_EQ(one("SELECT count(*) FROM stages s JOIN trials t ON t.id = s.trial_id AND s.attempt = t.attempt "
                "WHERE s.status = 'finished' AND s.name = 'eval'"), "4");
  // The shared stage ran once (in the pilot job); every other job reused it. Only the cancelled eval ran twice.
  const auto n = runs(marker);
  int train_runs = 0;
  for (const auto& [key, count] : n) {
    if (key.rfind("train ", 0) == 0) train_runs += count;
    else EXPECT_EQ(count, key == "eval " + identity3 ? 2 : 1) << key;
  }
  EXPECT_EQ(train_runs, 1);
  EXPECT_EQ(n.size(), 5u);

  // The same numbers as a local run of the file.
  const std::string local_db = (dir_ / "local" / "r.db").string();
  const ProcessResult local = mmr::test::run({mmr::test::kRunner, "--results", local_db, "--plugin-path",
                                              mmr::test::kGoodPlugins, write("local.yaml", spec(dir_ / "m2.txt"))});
  ASSERT_EQ(local.status, 0) << local.err;
  const std::string metrics = "SELECT group_concat(t.ordinal || ':' || f.stage || '/' || f.name || '=' || f.value, ' ') "
                              "FROM (SELECT * FROM final_metrics ORDER BY trial_id, stage, name) f JOIN trials t ON "
                              "t.id = f.trial_id WHERE f.name != 'input_lines'";
  const std::string here = one(metrics);
  EXPECT_EQ(here, mmr::Store(local_db, mmr::Store::Mode::ReadOnly).query(metrics).rows.at(0).at(0).text);
  EXPECT_NE(here.find("3:eval/loss="), std::string::npos) << here;

  // `runner status` lists the jobs; a rerun submits nothing.
  const ProcessResult status = runner({"status"});
  EXPECT_NE(status.out.find("slurm jobs:"), std::string::npos) << status.out;
  const int known = jobs_known_to_slurm();
  const ProcessResult again = runner({file, "--executor", "slurm", "--poll", "1"});
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("every trial has finished; nothing to submit"), std::string::npos) << again.err;
  EXPECT_EQ(jobs_known_to_slurm(), known);
}

TEST_F(Slurm, NoWaitSubmitsAndARerunCollectsWithoutSubmittingAgain) {
  const fs::path marker = dir_ / "marker.txt";
  const std::string file = write("grid.yaml", spec(marker));
  const ProcessResult submitted = runner({file, "--executor", "slurm", "--no-wait", "-o", "eval.sleep_ms=10"});
  ASSERT_EQ(submitted.status, 0) << submitted.err;
  EXPECT_NE(submitted.err.find("4 job(s) submitted"), std::string::npos) << submitted.err;
  const int known = jobs_known_to_slurm();
  // While the jobs are queued or running, a rerun follows them instead of submitting; it merges each as it ends.
  const ProcessResult collected = runner({file, "--executor", "slurm", "--poll", "1", "-o", "eval.sleep_ms=10"});
  ASSERT_EQ(collected.status, 0) << collected.err;
  EXPECT_EQ(jobs_known_to_slurm(), known) << collected.err;
  EXPECT_EQ(one("SELECT count(*) FROM trials WHERE status = 'finished'"), "4");
}

// A data-parallel stage inside a Slurm job: its two ranks are one srun step (MMR_RANKS_LAUNCHER=srun stands in for
// an allocation of several nodes, which starts them through srun by itself), rendezvous over c10d on the batch
// host, and train exactly as two ranks the runner starts locally.
TEST_F(Slurm, DataParallelRanksOfAStageRunAsAnSrunStepAndTrainAsLocalRanks) {
  const fs::path tiny = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava";
  std::string rows;
  for (int i = 0; i < 8; ++i)
    rows += nlohmann::json{{"id", "p" + std::to_string(i)},
                           {"question", {{"from", "human"}, {"value", "Tell me about item " + std::to_string(i) + "."}}},
                           {"chosen", {{"from", "gpt"}, {"value", "The answer is " + std::to_string(i % 5) + "."}}},
                           {"rejected", {{"from", "gpt"}, {"value", "zzz qqq " + std::to_string(i % 3)}}}}
                .dump() + "\n";
  write("pairs.jsonl", rows);
  const std::string spec = "name: dp\nseeds: [3]\nstages:\n"
                           "  - {name: data, dataset: preference, file: " + (dir_ / "pairs.jsonl").string() + "}\n"
                           "  - name: train\n    algorithm: dpo\n    data: ${artifact:data/rows}\n"
                           "    model: {plugin: llava, path: " + (tiny / "model").string() +
                           ", lora_r: 8, lora_alpha: 16, seed: 5}\n"
                           "    lr: 2.0e-3\n    beta: 0.5\n    batch_size: 2\n    max_steps: 2\n    ranks: 2\n";
  const std::string file = write("dp.yaml", spec);
  Process driver(args({file, "--executor", "slurm", "--poll", "1", "--sbatch=--ntasks=2"}),
                 {{"MMR_RANKS_LAUNCHER", "srun"}});
  const ProcessResult r = driver.wait();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(one("SELECT status FROM trials"), "finished");
  std::string log;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(db_).parent_path() / "slurm"))
    if (e.path().filename().string().rfind("slurm-", 0) == 0) {
      std::ifstream in(e.path());
      log.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  EXPECT_NE(log.find("2 data-parallel ranks through srun"), std::string::npos) << log;
  EXPECT_NE(log.find("data parallel: rank 1 of 2"), std::string::npos) << log;

  const std::string local_db = (dir_ / "local" / "r.db").string();
  const ProcessResult local = mmr::test::run({mmr::test::kRunner, "--results", local_db, file});
  ASSERT_EQ(local.status, 0) << local.err;
  const std::string loss = "SELECT value FROM final_metrics WHERE stage = 'train' AND name = 'train/loss'";
  EXPECT_EQ(one(loss), mmr::Store(local_db, mmr::Store::Mode::ReadOnly).query(loss).rows.at(0).at(0).text);
}
