// The main job end to end, as the README runs it: `runner experiments/ablation.yaml` (a results database of its
// own), run from another folder: the file's relative paths are read from its own folder. Every trial finishes, the shared upstream stages run once and are reused, every
// evaluated model has its benchmark scores, the report is written, and a second run trains nothing. It takes a few
// minutes on 2 cores; the suite runs it because the main job is the first thing a user runs and the only place
// where all the stages meet (an empty sampled answer once failed it, and no narrower test saw that).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "core/store.h"
#include "process.h"

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = fs::path(MMR_SOURCE_DIR);
const std::string kRunner = (fs::path(MMR_TEST_BINARY_DIR) / "bin" / "runner").string();

std::string one(const fs::path& db, const std::string& sql) {
  mmr::Store s(db, mmr::Store::Mode::ReadOnly);
  const auto r = s.query(sql);
  return r.rows.empty() ? "<none>" : r.rows[0][0].text;
}

}  // namespace

TEST(MainJob, RunsEveryTrialReusesSharedStagesReportsAndRerunsInASecond) {
  const fs::path dir = fs::temp_directory_path() / ("mmr_main_job_" + std::to_string(getpid()));
  fs::remove_all(dir);
  const fs::path db = dir / "results.db";
  fs::create_directories(dir);
  ASSERT_EQ(chdir(dir.c_str()), 0);  // not the repository: the file's relative paths must not depend on it
  const std::string file = (kRoot / "experiments" / "ablation.yaml").string();
  const mmr::test::ProcessResult r = mmr::test::run({kRunner, "--results", db.string(), file});
  ASSERT_EQ(r.status, 0) << r.err.substr(r.err.size() > 4000 ? r.err.size() - 4000 : 0);
  EXPECT_EQ(one(db, "SELECT count(*) FROM trials WHERE status = 'finished'"), "12");
  // world, vicuna and llava run once for the 12 trials; sample and annotate once for the 10 that align a model.
  for (const char* stage : {"world", "vicuna", "llava", "sample", "annotate"})
    EXPECT_EQ(one(db, std::string("SELECT count(*) FROM stages WHERE reused_from IS NULL AND name = '") + stage + "'"),
              "1") << stage;
  // Every model evaluated: MT-Bench-format text for all 12, POPE and the VQA set for the 11 with a vision step.
  EXPECT_EQ(one(db, "SELECT count(*) FROM final_metrics WHERE stage = 'text' AND name = 'model/overall'"), "12");
  EXPECT_EQ(one(db, "SELECT count(*) FROM final_metrics WHERE stage = 'pope' AND name = 'mean/f1'"), "11");
  EXPECT_EQ(one(db, "SELECT count(*) FROM final_metrics WHERE stage = 'vqa' AND name = 'total'"), "11");
  EXPECT_EQ(one(db, "SELECT count(*) FROM final_metrics WHERE stage = 'train' AND name = 'train/loss'"), "10");
  EXPECT_TRUE(fs::exists(dir / "ablation" / "report" / "report.html"));
  const mmr::test::ProcessResult again = mmr::test::run({kRunner, "--results", db.string(), file});
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_NE(again.err.find("0 ran (0 finished, 0 failed, 0 interrupted), 12 skipped as finished"), std::string::npos)
      << again.err;
  ASSERT_EQ(chdir(kRoot.c_str()), 0);
  fs::remove_all(dir);
}
