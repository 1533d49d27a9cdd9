// `runner results`: one row per trial (experiment, ordinal, identity, label, status, attempt) and one column per
// final metric, narrowed by --experiment, --where, --stage and --columns. The table format is folded to the
// terminal's width (format.h: print_table_within); csv and json print every selected column as they are.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/store.h"

namespace mmr {

struct ResultsSelection {
  std::optional<std::string> experiment;  // only this experiment's trials
  // KEY=VALUE, all must hold: KEY a trial field (experiment, #, trial, label, status, attempt, seed), a key of the
  // trial's label, or a path of its resolved configuration (a defaults key, a dotted path, <stage>.<option>);
  // VALUE a glob (fnmatch), or a number that equals the value as a number (1e-4 matches 0.0001).
  std::vector<std::string> where;
  std::string stage;                  // only this stage's metrics (the trial's fields stay)
  std::vector<std::string> columns;   // globs over column names, comma-separated; the columns in that order
};

// The column of metric `name` of stage `stage`: "stage/name", or `name` alone when it already starts with
// "stage/" (the training loop logs "train/loss"; in the stage named train that is train/loss, not
// train/train/loss).
std::string metric_column(const std::string& stage, const std::string& name);

// The table; throws ConfigError naming the --where, --stage or --columns that matches nothing (and what there is).
QueryResult results_table(const Store& store, const ResultsSelection& selection);

// The columns that say which row is which, repeated in each block of a folded table.
const std::vector<std::string>& results_key_columns();

}  // namespace mmr
