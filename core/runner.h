// Runs an experiment: every trial's stages in order, recording outcomes, metrics and artifacts in the store.
//
// Resume rules: a finished trial is skipped (unless `force`); a pending, failed or interrupted one runs again
// as a new attempt. Within a rerun trial, a stage that finished in an earlier attempt and whose artifacts are
// still on disk with the recorded checksums is reused instead of run again (its metrics are copied into the
// new attempt), so a failed evaluation does not redo training. SIGINT/SIGTERM ask the running stage to stop;
// the trial is recorded as interrupted and the run ends. A second signal records that at once and exits.
#pragma once

#include <atomic>
#include <filesystem>
#include <string>
#include <vector>

#include "core/registry.h"
#include "core/spec.h"
#include "core/store.h"

namespace mmr {

struct RunOptions {
  std::filesystem::path results_db = "results/results.db";
  std::filesystem::path artifacts_root;  // default: the folder of results_db
  bool force = false;                    // rerun finished trials and stages too
  // With force: what finished at or after this instant (ISO UTC, as the store writes it) counts as done, so a
  // forced run reruns everything once, and stages identical across trials are still shared within it.
  // "" = the run's own start. `runner --jobs` gives its workers the parent's start.
  std::string force_since;
  std::vector<std::filesystem::path> plugin_paths;  // --plugin-path: the ranks of a data-parallel stage load the same
  // A --jobs worker: after its pass, wait for the trials other workers hold and take over any whose worker died.
  bool take_over_busy = false;
  bool keep_going = true;                // after a failed trial, go on with the next
};

struct RunSummary {
  int total = 0, ran = 0, finished = 0, skipped = 0, failed = 0, interrupted = 0, busy = 0, reused_stages = 0;
};

// Shared stop flag set by the signal watcher (or by tests).
std::atomic<bool>& stop_flag();

// Blocks SIGINT/SIGTERM in every thread started after it and watches them on its own thread. Construct it in
// main() before any other thread starts.
class SignalWatcher {
 public:
  SignalWatcher();
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;
};

// While one lives, the first SIGINT/SIGTERM exits at once with 130 instead of asking the work to stop after its
// step: for reading, expanding and checking an experiment (plan, and a run before its first trial), when nothing is
// recorded yet and stopping "after the current step" would mean after the whole expansion.
class ExitOnFirstSignal {
 public:
  ExitOnFirstSignal();
  ~ExitOnFirstSignal();
  ExitOnFirstSignal(const ExitOnFirstSignal&) = delete;
  ExitOnFirstSignal& operator=(const ExitOnFirstSignal&) = delete;
};

// Validates the experiment first (validate_experiment: nothing is recorded for a spec that cannot run). When a
// stage runs, its options are checked once more, after its run-time references are resolved, and that one
// checked set is what both the plugin and its StageContext see.
RunSummary run_experiment(const Experiment& exp, const Registry& registry, const RunOptions& options);

// Checks every stage's plugin exists and its options are valid, without running anything.
void validate_experiment(const Experiment& exp, const Registry& registry);

// The git commit of this build ("unknown" outside a checkout), "+dirty" when it had local changes.
const char* build_git_commit();

}  // namespace mmr
