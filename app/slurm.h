// `runner EXP.yaml --executor slurm`: one Slurm job per trial, each running that trial's stages with this same
// binary, results merged into the one results database by the submitting runner.
//
// Why per-job store files: SQLite's locking cannot be trusted over a network filesystem, so no job opens the
// results database. Each job writes its own store file in its job folder (<results folder>/slurm/<experiment>/
// <trial>/store.db), started from a snapshot of the results database, so stages that already finished are reused
// rather than run again; the submitting runner merges a job's file into the results database when the job ends
// (Store::import_trial, one transaction). Every SQLite file is thus written from one host at a time.
//
// Stages shared by every trial (a common base model, a shared data stage): the first trial is submitted alone
// (the pilot) and the others with `--dependency=afterany:<pilot>`, starting from the pilot's store file, so what
// the pilot ran is reused instead of run once per job. Jobs are submitted with --requeue: a preempted job is
// requeued by Slurm and resumes from its own store and checkpoints; a job that ends without finishing its trial
// (scancel, node failure, time limit) is submitted again, up to `retries` times. A rerun of the experiment
// submits nothing for finished trials nor for trials whose job is still queued or running.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/spec.h"

namespace mmr::slurm {

struct SlurmOptions {
  std::string partition;                 // sbatch --partition ("" = the cluster's default)
  std::string time;                      // sbatch --time
  int gpus_per_trial = 0;                // sbatch --gpus (0: none asked for)
  std::vector<std::string> sbatch_args;  // more sbatch arguments, as given
  bool wait = true;                      // poll until every job ended, merging as they end
  double poll_s = 10;                    // seconds between squeue calls
  int retries = 2;                       // resubmissions of a job that ended without finishing its trial
};

// The folder of a trial's job under the results database's folder.
std::filesystem::path job_dir(const std::filesystem::path& results_db, const Experiment& exp, const Trial& trial);

// Submits the trials that need running and (with wait) follows them to the end. `job_command(dir)` is the
// runner command line a job runs (absolute paths). Returns 0 when every trial finished, 1 when one failed,
// 130 when interrupted (the jobs stay queued; a rerun collects them).
int run_on_slurm(const Experiment& exp, const std::filesystem::path& results_db, const SlurmOptions& options,
                 const std::function<std::vector<std::string>(const std::filesystem::path&)>& job_command);

// Inside a job (`runner ... --slurm-job DIR`): the trial it runs, and its store file made ready — created from
// the first seed that exists when it is new, and any trial left 'running' by an earlier run of this job (killed,
// requeued, perhaps on another node) marked interrupted: no other process ever writes this file.
struct JobPlan {
  std::string identity;
  std::filesystem::path store;
};
JobPlan prepare_job(const std::filesystem::path& dir);
// After the job's run: a closed copy of its store (published.db), the seed of the jobs that waited for it.
void publish_job(const JobPlan& plan);

// `runner status`: the Slurm job of each trial of `experiment` that has a job folder, with the state squeue gives
// it ("ENDED" once Slurm no longer lists it); empty when there are none or squeue cannot be run.
struct JobState {
  int64_t ordinal = 0;
  std::string job_id, state;
};
std::vector<JobState> job_states(const std::filesystem::path& results_db, const std::string& experiment);

}  // namespace mmr::slurm
