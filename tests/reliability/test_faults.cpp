// Injected faults (issue 16): each ends in a clear error or a completed rerun, with nothing half-written and
// nothing lost.
//   - A judge that times out, answers HTTP 500, garbage or truncated JSON fails the benchmark stage naming the
//     failure; the replies that did come are kept, and the rerun asks only the failed prompt. A slow judge (within
//     the timeout) just takes longer. (Retries on 503/429, giving up after max_retries and connection errors are
//     tests/serve/test_serve.cpp's JudgeOverHttp.*.)
//   - The disk filling up (a small tmpfs mounted as the results folder, filled while the runner waits at a kill
//     point with MMR_STOP_AT) during an artifact write and during a store commit: a clear error, no artifact under its
//     final name half-written, and after freeing space a rerun ends as an uninterrupted run.
//   - A read-only results folder (the tmpfs remounted read-only; root ignores file modes): a clear error, nothing
//     changed; writable again, the rerun completes.
//   - A corrupt, truncated or foreign database file: a clear error naming the file, the file left as it was. (A
//     database of a newer runner: core/tests/test_store.cpp.)
//   - Two runners and readers (`runner results`, `runner query`) on one store under load: every trial runs once,
//     every read succeeds. (--jobs workers, and a killed one: tests/cli/test_jobs.cpp.)
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/lib/util/atomic_file.h"
#include "core/lib/util/sha256.h"
#include "tests/cli/runner_fixture.h"
#include "tests/reliability/pipeline.h"

namespace fs = std::filesystem;
using mmr::test::ChatServer;
using mmr::test::Process;
using mmr::test::ProcessResult;
using namespace mmr::test::pipeline;
using Fault = ChatServer::Fault;

