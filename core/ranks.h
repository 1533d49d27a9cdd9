// A stage on several data-parallel ranks (`ranks: N` or `devices: [0, 1]` on the stage): the runner starts N
// processes of itself (`runner _stage-rank REQUEST.json`) with torchrun's variables (RANK, WORLD_SIZE,
// MASTER_ADDR, MASTER_PORT on loopback) and, with `devices`, one GPU each; each runs the stage's plugin with the
// same options, and the training loop (core/lib/training) makes them one data-parallel run. Rank 0's metrics and
// artifacts become the stage's. A rank that fails stops the others; a stop request reaches every rank.
#pragma once

#include <spdlog/spdlog.h>

#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/spec.h"
#include "core/store.h"

namespace mmr {

struct RankRequest {
  std::string experiment;
  std::filesystem::path source;  // the experiment file (error positions, plugin option sources)
  std::string trial_identity;
  uint64_t seed = 0;
  StageSpec stage;
  YAML::Node options;  // resolved: run-time references substituted
  std::filesystem::path stage_dir;
  std::map<std::string, std::filesystem::path> artifacts;  // the trial's earlier ones, "stage/name"
  std::filesystem::path results_db;
  std::vector<std::filesystem::path> plugin_paths;
};

struct RankResult {
  std::vector<MetricRow> metrics;
  std::vector<std::pair<std::string, std::filesystem::path>> artifacts;
};

// Runs the stage on its ranks and returns rank 0's metrics and artifacts. Throws Interrupted when the ranks
// stopped on a signal, Error naming the rank and its error when one failed.
RankResult run_stage_ranks(const RankRequest& request, spdlog::logger& log);

// The body of `runner _stage-rank REQUEST.json` (a rank process): 0 when the stage finished on this rank.
int stage_rank_main(const std::filesystem::path& request_json);

}  // namespace mmr
