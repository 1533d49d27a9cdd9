// The kill-point campaign (issue 16): the pipeline of pipeline.h is SIGKILLed at each named kill point
// (core/lib/util/kill_point.h: MMR_KILL_AT=<point>[@N] makes the runner kill itself there, so the test picks the
// place, no sleep races the runner), then rerun without it; the rerun must end exactly as an uninterrupted run:
// the same metrics (17 digits), artifact hashes and adapter bytes, no half-written file left, and no judge prompt
// whose reply was stored sent twice across the killed run and the rerun (the loopback judge's request log). The one
// window a kill costs a paid reply: received but not yet stored (judge.chunk_received, or after some of a chunk's
// replies at store.judgment_stored); those, and only those, are asked again.
//
// To stay within minutes, a point inside stage k starts from the results folder a kill before stage k left (the
// chain of runner.stage_begin kills below, itself checked the same way), restored at the same path (artifact paths
// in the store are absolute).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/reliability/pipeline.h"

namespace fs = std::filesystem;
using mmr::test::ChatServer;
using mmr::test::ProcessResult;
using namespace mmr::test::pipeline;

namespace {

// A point to kill at (MMR_KILL_AT's value) and the stage whose start the run begins from (1: nothing run yet).
struct KillCase {
  const char* point;
  int from_stage;
};

const std::vector<KillCase> kCases = {
    // a fresh run: the trial's start, the data stage, the first stage's commit
    {"runner.trial_begin", 1},
    {"data.row_read@3", 1},
    {"data.before_write", 1},
    {"atomic_file.before_rename:rows.jsonl", 1},  // written whole under its temporary name
    {"data.after_write", 1},
    {"runner.stage_returned", 1},
    {"store.commit_stage.before_commit", 1},
    {"store.commit_stage.after_commit", 1},
    // reference log-probs (batch 1: a row per batch); data is reused, so the ref stage's commit is the second
    {"reflogps.after_batch@2", 2},
    {"reflogps.before_finish", 2},
    {"store.commit_stage.before_commit@2", 2},
    // DPO, 3 steps, a checkpoint after steps 1 and 2: inside the second checkpoint, file by file
    {"train.after_step@2", 3},
    {"ckpt.after_weights@2", 3},
    {"ckpt.after_optimizer@2", 3},
    {"ckpt.after_adapter@2", 3},
    {"ckpt.before_rename@2", 3},
    {"ckpt.before_latest@2", 3},
    {"ckpt.before_prune@2", 3},
    {"write_file_atomic.before_rename:state.json@2", 3},
    {"train.after_step@3", 3},
    {"train.before_adapter", 3},
    {"train.adapter_written", 3},
    {"train.adapter_removed", 3},
    {"train.after_adapter", 3},
    {"runner.stage_returned", 3},
    // LLaVA-Bench: generation (a question per batch), the answers file, the judge's replies, the last commit
    {"eval.after_batch@2", 4},
    {"write_file_atomic.before_rename:answers.jsonl", 4},
    {"eval.artifact_written", 4},
    {"judge.chunk_received", 4},
    {"store.judgment_stored@2", 4},
    {"judge.chunk_stored", 4},
    {"eval.artifact_written@2", 4},
    {"store.commit_stage.before_commit@4", 4},
    {"store.commit_stage.after_commit@4", 4},
    {"runner.trial_end", 4},
};

class KillPoints : public mmr::test::PipelineTest {
 protected:
  // Runs with MMR_KILL_AT=point and checks that it died there, by SIGKILL.
  void kill_at(const std::string& point) {
    const ProcessResult r = runner(point);
    EXPECT_EQ(r.status, 128 + SIGKILL) << r.err;
    const std::string name = point.substr(0, point.find('@'));
    EXPECT_NE(r.err.find("kill point '" + name + "' reached"), std::string::npos) << r.err;
  }
  // Reruns to the end and compares with the uninterrupted run.
  void rerun_and_compare(const Outcome& whole) {
    const ProcessResult r = runner();
    ASSERT_EQ(r.status, 0) << r.err;
    expect_same(outcome_of(db_), whole);
    EXPECT_EQ(leftovers(work_), std::vector<std::string>{});
  }
  void snapshot(int stage) { fs::copy(work_, dir_ / ("from-" + std::to_string(stage)), fs::copy_options::recursive); }
  void restore(int stage) {
    fs::remove_all(work_);
    if (stage > 1) fs::copy(dir_ / ("from-" + std::to_string(stage)), work_, fs::copy_options::recursive);
  }
};

// Each prompt's count in the judge's log.
std::map<std::string, int> counts(ChatServer& server) {
  std::map<std::string, int> n;
  for (const auto& p : server.prompts()) ++n[p];
  return n;
}

// The user prompts whose replies the store holds (the judgment cache's keys are the requests as JSON).
std::set<std::string> stored_prompts(const fs::path& db) {
  std::set<std::string> out;
  if (!fs::exists(db)) return out;
  mmr::Store s(db, mmr::Store::Mode::ReadOnly);
  for (const auto& row : s.query("SELECT prompt FROM judgments").rows)
    out.insert(nlohmann::json::parse(row[0].text).at("user").get<std::string>());
  return out;
}

}  // namespace

