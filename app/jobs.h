// `runner EXP.yaml --jobs N [--devices 0,1,...]`: independent trials of one experiment in N worker processes on
// one results store. Each worker is this runner run on the same file and overrides; the store decides who runs
// what (a trial is claimed by one process, an identical stage is run once under a lease and reused by the others:
// core/store.h), so the workers need no scheduler of their own, and a worker that dies loses only its trial in
// flight, which a rerun finishes. Each worker sees its share of the device pool as CUDA_VISIBLE_DEVICES.
#pragma once

#include <string>
#include <vector>

namespace mmr::jobs {

struct JobsOptions {
  int jobs = 1;
  std::vector<std::string> devices;      // --devices: the pool ("" entries not allowed)
  std::vector<std::string> worker_args;  // a worker's arguments after the program name, without --jobs/--devices
};

// "0,1,2" -> {"0","1","2"}; UsageError-style std::invalid_argument naming the flag on an empty entry.
std::vector<std::string> parse_devices(const std::string& list);

// Worker `k`'s devices (0-based of `jobs`): with at least as many devices as jobs, every jobs-th device from k
// (a worker may get several, for data-parallel stages); with fewer, device k mod count (workers share).
std::vector<std::string> devices_of_worker(const std::vector<std::string>& pool, int jobs, int k);

// Starts the workers (each with MMR_LOG_TAG="job k/N" in its environment, which tags its log lines), forwards
// SIGINT/SIGTERM to them, waits for all, and returns the run's exit status: 130 when interrupted, else the
// highest worker status (1 when a worker was killed, saying so).
int run_workers(const JobsOptions& options);

}  // namespace mmr::jobs
