// The results store: schema and migrations, trial claiming and resume semantics, atomic stage commits, the
// final_metrics view, the judge cache, read-only access, the readers the command line uses (names bound, never
// spliced into SQL); plus SHA-256 against FIPS 180-2 test vectors.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/lib/util/sha256.h"
#include "core/spec.h"
#include "core/store.h"

namespace fs = std::filesystem;
using namespace mmr;

namespace {

fs::path temp_dir() {
  const fs::path dir = fs::temp_directory_path() / ("mmr_store_" + std::to_string(getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Trial make_trial(const std::string& identity) {
  Trial t;
  t.identity = identity;
  t.label = "x=" + identity;
  t.seed = 1;
  t.resolved_json = "{}";
  return t;
}

std::string one(const Store& s, const std::string& sql) {
  const auto r = s.query(sql);
  return r.rows.empty() ? "<none>" : r.rows[0][0].text;
}

}  // namespace

TEST(Store, NewFileHasCurrentSchemaWalAndForeignKeys) {
  const auto dir = temp_dir();
  Store s(dir / "sub" / "r.db");
  EXPECT_EQ(s.schema_version(), kSchemaVersion);
  EXPECT_EQ(one(s, "PRAGMA journal_mode"), "wal");
  EXPECT_EQ(one(s, "PRAGMA foreign_keys"), "1");
  EXPECT_EQ(one(s, "SELECT count(*) FROM schema_migrations"), std::to_string(kSchemaVersion));
}

// Found by CI (StoreFaults.TwoRunnersAndReadersOnOneStoreUnderLoad, 1 run in 15): two runners making a new store
// at once, the second's switch to WAL got SQLITE_BUSY at once (no busy handler there) and the runner failed.
TEST(Store, ProcessesOpeningOneNewFileAtOnceAllSucceed) {
  const auto dir = temp_dir();
  for (int round = 0; round < 10; ++round) {
    const fs::path db = dir / ("r" + std::to_string(round) + ".db");
    int go[2];
    ASSERT_EQ(pipe(go), 0);
    std::vector<pid_t> children;
    for (int i = 0; i < 6; ++i) {
      const pid_t child = fork();
      if (child == 0) {
        close(go[1]);
        char c;
        if (read(go[0], &c, 1) != 0) _exit(3);  // released together when the parent closes its end
        try {
          Store s(db);
          _exit(s.schema_version() == kSchemaVersion ? 0 : 2);
        } catch (const std::exception& e) {
          fprintf(stderr, "%s\n", e.what());
          _exit(1);
        }
      }
      children.push_back(child);
    }
    close(go[0]);
    close(go[1]);
    for (const pid_t child : children) {
      int status = 0;
      waitpid(child, &status, 0);
      EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "round " << round << ", status " << status;
    }
  }
}

TEST(Store, MigratesAnOlderFileAndKeepsItsData) {
  const auto dir = temp_dir();
  {
    Store v1(dir / "r.db", Store::Mode::ReadWrite, /*target_version=*/1);
    EXPECT_EQ(v1.schema_version(), 1);
    const int64_t e = v1.upsert_experiment("old", "old.yaml", "name: old");
    v1.ensure_trial(e, make_trial("aaa"));
    EXPECT_THROW(v1.query("SELECT * FROM judgments"), DataError);  // not there before v2
  }
  Store s(dir / "r.db");
  EXPECT_EQ(s.schema_version(), kSchemaVersion);
  EXPECT_EQ(one(s, "SELECT label FROM trials"), "x=aaa");
  s.store_judgment("judge-a", "prompt", "reply");
  EXPECT_EQ(s.cached_judgment("judge-a", "prompt").value_or(""), "reply");
}

TEST(Store, RefusesAFileFromANewerRunner) {
  const auto dir = temp_dir();
  { Store s(dir / "r.db"); s.exec("INSERT INTO schema_migrations VALUES (99, 'future')"); }
  try {
    Store s(dir / "r.db");
    FAIL() << "expected an error";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 99, newer than this runner's"), std::string::npos) << e.what();
  }
}

TEST(Store, ReadOnlyConnectionRefusesWritesAndMissingFileIsAClearError) {
  const auto dir = temp_dir();
  { Store s(dir / "r.db"); s.upsert_experiment("e", "e.yaml", ""); }
  Store ro(dir / "r.db", Store::Mode::ReadOnly);
  EXPECT_EQ(one(ro, "SELECT name FROM experiments"), "e");
  EXPECT_THROW(ro.query("DELETE FROM experiments"), DataError);
  EXPECT_EQ(one(ro, "SELECT count(*) FROM experiments"), "1");
  try {
    Store missing(dir / "nope.db", Store::Mode::ReadOnly);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.db' does not exist"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir / "nope.db"));
}

TEST(Store, EnsureTrialIsIdempotentAndStartsPending) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t e = s.upsert_experiment("e", "e.yaml", "");
  EXPECT_EQ(s.upsert_experiment("e", "e.yaml", "changed"), e);
  const TrialRow a = s.ensure_trial(e, make_trial("abc"));
  const TrialRow b = s.ensure_trial(e, make_trial("abc"));
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.status, "pending");
  EXPECT_EQ(a.attempt, 0);
  EXPECT_EQ(one(s, "SELECT count(*) FROM trials"), "1");
}

TEST(Store, ARunningTrialCannotBeClaimedTwice) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t id = s.ensure_trial(s.upsert_experiment("e", "", ""), make_trial("t")).id;
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "c", "/d"), std::optional<int>(1));
  Store other(dir / "r.db");
  EXPECT_EQ(other.begin_attempt(id, "h", getpid(), "c", "/d"), std::nullopt);
  s.end_trial(id, 1, "failed", "boom");
  EXPECT_EQ(other.begin_attempt(id, "h", getpid(), "c", "/d"), std::optional<int>(2));
}