TEST_F(KillPoints, EveryPointDiesThereAndTheRerunEndsLikeAnUninterruptedRun) {
  const auto t0 = std::chrono::steady_clock::now();
  ChatServer server(review);
  write_spec(server);
  const ProcessResult whole_run = runner();
  ASSERT_EQ(whole_run.status, 0) << whole_run.err;
  const Outcome whole = outcome_of(db_);
  ASSERT_EQ(whole.status, "finished");
  const std::map<std::string, int> asked = counts(server);
  ASSERT_EQ(asked.size(), 3u);  // three questions reviewed, each once
  for (const auto& [prompt, n] : asked) ASSERT_EQ(n, 1) << prompt;

  // The chain: killed before each later stage (the stages before it reused from then on), then run to the end.
  fs::remove_all(work_);
  server.clear();
  for (int stage = 2; stage <= 4; ++stage) {
    SCOPED_TRACE("runner.stage_begin@" + std::to_string(stage));
    kill_at("runner.stage_begin@" + std::to_string(stage));
    snapshot(stage);
  }
  rerun_and_compare(whole);
  EXPECT_EQ(counts(server), asked);
  int survived = 3, asked_again = 0;

  const auto failures = [] {  // failed assertions so far
    return ::testing::UnitTest::GetInstance()->current_test_info()->result()->total_part_count();
  };
  for (const KillCase& c : kCases) {
    SCOPED_TRACE(c.point);
    const int before = failures();
    restore(c.from_stage);
    server.clear();
    kill_at(c.point);
    const std::map<std::string, int> first = counts(server);  // asked by the killed run
    const std::set<std::string> kept = stored_prompts(db_);    // of those, the replies it stored
    rerun_and_compare(whole);
    // A prompt is asked again only when the killed run received its reply but died before storing it: the replies
    // in flight at judge.chunk_received, or those after the stored ones at store.judgment_stored.
    const std::map<std::string, int> sent = counts(server);
    EXPECT_EQ(sent.size(), asked.size()) << "every prompt asked, none other";
    for (const auto& [prompt, n] : sent) {
      EXPECT_EQ(n, static_cast<int>(first.count(prompt)) + (kept.count(prompt) ? 0 : 1)) << "asked " << n << " times: " << prompt;
      asked_again += first.count(prompt) && !kept.count(prompt) ? 1 : 0;
    }
    survived += failures() == before ? 1 : 0;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("kill points survived: %d of %zu, in %.0f s; judge replies received but lost to a kill (asked again): "
              "%d\n", survived, kCases.size() + 3, secs, asked_again);
}
