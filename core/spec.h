// Experiment specs: YAML in, a list of fully resolved trials out.
//
//   name: ablation                      # required; the experiment's key in the results store
//   description: ...
//   vars: {data: /data/prefs.jsonl}     # values several stages share: ${data} anywhere below; -o data=...
//   defaults: {noise: 0.0}              # the base configuration of every trial (read with ${noise})
//   grid: {train.beta: [0.1, 0.3]}      # cartesian product over dotted keys (file order, last fastest)
//   zip: [{train.lr: [5e-5, 5e-6], train.epochs: [3, 2]}]   # lists advanced together
//   seeds: [1, 2]                       # every point runs once per seed (${seed})
//   include: [{train.beta: 0.5}]        # extra points (not crossed with the grid; exclude does not apply)
//   exclude: [{train.beta: 0.3, noise: 0.25}]               # drop grid points matching all given keys
//   max_trials: 10000                   # a larger grid (points x seeds, before exclude) is refused, with its size
//   stages:                             # run in order for every trial
//     - {name: train, algorithm: dpo, beta: 0.1, lr: 5e-5, epochs: 3, model: {plugin: llava, lora_r: 8}}
//     - {name: eval, benchmark: pope, model: {plugin: llava, adapter: "${artifact:train/adapter}"}}
//   report: {tables: [...], plots: [...]}  # read by `runner report` only; no part of any trial
//
// A stage with `when: {method: dpo}` (a configuration key and a value or list of values) is part of the trials
// whose configuration has that value, and left out of the others. Alternatives of one step may share a stage
// name when each has a `when:` — one per method, say — so a later stage's ${artifact:train/adapter} is whichever
// ran; a key that sets `train.<option>` sets it in every alternative. A trial in which two alternatives apply, or
// whose stage uses an artifact of a stage left out of it, is an error.
//
// Keys of grid, zip, include, exclude and -o (the rule, in this order):
//   1. a key whose first part is a top-level key of `defaults:` sets that configuration path, even when a stage
//      has the same name (defaults win: a file written before stage keys existed keeps its meaning and its
//      trial identities). When a stage has that name too and no ${...} refers to the value, it is an error
//      naming both positions (the writer meant the stage's option): rename the defaults key, or refer to it;
//   2. else a key whose first part names a stage sets that stage's option: `train.lr` is the option `lr` of
//      the stage named train, `train.model.lora_r` the nested option (maps are made as needed; a scalar on the
//      way is an error). `train` alone, `train.name` and `train.algorithm` are errors;
//   3. else the key sets a configuration path (read with ${key}); for -o this is an error listing the vars,
//      stages and defaults keys (-o defaults.key=... adds one explicitly).
// -o key=value, before that rule: a key that starts with a section sets that path in the document
// (-o defaults.noise=0.5, -o grid.train.lr=[1e-4], -o seeds=[7]); a key the file's vars have (the whole dotted
// key) sets the var. An -o on a key the grid or a zip group varies is an error (use -o grid.key=[...]).
// A stage may not be named like a section. Trial labels show the keys as written ("train.lr=5e-5 seed=1").
//
// Interpolation: "${a.b}" looks a.b up in the overrides and vars, then in the trial's configuration; a value
// that is exactly one reference keeps the referenced value's type (number, list, map). "${env:NAME}" reads the
// environment when the stage runs: the variable must be set when the experiment is planned, but only the
// reference is kept in the configuration, the identity and the store (a secret stays out of them, and a new
// key does not make new trials); logs and stored errors show the reference instead of a value of 8 characters
// or more. "${artifact:stage/name}" and "${trial:dir}" are resolved when the stage runs; they may only
// name earlier stages. A stage's options are not variables: share a value between stages with a var.
// A trial's identity is the SHA-256 of its resolved configuration and stages as canonical JSON.
// Every error names file:line:column (or the -o it comes from) and what was expected.
#pragma once

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/api/plugin_api.h"

