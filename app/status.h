// `runner status [EXP] [--format table|json]`: what a run is doing, from a second terminal. Reads the store
// read-only (any number of times while a run writes it): per experiment the trials by status, each running
// trial's label, its current stage, step/total and the stage's ETA, and the experiment's ETA.
//
// A stage commits its metrics only when it ends, so the step comes from `<trial artifact_dir>/progress.json`,
// which the running stage's progress bar rewrites about once a second (ProgressFile in core/log.h). A running
// trial whose process is gone (its pid is not alive on this host) is reported as stale: the next run of the
// experiment marks it interrupted.
#pragma once

#include <filesystem>
#include <ostream>
#include <string>

#include "app/format.h"

namespace mmr {

struct StatusOptions {
  std::filesystem::path results;
  std::string experiment;  // a name, an experiment file, or empty for every experiment
  Format format = Format::Table;
};

// Prints the status; throws ConfigError for bad input (no database, no such experiment, --format csv).
void print_status(const StatusOptions& options, std::ostream& out);

}  // namespace mmr