namespace {

// A tmpfs mounted at a folder for as long as it lives. Root in a container may still be refused mount(2): then
// `refused` says why and the test skips.
class Tmpfs {
 public:
  Tmpfs(const fs::path& at, const std::string& size) : at_(at) {
    fs::create_directories(at);
    if (::mount("tmpfs", at.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0)
      refused = "cannot mount a tmpfs at " + at.string() + ": " + std::strerror(errno);
  }
  ~Tmpfs() {
    if (refused.empty()) ::umount2(at_.c_str(), MNT_DETACH);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  void remount(bool read_only) {
    const unsigned long flags = MS_REMOUNT | (read_only ? MS_RDONLY : 0);
    ASSERT_EQ(::mount("tmpfs", at_.c_str(), "tmpfs", flags, nullptr), 0) << std::strerror(errno);
  }
  // Takes every free byte but `leave` with one file (removed by free()).
  void fill(uint64_t leave) {
    struct statvfs st {};
    ASSERT_EQ(::statvfs(at_.c_str(), &st), 0);
    const uint64_t free_bytes = static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    const int fd = ::open((at_ / "filler").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_GE(fd, 0);
    if (free_bytes > leave) {
      ASSERT_EQ(::posix_fallocate(fd, 0, static_cast<off_t>(free_bytes - leave)), 0);
    }
    ::close(fd);
  }
  void free() { fs::remove(at_ / "filler"); }
  std::string refused;

 private:
  fs::path at_;
};

// Waits until the process stops itself at its MMR_STOP_AT point (its /proc state is 'T'); false when it ended.
bool wait_stopped(pid_t pid) {
  for (int i = 0; i < 6000; ++i) {  // up to 10 minutes
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    std::getline(in, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos || close + 2 >= line.size()) return false;
    const char state = line[close + 2];
    if (state == 'T' || state == 't') return true;
    if (state == 'Z' || state == 'X') return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

class Faults : public mmr::test::PipelineTest {
 protected:
  // Starts the runner stopping at `point`, lets `while_stopped` change the disk, continues it to its end.
  template <typename Fn>
  ProcessResult stop_at(const std::string& point, Fn while_stopped) {
    Process p({kRunner, "--results", db_.string(), spec_}, {{"MMR_STOP_AT", point}});
    const bool stopped = wait_stopped(p.pid());
    EXPECT_TRUE(stopped) << "the runner never reached " << point;
    if (stopped) while_stopped();
    p.signal(SIGCONT);
    return p.wait();
  }
  std::string bench_error() const {
    const auto r = mmr::Store(db_, mmr::Store::Mode::ReadOnly)
                       .query("SELECT s.error FROM stages s JOIN trials t ON t.id = s.trial_id AND s.attempt = "
                              "t.attempt WHERE s.name = 'bench' AND s.status = 'failed' AND t.id = (SELECT max(id) FROM trials)");
    return r.rows.empty() ? "<no failed bench stage>" : r.rows[0][0].text;
  }
};

// The benchmark's scores (bench/* but the judge's counters).
std::map<std::string, std::string> scores(const Outcome& o) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : o.metrics)
    if (k.rfind("bench/", 0) == 0 && k.rfind("bench/judge/", 0) != 0) out[k] = v;
  return out;
}

}  // namespace

TEST_F(Faults, AFailingJudgeFailsTheStageClearlyAndTheRerunAsksOnlyThePromptThatGotNoReply) {
  ChatServer server(review);
  // Slow, within the 5 s timeout: the run just takes longer. Its scores are what every fault's rerun must give.
  write_spec(server, ", concurrency: 1, model: slow");
  server.inject(Fault::Slow, 3, std::chrono::milliseconds(1000));
  const ProcessResult slow = runner();
  ASSERT_EQ(slow.status, 0) << slow.err;
  const auto want = scores(outcome_of(db_));
  ASSERT_FALSE(want.empty());

  struct Case {
    Fault fault;
    const char* model;
    const char* error;  // in the stage's error
  };
  const std::vector<Case> cases = {{Fault::Timeout, "timeout", "no reply within timeout_s = 5 s"},
                                   {Fault::ServerError, "error500", "HTTP 500"},
                                   {Fault::Garbage, "garbage", "the reply is not a chat completion"},
                                   {Fault::TruncatedJson, "truncated", "the reply is not a chat completion"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.model);
    write_spec(server, std::string(", concurrency: 1, model: ") + c.model);  // a new judge: nothing cached
    server.clear();
    server.inject(c.fault, 1, std::chrono::milliseconds(6000));  // the first request of the three
    const ProcessResult failed = runner();
    EXPECT_EQ(failed.status, 1) << failed.err;
    const std::string error = bench_error();
    EXPECT_NE(error.find("1 of 3 request(s) got no reply (the 2 replies received are cached"), std::string::npos)
        << error;
    EXPECT_NE(error.find(c.error), std::string::npos) << error;
    const auto first = server.prompts();
    ASSERT_EQ(first.size(), 3u);

    server.clear();
    const ProcessResult rerun = runner();
    ASSERT_EQ(rerun.status, 0) << rerun.err;
    EXPECT_EQ(server.prompts(), std::vector<std::string>{first[0]}) << "only the failed prompt is asked again";
    const Outcome o = outcome_of(db_);
    EXPECT_EQ(o.status, "finished");
    EXPECT_EQ(scores(o), want);
  }
}

TEST_F(Faults, AFullDiskDuringAnArtifactWriteOrAStoreCommitFailsClearlyAndARerunAfterFreeingCompletes) {
  Tmpfs disk(work_, "64m");
  if (!disk.refused.empty()) GTEST_SKIP() << disk.refused;
  ChatServer server(review);
  write_spec(server);
  ASSERT_EQ(runner().status, 0);
  const Outcome whole = outcome_of(db_);
  const fs::path adapter = fs::path(mmr::Store(db_, mmr::Store::Mode::ReadOnly)
                                        .query("SELECT path FROM artifacts WHERE name = 'adapter'").rows.at(0).at(0).text);
  // Every run below starts from an empty results folder.
  auto empty = [&] {
    for (const auto& e : fs::directory_iterator(work_)) fs::remove_all(e.path());
  };

  {
    SCOPED_TRACE("the adapter's write");
    empty();
    // The disk is full when the trained adapter is to be written (the store cannot record the failure either).
    const ProcessResult r = stop_at("train.before_adapter", [&] { disk.fill(0); });
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_NE(r.err.find("adapter_model.safetensors"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(adapter)) << "no adapter folder half-written under its final name";
    disk.free();
    ASSERT_EQ(runner().status, 0);
    expect_same(outcome_of(db_), whole);
    EXPECT_EQ(leftovers(work_), std::vector<std::string>{});
  }
  {
    SCOPED_TRACE("the store's commit");
    empty();
    // Everything of the train stage is written; its commit finds the disk full.
    const ProcessResult r = stop_at("runner.stage_returned@3", [&] { disk.fill(0); });
    EXPECT_NE(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("disk is full"), std::string::npos) << r.err;
    disk.free();
    {
      mmr::Store s(db_, mmr::Store::Mode::ReadOnly);
      EXPECT_EQ(s.query("PRAGMA integrity_check").rows.at(0).at(0).text, "ok");
      EXPECT_EQ(s.query("SELECT count(*) FROM stages WHERE name = 'train'").rows.at(0).at(0).text, "0")
          << "the failed commit left nothing of the stage";
    }
    ASSERT_EQ(runner().status, 0);
    expect_same(outcome_of(db_), whole);
    EXPECT_EQ(leftovers(work_), std::vector<std::string>{});
  }
}

TEST_F(Faults, AReadOnlyResultsFolderIsAClearErrorAndChangesNothing) {
  Tmpfs disk(work_, "64m");
  if (!disk.refused.empty()) GTEST_SKIP() << disk.refused;
  ChatServer server(review);
  write_spec(server);
  const ProcessResult part = runner("runner.stage_begin@3");  // data and reference log-probs done
  ASSERT_EQ(part.status, 128 + SIGKILL) << part.err;
  const std::string before = mmr::sha256_file(db_);
  disk.remount(true);
  const ProcessResult r = runner();
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(db_.string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("attempt to write a readonly database"), std::string::npos) << r.err;
  EXPECT_EQ(mmr::sha256_file(db_), before);
  disk.remount(false);
  const ProcessResult rerun = runner();
  ASSERT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_EQ(outcome_of(db_).status, "finished");
  EXPECT_EQ(leftovers(work_), std::vector<std::string>{});
}

// ---- the store file itself, and several processes on it (the counter test plugin: no model) ----

class StoreFaults : public mmr::test::RunnerTest {
 protected:
  // Finished trials, "" while there is no store yet.
  std::string finished() const {
    try {
      return query("SELECT count(*) FROM trials WHERE status = 'finished'").rows.at(0).at(0).text;
    } catch (const std::exception&) {  // no store yet, or its schema is being created
      return "";
    }
  }
  std::string counter_spec(int trials, int sleep_ms) {
    std::string steps;
    for (int i = 1; i <= trials; ++i) steps += (i > 1 ? ", " : "") + std::to_string(i);
    return write("exp.yaml", "name: load\ngrid: {run.steps: [" + steps + "]}\nstages:\n  - {name: run, algorithm: "
                             "counter, sleep_ms: " + std::to_string(sleep_ms) + "}\n");
  }
};

TEST_F(StoreFaults, ACorruptTruncatedOrForeignDatabaseIsAClearErrorAndIsLeftAsItWas) {
  const std::string spec = counter_spec(2, 0);
  fs::create_directories(fs::path(db_).parent_path());
  // A valid store, cut in half (its header says more pages than there are).
  ASSERT_EQ(runner({spec}).status, 0);
  const std::string whole = mmr::read_file(db_);
  auto check = [&](const std::string& what, const std::string& expected) {
    SCOPED_TRACE(what);
    const std::string bytes = mmr::read_file(db_);
    const ProcessResult r = runner({spec});
    EXPECT_NE(r.status, 0) << r.err;
    EXPECT_NE(r.err.find(db_), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
    EXPECT_EQ(mmr::read_file(db_), bytes) << "the file was changed";
  };
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(db_ + suffix);
  std::ofstream(db_, std::ios::binary | std::ios::trunc) << whole.substr(0, whole.size() / 2);
  check("truncated", "malformed");
  // Not a database at all.
  std::ofstream(db_, std::ios::binary | std::ios::trunc) << std::string(8192, 'x');
  check("garbage", "not a database");
  // A database of something else.
  fs::remove(db_);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine')", nullptr, nullptr,
                         nullptr), SQLITE_OK);
  sqlite3_close(other);
  check("foreign", "not a results database");
}

TEST_F(StoreFaults, TwoRunnersAndReadersOnOneStoreUnderLoad) {
  const std::string spec = counter_spec(16, 30);
  fs::create_directories(fs::path(db_).parent_path());
  Process a(args({spec})), b(args({spec}));
  int reads = 0;
  std::string failed;
  for (auto start = std::chrono::steady_clock::now(); std::chrono::steady_clock::now() - start < std::chrono::seconds(20);) {
    for (const auto& cmd : std::vector<std::vector<std::string>>{{"results"}, {"query", "SELECT count(*) FROM metrics"}}) {
      const ProcessResult r = runner(cmd);
      ++reads;
      // Before the first runner made the store there is nothing to read: the one error allowed, and it says so.
      const bool not_yet = r.err.find("does not exist") != std::string::npos ||
                           r.err.find("holds no results yet") != std::string::npos;
      if (r.status != 0 && !not_yet && failed.empty()) failed = r.err;
    }
    if (finished() == "16") break;
  }
  for (Process* p : {&a, &b}) {
    const ProcessResult r = p->wait();
    EXPECT_EQ(r.status, 0) << r.err;
  }
  EXPECT_EQ(failed, "") << "a read failed while the runners wrote";
  EXPECT_GT(reads, 4);
  EXPECT_EQ(query("SELECT count(*) FROM trials WHERE status = 'finished' AND attempt = 1").rows[0][0].text, "16");
  EXPECT_EQ(query("SELECT count(*) FROM stages").rows[0][0].text, "16") << "a trial ran twice";
  EXPECT_EQ(query("SELECT count(DISTINCT pid) FROM trials").rows[0][0].text, "2") << "both runners took trials";
}