TEST(Store, StageMetricsAndTrialStatusCommitTogether) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t id = s.ensure_trial(s.upsert_experiment("e", "", ""), make_trial("t")).id;
  const int attempt = *s.begin_attempt(id, "h", getpid(), "c", "/d");
  StageRecord rec;
  rec.name = "train";
  rec.plugin = "dpo";
  rec.status = "finished";
  rec.metrics = {{"loss", 0, 0.7}, {"loss", 1, 0.5}, {"loss", 2, 0.4}, {"acc", -1, 0.9}};
  // The trial update comes last in the transaction; an invalid status there must undo the stage and metrics.
  EXPECT_THROW(s.commit_stage(id, attempt, rec, std::string("weird")), DataError);
  EXPECT_EQ(one(s, "SELECT count(*) FROM metrics"), "0");
  EXPECT_EQ(one(s, "SELECT count(*) FROM stages"), "0");
  EXPECT_EQ(one(s, "SELECT status FROM trials"), "running");
  s.commit_stage(id, attempt, rec, std::string("finished"));
  EXPECT_EQ(one(s, "SELECT count(*) FROM metrics"), "4");
  EXPECT_EQ(one(s, "SELECT status FROM trials"), "finished");
  // final_metrics: the step-less value when there is one, else the highest step's.
  EXPECT_EQ(one(s, "SELECT value FROM final_metrics WHERE name = 'loss'"), "0.4");
  EXPECT_EQ(one(s, "SELECT value FROM final_metrics WHERE name = 'acc'"), "0.9");
}

TEST(Store, FinalMetricsShowOnlyTheLatestAttempt) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t id = s.ensure_trial(s.upsert_experiment("e", "", ""), make_trial("t")).id;
  StageRecord rec;
  rec.name = "train";
  rec.plugin = "p";
  rec.status = "failed";
  rec.metrics = {{"loss", 0, 9.0}};
  s.commit_stage(id, *s.begin_attempt(id, "h", 1, "", ""), rec, std::string("failed"), "nan");
  rec.status = "finished";
  rec.metrics = {{"loss", 0, 1.0}};
  s.commit_stage(id, *s.begin_attempt(id, "h", 1, "", ""), rec, std::string("finished"));
  EXPECT_EQ(one(s, "SELECT count(*) FROM metrics"), "2");  // the failed attempt's curve is kept...
  EXPECT_EQ(one(s, "SELECT group_concat(value) FROM final_metrics"), "1.0");  // ...but is not a result
  const auto prev = s.previous_stage(id, 3, "train", "p");
  ASSERT_TRUE(prev.has_value());
  EXPECT_EQ(prev->metrics.size(), 1u);
  EXPECT_DOUBLE_EQ(prev->metrics[0].value, 1.0);
  EXPECT_FALSE(s.previous_stage(id, 3, "train", "other_plugin").has_value());
}

