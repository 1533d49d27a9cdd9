// What `runner plan` checks without running anything, and where relative paths are read from: the plugin nodes
// nested in a stage's options against their plugins' schemas, the files and folders the stages read (every missing
// one listed, read from the experiment file's folder), and -o keys the file does not have. The real runner and the
// real plugins; POPE scores an answer file, so nothing is generated.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "runner_fixture.h"

namespace fs = std::filesystem;
using namespace mmr::test;
using mmr::QueryResult;

namespace {

const fs::path kPopeSmall = fs::path(MMR_TEST_DATA_DIR) / "benchmarks" / "pope" / "small";
const fs::path kTinyModel = fs::path(MMR_TEST_DATA_DIR) / "tiny-llava" / "model";

class PlanChecks : public RunnerTest {
 protected:
  // An experiment in its own folder `sub/`, with POPE's small answer, question and label files copied beside it.
  std::string experiment(const std::string& stage_options, const std::string& extra = "") {
    fs::create_directories(dir_ / "sub" / "small");
    for (const char* f : {"answers.jsonl", "questions.jsonl", "coco_pope_adversarial.json", "coco_pope_random.json"})
      fs::copy_file(kPopeSmall / f, dir_ / "sub" / "small" / f, fs::copy_options::overwrite_existing);
    return write("sub/exp.yaml", "name: checks\n" + extra + "stages:\n  - name: pope\n    benchmark: pope\n" +
                                     stage_options);
  }
  ProcessResult in(const fs::path& cwd, const std::vector<std::string>& rest) {
    const fs::path before = fs::current_path();
    fs::current_path(cwd);
    ProcessResult r = runner(rest);
    fs::current_path(before);
    return r;
  }
};

const std::string kScoreFiles =
    "    answers: small/answers.jsonl\n    questions: small/questions.jsonl\n    labels: small\n";

}  // namespace

TEST_F(PlanChecks, AMisspeltOptionOfANestedModelIsAnErrorAtItsLine) {
  const std::string file = experiment("    model: {plugin: llava, path: " + kTinyModel.string() +
                                      ", lora_rank: 8}\n    questions: small/questions.jsonl\n");
  const ProcessResult r = runner({"plan", file});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find(file + ":5:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lora_rank"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("option 'model' (model 'llava')"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("lora_r"), std::string::npos) << "the known options are listed: " << r.err;
}

TEST_F(PlanChecks, AnUnknownNestedPluginIsAnErrorListingTheLoadedOnes) {
  const std::string file = experiment("    model: {plugin: lava}\n    questions: small/questions.jsonl\n");
  const ProcessResult r = runner({"plan", file});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("unknown model 'lava'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("llava"), std::string::npos) << r.err;
}

TEST_F(PlanChecks, EveryMissingFileIsListedReadFromTheFilesFolder) {
  const std::string file = experiment("    model: {plugin: llava, path: no-model}\n"
                                      "    questions: small/no-questions.jsonl\n    image_folder: small\n");
  const ProcessResult r = in("/", {"plan", file});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("2 file(s) or folder(s) the experiment reads do not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((dir_ / "sub" / "no-model").string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find((dir_ / "sub" / "small" / "no-questions.jsonl").string()), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("image_folder"), std::string::npos) << "small/ exists beside the file: " << r.err;
}

TEST_F(PlanChecks, RelativePathsWorkFromAnyFolderAndCwdNamesTheWorkingOne) {
  const std::string file = experiment(kScoreFiles);
  const ProcessResult r = in("/", {file});
  ASSERT_EQ(r.status, 0) << r.err;
  const QueryResult f1 = query("SELECT value FROM final_metrics WHERE stage = 'pope' AND name = 'mean/f1'");
  ASSERT_EQ(f1.rows.size(), 1u);
  // The same from the parent folder, through ${cwd}.
  const std::string again = write("sub/cwd.yaml", "name: cwd\nstages:\n  - name: pope\n    benchmark: pope\n"
                                                  "    answers: ${cwd}/sub/small/answers.jsonl\n"
                                                  "    questions: ${cwd}/sub/small/questions.jsonl\n"
                                                  "    labels: ${cwd}/sub/small\n");
  ASSERT_EQ(in(dir_, {again}).status, 0);
  const QueryResult both = query("SELECT DISTINCT value FROM final_metrics WHERE stage = 'pope' AND name = 'mean/f1'");
  EXPECT_EQ(both.rows.size(), 1u) << "the same files, the same F1";
  EXPECT_EQ(in("/", {"plan", again}).status, 2) << "${cwd} is the working directory, / here";
}

TEST_F(PlanChecks, AnOverrideOfAKeyTheFileDoesNotHaveNamesTheNearestOne) {
  const std::string file = experiment(kScoreFiles, "defaults:\n  dpo: {beta: 0.1}\n");
  ProcessResult r = runner({"plan", file, "-o", "defaults.dpo.bta=0.3"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("no key 'defaults.dpo.bta' (did you mean 'defaults.dpo.beta'?)"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("-o +defaults.dpo.bta=0.3"), std::string::npos) << r.err;
  r = runner({"plan", file, "-o", "dpo.bta=0.3"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("(did you mean 'dpo.beta'?)"), std::string::npos) << r.err;
  EXPECT_EQ(runner({"plan", file, "-o", "+defaults.dpo.bta=0.3"}).status, 0);
  EXPECT_EQ(runner({"plan", file, "-o", "defaults.dpo.beta=0.3"}).status, 0);
}

namespace {

// Field `name` of /proc/<pid>/status ("" when the process is gone).
std::string proc_status_field(pid_t pid, const std::string& name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + ":", 0) == 0) return line.substr(name.size() + 1);
  return "";
}

// Polls `done` every 10 ms for up to `seconds`.
bool within(double seconds, const std::function<bool()>& done) {
  for (int i = 0; i < seconds * 100; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

}  // namespace

// plan records nothing, so the first Ctrl-C ends it at once: it used to ask for a stop "after the current step",
// which reading and expanding an experiment never checks (a large grid kept expanding for minutes). The plan
// reads a FIFO nobody writes yet, so it is still planning when the signal comes, whatever the timing.
TEST_F(PlanChecks, TheFirstCtrlCEndsPlanAtOnce) {
  const fs::path fifo = dir_ / "exp.yaml";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Process plan(args({"plan", fifo.string()}));
  // Planning has begun once the runner waits to open the FIFO (the kernel's wait channel names it: fifo_open, or
  // wait_for_partner inside it).
  ASSERT_TRUE(within(30, [&] {
    std::ifstream in("/proc/" + std::to_string(plan.pid()) + "/wchan");
    std::string wchan;
    in >> wchan;
    return wchan == "fifo_open" || wchan == "wait_for_partner";
  }));
  plan.signal(SIGINT);
  const bool ended = within(10, [&] { return proc_status_field(plan.pid(), "State").find('Z') != std::string::npos; });
  if (!ended) std::ofstream(fifo) << "name: late\nstages:\n  - {name: count, algorithm: counter}\n";  // unblock it
  const ProcessResult r = plan.wait();
  EXPECT_TRUE(ended) << "plan went on after SIGINT";
  EXPECT_EQ(r.status, 130) << r.err;
  EXPECT_NE(r.err.find("SIGINT received before anything ran"), std::string::npos) << r.err;
}
