// The runner's command line, on CLI11: one subcommand per command, each with its own --help; global options
// (--results, --log-level, --plugin-path) before or after the command; an unknown option or a stray argument is a
// usage error (exit status 2) naming it. `runner EXP.yaml ...` is `runner run EXP.yaml ...`.
//
// Hidden from help, for the runner's own children: the command `_stage-rank REQUEST.json` (a rank of a
// data-parallel stage, core/ranks.h) and run's --worker / --force-since (a --jobs worker, app/jobs.h) and
// --slurm-job (inside a Slurm job, app/slurm.h).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "app/results_view.h"
#include "app/serve.h"
#include "app/slurm.h"

namespace mmr {

struct Args {
  std::string command;  // run, plan, results, query, plugins, score, report, status, serve, _stage-rank, version
  // global
  std::filesystem::path results = "results/results.db";
  std::string log_level = "info";
  std::vector<std::filesystem::path> plugin_paths;
  // run and plan
  std::filesystem::path file;  // the experiment file; _stage-rank: the rank's request file
  std::vector<std::string> overrides;
  bool verbose = false;
  bool force = false;
  int jobs = 1;
  std::string devices;
  std::string force_since;  // a worker of --jobs: the parent's start (RunOptions::force_since)
  bool worker = false;      // a worker of --jobs: the parent writes the report
  std::string executor = "local";
  slurm::SlurmOptions slurm;
  std::filesystem::path slurm_job;  // inside a Slurm job: its folder (slurm.h)
  // the other commands
  std::string format = "table";
  ResultsSelection selection;  // results
  std::string sql;             // query
  std::string kind;            // plugins
  std::string benchmark;       // score
  std::vector<std::string> score_args;
  bool score_help = false;     // score BENCHMARK --help: the benchmark's keys (needs the plugins loaded)
  std::string experiment;      // report, status
  std::filesystem::path out;   // report
  serve::ServeOptions serve;
  std::string serve_config;    // serve --model-config
};

// Parses the command line into `args`. Returns an exit status when there is nothing more to do (help printed:
// 0; a usage error printed to stderr: 2), nullopt when args.command is to run.
std::optional<int> parse_command_line(int argc, char** argv, Args& args);

}  // namespace mmr