TEST(Store, RunningTrialsOfDeadProcessesBecomeInterrupted) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t e = s.upsert_experiment("e", "", "");
  const int64_t live = s.ensure_trial(e, make_trial("live")).id;
  const int64_t dead = s.ensure_trial(e, make_trial("dead")).id;
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // a pid that no longer exists
  s.begin_attempt(live, "host-a", getpid(), "", "");
  s.begin_attempt(dead, "host-a", child, "", "");
  EXPECT_EQ(s.recover_stale("host-b"), 0);  // another host's processes cannot be checked from here
  EXPECT_EQ(s.recover_stale("host-a"), 1);
  EXPECT_EQ(s.trial(dead)->status, "interrupted");
  EXPECT_EQ(s.trial(live)->status, "running");
}

// Found by probing: when the dead holder's pid had been given to a newer process, the trial stayed 'running' for
// ever (even --force skipped it). A holder must have started before it took the trial.
TEST(Store, ATrialWhosePidNowBelongsToANewerProcessIsRecovered) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t e = s.upsert_experiment("e", "", "");
  const int64_t reused = s.ensure_trial(e, make_trial("reused")).id;
  const int64_t mine = s.ensure_trial(e, make_trial("mine")).id;
  s.begin_attempt(reused, "host-a", getpid(), "", "");
  s.begin_attempt(mine, "host-a", getpid(), "", "");
  {  // as if a process long gone had taken it in 2000 with the pid this test process has now
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir / "r.db").c_str(), &db), SQLITE_OK);
    const std::string sql = "UPDATE trials SET started_at = '2000-01-01T00:00:00.000Z' WHERE id = " + std::to_string(reused);
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  EXPECT_TRUE(mmr::process_alive(getpid()));
  EXPECT_FALSE(mmr::process_alive(getpid(), "2000-01-01T00:00:00.000Z"));
  EXPECT_TRUE(mmr::process_alive(getpid(), mmr::now_iso8601()));
  EXPECT_EQ(s.recover_stale("host-a"), 1);
  EXPECT_EQ(s.trial(reused)->status, "interrupted");
  EXPECT_EQ(s.trial(mine)->status, "running");
}

TEST(Store, AFinishedTrialIsClaimedAgainOnlyByAForcedRunThatBeganAfterItFinished) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const int64_t id = s.ensure_trial(s.upsert_experiment("e", "", ""), make_trial("t")).id;
  const int first = *s.begin_attempt(id, "h", getpid(), "", "");
  // A forced run that began while another process was running the trial (after it started, before it ended)
  // leaves it to that process: found by probing, concurrent forced runners ran finished trials again.
  const std::string started = s.trial(id)->started_at;
  ASSERT_FALSE(started.empty());
  const std::string forced_run_began = started + "~";  // ISO times compare as text; '~' sorts after every digit
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  s.end_trial(id, first, "finished");
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "", ""), std::nullopt);  // finished: not without force
  const auto ended_at = [&] {
    sqlite3* db = nullptr;
    sqlite3_open((dir / "r.db").c_str(), &db);
    sqlite3_stmt* q = nullptr;
    sqlite3_prepare_v2(db, "SELECT ended_at FROM trials", -1, &q, nullptr);
    std::string out = sqlite3_step(q) == SQLITE_ROW ? reinterpret_cast<const char*>(sqlite3_column_text(q, 0)) : "";
    sqlite3_finalize(q);
    sqlite3_close(db);
    return out;
  };
  ASSERT_GT(ended_at(), forced_run_began);
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "", "", forced_run_began), std::nullopt);
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "", "", started), std::nullopt);  // it ran in this forced run
  const std::string ended = ended_at();
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "", "", ended), std::nullopt);   // it finished as this run began
  // A forced run that began after it finished: claimed again.
  EXPECT_EQ(s.begin_attempt(id, "h", getpid(), "", "", ended + "~"), std::optional<int>(2));
}

TEST(Store, AStageLeaseIsHeldByOneLiveProcessAndTakenOverFromADeadOne) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  Store other(dir / "r.db");
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // a pid that no longer exists
  EXPECT_TRUE(s.lease_stage("k", "host-a", getpid()));
  EXPECT_TRUE(s.lease_stage("k", "host-a", getpid()));  // the holder may take it again
  EXPECT_FALSE(other.lease_stage("k", "host-a", getpid() + 100000));  // another process waits
  EXPECT_EQ(other.stage_lease_holder("k"), std::optional<int64_t>(getpid()));
  s.release_stage("k", getpid());
  EXPECT_EQ(other.stage_lease_holder("k"), std::nullopt);
  EXPECT_TRUE(other.lease_stage("k", "host-a", child));  // now held by a process that is gone...
  EXPECT_TRUE(s.lease_stage("k", "host-a", getpid()));    // ...so it is taken over
  EXPECT_FALSE(other.lease_stage("k", "host-b", 1));     // a lease is not taken from another host's view
}

