// What `runner report` and `runner status` read from the results store about one experiment: its trials (with
// their labels split into keys and, for the report, their resolved configurations), final metrics, training
// curves and artifacts. Read through Store::query on a
// read-only connection, so both commands work while a run is writing the file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/store.h"

namespace mmr {

// One key=value of a trial label ("data.fraction=0.5").
struct LabelKey {
  std::string key, value;
};

struct TrialInfo {
  int64_t id = 0, ordinal = 0, seed = 0, pid = 0;
  int attempt = 0;
  std::string label;           // as stored: "data.fraction=0.5 data.noise=0.25 seed=1"
  std::string cell;            // the label without its seed ("(defaults)" when empty): trials of one cell differ
                               // only by seed
  std::vector<LabelKey> keys;  // the label's pairs, seed left out
  std::string status, started_at, ended_at, host, artifact_dir, error;
  // The resolved configuration (trials.config, read by load_experiment_data only) flattened to dotted paths:
  // each path of its `config` ("fraction" -> "1.0", "evaluated.plugin" -> "llava"), then each stage's options as
  // "<stage>.<option path>" ("train.lr" -> "0.004") where the configuration has no such path (the spec's rule:
  // defaults win). Strings as they are, numbers and booleans as canonical JSON prints them, maps and lists as
  // compact JSON.
  std::map<std::string, std::string> config;

  // The value of a key: the label's ("seed" included), else the resolved configuration's (a trial that does not
  // vary a key has it there only: `fraction` at its default). nullopt when neither has it.
  std::optional<std::string> value_of(const std::string& key) const;
  // The same with the configuration first: what the trial really ran with (a label shows values as written in
  // the file, "evaluated=${models.aligned}", where the configuration has the map that reference resolved to).
  std::optional<std::string> resolved_of(const std::string& key) const;
};

struct ArtifactInfo {
  std::string stage, name, path;
  int64_t bytes = 0;
};

using Curve = std::vector<std::pair<int64_t, double>>;  // (step, value), by step

struct ExperimentData {
  int64_t id = 0;
  std::string name, source, spec, created_at, updated_at;
  std::vector<TrialInfo> trials;  // by ordinal
  // "stage/name" of the metrics with a final (step-less) value, in stage order, then by name.
  std::vector<std::string> final_metrics;
  // "stage/name" of the metrics logged with steps (training curves), same order.
  std::vector<std::string> step_metrics;
  // metric -> trial id -> the value it ended with (the final_metrics view: a per-step metric's last step too).
  std::map<std::string, std::map<int64_t, double>> finals;
  std::map<std::string, std::map<int64_t, Curve>> curves;  // metric -> trial id -> its steps (latest attempt)
  std::map<int64_t, std::vector<ArtifactInfo>> artifacts;  // trial id -> its latest attempt's artifacts

  // Every key the trial labels show, in first-seen order, "seed" last when there are several seeds.
  std::vector<std::string> label_keys() const;
  // The top-level keys of the trials' configurations (their `defaults:` and varied keys), sorted.
  std::vector<std::string> config_keys() const;
  // Whether some trial has a value for `key` (TrialInfo::value_of).
  bool has_key(const std::string& key) const;
};

// Mean, spread and count of the values of one table cell or plot point.
struct Stats {
  int n = 0;
  double mean = 0, std = 0, min = 0, max = 0;  // std: the sample standard deviation (n - 1), 0 for one value
};
Stats stats_of(const std::vector<double>& values);

// SQL string literal: 'it''s'. Store::query takes no bound parameters.
std::string sql_quote(const std::string& text);

// "a=1 b=x y c=[1,2]" -> (a, 1), (b, "x y"), (c, "[1,2]"): a word that starts with `key=` starts a pair.
std::vector<LabelKey> parse_label(const std::string& label);

// Seconds since the epoch of a store time ("2026-11-26T21:39:35.123Z"); nullopt for anything else.
double now_seconds();

// The experiment an argument names: an experiment name in the store, or an experiment file whose `name:` is
// used. Throws ConfigError naming what was expected (and the experiments there are) when there is none.
std::string resolve_experiment(const Store& store, const std::string& arg, const std::filesystem::path& db);

// A trial's resolved configuration (trials.config) flattened as TrialInfo::config says; empty for a value that is
// not that JSON.
std::map<std::string, std::string> flatten_trial_config(const std::string& config_json);

// Opens the store read-only; a missing file is a ConfigError (bad input: exit status 2) saying what to pass.
Store open_store_read_only(const std::filesystem::path& db);

// The experiment's trials, by ordinal (what `runner status` needs).
std::vector<TrialInfo> load_trials(const Store& store, int64_t experiment_id);
// Everything `runner report` shows; `name` must be an experiment of the store (resolve_experiment).
ExperimentData load_experiment_data(const Store& store, const std::string& name);

}  // namespace mmr
