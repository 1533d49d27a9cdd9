// The runner's command line (app/command_line.cpp) through the real binary: each command's own --help, unknown
// options and stray arguments refused with exit status 2 naming them, global options before or after the command,
// the `runner EXP.yaml` shorthand, the flags the runner passes to its own children, `plan --format`, `score
// BENCHMARK --help`, and `runner results`' --where / --stage / --columns, column names and folding.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

#include "runner_fixture.h"

namespace fs = std::filesystem;
using mmr::test::kGoodPlugins;
using mmr::test::kRunner;
using mmr::test::ProcessResult;

namespace {

class CommandLine : public mmr::test::RunnerTest {
 protected:
  // Four trials of the test plugins: train (counter: loss, final_loss, seed) then eval (line_bench: lines, words).
  std::string grid_spec() const {
    return write("exp.yaml", R"(name: e2e
defaults: {train: {steps: 4, decay: 0.5}}
grid:
  train.start: [1.0, 2.0]
seeds: [1, 2]
stages:
  - {name: train, algorithm: counter, steps: "${train.steps}", start: "${train.start}", decay: "${train.decay}"}
  - {name: eval, benchmark: line_bench, file: "${artifact:train/curve}"}
)");
  }
  void run_grid() const {
    const ProcessResult r = runner({grid_spec()});
    ASSERT_EQ(r.status, 0) << r.err;
  }
  std::vector<std::string> lines(const std::string& text) const {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
  // Asserts exit status 2 and that stderr says `message`.
  void expect_usage_error(const std::vector<std::string>& rest, const std::string& message) const {
    const ProcessResult r = runner(rest);
    EXPECT_EQ(r.status, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << "expected '" << message << "' in: " << r.err;
  }
};

}  // namespace

TEST_F(CommandLine, EveryCommandHasItsOwnHelp) {
  // Each command's help names the command and says what the global usage says of it, and lists its own options.
  const std::vector<std::pair<std::string, std::vector<std::string>>> commands = {
      {"run", {"run an experiment: expand the grid", "--force", "--jobs", "--executor", "--sbatch", "Exit status"}},
      {"plan", {"print the expanded trials", "--verbose", "--format"}},
      {"results", {"one row per trial", "--where", "--stage", "--columns", "is folded"}},
      {"query", {"run SQL against the results database", "--format"}},
      {"plugins", {"every plugin with its version", "--kind"}},
      {"score", {"score existing answer or judgment files", "BENCHMARK"}},
      {"report", {"report.html and report.md", "--out"}},
      {"status", {"trials by status", "--format"}},
      {"serve", {"OpenAI-compatible", "--model-opt", "--allowed-media-dir", "--fail-status"}}};
  for (const auto& [command, pieces] : commands) {
    const ProcessResult r = runner({command, "--help"});
    EXPECT_EQ(r.status, 0) << command << ": " << r.err;
    EXPECT_NE(r.out.find("Usage: runner " + command), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("Subcommands:"), std::string::npos) << command << " printed the global usage:\n" << r.out;
    for (const auto& p : pieces)
      EXPECT_NE(r.out.find(p), std::string::npos) << command << ": no '" << p << "' in:\n" << r.out;
  }
  // The global usage lists the commands, not the internal ones; run's help hides the flags for the runner's children.
  const ProcessResult global = runner({"--help"});
  EXPECT_EQ(global.status, 0);
  for (const char* c : {"run", "plan", "results", "query", "plugins", "score", "report", "status", "serve"})
    EXPECT_NE(global.out.find(std::string("\n  ") + c + " "), std::string::npos) << c << " not in:\n" << global.out;
  EXPECT_EQ(global.out.find("_stage-rank"), std::string::npos);
  const ProcessResult run = runner({"run", "--help"});
  for (const char* hidden : {"--worker", "--force-since", "--slurm-job"})
    EXPECT_EQ(run.out.find(hidden), std::string::npos) << hidden << " shown in:\n" << run.out;
  // `runner EXP.yaml --help` is run's.
  EXPECT_NE(runner({grid_spec(), "--help"}).out.find("Usage: runner run"), std::string::npos);
}

TEST_F(CommandLine, UnknownOptionsAndStrayArgumentsExitTwoNamingThem) {
  const std::string spec = grid_spec();
  expect_usage_error({"results", "--force", "--kind", "model", "-o", "x=1"},
                     "runner results: unknown option '--force'");
  expect_usage_error({"plan", spec, "--frobnicate"}, "runner plan: unknown option '--frobnicate'");
  expect_usage_error({spec, "--verbose"}, "runner run: unknown option '--verbose'");
  expect_usage_error({"results", "stray"}, "runner results: unexpected argument 'stray'");
  expect_usage_error({"results", "plan"}, "runner results: unexpected argument 'plan'");
  expect_usage_error({"run", spec, "other.yaml"}, "runner run: unexpected argument 'other.yaml'");
  expect_usage_error({"query", "SELECT 1", "SELECT 2"}, "runner query: unexpected argument 'SELECT 2'");
  expect_usage_error({"plugins", "--kind", "modle"},
                     "--kind 'modle': expected model, algorithm, dataset, benchmark or judge");
  expect_usage_error({"status", "--format", "csv"}, "--format 'csv': expected table or json");
  expect_usage_error({"results", "--format", "xml"}, "--format 'xml': expected table, csv or json");
  expect_usage_error({"plan", spec, "--format", "yaml"}, "--format 'yaml': expected table, csv or json");
  expect_usage_error({"run", spec, "--executor", "pbs"}, "--executor 'pbs': expected local or slurm");
  expect_usage_error({"run", spec, "--jobs", "0"}, "--jobs '0': expected a number of worker processes from 1 to 256");
  expect_usage_error({"plan"}, "runner plan: experiment is required");
  expect_usage_error({"results", "--experiment"}, "--experiment");
  expect_usage_error({"frobnicate"}, "unknown command 'frobnicate' (expected an experiment .yaml file or one of: run,");
  expect_usage_error({}, "no command given");
  expect_usage_error({"serve", "--model", "llava", "--port", "x"}, "--port: expected an integer, found 'x'");
  expect_usage_error({"serve", "--port", "0"}, "no model given");
  expect_usage_error({"serve", "--model", "llava", "--bogus", "1"}, "runner serve: unknown option '--bogus'");
  EXPECT_FALSE(fs::exists(db_));  // none of them ran anything
}

TEST_F(CommandLine, GlobalOptionsGoBeforeOrAfterTheCommandAndOverridesInEveryForm) {
  const std::string spec = grid_spec();
  // -okey=value and --override before the experiment file (the shorthand for run), global options after it.
  const ProcessResult ok = mmr::test::run({kRunner, "-otrain.steps=2", "--override", "train.decay=0.25", spec,
                                           "--results", db_, "--plugin-path", kGoodPlugins});
  ASSERT_EQ(ok.status, 0) << ok.err;
  const ProcessResult after = mmr::test::run({kRunner, "results", "--format", "csv", "--columns", "label,train/loss",
                                              "--results", db_});
  ASSERT_EQ(after.status, 0) << after.err;
  // 2 steps at decay 0.25: the last step's loss is start * 0.25.
  EXPECT_EQ(after.out, "label,train/loss\ntrain.start=1.0 seed=1,0.25\ntrain.start=1.0 seed=2,0.25\n"
                       "train.start=2.0 seed=1,0.5\ntrain.start=2.0 seed=2,0.5\n");
  const ProcessResult before = mmr::test::run({kRunner, "--results", db_, "--log-level", "warn", "query",
                                               "SELECT count(*) AS n FROM trials", "--format", "csv"});
  EXPECT_EQ(before.out, "n\n4\n") << before.err;
}

TEST_F(CommandLine, TheFlagsTheRunnerPassesToItsChildrenStillWork) {
  const std::string spec = grid_spec();
  // A --jobs worker's arguments (app/main.cpp worker_args): --force with the parent's start, and --worker.
  const ProcessResult worker = runner({"run", spec, "-o", "train.steps=3", "--force",
                                       "--force-since=2000-01-01T00:00:00.000Z", "--worker"});
  EXPECT_EQ(worker.status, 0) << worker.err;
  EXPECT_EQ(query("SELECT count(*) FROM trials WHERE status = 'finished'").rows[0][0].text, "4");
  // Inside a Slurm job: --slurm-job names the job folder, which must hold the job's ledger.
  const std::string job = (dir_ / "no-job").string();
  expect_usage_error({"run", spec, "--slurm-job", job}, "--slurm-job " + job + ": no job ledger");
  // A rank of a data-parallel stage: `_stage-rank REQUEST.json` reaches the rank's code (which fails on a missing
  // request with status 1, not as a usage error).
  const ProcessResult rank = runner({"_stage-rank", (dir_ / "missing.json").string()});
  EXPECT_EQ(rank.status, 1) << rank.err;
  EXPECT_EQ(rank.err.find("unknown command"), std::string::npos) << rank.err;
}

TEST_F(CommandLine, PlanFormatJsonAndCsvPrintOnlyTheDocument) {
  const std::string spec = grid_spec();
  const ProcessResult json = runner({"plan", spec, "--format", "json"});
  ASSERT_EQ(json.status, 0) << json.err;
  const nlohmann::json doc = nlohmann::json::parse(json.out);  // the whole of stdout is one JSON document
  EXPECT_EQ(doc["experiment"], "e2e");
  EXPECT_EQ(doc["to_run"], 4);
  EXPECT_EQ(doc["finished"], 0);
  ASSERT_EQ(doc["stages"].size(), 2u);
  EXPECT_EQ(doc["stages"][0], (nlohmann::json{{"name", "train"}, {"kind", "algorithm"}, {"plugin", "counter"}}));
  EXPECT_EQ(doc["stages"][1]["plugin"], "line_bench");
  ASSERT_EQ(doc["trials"].size(), 4u);
  EXPECT_EQ(doc["trials"][3]["label"], "train.start=2.0 seed=2");
  EXPECT_EQ(doc["trials"][3]["status"], "new");
  EXPECT_EQ(doc["trials"][3]["seed"], 2);
  EXPECT_FALSE(doc["trials"][0].contains("config"));

  const nlohmann::json verbose = nlohmann::json::parse(runner({"plan", spec, "--format", "json", "-v"}).out);
  EXPECT_EQ(verbose["trials"][2]["config"]["config"]["train"]["start"], 2.0);
  EXPECT_EQ(verbose["trials"][2]["identity"].get<std::string>().substr(0, 12), verbose["trials"][2]["trial"]);

  const ProcessResult csv = runner({"plan", spec, "--format", "csv"});
  ASSERT_EQ(csv.status, 0) << csv.err;
  const auto rows = lines(csv.out);
  ASSERT_EQ(rows.size(), 5u) << csv.out;
  EXPECT_EQ(rows[0], "#,trial,status,seed,label");
  const std::string last = ",new,2,train.start=2.0 seed=2";
  EXPECT_EQ(rows[4].substr(rows[4].size() - last.size()), last) << rows[4];
}

TEST_F(CommandLine, ScoreBenchmarkHelpListsTheBenchmarksKeys) {
  const ProcessResult r = runner({"score", "line_bench", "--help"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("usage: runner score line_bench KEY=VALUE..."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("test benchmark: counts lines and words of a file"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("does not declare which of its options scoring reads"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    file                   path    -              the file to evaluate"), std::string::npos)
      << r.out;
  const ProcessResult unknown = runner({"score", "nope", "--help"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.err.find("unknown benchmark 'nope'"), std::string::npos) << unknown.err;
  // Without a benchmark, --help is the command's own.
  EXPECT_NE(runner({"score", "--help"}).out.find("Usage: runner score"), std::string::npos);
}

TEST_F(CommandLine, ResultsWhereStageAndColumns) {
  run_grid();
  auto csv = [&](std::vector<std::string> rest) {
    rest.insert(rest.begin(), "results");
    rest.insert(rest.end(), {"--format", "csv", "--columns", "#,label"});
    const ProcessResult r = runner(rest);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  };
  const std::string all = "#,label\n0,train.start=1.0 seed=1\n1,train.start=1.0 seed=2\n2,train.start=2.0 seed=1\n"
                          "3,train.start=2.0 seed=2\n";
  EXPECT_EQ(csv({}), all);
  // A label key, compared as a number (1 = 1.0), and the seed.
  EXPECT_EQ(csv({"--where", "train.start=1"}), "#,label\n0,train.start=1.0 seed=1\n1,train.start=1.0 seed=2\n");
  EXPECT_EQ(csv({"--where", "train.start=2", "--where", "seed=1"}), "#,label\n2,train.start=2.0 seed=1\n");
  // Trial fields; a glob.
  EXPECT_EQ(csv({"--where", "status=finished", "--where", "label=*seed=2"}),
            "#,label\n1,train.start=1.0 seed=2\n3,train.start=2.0 seed=2\n");
  EXPECT_EQ(csv({"--where", "status=failed"}), "#,label\n");
  // Resolved configuration values no label shows: a defaults path (0.5 written 5e-1) and a stage's option.
  EXPECT_EQ(csv({"--where", "train.decay=5e-1"}), all);
  EXPECT_EQ(csv({"--where", "train.steps=3"}), "#,label\n");
  exec("UPDATE trials SET status = 'failed' WHERE ordinal = 2");
  EXPECT_EQ(csv({"--where", "status=failed"}), "#,label\n2,train.start=2.0 seed=1\n");

  // --stage keeps that stage's metrics; --columns picks and orders columns by glob.
  const ProcessResult eval = runner({"results", "--stage", "eval", "--format", "csv"});
  EXPECT_EQ(lines(eval.out)[0], "experiment,#,trial,label,status,attempt,eval/lines,eval/words") << eval.err;
  const ProcessResult picked = runner({"results", "--columns", "train/*,label", "--columns", "#", "--format", "csv"});
  EXPECT_EQ(lines(picked.out)[0], "train/final_loss,train/loss,train/seed,label,#") << picked.err;
  EXPECT_EQ(lines(picked.out)[1], "0.125,0.125,1.0,train.start=1.0 seed=1,0");

  expect_usage_error({"results", "--where", "train.strat=1"},
                     "--where 'train.strat=1': no trial has a key 'train.strat'; trial fields: experiment, #, trial, "
                     "label, status, attempt, seed; label keys: train.start; configuration keys");
  expect_usage_error({"results", "--where", "seed"}, "--where 'seed': expected KEY=VALUE");
  expect_usage_error({"results", "--stage", "evl"}, "--stage 'evl': no final metric of a stage 'evl'; stages with "
                                                    "metrics: eval, train");
  expect_usage_error({"results", "--columns", "#,x*"}, "--columns 'x*' matches no column; columns: experiment, #,");
}

TEST_F(CommandLine, ResultsColumnsDoNotRepeatTheStageName) {
  const std::string spec = write("one.yaml", "name: one\nstages:\n  - {name: train, algorithm: counter, steps: 2}\n"
                                             "  - {name: eval, algorithm: counter, steps: 2}\n");
  const ProcessResult r = runner({spec});
  ASSERT_EQ(r.status, 0) << r.err;
  // Metrics named as the training loop names them ("train/..."), which the test plugins do not log.
  exec("INSERT INTO metrics (trial_id, attempt, stage, name, step, value, recorded_at) VALUES "
       "(1, 1, 'train', 'train/rewards/accuracy', NULL, 0.75, '2026-01-01T00:00:00.000Z'), "
       "(1, 1, 'train', 'train/loss', NULL, 0.5, '2026-01-01T00:00:00.000Z'), "
       "(1, 1, 'eval', 'train/loss', NULL, 0.25, '2026-01-01T00:00:00.000Z')");
  const ProcessResult csv = runner({"results", "--format", "csv", "--columns", "train/*,eval/*"});
  ASSERT_EQ(csv.status, 0) << csv.err;
  // train/rewards/accuracy, not train/train/rewards/accuracy; the stage's own "loss" keeps train/loss, so its
  // "train/loss" stays train/train/loss; another stage's train/loss keeps its stage in front.
  EXPECT_EQ(lines(csv.out)[0], "train/final_loss,train/loss,train/seed,train/train/loss,train/rewards/accuracy,"
                               "eval/final_loss,eval/loss,eval/seed,eval/train/loss");
  EXPECT_EQ(lines(csv.out)[1], "0.5,0.5,42.0,0.5,0.75,0.5,0.5,42.0,0.25");
}

TEST_F(CommandLine, AResultsTableWiderThanTheTerminalIsFolded) {
  run_grid();
  const auto wide = mmr::test::run(args({"results"}), {{"COLUMNS", "400"}});
  const auto narrow = mmr::test::run(args({"results"}), {{"COLUMNS", "60"}});
  ASSERT_EQ(narrow.status, 0) << narrow.err;
  const std::vector<std::string> one = lines(wide.out), folded = lines(narrow.out);
  ASSERT_EQ(one.size(), 6u) << wide.out;  // header, rule, four trials: one block
  EXPECT_GT(one[0].size(), 60u);
  size_t blocks = 0;
  std::string headers;
  for (size_t i = 0; i < folded.size(); ++i) {
    EXPECT_LE(folded[i].size(), 60u) << folded[i];
    if (i == 0 || (i > 0 && folded[i - 1].empty())) {
      ++blocks;
      headers += folded[i] + " ";
      if (blocks > 1) {
        EXPECT_EQ(folded[i].rfind("#  label", 0), 0u) << folded[i];  // each further block: # and label first
      }
    }
  }
  EXPECT_GE(blocks, 3u) << narrow.out;
  for (const char* column : {"experiment", "trial", "status", "attempt", "eval/lines", "eval/words", "train/final_loss",
                             "train/loss", "train/seed"})
    EXPECT_NE(headers.find(column), std::string::npos) << column << " not in " << narrow.out;
  // csv is never folded.
  EXPECT_EQ(lines(mmr::test::run(args({"results", "--format", "csv"}), {{"COLUMNS", "60"}}).out).size(), 5u);
}