TEST(Store, JudgmentCacheKeysOnJudgeAndExactPrompt) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  s.store_judgment("gpt-4@t0", "Rate this: A", "[[7]]");
  EXPECT_EQ(s.cached_judgment("gpt-4@t0", "Rate this: A").value_or(""), "[[7]]");
  EXPECT_FALSE(s.cached_judgment("gpt-4@t0", "Rate this: A ").has_value());
  EXPECT_FALSE(s.cached_judgment("other", "Rate this: A").has_value());
}

TEST(Store, QueryReturnsTypedCellsOfTheLastStatement) {
  const auto dir = temp_dir();
  Store s(dir / "r.db");
  const auto r = s.query("SELECT 1; SELECT 2 AS i, 2.5 AS f, 'x' AS t, NULL AS n");
  ASSERT_EQ(r.columns, (std::vector<std::string>{"i", "f", "t", "n"}));
  EXPECT_EQ(r.rows[0][0].type, QueryCell::Integer);
  EXPECT_EQ(r.rows[0][1].type, QueryCell::Real);
  EXPECT_EQ(r.rows[0][1].text, "2.5");
  EXPECT_EQ(r.rows[0][2].type, QueryCell::Text);
  EXPECT_EQ(r.rows[0][3].type, QueryCell::Null);
  try {
    s.query("SELEC 1");
    FAIL();
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos) << e.what();
  }
}

TEST(Store, ReadersForTheCommandLineFilterByExperimentWithBoundNames) {
  const auto dir = temp_dir();
  const std::string quoted = "it's \"quoted\"";
  {
    Store s(dir / "r.db");
    const int64_t q = s.upsert_experiment(quoted, "", "");
    const int64_t o = s.upsert_experiment("other", "", "");
    Trial second = make_trial("q2"), first = make_trial("q1");
    second.ordinal = 1;
    first.ordinal = 0;
    const int64_t q2 = s.ensure_trial(q, second).id;  // inserted first, listed second
    const int64_t q1 = s.ensure_trial(q, first).id;
    const int64_t o1 = s.ensure_trial(o, make_trial("o1")).id;
    StageRecord rec;
    rec.name = "eval";
    rec.plugin = "p";
    rec.status = "finished";
    rec.metrics = {{"acc", 0, 0.5}, {"acc", 1, 0.75}, {"nan", -1, std::nan("")}};
    s.commit_stage(q1, *s.begin_attempt(q1, "h", 1, "", ""), rec, std::string("finished"));
    rec.name = "train";
    rec.metrics = {{"loss", -1, 0.125}};
    s.commit_stage(q2, *s.begin_attempt(q2, "h", 1, "", ""), rec, std::string("finished"));
    s.commit_stage(o1, *s.begin_attempt(o1, "h", 1, "", ""), rec, std::string("failed"), "boom");
  }
  const Store s(dir / "r.db", Store::Mode::ReadOnly);
  EXPECT_EQ(s.experiment_names(), (std::vector<std::string>{quoted, "other"}));
  EXPECT_TRUE(s.has_experiment(quoted));
  EXPECT_TRUE(s.has_experiment("other"));
  EXPECT_FALSE(s.has_experiment("x' OR '1'='1"));
  EXPECT_FALSE(s.has_experiment("it's"));

  const std::vector<TrialSummary> trials = s.trials(quoted);
  ASSERT_EQ(trials.size(), 2u);
  EXPECT_EQ(trials[0].experiment, quoted);
  EXPECT_EQ(trials[0].identity, "q1");
  EXPECT_EQ(trials[0].ordinal, 0);
  EXPECT_EQ(trials[0].label, "x=q1");
  EXPECT_EQ(trials[0].status, "finished");
  EXPECT_EQ(trials[0].attempt, 1);
  EXPECT_EQ(trials[1].identity, "q2");
  EXPECT_EQ(trials[1].ordinal, 1);
  const std::vector<TrialSummary> all = s.trials(std::nullopt);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].experiment, "other");
  EXPECT_EQ(all[2].status, "failed");
  EXPECT_TRUE(s.trials("x' OR '1'='1").empty());

  // Ordered by stage, then name; values as SQLite prints them, a NaN as NULL.
  const std::vector<FinalMetric> metrics = s.final_metrics(quoted);
  ASSERT_EQ(metrics.size(), 3u);
  EXPECT_EQ(metrics[0].stage + "/" + metrics[0].name, "eval/acc");
  EXPECT_EQ(metrics[0].trial_id, trials[0].id);
  EXPECT_EQ(metrics[0].value.type, QueryCell::Real);
  EXPECT_EQ(metrics[0].value.text, "0.75");
  EXPECT_EQ(metrics[1].stage + "/" + metrics[1].name, "eval/nan");
  EXPECT_EQ(metrics[1].value.type, QueryCell::Null);
  EXPECT_EQ(metrics[2].stage + "/" + metrics[2].name, "train/loss");
  EXPECT_EQ(metrics[2].trial_id, trials[1].id);
  EXPECT_EQ(metrics[2].value.text, "0.125");
  EXPECT_EQ(s.final_metrics(std::nullopt).size(), 4u);
  EXPECT_TRUE(s.final_metrics("other' --").empty());
}