namespace mmr {

struct StageSpec {
  std::string name;
  PluginKind kind;         // algorithm, benchmark or dataset
  std::string plugin;      // registered plugin name
  YAML::Node options;      // resolved at expansion time; run-time references still as text
  YAML::Node where;        // the stage's node in the file, for error positions
  // Data parallel (`ranks: N` or `devices: [0, 1]` on the stage): the stage runs in N processes (core/ranks.h).
  // Not options of the plugin, and not part of the trial's identity: N ranks train as one process does.
  int ranks = 1;
  std::vector<std::string> devices;  // one per rank: CUDA_VISIBLE_DEVICES of that rank (an index into the
                                     // runner's own CUDA_VISIBLE_DEVICES when it has one)
};

struct Trial {
  int64_t ordinal = 0;                 // position in the expansion, from 0
  std::string identity;                // sha256 hex of `resolved`
  std::string label;                   // "train.beta=0.1 seed=1": the keys that vary
  uint64_t seed = 0;
  YAML::Node config;                   // defaults + this point, interpolated
  std::vector<StageSpec> stages;
  std::string resolved_json;           // canonical JSON of {config, seed, stages}
};

struct Experiment {
  YAML::Node pool;  // the YamlPool the trials' nodes live in (see YamlPool)
  std::string name;
  std::string description;
  std::filesystem::path source;        // the YAML file
  std::string text;                    // its contents (stored with the experiment)
  std::vector<Trial> trials;
  int64_t duplicates_dropped = 0;      // points whose identity repeated an earlier one
};

// Loads and expands a spec. `overrides` are "key=value" strings from `-o`: a section's path, a var, a stage's
// option or a configuration value, by the rule above.
Experiment load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides = {});

// The same from text (tests); `source` names it in errors.
Experiment parse_experiment(const std::string& text, const std::string& source,
                            const std::vector<std::string>& overrides = {});

// Resolves run-time references in a stage's options: ${artifact:stage/name}, ${trial:dir}, ${trial:identity}.
// `lookup(namespace, key)` returns the replacement text or throws.
YAML::Node resolve_runtime(const YAML::Node& node,
                           const std::function<std::string(const std::string&, const std::string&)>& lookup);

// yaml-cpp keeps the nodes of a tree in one memory pool, and putting a node into a container of another pool
// merges the pools: the container's pool copies in every node of the other, and from then on the other tree's
// nodes belong to the container's pool. Trials share the document's scalars (they keep their file positions for
// errors), so each trial's new containers used to copy in the document's pool, and with it every earlier trial:
// a 500-trial grid took 20 s and 640 MB to plan, and checking the trials' options did the same again. While a
// YamlPool lives (on this thread), new_container() puts each new map or list into its pool as it is made, so a
// merge only ever moves a few new nodes. The pool is a list node, `anchor`: parse_experiment adopts the document
// into a new one and keeps it in Experiment::pool, where validate_experiment finds it again.
class YamlPool {
 public:
  explicit YamlPool(YAML::Node anchor = YAML::Node(YAML::NodeType::Sequence));
  ~YamlPool();
  YamlPool(const YamlPool&) = delete;
  YamlPool& operator=(const YamlPool&) = delete;
  void adopt(const YAML::Node& tree) { anchor_.push_back(tree); }  // its pool becomes this one's, once
  const YAML::Node& anchor() const { return anchor_; }
  static YamlPool*& current();

 private:
  YAML::Node anchor_;
  YamlPool* previous_;
};

// An empty map or list (`type`), in the current YamlPool's pool when there is one.
YAML::Node new_container(YAML::NodeType::value type);

// Replaces ${env:NAME} in a stage's options by the variable's value (ConfigError when it is not set), and
// registers the value as a secret (core/log.h). Done when the stage runs, in the process that runs it.
YAML::Node resolve_env(const YAML::Node& node);

// YAML → canonical JSON text (keys sorted, plain scalars typed: int, float, bool, null, else string).
std::string canonical_json(const YAML::Node& node);

// "file:line:column: " for a node parsed from `source` ("file: " when it has no position).
std::string yaml_where(const YAML::Node& node, const std::string& source);

}  // namespace mmr