// The Slurm executor's merge: a job's store starts as a snapshot of the results database, records new attempts
// of its trial, and is merged back (its trial possibly under another id there). Merging twice adds nothing.
TEST(Store, ImportTrialMergesTheNewerAttemptsOfAJobsStoreOnceAndItsJudgments) {
  const auto dir = temp_dir();
  Store main_store(dir / "r.db");
  const int64_t e = main_store.upsert_experiment("e", "", "");
  main_store.ensure_trial(e, make_trial("other"));
  const int64_t id = main_store.ensure_trial(e, make_trial("t")).id;
  main_store.snapshot_to(dir / "job.db");
  {
    Store job(dir / "job.db");
    job.exec("DELETE FROM trials WHERE identity = 'other'");  // ids need not line up
    job.ensure_trial(e, make_trial("late"));  // a trial the results database does not have
    const int64_t tid = std::stoll(one(job, "SELECT id FROM trials WHERE identity = 't'"));
    for (int attempt = 1; attempt <= 2; ++attempt) {
      ASSERT_EQ(*job.begin_attempt(tid, "node7", 4242, "c", "/art"), attempt);
      StageRecord rec;
      rec.name = "train", rec.plugin = "dpo", rec.status = attempt == 1 ? "interrupted" : "finished";
      rec.metrics = {{"loss", 1, 0.5 / attempt}, {"loss", -1, 0.25 / attempt}};
      rec.artifacts = {{"adapter", "/art/adapter", "abc", 10}};
      job.commit_stage(tid, attempt, rec, std::string(attempt == 1 ? "interrupted" : "finished"));
    }
    job.store_judgment("j", "prompt", "reply");
  }
  EXPECT_EQ(main_store.import_trial(dir / "job.db", "e", "t"), std::optional<std::string>("finished"));
  auto counts = [&] {
    return one(main_store, "SELECT (SELECT count(*) FROM stages) || ',' || (SELECT count(*) FROM metrics) || ',' || "
                           "(SELECT count(*) FROM artifacts) || ',' || (SELECT count(*) FROM judgments)");
  };
  EXPECT_EQ(counts(), "2,4,2,1");
  EXPECT_EQ(one(main_store, "SELECT status || ' ' || attempt || ' ' || host FROM trials WHERE id = " +
                                std::to_string(id)), "finished 2 node7");
  EXPECT_EQ(one(main_store, "SELECT value FROM final_metrics WHERE name = 'loss'"), "0.125");
  EXPECT_EQ(main_store.cached_judgment("j", "prompt"), std::optional<std::string>("reply"));
  EXPECT_EQ(main_store.import_trial(dir / "job.db", "e", "t"), std::optional<std::string>("finished"));
  EXPECT_EQ(counts(), "2,4,2,1");
  // A trial the job's store does not hold, and a store file its job never wrote, merge nothing.
  EXPECT_EQ(main_store.import_trial(dir / "job.db", "e", "other"), std::nullopt);
  { Store empty_file_maker(dir / "blank.db", Store::Mode::ReadWrite, 0); }
  EXPECT_EQ(main_store.import_trial(dir / "blank.db", "e", "t"), std::nullopt);
  // A job's trial the results database lacks is an error naming both files.
  try {
    main_store.import_trial(dir / "job.db", "e", "late");
    ADD_FAILURE() << "no error";
  } catch (const DataError& err) {
    EXPECT_NE(std::string(err.what()).find("job.db"), std::string::npos) << err.what();
  }
}
